#include "thin.h"

#include <immintrin.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "../gemm.h"
#include "../threadpool.h"

namespace lowrank::cpu {
namespace {

constexpr int kRows = 4;  // rows of x per block
constexpr int kCols = 4;  // columns of out (rows of A) per inner block

// out rows [0, rows) x columns [0, r) for `rows` consecutive rows of x (stride ldx).
__attribute__((target("avx512f"))) void thin_block_avx512(const float* x, int64_t ldx, int rows, const float* a,
                                                          int64_t lda, int64_t r, int64_t k, float alpha, float* out,
                                                          int64_t ldo) {
  const int64_t k16 = k & ~int64_t{15};
  const __mmask16 tail = static_cast<__mmask16>((1u << (k - k16)) - 1u);
  const float* xr[kRows];
  for (int i = 0; i < kRows; ++i) xr[i] = x + std::min(i, rows - 1) * ldx;  // repeat the last row as padding
  for (int64_t j0 = 0; j0 < r; j0 += kCols) {
    const int cols = static_cast<int>(std::min<int64_t>(kCols, r - j0));
    const float* ar[kCols];
    for (int j = 0; j < kCols; ++j) ar[j] = a + (j0 + std::min(j, cols - 1)) * lda;
    __m512 acc[kRows][kCols];
    for (int i = 0; i < kRows; ++i)
      for (int j = 0; j < kCols; ++j) acc[i][j] = _mm512_setzero_ps();
    for (int64_t p = 0; p < k16; p += 16) {
      __m512 av[kCols];
      for (int j = 0; j < kCols; ++j) av[j] = _mm512_loadu_ps(ar[j] + p);
      for (int i = 0; i < kRows; ++i) {
        const __m512 xv = _mm512_loadu_ps(xr[i] + p);
        for (int j = 0; j < kCols; ++j) acc[i][j] = _mm512_fmadd_ps(xv, av[j], acc[i][j]);
      }
    }
    if (tail) {
      __m512 av[kCols];
      for (int j = 0; j < kCols; ++j) av[j] = _mm512_maskz_loadu_ps(tail, ar[j] + k16);
      for (int i = 0; i < kRows; ++i) {
        const __m512 xv = _mm512_maskz_loadu_ps(tail, xr[i] + k16);
        for (int j = 0; j < kCols; ++j) acc[i][j] = _mm512_fmadd_ps(xv, av[j], acc[i][j]);
      }
    }
    for (int i = 0; i < rows; ++i) {
      float lanes[16];
      for (int j = 0; j < cols; ++j) {
        _mm512_storeu_ps(lanes, acc[i][j]);
        float sum = 0.0f;  // fixed order, so the result does not depend on the thread count
        for (float v : lanes) sum += v;
        out[i * ldo + j0 + j] = alpha * sum;
      }
    }
  }
}

void thin_block_portable(const float* x, int64_t ldx, int rows, const float* a, int64_t lda, int64_t r, int64_t k,
                         float alpha, float* out, int64_t ldo) {
  for (int i = 0; i < rows; ++i)
    for (int64_t j = 0; j < r; ++j) {
      float lanes[8] = {};
      const float* xi = x + i * ldx;
      const float* aj = a + j * lda;
      int64_t p = 0;
      for (; p + 8 <= k; p += 8)
        for (int l = 0; l < 8; ++l) lanes[l] += xi[p + l] * aj[p + l];
      for (; p < k; ++p) lanes[p & 7] += xi[p] * aj[p];
      float sum = 0.0f;
      for (float v : lanes) sum += v;
      out[i * ldo + j] = alpha * sum;
    }
}

}  // namespace

void thin_nt(const ThinArgs& g) {
  if (g.m <= 0 || g.r <= 0) return;
  const bool avx512 = std::strcmp(gemm_isa(), "avx512") == 0;
  const int64_t blocks = (g.m + kRows - 1) / kRows;
  const int64_t per_task = std::max<int64_t>(1, (blocks + 4 * threads() - 1) / (4 * threads()));
  parallel_for((blocks + per_task - 1) / per_task, [&](int64_t task) {
    thread_local std::vector<float> masked;
    for (int64_t b = task * per_task; b < std::min(blocks, (task + 1) * per_task); ++b) {
      const int64_t i0 = b * kRows;
      const int rows = static_cast<int>(std::min<int64_t>(kRows, g.m - i0));
      const float* x = g.x + i0 * g.ldx;
      int64_t ldx = g.ldx;
      if (g.dropout && g.dropout->active) {
        // D(x) for these rows, one Philox block per four elements.
        masked.resize(static_cast<size_t>(kRows * g.k));
        for (int i = 0; i < rows; ++i)
          g.dropout->apply(x + i * g.ldx, static_cast<uint64_t>((i0 + i) * g.ldx), g.k, 1.0f, masked.data() + i * g.k,
                           1);
        x = masked.data();
        ldx = g.k;
      }
      float* out = g.out + i0 * g.ldo;
      if (avx512)
        thin_block_avx512(x, ldx, rows, g.a, g.lda, g.r, g.k, g.alpha, out, g.ldo);
      else
        thin_block_portable(x, ldx, rows, g.a, g.lda, g.r, g.k, g.alpha, out, g.ldo);
    }
  });
}

}  // namespace lowrank::cpu
