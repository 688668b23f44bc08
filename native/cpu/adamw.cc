// The fused AdamW step. Elementwise and bound by memory traffic:
// FLOPs: about 14 per element (plus a square root and two divisions). Fewest bytes: 28 per
// element (param, grad, m, v read; param, m, v written).
//
// The float32 arithmetic follows torch's operation by operation, each rounded on its own: the
// only fused multiply-add is lerp's (torch's vectorised lerp uses one). Contraction of the other
// products and sums into FMAs is switched off, so the AVX2 and the portable paths give the
// same bits.
#include "adamw.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "../core/ops.h"
#include "adamw_coeffs.h"
#include "gemm.h"
#include "threadpool.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define LR_ADAMW_AVX2 1
#endif

#if defined(__clang__)
#define LR_NO_CONTRACT
#pragma STDC FP_CONTRACT OFF
#else
#define LR_NO_CONTRACT __attribute__((optimize("fp-contract=off")))
#endif

namespace lowrank::cpu {
namespace {

constexpr int64_t kChunk = 1 << 14;  // elements per task: 4 arrays x 64 KiB

LR_NO_CONTRACT inline void element(const Coeffs& c, float& p, float g, float& m, float& v) {
  p = p * c.decay;
  m = std::fma(c.coeff, g - m, c.small ? m : g);
  v = v * c.beta2;
  v = v + c.c2 * g * g;
  const float denom = std::sqrt(v) / c.bc2_sqrt + c.eps;
  p = p + c.neg_step * m / denom;
}

LR_NO_CONTRACT void run_portable(const Coeffs& c, float* p, const float* g, float* m, float* v, int64_t n) {
  for (int64_t i = 0; i < n; ++i) element(c, p[i], g[i], m[i], v[i]);
}

#ifdef LR_ADAMW_AVX2
__attribute__((target("avx2,fma"))) LR_NO_CONTRACT void run_avx2(const Coeffs& c, float* p, const float* g, float* m,
                                                                 float* v, int64_t n) {
  const __m256 decay = _mm256_set1_ps(c.decay), coeff = _mm256_set1_ps(c.coeff);
  const __m256 beta2 = _mm256_set1_ps(c.beta2), c2 = _mm256_set1_ps(c.c2);
  const __m256 bc2 = _mm256_set1_ps(c.bc2_sqrt), eps = _mm256_set1_ps(c.eps);
  const __m256 neg_step = _mm256_set1_ps(c.neg_step);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 gv = _mm256_loadu_ps(g + i);
    __m256 pv = _mm256_mul_ps(_mm256_loadu_ps(p + i), decay);
    __m256 mv = _mm256_loadu_ps(m + i);
    mv = _mm256_fmadd_ps(coeff, _mm256_sub_ps(gv, mv), c.small ? mv : gv);
    __m256 vv = _mm256_mul_ps(_mm256_loadu_ps(v + i), beta2);
    vv = _mm256_add_ps(vv, _mm256_mul_ps(_mm256_mul_ps(c2, gv), gv));
    const __m256 denom = _mm256_add_ps(_mm256_div_ps(_mm256_sqrt_ps(vv), bc2), eps);
    pv = _mm256_add_ps(pv, _mm256_div_ps(_mm256_mul_ps(neg_step, mv), denom));
    _mm256_storeu_ps(p + i, pv);
    _mm256_storeu_ps(m + i, mv);
    _mm256_storeu_ps(v + i, vv);
  }
  for (; i < n; ++i) element(c, p[i], g[i], m[i], v[i]);
}

bool avx2_usable() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}
#endif

}  // namespace

std::vector<AdamwTensor> adamw_tensors(const ops::AdamwStep& a) {
  std::vector<AdamwTensor> t(a.params.size());
  for (size_t i = 0; i < t.size(); ++i)
    t[i] = {a.params[i].as<float>(), a.grads[i].as<const float>(), a.m[i].as<float>(), a.v[i].as<float>(),
            a.params[i].elements};
  return t;
}

// The op entry point (native/core/ops/adamw.h).
// One AdamW step for tensors[i] with hyper[i], i < count, in one parallel pass over all of them
// (the tensors are cut into chunks spread over the thread pool). Per element, in float32, in
// torch's order (torch.optim.AdamW, single-tensor path; the scalar coefficients are computed in
// double as torch's Python does, then rounded to float32):
//   p ← p · (1 − lr·wd)
//   m ← m.lerp(g, 1 − β1)                      (m + (1 − β1)(g − m), one fused multiply-add)
//   v ← v · β2;  v ← v + ((1 − β2) · g) · g
//   p ← p + (−lr / (1 − β1^t)) · m / (√v / √(1 − β2^t) + eps)
// Results do not depend on the thread count or on the instruction set used.
void adamw_step(const ops::AdamwStep& a) {
  const std::vector<AdamwTensor> tensors = adamw_tensors(a);
  const AdamwHyper* hyper = a.hyper.data();
  const int64_t count = static_cast<int64_t>(tensors.size());
  // Every task is a chunk of one tensor: (tensor, first element).
  std::vector<std::pair<int64_t, int64_t>> chunks;
  std::vector<Coeffs> c(static_cast<size_t>(count));
  for (int64_t t = 0; t < count; ++t) {
    c[t] = coeffs(hyper[t]);
    for (int64_t i = 0; i < tensors[t].n; i += kChunk) chunks.emplace_back(t, i);
  }
  // The instruction set follows the GEMM's choice (LOWRANK_ISA, setIsa): "scalar" runs the
  // portable loop. Both give the same bits.
  bool vector = false;
#ifdef LR_ADAMW_AVX2
  static const bool usable = avx2_usable();
  vector = usable && std::strcmp(gemm_isa(), "scalar") != 0;
#endif
  parallel_for(static_cast<int64_t>(chunks.size()), [&](int64_t k) {
    const auto [t, i0] = chunks[k];
    const AdamwTensor& x = tensors[t];
    const int64_t n = std::min(kChunk, x.n - i0);
#ifdef LR_ADAMW_AVX2
    if (vector) return run_avx2(c[t], x.param + i0, x.grad + i0, x.m + i0, x.v + i0, n);
#endif
    run_portable(c[t], x.param + i0, x.grad + i0, x.m + i0, x.v + i0, n);
  });
  (void)vector;
}

}  // namespace lowrank::cpu
