// Cache-blocked float32 GEMM: operands are packed into contiguous panels (op(A) into strips
// of kMR rows, op(B) into strips of kNR columns; masks, transposes and alpha applied while
// packing), then a kMR x kNR register-tile micro-kernel runs over the panels. The kernel is
// compiled for several ISAs and chosen at load time from the CPU's features.
//
// Cost: 2·m·n·Σk FLOPs; fewest bytes: every operand read once and C written once.
#include "gemm.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "threadpool.h"

namespace lowrank::cpu {
namespace {

constexpr int kMR = 6;
constexpr int kNR = 16;
constexpr int64_t kKC = 256;
constexpr int64_t kMC = 96;   // multiple of kMR
constexpr int64_t kNC = 1024;  // multiple of kNR

typedef float v16 __attribute__((vector_size(64), aligned(64)));

// acc[kMR][kNR] = sum_k a[k][0..kMR) ⊗ b[k][0..kNR); written (not added) to tile.
__attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default"))) void micro_kernel(
    int64_t kc, const float* __restrict a, const float* __restrict b, float* __restrict tile) {
  v16 acc0 = {}, acc1 = {}, acc2 = {}, acc3 = {}, acc4 = {}, acc5 = {};
  for (int64_t p = 0; p < kc; ++p) {
    v16 bv;
    std::memcpy(&bv, b + p * kNR, sizeof(bv));
    const float* ap = a + p * kMR;
    acc0 += ap[0] * bv;
    acc1 += ap[1] * bv;
    acc2 += ap[2] * bv;
    acc3 += ap[3] * bv;
    acc4 += ap[4] * bv;
    acc5 += ap[5] * bv;
  }
  std::memcpy(tile + 0 * kNR, &acc0, sizeof(v16));
  std::memcpy(tile + 1 * kNR, &acc1, sizeof(v16));
  std::memcpy(tile + 2 * kNR, &acc2, sizeof(v16));
  std::memcpy(tile + 3 * kNR, &acc3, sizeof(v16));
  std::memcpy(tile + 4 * kNR, &acc4, sizeof(v16));
  std::memcpy(tile + 5 * kNR, &acc5, sizeof(v16));
}

// Element (i, j) of op(X), with its dropout factor.
inline float load(const MatView& v, int64_t i, int64_t j) {
  const int64_t r = v.trans ? j : i;
  const int64_t c = v.trans ? i : j;
  const int64_t idx = r * v.ld + c;
  const float x = v.data[idx];
  return v.dropout ? x * v.dropout->factor(static_cast<uint64_t>(idx)) : x;
}

// op(A)[i0:i0+mc, k0:k0+kc] * alpha into strips of kMR rows: out[s][p][0..kMR), zero padded.
void pack_a(const MatView& a, float alpha, int64_t i0, int64_t mc, int64_t k0, int64_t kc,
            float* out) {
  for (int64_t s = 0; s < mc; s += kMR) {
    float* strip = out + s * kc;
    const int64_t rows = std::min<int64_t>(kMR, mc - s);
    for (int64_t p = 0; p < kc; ++p) {
      for (int64_t ii = 0; ii < rows; ++ii) strip[p * kMR + ii] = alpha * load(a, i0 + s + ii, k0 + p);
      for (int64_t ii = rows; ii < kMR; ++ii) strip[p * kMR + ii] = 0.0f;
    }
  }
}

// op(B)[k0:k0+kc, j0:j0+nc] into strips of kNR columns: out[s][p][0..kNR), zero padded.
void pack_b(const MatView& b, int64_t k0, int64_t kc, int64_t j0, int64_t nc, float* out) {
  for (int64_t s = 0; s < nc; s += kNR) {
    float* strip = out + s * kc;
    const int64_t cols = std::min<int64_t>(kNR, nc - s);
    if (!b.trans && !b.dropout && cols == kNR) {
      for (int64_t p = 0; p < kc; ++p)
        std::memcpy(strip + p * kNR, b.data + (k0 + p) * b.ld + j0 + s, kNR * sizeof(float));
      continue;
    }
    for (int64_t p = 0; p < kc; ++p) {
      for (int64_t jj = 0; jj < cols; ++jj) strip[p * kNR + jj] = load(b, k0 + p, j0 + s + jj);
      for (int64_t jj = cols; jj < kNR; ++jj) strip[p * kNR + jj] = 0.0f;
    }
  }
}

struct PackBuffers {
  std::vector<float> a, b;
};

PackBuffers& pack_buffers() {
  thread_local PackBuffers buffers;
  if (buffers.a.empty()) {
    buffers.a.resize(static_cast<size_t>(kMC * kKC));
    buffers.b.resize(static_cast<size_t>(kKC * kNC));
  }
  return buffers;
}

// The serial blocked product for rows [i_begin, i_end) and columns [j_begin, j_end) of C.
void gemm_block(const GemmArgs& g, int64_t i_begin, int64_t i_end, int64_t j_begin,
                int64_t j_end) {
  // C = beta * C + bias on this block, then every term accumulates into it.
  for (int64_t i = i_begin; i < i_end; ++i) {
    float* row = g.c + i * g.ldc;
    for (int64_t j = j_begin; j < j_end; ++j) {
      const float base = g.beta == 0.0f ? 0.0f : g.beta * row[j];
      row[j] = g.bias ? base + g.bias[j] : base;
    }
  }
  PackBuffers& buf = pack_buffers();
  alignas(64) float tile[kMR * kNR];
  for (int64_t j0 = j_begin; j0 < j_end; j0 += kNC) {
    const int64_t nc = std::min(kNC, j_end - j0);
    for (int t = 0; t < g.nterms; ++t) {
      const GemmTerm& term = g.terms[t];
      for (int64_t k0 = 0; k0 < term.k; k0 += kKC) {
        const int64_t kc = std::min(kKC, term.k - k0);
        pack_b(term.b, k0, kc, j0, nc, buf.b.data());
        for (int64_t i0 = i_begin; i0 < i_end; i0 += kMC) {
          const int64_t mc = std::min(kMC, i_end - i0);
          pack_a(term.a, term.alpha, i0, mc, k0, kc, buf.a.data());
          for (int64_t js = 0; js < nc; js += kNR) {
            const int64_t cols = std::min<int64_t>(kNR, nc - js);
            for (int64_t is = 0; is < mc; is += kMR) {
              const int64_t rows = std::min<int64_t>(kMR, mc - is);
              micro_kernel(kc, buf.a.data() + is * kc, buf.b.data() + js * kc, tile);
              for (int64_t ii = 0; ii < rows; ++ii) {
                float* crow = g.c + (i0 + is + ii) * g.ldc + j0 + js;
                const float* trow = tile + ii * kNR;
                for (int64_t jj = 0; jj < cols; ++jj) crow[jj] += trow[jj];
              }
            }
          }
        }
      }
    }
  }
}

int64_t round_up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }

}  // namespace

void gemm(const GemmArgs& g) {
  if (g.m <= 0 || g.n <= 0) return;
  // Split the larger output dimension into tasks; each task packs its own panels. Tasks are
  // a few per thread so the pool balances, but large enough to amortise packing.
  const int64_t nthreads = threads();
  if (g.m >= g.n) {
    const int64_t rows = std::max<int64_t>(round_up((g.m + 4 * nthreads - 1) / (4 * nthreads), kMR), 4 * kMR);
    const int64_t tasks = (g.m + rows - 1) / rows;
    parallel_for(tasks, [&](int64_t t) {
      gemm_block(g, t * rows, std::min(g.m, (t + 1) * rows), 0, g.n);
    });
  } else {
    const int64_t cols = std::max<int64_t>(round_up((g.n + 4 * nthreads - 1) / (4 * nthreads), kNR), 4 * kNR);
    const int64_t tasks = (g.n + cols - 1) / cols;
    parallel_for(tasks, [&](int64_t t) {
      gemm_block(g, 0, g.m, t * cols, std::min(g.n, (t + 1) * cols));
    });
  }
}

void gemm_reference(const GemmArgs& g) {
  for (int64_t i = 0; i < g.m; ++i) {
    for (int64_t j = 0; j < g.n; ++j) {
      double acc = g.beta == 0.0f ? 0.0 : static_cast<double>(g.beta) * g.c[i * g.ldc + j];
      if (g.bias) acc += g.bias[j];
      for (int t = 0; t < g.nterms; ++t) {
        const GemmTerm& term = g.terms[t];
        double dot = 0.0;
        for (int64_t p = 0; p < term.k; ++p)
          dot += static_cast<double>(load(term.a, i, p)) * static_cast<double>(load(term.b, p, j));
        acc += static_cast<double>(term.alpha) * dot;
      }
      g.c[i * g.ldc + j] = static_cast<float>(acc);
    }
  }
}

const char* gemm_isa() {
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
      __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq"))
    return "avx512";
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return "avx2";
  return "generic";
}

}  // namespace lowrank::cpu
