// The AVX2 + FMA micro-kernels. The product kernel holds a 6 x 16 tile of C in 12 ymm
// accumulators: per step of k, two 8-wide loads of B, six broadcasts of A, 12 FMAs (192
// FLOPs); partial tiles go through a small buffer. Rank-r updates (merge, Delta-LoRA: a short
// kc accumulated into C, bound by C's traffic) sweep a row strip of C on a 4 x 16 tile with C's
// tiles fetched ahead, as the AVX-512 set does; partial columns use masked loads and stores.
#include <immintrin.h>

#include "kernels.h"

namespace lowrank::cpu::gemm_detail {
namespace {

constexpr int kMR = 6;
constexpr int kNR = 16;
constexpr int kUpdateMR = 4;
constexpr int kUpdateNR = 16;
constexpr int kUpdateAhead = 4;  // tiles of C fetched ahead along the strip

// The 12 accumulators are named locals, not an array: GCC 12 kept an array of them in memory as
// well as in registers, storing all 12 on every step of k (half the speed).
__attribute__((target("avx2,fma"))) void kernel(int64_t kc, const float* __restrict a, const float* __restrict b,
                                                float* __restrict c, int64_t ldc, int rows, int cols,
                                                const float* __restrict bias, bool accumulate) {
  __m256 c00 = _mm256_setzero_ps(), c01 = _mm256_setzero_ps(), c10 = _mm256_setzero_ps(), c11 = _mm256_setzero_ps();
  __m256 c20 = _mm256_setzero_ps(), c21 = _mm256_setzero_ps(), c30 = _mm256_setzero_ps(), c31 = _mm256_setzero_ps();
  __m256 c40 = _mm256_setzero_ps(), c41 = _mm256_setzero_ps(), c50 = _mm256_setzero_ps(), c51 = _mm256_setzero_ps();
#define LOWRANK_AVX2_STEP(p)                            \
  do {                                                  \
    const __m256 b0 = _mm256_loadu_ps(b + (p)*kNR);     \
    const __m256 b1 = _mm256_loadu_ps(b + (p)*kNR + 8); \
    const float* ap = a + (p)*kMR;                      \
    __m256 av = _mm256_broadcast_ss(ap + 0);            \
    c00 = _mm256_fmadd_ps(av, b0, c00);                 \
    c01 = _mm256_fmadd_ps(av, b1, c01);                 \
    av = _mm256_broadcast_ss(ap + 1);                   \
    c10 = _mm256_fmadd_ps(av, b0, c10);                 \
    c11 = _mm256_fmadd_ps(av, b1, c11);                 \
    av = _mm256_broadcast_ss(ap + 2);                   \
    c20 = _mm256_fmadd_ps(av, b0, c20);                 \
    c21 = _mm256_fmadd_ps(av, b1, c21);                 \
    av = _mm256_broadcast_ss(ap + 3);                   \
    c30 = _mm256_fmadd_ps(av, b0, c30);                 \
    c31 = _mm256_fmadd_ps(av, b1, c31);                 \
    av = _mm256_broadcast_ss(ap + 4);                   \
    c40 = _mm256_fmadd_ps(av, b0, c40);                 \
    c41 = _mm256_fmadd_ps(av, b1, c41);                 \
    av = _mm256_broadcast_ss(ap + 5);                   \
    c50 = _mm256_fmadd_ps(av, b0, c50);                 \
    c51 = _mm256_fmadd_ps(av, b1, c51);                 \
  } while (0)
  int64_t p = 0;
  for (; p + 4 <= kc; p += 4) {
    _mm_prefetch(reinterpret_cast<const char*>(b + (p + 8) * kNR), _MM_HINT_T0);
    LOWRANK_AVX2_STEP(p);
    LOWRANK_AVX2_STEP(p + 1);
    LOWRANK_AVX2_STEP(p + 2);
    LOWRANK_AVX2_STEP(p + 3);
  }
  for (; p < kc; ++p) LOWRANK_AVX2_STEP(p);
#undef LOWRANK_AVX2_STEP
  const __m256 acc[kMR][2] = {{c00, c01}, {c10, c11}, {c20, c21}, {c30, c31}, {c40, c41}, {c50, c51}};
  if (rows == kMR && cols == kNR) {
    const __m256 bias0 = bias ? _mm256_loadu_ps(bias) : _mm256_setzero_ps();
    const __m256 bias1 = bias ? _mm256_loadu_ps(bias + 8) : _mm256_setzero_ps();
#pragma GCC unroll 6
    for (int i = 0; i < kMR; ++i) {
      float* cr = c + i * ldc;
      __m256 v0 = _mm256_add_ps(acc[i][0], bias0);
      __m256 v1 = _mm256_add_ps(acc[i][1], bias1);
      if (accumulate) {
        v0 = _mm256_add_ps(v0, _mm256_loadu_ps(cr));
        v1 = _mm256_add_ps(v1, _mm256_loadu_ps(cr + 8));
      }
      _mm256_storeu_ps(cr, v0);
      _mm256_storeu_ps(cr + 8, v1);
    }
    return;
  }
  alignas(32) float tile[kMR * kNR];
  for (int i = 0; i < kMR; ++i) {
    _mm256_store_ps(tile + i * kNR, acc[i][0]);
    _mm256_store_ps(tile + i * kNR + 8, acc[i][1]);
  }
  for (int i = 0; i < rows; ++i) {
    float* cr = c + i * ldc;
    for (int j = 0; j < cols; ++j) {
      float v = tile[i * kNR + j] + (bias ? bias[j] : 0.0f);
      cr[j] = accumulate ? cr[j] + v : v;
    }
  }
}

// The lanes of an 8-wide vector that hold one of `cols` remaining columns, as a maskload mask.
__attribute__((target("avx2"))) inline __m256i column_mask(int64_t cols) {
  const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(cols < 8 ? (cols < 0 ? 0 : cols) : 8)), lane);
}

// One row strip of a rank-r update, C[0:rows, 0:cols] += a·b, 16 columns at a time. Each
// product is summed from zero, as in kernel(), so adding it to C rounds once.
__attribute__((target("avx2,fma"))) void update_strip(int64_t kc, const float* __restrict a, const float* __restrict b,
                                                      float* __restrict c, int64_t ldc, int rows, int64_t cols) {
  for (int64_t j = 0; j < cols; j += kUpdateNR) {
    const int64_t ahead = j + kUpdateAhead * kUpdateNR;
    if (ahead < cols)
      for (int i = 0; i < rows; ++i) __builtin_prefetch(c + i * ldc + ahead, 1, 3);
    __m256 c00 = _mm256_setzero_ps(), c01 = _mm256_setzero_ps(), c10 = _mm256_setzero_ps(), c11 = _mm256_setzero_ps();
    __m256 c20 = _mm256_setzero_ps(), c21 = _mm256_setzero_ps(), c30 = _mm256_setzero_ps(), c31 = _mm256_setzero_ps();
    const float* bj = b + j * kc;
    for (int64_t p = 0; p < kc; ++p) {
      const __m256 b0 = _mm256_loadu_ps(bj + p * kUpdateNR), b1 = _mm256_loadu_ps(bj + p * kUpdateNR + 8);
      const float* ap = a + p * kUpdateMR;
      __m256 av = _mm256_broadcast_ss(ap + 0);
      c00 = _mm256_fmadd_ps(av, b0, c00), c01 = _mm256_fmadd_ps(av, b1, c01);
      av = _mm256_broadcast_ss(ap + 1);
      c10 = _mm256_fmadd_ps(av, b0, c10), c11 = _mm256_fmadd_ps(av, b1, c11);
      av = _mm256_broadcast_ss(ap + 2);
      c20 = _mm256_fmadd_ps(av, b0, c20), c21 = _mm256_fmadd_ps(av, b1, c21);
      av = _mm256_broadcast_ss(ap + 3);
      c30 = _mm256_fmadd_ps(av, b0, c30), c31 = _mm256_fmadd_ps(av, b1, c31);
    }
    const __m256 acc[kUpdateMR][2] = {{c00, c01}, {c10, c11}, {c20, c21}, {c30, c31}};
    const int64_t left = cols - j;
    float* ct = c + j;
    if (left >= kUpdateNR) {
      for (int i = 0; i < rows; ++i) {
        float* cr = ct + i * ldc;
        _mm256_storeu_ps(cr, _mm256_add_ps(acc[i][0], _mm256_loadu_ps(cr)));
        _mm256_storeu_ps(cr + 8, _mm256_add_ps(acc[i][1], _mm256_loadu_ps(cr + 8)));
      }
    } else {
      const __m256i m0 = column_mask(left), m1 = column_mask(left - 8);
      for (int i = 0; i < rows; ++i) {
        float* cr = ct + i * ldc;
        _mm256_maskstore_ps(cr, m0, _mm256_add_ps(acc[i][0], _mm256_maskload_ps(cr, m0)));
        _mm256_maskstore_ps(cr + 8, m1, _mm256_add_ps(acc[i][1], _mm256_maskload_ps(cr + 8, m1)));
      }
    }
  }
}

// r[0..7] (rows) ← their transpose: r[p] holds column p of the 8 x 8 block.
__attribute__((target("avx2"))) inline void transpose8(__m256 (&r)[8]) {
  __m256 t[8];
  for (int i = 0; i < 8; i += 2) {
    t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
    t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
  }
  __m256 u[8];
  for (int i = 0; i < 8; i += 4) {
    u[i] = _mm256_shuffle_ps(t[i], t[i + 2], 0x44);
    u[i + 1] = _mm256_shuffle_ps(t[i], t[i + 2], 0xEE);
    u[i + 2] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0x44);
    u[i + 3] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0xEE);
  }
  for (int i = 0; i < 4; ++i) {
    r[i] = _mm256_permute2f128_ps(u[i], u[i + 4], 0x20);
    r[i + 4] = _mm256_permute2f128_ps(u[i], u[i + 4], 0x31);
  }
}

// rows[16][2] (16 rows of 16 values) transposed into dst: dst row p (p = 0..15, dst_stride
// apart) gets column p, its first `lanes` values (rows 0..lanes-1).
__attribute__((target("avx2"))) void store_transposed(__m256 (&rows)[16][2], float* __restrict dst, int64_t dst_stride,
                                                      int lanes) {
  const __m256i m0 = column_mask(lanes), m1 = column_mask(lanes - 8);
  for (int half = 0; half < 2; ++half) {  // columns 8·half .. 8·half + 7
    __m256 lo[8], hi[8];                  // rows 0..7 and 8..15 of those columns
    for (int i = 0; i < 8; ++i) {
      lo[i] = rows[i][half];
      hi[i] = rows[i + 8][half];
    }
    transpose8(lo);
    transpose8(hi);
    for (int p = 0; p < 8; ++p) {
      float* d = dst + (8 * half + p) * dst_stride;
      if (lanes >= 16) {
        _mm256_storeu_ps(d, lo[p]);
        _mm256_storeu_ps(d + 8, hi[p]);
      } else {
        _mm256_maskstore_ps(d, m0, lo[p]);
        if (lanes > 8) _mm256_maskstore_ps(d + 8, m1, hi[p]);
      }
    }
  }
}

// The packing transpose (kernels.h, Transpose16): 16 steps of `rows` rows (the rest zero),
// scaled by alpha, into 16 destination rows of `lanes` values.
__attribute__((target("avx2"))) void transpose16(const float* __restrict src, int64_t ld, int rows,
                                                 float* __restrict dst, int64_t dst_stride, int lanes, float alpha) {
  __m256 r[16][2];
  const __m256 scale = _mm256_set1_ps(alpha);
  for (int i = 0; i < 16; ++i) {
    if (i < rows) {
      r[i][0] = _mm256_mul_ps(scale, _mm256_loadu_ps(src + i * ld));
      r[i][1] = _mm256_mul_ps(scale, _mm256_loadu_ps(src + i * ld + 8));
    } else {
      r[i][0] = r[i][1] = _mm256_setzero_ps();
    }
  }
  store_transposed(r, dst, dst_stride, lanes);
}

// The same from bfloat16 (the top half of a float32: widened by a 16-bit left shift).
__attribute__((target("avx2"))) void transpose16_bf16(const uint16_t* __restrict src, int64_t ld, int rows,
                                                      float* __restrict dst, int64_t dst_stride, int lanes) {
  __m256 r[16][2];
  for (int i = 0; i < 16; ++i) {
    if (i < rows) {
      const __m128i h0 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i * ld));
      const __m128i h1 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i * ld + 8));
      r[i][0] = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h0), 16));
      r[i][1] = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h1), 16));
    } else {
      r[i][0] = r[i][1] = _mm256_setzero_ps();
    }
  }
  store_transposed(r, dst, dst_stride, lanes);
}

}  // namespace

const KernelSet kAvx2 = {"avx2", kMR, kNR, kernel, transpose16, transpose16_bf16, {kUpdateMR, kUpdateNR, update_strip}};

}  // namespace lowrank::cpu::gemm_detail
