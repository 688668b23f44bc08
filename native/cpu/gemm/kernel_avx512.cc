// The AVX-512 micro-kernel: a 12 x 32 tile of C in 24 zmm accumulators. Per step of k: two
// 16-wide loads of B, twelve broadcasts of A, 24 FMAs (768 FLOPs); the machine's FMA port is
// the limit, not loads. Partial tiles use masked loads and stores, so edges cost no copies.
#include <immintrin.h>

#include "kernels.h"

namespace lowrank::cpu::gemm_detail {
namespace {

constexpr int kMR = 12;
constexpr int kNR = 32;

__attribute__((target("avx512f"))) void kernel(int64_t kc, const float* __restrict a,
                                               const float* __restrict b, float* __restrict c,
                                               int64_t ldc, int rows, int cols,
                                               const float* __restrict bias, bool accumulate) {
  __m512 acc[kMR][2];
#pragma GCC unroll 12
  for (int i = 0; i < kMR; ++i) {
    acc[i][0] = _mm512_setzero_ps();
    acc[i][1] = _mm512_setzero_ps();
  }
  for (int64_t p = 0; p < kc; ++p) {
    const __m512 b0 = _mm512_loadu_ps(b + p * kNR);
    const __m512 b1 = _mm512_loadu_ps(b + p * kNR + 16);
    const float* ap = a + p * kMR;
#pragma GCC unroll 12
    for (int i = 0; i < kMR; ++i) {
      const __m512 av = _mm512_set1_ps(ap[i]);
      acc[i][0] = _mm512_fmadd_ps(av, b0, acc[i][0]);
      acc[i][1] = _mm512_fmadd_ps(av, b1, acc[i][1]);
    }
  }
  const __mmask16 m0 = cols >= 16 ? 0xffff : static_cast<__mmask16>((1u << cols) - 1u);
  const __mmask16 m1 = cols >= 32 ? 0xffff : cols <= 16 ? 0 : static_cast<__mmask16>((1u << (cols - 16)) - 1u);
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

}  // namespace

const KernelSet kAvx512 = {"avx512", kMR, kNR, kernel};

}  // namespace lowrank::cpu::gemm_detail
