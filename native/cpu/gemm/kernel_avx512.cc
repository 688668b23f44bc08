// The AVX-512 micro-kernels. The product kernel holds a 12 x 32 tile of C in 24 zmm
// accumulators: per step of k, two 16-wide loads of B, twelve broadcasts of A, 24 FMAs (768
// FLOPs); the machine's FMA port is the limit, not loads. Rank-r updates sweep a row strip of
// C on a 4 x 64 tile instead (four loads, four broadcasts, 16 FMAs per step): the C tile is
// read and written after only kc <= 512 steps, and the rows of a power-of-two-wide C (a
// 4096-wide W, 16 KiB apart) all fall in one 8-way set of L1. Four rows there leave room for
// the packed strip of B; twelve (or six) rows evict it and each other. Partial tiles use
// masked loads and stores, so edges cost no copies.
#include <immintrin.h>

#include "kernels.h"

namespace lowrank::cpu::gemm_detail {
namespace {

constexpr int kMR = 12;
constexpr int kNR = 32;
constexpr int kUpdateMR = 4;
constexpr int kUpdateNR = 64;
constexpr int kUpdateAhead = 2;     // tiles of C fetched ahead along the strip
constexpr int64_t kLateSteps = 64;  // steps of k left when C's tile is pulled into L1

// acc[i][·] += a[p][i] ⊗ b[p][·] for steps p in [p_begin, p_end) of an MR x 16·NV tile: the
// micro-kernels' inner loop.
template <int MR, int NV>
__attribute__((target("avx512f"), always_inline)) inline void fma_steps(const float* __restrict a,
                                                                        const float* __restrict b, int64_t p_begin,
                                                                        int64_t p_end, __m512 (&acc)[MR][NV]) {
  for (int64_t p = p_begin; p < p_end; ++p) {
    __m512 bv[NV];
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) bv[v] = _mm512_loadu_ps(b + p * 16 * NV + 16 * v);
    const float* ap = a + p * MR;
#pragma GCC unroll 12
    for (int i = 0; i < MR; ++i) {
      const __m512 av = _mm512_set1_ps(ap[i]);
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) acc[i][v] = _mm512_fmadd_ps(av, bv[v], acc[i][v]);
    }
  }
}

// The lanes of a 16-wide vector that hold one of `cols` remaining columns (0 to 16 of them).
inline __mmask16 column_mask(int cols) {
  return cols >= 16 ? 0xffff : cols <= 0 ? 0 : static_cast<__mmask16>((1u << cols) - 1u);
}

__attribute__((target("avx512f"))) void kernel(int64_t kc, const float* __restrict a, const float* __restrict b,
                                               float* __restrict c, int64_t ldc, int rows, int cols,
                                               const float* __restrict bias, bool accumulate) {
  __m512 acc[kMR][2];
#pragma GCC unroll 12
  for (int i = 0; i < kMR; ++i) {
    acc[i][0] = _mm512_setzero_ps();
    acc[i][1] = _mm512_setzero_ps();
    // C's tile is read (or at least written) at the end: start fetching it into L2 now...
    _mm_prefetch(reinterpret_cast<const char*>(c + i * ldc), _MM_HINT_T1);
    _mm_prefetch(reinterpret_cast<const char*>(c + i * ldc + 16), _MM_HINT_T1);
  }
  // ...and into L1 shortly before the end, after the A and B streams have swept L1.
  const int64_t late = kc > kLateSteps ? kc - kLateSteps : 0;
  int64_t p = 0;
  for (int phase = 0; phase < 2; ++phase) {
    const int64_t end = phase == 0 ? late : kc;
    fma_steps<kMR, 2>(a, b, p, end, acc);
    p = end;
    if (phase == 0) {
      for (int i = 0; i < rows; ++i) {
        _mm_prefetch(reinterpret_cast<const char*>(c + i * ldc), _MM_HINT_T0);
        _mm_prefetch(reinterpret_cast<const char*>(c + i * ldc + 16), _MM_HINT_T0);
      }
    }
  }
  const __mmask16 m0 = column_mask(cols), m1 = column_mask(cols - 16);
  __m512 bias0 = _mm512_setzero_ps(), bias1 = _mm512_setzero_ps();
  if (bias) {
    bias0 = _mm512_maskz_loadu_ps(m0, bias);
    bias1 = _mm512_maskz_loadu_ps(m1, bias + 16);
  }
#pragma GCC unroll 12
  for (int i = 0; i < kMR; ++i) {
    if (i >= rows) break;
    float* cr = c + i * ldc;
    __m512 v0 = _mm512_add_ps(acc[i][0], bias0);
    __m512 v1 = _mm512_add_ps(acc[i][1], bias1);
    if (accumulate) {
      v0 = _mm512_add_ps(v0, _mm512_maskz_loadu_ps(m0, cr));
      v1 = _mm512_add_ps(v1, _mm512_maskz_loadu_ps(m1, cr + 16));
    }
    _mm512_mask_storeu_ps(cr, m0, v0);
    _mm512_mask_storeu_ps(cr + 16, m1, v1);
  }
}

// One row strip of a rank-r update, C[0:rows, 0:cols] += a·b, tile by tile. Each product is
// summed from zero, as in kernel(), so adding it to C rounds once. C's tile kUpdateAhead to
// the right is fetched (for writing) while this one computes; each row is one sequential
// stream, so the hardware keeps ahead from there.
__attribute__((target("avx512f"))) void update_strip(int64_t kc, const float* __restrict a, const float* __restrict b,
                                                     float* __restrict c, int64_t ldc, int rows, int64_t cols) {
  constexpr int kNV = kUpdateNR / 16;
  for (int64_t j = 0; j < cols; j += kUpdateNR) {
    const int64_t ahead = j + kUpdateAhead * kUpdateNR;
    if (ahead < cols)
      for (int i = 0; i < rows; ++i)
#pragma GCC unroll 4
        for (int v = 0; v < kNV; ++v) __builtin_prefetch(c + i * ldc + ahead + 16 * v, 1, 3);
    __m512 acc[kUpdateMR][kNV];
#pragma GCC unroll 4
    for (int i = 0; i < kUpdateMR; ++i)
#pragma GCC unroll 4
      for (int v = 0; v < kNV; ++v) acc[i][v] = _mm512_setzero_ps();
    fma_steps<kUpdateMR, kNV>(a, b + j * kc, 0, kc, acc);
    float* ct = c + j;
    __mmask16 mask[kNV];
    const int64_t left = cols - j;
    for (int v = 0; v < kNV; ++v) mask[v] = column_mask(static_cast<int>(left < kUpdateNR ? left : kUpdateNR) - 16 * v);
#pragma GCC unroll 4
    for (int i = 0; i < kUpdateMR; ++i) {
      if (i >= rows) break;  // (a constant trip count keeps acc in registers)
#pragma GCC unroll 4
      for (int v = 0; v < kNV; ++v) {
        float* cv = ct + i * ldc + 16 * v;
        _mm512_mask_storeu_ps(cv, mask[v], _mm512_add_ps(acc[i][v], _mm512_maskz_loadu_ps(mask[v], cv)));
      }
    }
  }
}

// The 16 x 16 transpose of unpack / shuffle / 128-bit-lane shuffle steps. (GCC 12 warns
// inside its own unpack/shuffle intrinsics, GCC bug 105593; the warning is silenced here only.)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
__attribute__((target("avx512f"))) void transpose_rows(__m512 (&r)[16], float* __restrict dst, int64_t dst_stride,
                                                       int lanes) {
  __m512 t[16];
  for (int i = 0; i < 16; i += 2) {
    t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
    t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
  }
  for (int i = 0; i < 16; i += 4) {
    r[i] = _mm512_shuffle_ps(t[i], t[i + 2], 0x44);
    r[i + 1] = _mm512_shuffle_ps(t[i], t[i + 2], 0xEE);
    r[i + 2] = _mm512_shuffle_ps(t[i + 1], t[i + 3], 0x44);
    r[i + 3] = _mm512_shuffle_ps(t[i + 1], t[i + 3], 0xEE);
  }
  for (int i = 0; i < 4; ++i) {
    t[i] = _mm512_shuffle_f32x4(r[i], r[i + 4], 0x88);
    t[i + 4] = _mm512_shuffle_f32x4(r[i], r[i + 4], 0xDD);
    t[i + 8] = _mm512_shuffle_f32x4(r[i + 8], r[i + 12], 0x88);
    t[i + 12] = _mm512_shuffle_f32x4(r[i + 8], r[i + 12], 0xDD);
  }
  for (int i = 0; i < 8; ++i) {
    r[i] = _mm512_shuffle_f32x4(t[i], t[i + 8], 0x88);
    r[i + 8] = _mm512_shuffle_f32x4(t[i], t[i + 8], 0xDD);
  }
  const __mmask16 mask = lanes >= 16 ? 0xffff : static_cast<__mmask16>((1u << lanes) - 1u);
  for (int p = 0; p < 16; ++p) _mm512_mask_storeu_ps(dst + p * dst_stride, mask, r[p]);
}

__attribute__((target("avx512f"))) void transpose16(const float* __restrict src, int64_t ld, int rows,
                                                    float* __restrict dst, int64_t dst_stride, int lanes, float alpha) {
  __m512 r[16];
  const __m512 scale = _mm512_set1_ps(alpha);
  for (int i = 0; i < 16; ++i)
    r[i] = i < rows ? _mm512_mul_ps(scale, _mm512_loadu_ps(src + i * ld)) : _mm512_setzero_ps();
  transpose_rows(r, dst, dst_stride, lanes);
}

// bfloat16 is the top half of a float32: widen by shifting each 16-bit value left by 16.
__attribute__((target("avx512f"))) void transpose16_bf16(const uint16_t* __restrict src, int64_t ld, int rows,
                                                         float* __restrict dst, int64_t dst_stride, int lanes) {
  __m512 r[16];
  for (int i = 0; i < 16; ++i) {
    if (i >= rows) {
      r[i] = _mm512_setzero_ps();
      continue;
    }
    const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + i * ld));
    r[i] = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
  }
  transpose_rows(r, dst, dst_stride, lanes);
}
#pragma GCC diagnostic pop

}  // namespace

const KernelSet kAvx512 = {
    "avx512", kMR, kNR, kernel, transpose16, transpose16_bf16, {kUpdateMR, kUpdateNR, update_strip}};

}  // namespace lowrank::cpu::gemm_detail
