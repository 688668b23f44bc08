// The tensor-core GEMM behind every CUDA op (contract in gemm.cuh).
//
// A block computes a BM x BN tile of C with WARPS_M x WARPS_N warps. The joined inner
// dimension is walked in tiles of kBK steps; every tile lies inside one term (each term's k is
// padded to a multiple of kBK with zeros), so a tile has one pair of operands, one alpha and
// one mask. Per tile, every thread loads its share of op(A)'s BM x kBK block and op(B)'s
// kBK x BN block from global memory into registers (converting to the compute type, applying
// alpha and the dropout mask), stores them K-contiguous in shared memory (As[m][k], Bs[n][k],
// rows padded so fragment loads hit distinct banks), and the warps run mma.sync over it while
// the next tile's loads are in flight.
//
// Operands whose elements are K-contiguous in memory, 16-bit in the compute type, aligned,
// unmasked and unscaled (the base product's x and W) load 8 elements per 16-byte access;
// everything else (transposed operands, float32 operands, masks) loads element by element
// with consecutive threads on consecutive addresses.
//
// FLOPs: 2·m·n·Σk. Fewest bytes: the operands and C once each (C twice when beta != 0).
#include <cuda_runtime.h>

#include <atomic>
#include <cstdint>
#include <string>

#include "../core/check.h"
#include "common.cuh"
#include "cuda.h"
#include "gemm.cuh"

namespace lowrank::cuda {
namespace {

constexpr int kBK = 32;

std::atomic<bool> g_tf32{false};

// Kernel-side copies of the views (plain values, passed by value in the launch parameters).
struct Operand {
  const void* data;
  int64_t ld;
  Dropout drop;
  DType dtype;
  bool trans;
  bool vec;  // 16-byte loads of 8 elements (see the file comment)
};

struct Term {
  Operand a, b;
  int64_t k;
  int64_t tiles;  // ceil(k / kBK)
  float alpha;
};

struct Params {
  Term terms[kMaxTerms];
  int64_t m, n, ldc;
  void* c;
  const void* bias;
  float beta;
  int nterms;
  DType c_dtype, bias_dtype;
};

template <Compute C>
struct Smem {
  using T = uint16_t;  // bfloat16 / float16 bits
  static constexpr int kPad = 8;
  __device__ static T from_float(float v) { return C == Compute::kBF16 ? f32_to_bf16(v) : f32_to_f16(v); }
};
template <>
struct Smem<Compute::kTF32x3> {
  using T = float;
  static constexpr int kPad = 4;
  __device__ static T from_float(float v) { return v; }
};
template <>
struct Smem<Compute::kTF32> : Smem<Compute::kTF32x3> {};

// op(X)[row, col] of an operand (alpha and the mask applied), or 0 outside rows x cols.
__device__ __forceinline__ float fetch(const Operand& o, int64_t row, int64_t col, int64_t rows, int64_t cols,
                                       float alpha) {
  if (row >= rows || col >= cols) return 0.0f;
  const int64_t i = o.trans ? col * o.ld + row : row * o.ld + col;
  float v = load_f32(o.data, o.dtype, i) * alpha;
  if (o.drop.active) v *= o.drop.factor(static_cast<uint64_t>(i));
  return v;
}

// Eight consecutive 16-bit elements of a K-contiguous operand's stored row `row` from column
// `col` (one 16-byte load), zeros past `rows` or past the term's k.
__device__ __forceinline__ uint4 load_chunk(const Operand& o, int64_t row, int64_t rows, int64_t col, int64_t k) {
  const uint16_t* base = static_cast<const uint16_t*>(o.data);
  if (row < rows && col + 8 <= k) return *reinterpret_cast<const uint4*>(base + row * o.ld + col);
  uint16_t h[8];
#pragma unroll
  for (int e = 0; e < 8; ++e) h[e] = (row < rows && col + e < k) ? base[row * o.ld + col + e] : 0;
  return make_uint4(h[0] | (uint32_t(h[1]) << 16), h[2] | (uint32_t(h[3]) << 16), h[4] | (uint32_t(h[5]) << 16),
                    h[6] | (uint32_t(h[7]) << 16));
}

__device__ __forceinline__ uint32_t ld32(const uint16_t* p) { return *reinterpret_cast<const uint32_t*>(p); }

__device__ __forceinline__ void mma16(Compute c, float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]) {
  if (c == Compute::kBF16)
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
  else
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

__device__ __forceinline__ void mma_tf32(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]) {
  asm volatile(
      "mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

__device__ __forceinline__ uint32_t to_tf32(float x) {
  uint32_t r;
  asm("cvt.rna.tf32.f32 %0, %1;\n" : "=r"(r) : "f"(x));
  return r;
}

// x = big + small with both parts representable in TF32 (small carries the bits big drops).
__device__ __forceinline__ void split_tf32(float x, uint32_t& big, uint32_t& small) {
  big = to_tf32(x);
  small = to_tf32(x - __uint_as_float(big));
}

template <int BM, int BN, int WARPS_M, int WARPS_N, Compute C>
__global__ void __launch_bounds__(WARPS_M* WARPS_N * 32) gemm_kernel(const Params p) {
  using S = Smem<C>;
  using T = typename S::T;
  constexpr int kThreads = WARPS_M * WARPS_N * 32;
  constexpr int kLd = kBK + S::kPad;                                           // shared row length, in elements
  constexpr int kWM = BM / WARPS_M, kWN = BN / WARPS_N;                        // warp tile
  constexpr int kMT = kWM / 16, kNT = kWN / 8;                                 // MMA tiles per warp
  constexpr int kEA = BM * kBK / kThreads, kEB = BN * kBK / kThreads;          // elements per thread
  constexpr int kVA = BM * kBK / 8 / kThreads, kVB = BN * kBK / 8 / kThreads;  // 8-element chunks
  static_assert(kEA * kThreads == BM * kBK && kEB * kThreads == BN * kBK, "tile not divisible");
  static_assert(kVA >= 1 && kVB >= 1, "tile too small for vector loads");
  static_assert(kMT >= 1 && kNT >= 1, "warp tile too small");

  __shared__ __align__(16) T As[BM][kLd];
  __shared__ __align__(16) T Bs[BN][kLd];

  const int tid = threadIdx.x;
  const int warp = tid / 32, lane = tid % 32;
  const int group = lane / 4, tig = lane % 4;
  const int wm0 = (warp / WARPS_N) * kWM, wn0 = (warp % WARPS_N) * kWN;
  const int64_t m0 = static_cast<int64_t>(blockIdx.y) * BM;
  const int64_t n0 = static_cast<int64_t>(blockIdx.x) * BN;

  float acc[kMT][kNT][4];
#pragma unroll
  for (int i = 0; i < kMT; ++i)
#pragma unroll
    for (int j = 0; j < kNT; ++j)
#pragma unroll
      for (int q = 0; q < 4; ++q) acc[i][j][q] = 0.0f;

  // Staged values of the next tile: scalars, or 16-byte chunks for vector operands.
  float ra[kEA], rb[kEB];
  uint4 va[kVA], vb[kVB];

  // Loads tile `kt` of term `t` into the staging registers.
  auto load = [&](const Term& tm, int64_t kt) {
    const int64_t k0 = kt * kBK;
    const Operand& a = tm.a;
    const Operand& b = tm.b;
    if (a.vec) {
#pragma unroll
      for (int i = 0; i < kVA; ++i) {
        const int c = tid + i * kThreads;
        const int mm = c / (kBK / 8), kk = (c % (kBK / 8)) * 8;
        va[i] = load_chunk(a, m0 + mm, p.m, k0 + kk, tm.k);
      }
    } else {
#pragma unroll
      for (int i = 0; i < kEA; ++i) {
        const int e = tid + i * kThreads;
        // K-contiguous storage: consecutive threads walk k; otherwise they walk m.
        const int mm = a.trans ? e % BM : e / kBK, kk = a.trans ? e / BM : e % kBK;
        ra[i] = fetch(a, m0 + mm, k0 + kk, p.m, tm.k, tm.alpha);
      }
    }
    if (b.vec) {
#pragma unroll
      for (int i = 0; i < kVB; ++i) {
        const int c = tid + i * kThreads;
        const int nn = c / (kBK / 8), kk = (c % (kBK / 8)) * 8;
        vb[i] = load_chunk(b, n0 + nn, p.n, k0 + kk, tm.k);
      }
    } else {
#pragma unroll
      for (int i = 0; i < kEB; ++i) {
        const int e = tid + i * kThreads;
        // op(B)[k, n]: K-contiguous when stored transposed ([n, k]).
        const int nn = b.trans ? e / kBK : e % BN, kk = b.trans ? e % kBK : e / BN;
        rb[i] = fetch(b, k0 + kk, n0 + nn, tm.k, p.n, 1.0f);
      }
    }
  };

  auto store = [&](const Term& tm) {
    if (tm.a.vec) {
#pragma unroll
      for (int i = 0; i < kVA; ++i) {
        const int c = tid + i * kThreads;
        *reinterpret_cast<uint4*>(&As[c / (kBK / 8)][(c % (kBK / 8)) * 8]) = va[i];
      }
    } else {
#pragma unroll
      for (int i = 0; i < kEA; ++i) {
        const int e = tid + i * kThreads;
        const int mm = tm.a.trans ? e % BM : e / kBK, kk = tm.a.trans ? e / BM : e % kBK;
        As[mm][kk] = S::from_float(ra[i]);
      }
    }
    if (tm.b.vec) {
#pragma unroll
      for (int i = 0; i < kVB; ++i) {
        const int c = tid + i * kThreads;
        *reinterpret_cast<uint4*>(&Bs[c / (kBK / 8)][(c % (kBK / 8)) * 8]) = vb[i];
      }
    } else {
#pragma unroll
      for (int i = 0; i < kEB; ++i) {
        const int e = tid + i * kThreads;
        const int nn = tm.b.trans ? e / kBK : e % BN, kk = tm.b.trans ? e % kBK : e / BN;
        Bs[nn][kk] = S::from_float(rb[i]);
      }
    }
  };

  auto compute = [&]() {
    if constexpr (C == Compute::kBF16 || C == Compute::kF16) {
#pragma unroll
      for (int ks = 0; ks < kBK; ks += 16) {
        const int c = ks + 2 * tig;
        uint32_t af[kMT][4], bf[kNT][2];
#pragma unroll
        for (int mt = 0; mt < kMT; ++mt) {
          const int r = wm0 + mt * 16 + group;
          af[mt][0] = ld32(&As[r][c]);
          af[mt][1] = ld32(&As[r + 8][c]);
          af[mt][2] = ld32(&As[r][c + 8]);
          af[mt][3] = ld32(&As[r + 8][c + 8]);
        }
#pragma unroll
        for (int nt = 0; nt < kNT; ++nt) {
          const int n = wn0 + nt * 8 + group;
          bf[nt][0] = ld32(&Bs[n][c]);
          bf[nt][1] = ld32(&Bs[n][c + 8]);
        }
#pragma unroll
        for (int mt = 0; mt < kMT; ++mt)
#pragma unroll
          for (int nt = 0; nt < kNT; ++nt) mma16(C, acc[mt][nt], af[mt], bf[nt]);
      }
    } else {
#pragma unroll
      for (int ks = 0; ks < kBK; ks += 8) {
        const int c = ks + tig;
        uint32_t ab[kMT][4], as[kMT][4], bb[kNT][2], bs[kNT][2];
#pragma unroll
        for (int mt = 0; mt < kMT; ++mt) {
          const int r = wm0 + mt * 16 + group;
          const float v[4] = {As[r][c], As[r + 8][c], As[r][c + 4], As[r + 8][c + 4]};
#pragma unroll
          for (int q = 0; q < 4; ++q) {
            if constexpr (C == Compute::kTF32x3)
              split_tf32(v[q], ab[mt][q], as[mt][q]);
            else
              ab[mt][q] = to_tf32(v[q]);
          }
        }
#pragma unroll
        for (int nt = 0; nt < kNT; ++nt) {
          const int n = wn0 + nt * 8 + group;
          const float v[2] = {Bs[n][c], Bs[n][c + 4]};
#pragma unroll
          for (int q = 0; q < 2; ++q) {
            if constexpr (C == Compute::kTF32x3)
              split_tf32(v[q], bb[nt][q], bs[nt][q]);
            else
              bb[nt][q] = to_tf32(v[q]);
          }
        }
#pragma unroll
        for (int mt = 0; mt < kMT; ++mt)
#pragma unroll
          for (int nt = 0; nt < kNT; ++nt) {
            if constexpr (C == Compute::kTF32x3) {
              // The small cross terms first, so they are not lost against the big product.
              mma_tf32(acc[mt][nt], as[mt], bb[nt]);
              mma_tf32(acc[mt][nt], ab[mt], bs[nt]);
            }
            mma_tf32(acc[mt][nt], ab[mt], bb[nt]);
          }
      }
    }
  };

  // The joined inner dimension, tile by tile: term t, tile kt within it.
  int t = 0;
  int64_t kt = 0;
  while (t < p.nterms && p.terms[t].tiles == 0) ++t;
  if (t < p.nterms) {
    load(p.terms[t], kt);
    for (;;) {
      store(p.terms[t]);
      __syncthreads();
      int nt_ = t;
      int64_t nkt = kt + 1;
      while (nt_ < p.nterms && nkt >= p.terms[nt_].tiles) {
        ++nt_;
        nkt = 0;
      }
      const bool more = nt_ < p.nterms;
      if (more) load(p.terms[nt_], nkt);  // in flight while the MMAs run
      compute();
      __syncthreads();
      if (!more) break;
      t = nt_;
      kt = nkt;
    }
  }

  // Epilogue: C = beta·C + bias + acc, each element written once.
#pragma unroll
  for (int mt = 0; mt < kMT; ++mt)
#pragma unroll
    for (int nt = 0; nt < kNT; ++nt)
#pragma unroll
      for (int q = 0; q < 4; ++q) {
        const int64_t row = m0 + wm0 + mt * 16 + group + (q >= 2 ? 8 : 0);
        const int64_t col = n0 + wn0 + nt * 8 + 2 * tig + (q & 1);
        if (row >= p.m || col >= p.n) continue;
        float v = acc[mt][nt][q];
        if (p.bias) v += load_f32(p.bias, p.bias_dtype, col);
        const int64_t i = row * p.ldc + col;
        if (p.beta != 0.0f) v += p.beta * load_f32(p.c, p.c_dtype, i);
        store_f32(p.c, p.c_dtype, i, v);
      }
}

template <int BM, int BN, int WM, int WN>
void launch_shape(const Params& p, Compute c) {
  const int64_t gx = (p.n + BN - 1) / BN, gy = (p.m + BM - 1) / BM;
  LR_CHECK("gemm", gx <= 0x7fffffff && gy <= 65535, "the output is too large for one launch");
  const dim3 grid(static_cast<unsigned>(gx), static_cast<unsigned>(gy));
  const dim3 block(WM * WN * 32);
  switch (c) {
    case Compute::kBF16: gemm_kernel<BM, BN, WM, WN, Compute::kBF16><<<grid, block, 0, stream()>>>(p); break;
    case Compute::kF16: gemm_kernel<BM, BN, WM, WN, Compute::kF16><<<grid, block, 0, stream()>>>(p); break;
    case Compute::kTF32x3: gemm_kernel<BM, BN, WM, WN, Compute::kTF32x3><<<grid, block, 0, stream()>>>(p); break;
    case Compute::kTF32: gemm_kernel<BM, BN, WM, WN, Compute::kTF32><<<grid, block, 0, stream()>>>(p); break;
  }
  check(cudaGetLastError(), "gemm_kernel launch");
}

// Whether an operand can use 16-byte loads: its stored rows run along k (A not transposed, B
// transposed), it is already in the 16-bit compute type, unscaled, unmasked, and aligned.
bool vectorizable(const MatView& v, bool k_contiguous, float alpha, Compute c) {
  const bool same_type =
      (c == Compute::kBF16 && v.dtype == DType::kBFloat16) || (c == Compute::kF16 && v.dtype == DType::kFloat16);
  return same_type && k_contiguous && alpha == 1.0f && !v.drop.active && v.ld % 8 == 0 &&
         reinterpret_cast<uintptr_t>(v.data) % 16 == 0;
}

Operand operand(const MatView& v, bool vec) { return Operand{v.data, v.ld, v.drop, v.dtype, v.trans, vec}; }

}  // namespace

Compute compute_for(DType d) {
  switch (d) {
    case DType::kBFloat16: return Compute::kBF16;
    case DType::kFloat16: return Compute::kF16;
    case DType::kFloat32: break;
    case DType::kInt32: break;  // never a GEMM operand (the ops accept float dtypes only)
  }
  return g_tf32.load() ? Compute::kTF32 : Compute::kTF32x3;
}

bool set_tf32(bool allow) { return g_tf32.exchange(allow); }

void gemm(const GemmArgs& g) {
  LR_CHECK("gemm", g.m >= 0 && g.n >= 0, "m and n must be >= 0");
  LR_CHECK("gemm", g.nterms >= 0 && g.nterms <= kMaxTerms, "at most 3 terms");
  if (g.m == 0 || g.n == 0) return;
  Params p{};
  p.m = g.m;
  p.n = g.n;
  p.c = g.c;
  p.ldc = g.ldc;
  p.beta = g.beta;
  p.bias = g.bias;
  p.c_dtype = g.c_dtype;
  p.bias_dtype = g.bias_dtype;
  for (int i = 0; i < g.nterms; ++i) {
    const GemmTerm& t = g.terms[i];
    LR_CHECK("gemm", t.k >= 0, "every term's k must be >= 0");
    Term& o = p.terms[p.nterms];
    o.a = operand(t.a, vectorizable(t.a, !t.a.trans, t.alpha, g.compute));
    o.b = operand(t.b, vectorizable(t.b, t.b.trans, 1.0f, g.compute));
    o.k = t.k;
    o.tiles = (t.k + kBK - 1) / kBK;
    o.alpha = t.alpha;
    if (o.tiles > 0) ++p.nterms;
  }
  // Thin outputs get narrow tiles so the grid still fills the device.
  if (g.n <= 32 && g.m > 32)
    launch_shape<64, 32, 4, 1>(p, g.compute);
  else if (g.m <= 32)
    launch_shape<32, 64, 1, 4>(p, g.compute);
  else
    launch_shape<128, 128, 2, 4>(p, g.compute);
}

}  // namespace lowrank::cuda
