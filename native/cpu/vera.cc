#include "vera.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "../core/ops.h"
#include "adapter.h"
#include "gemm.h"
#include "gemm/thin.h"
#include "threadpool.h"

namespace lowrank::cpu {
namespace {

constexpr int64_t kFillChunk = 1 << 14;  // elements per task of a projection fill

// out[i] = lo + (hi - lo)·u, u from word `offset + i` of stream `seed` (fill_uniform's formula
// at an offset), one Philox block per four consecutive words.
void uniform_words(float* out, int64_t n, uint64_t seed, uint64_t offset, float lo, float hi) {
  const float below_hi = lo < hi ? std::nextafter(hi, lo) : lo;
  const double span = static_cast<double>(hi) - lo;
  parallel_for((n + kFillChunk - 1) / kFillChunk, [&](int64_t c) {
    const int64_t end = std::min(n, (c + 1) * kFillChunk);
    int64_t i = c * kFillChunk;
    while (i < end) {
      const uint64_t index = offset + static_cast<uint64_t>(i);
      const uint64_t block = index >> 2;
      const Philox4 words = philox4x32_10(static_cast<uint32_t>(block), static_cast<uint32_t>(block >> 32), 0u, 0u,
                                          static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32));
      for (uint64_t w = index & 3; w < 4 && i < end; ++w, ++i) {
        const double u = static_cast<double>(words.v[w] >> 8) * 0x1p-24;
        const float v = static_cast<float>(lo + span * u);
        out[i] = v < hi ? v : below_hi;  // rounding to float32 may reach hi; the range is [lo, hi)
      }
    }
  });
}

// Bs[o, j] = λb[o]·λd[j]·B[o, j] [out, r]: the adapter's up-projection with both vectors
// folded in, so (λb ⊙ B)(λd ⊙ A) = Bs A and λb ⊙ ((u ⊙ λd) Bᵀ) = u Bsᵀ.
std::vector<float> scaled_b(const VeraDims& d, const float* B, const float* lambda_d, const float* lambda_b) {
  std::vector<float> bs(static_cast<size_t>(d.out * d.r));
  for (int64_t o = 0; o < d.out; ++o)
    for (int64_t j = 0; j < d.r; ++j) bs[o * d.r + j] = lambda_b[o] * (lambda_d[j] * B[o * d.r + j]);
  return bs;
}

ProductUpdate update(const VeraDims& d, const std::vector<float>& bs, const float* A, float sign) {
  return {d.out, d.in, d.r, bs.data(), d.r, A, d.max_in, sign};
}

}  // namespace

// Projections. FLOPs: none to speak of (10 Philox rounds per four elements). Fewest bytes: Av
// and Bv written once, r·(max_in + max_out)·4.
void vera_projections(int64_t r, int64_t max_in, int64_t max_out, uint64_t seed, float* A, float* B) {
  const float a = static_cast<float>(std::sqrt(6.0 / static_cast<double>(max_in)));
  const float b = static_cast<float>(std::sqrt(6.0 / static_cast<double>(r)));
  uniform_words(A, r * max_in, seed, 0, -a, a);
  uniform_words(B, max_out * r, seed, static_cast<uint64_t>(r * max_in), -b, b);
}

// Forward. FLOPs: 2·T·out·in (base) + 2·T·in·r + 2·T·out·r. Fewest bytes: x, W, the A and B
// slices, λd, λb read once; y and u written once.
void vera_forward(const VeraDims& d, const float* x, const Weight& W, const float* bias, const float* A, const float* B,
                  const float* lambda_d, const float* lambda_b, const Dropout& drop, float* y, float* u) {
  // u = D(x) Aᵀ: [T, in] · [in, r], a thin product reading x once (A's rows of stride max_in)
  thin_nt({d.t, d.r, d.in, x, d.in, A, d.max_in, 1.0f, drop.active ? &drop : nullptr, u, d.r});
  // y = [x | u] · [W | Bs]ᵀ + bias
  const std::vector<float> bs = scaled_b(d, B, lambda_d, lambda_b);
  adapter_output(d.t, d.in, d.out, d.r, x, W, u, bs.data(), 1.0f, bias, y);
}

// Backward. FLOPs: 2·T·out·in (dx base) + 2·T·r·(2·out + in). Fewest bytes: dy, u, W, the A
// and B slices read once; dx, dλd, dλb written once. x is never read.
void vera_backward(const VeraDims& d, const float* dy, const Weight& W, const float* A, const float* B,
                   const float* lambda_d, const float* lambda_b, const float* u, const Dropout& drop, float* dx,
                   float* d_lambda_d, float* d_lambda_b) {
  // M' = dyᵀ u [out, r]: [out, T] · [T, r]; M = M' ⊙ λd (column j scaled), folded in below.
  std::vector<float> m(static_cast<size_t>(d.out * d.r));
  const GemmTerm tm{{dy, d.out, true}, {u, d.r, false}, d.t, 1.0f};
  gemm({d.out, d.r, &tm, 1, m.data(), d.r, 0.0f, nullptr});
  // dλb[o] = Σ_j B[o, j]·λd[j]·M'[o, j]
  for (int64_t o = 0; o < d.out; ++o) {
    double s = 0.0;
    for (int64_t j = 0; j < d.r; ++j) s += static_cast<double>(B[o * d.r + j]) * lambda_d[j] * m[o * d.r + j];
    d_lambda_b[o] = static_cast<float>(s);
  }
  // h = dy (λb ⊙ B): [T, out] · [out, r], a thin product over (λb ⊙ B)ᵀ [r, out]
  std::vector<float> bt(static_cast<size_t>(d.r * d.out));
  for (int64_t o = 0; o < d.out; ++o)
    for (int64_t j = 0; j < d.r; ++j) bt[j * d.out + o] = lambda_b[o] * B[o * d.r + j];
  std::vector<float> h(static_cast<size_t>(d.t * d.r));
  thin_nt({d.t, d.r, d.out, dy, d.out, bt.data(), d.out, 1.0f, nullptr, h.data(), d.r});
  // dλd = Σ_t h ⊙ u, in double and in row order (independent of the thread count); then
  // h ← h ⊙ λd, the adapter's share of dx before A.
  std::vector<double> acc(static_cast<size_t>(d.r), 0.0);
  for (int64_t t = 0; t < d.t; ++t)
    for (int64_t j = 0; j < d.r; ++j) acc[j] += static_cast<double>(h[t * d.r + j]) * u[t * d.r + j];
  for (int64_t j = 0; j < d.r; ++j) d_lambda_d[j] = static_cast<float>(acc[j]);
  if (!dx) return;
  for (int64_t t = 0; t < d.t; ++t)
    for (int64_t j = 0; j < d.r; ++j) h[t * d.r + j] *= lambda_d[j];
  // dx = [dy | h ⊙ λd] · [W ; A] (dropout: dy W + D((h ⊙ λd) A))
  adapter_input_grad(d.t, d.in, d.out, d.r, dy, W, h.data(), A, d.max_in, drop, dx);
}

// Merge. FLOPs: 2·out·in·r. Fewest bytes: W read and written once, the A and B slices read once.
void vera_merge(const VeraDims& d, const WeightMut& W, const float* A, const float* B, const float* lambda_d,
                const float* lambda_b, float sign) {
  const std::vector<float> bs = scaled_b(d, B, lambda_d, lambda_b);
  add_product(update(d, bs, A, sign), W);
}

int64_t vera_merge_safe(const VeraDims& d, const WeightMut& W, const float* A, const float* B, const float* lambda_d,
                        const float* lambda_b, float sign, float* bad_value) {
  const std::vector<float> bs = scaled_b(d, B, lambda_d, lambda_b);
  return add_product_safe(update(d, bs, A, sign), W, bad_value);
}

// ---- the op entry points (native/core/ops/vera.h) ------------------------------------------

void vera_projections(const ops::VeraProjections& a) {
  vera_projections(a.r, a.max_in, a.max_out, a.seed, a.A.as<float>(), a.B.as<float>());
}

void vera_forward(const ops::VeraForward& a) {
  vera_forward({a.t, a.in, a.out, a.r, a.max_in}, a.x.as<const float>(), weight_of(a.W), a.bias.as<const float>(),
               a.A.as<const float>(), a.B.as<const float>(), a.lambda_d.as<const float>(), a.lambda_b.as<const float>(),
               a.drop, a.y.as<float>(), a.u.as<float>());
}

void vera_backward(const ops::VeraBackward& a) {
  vera_backward({a.t, a.in, a.out, a.r, a.max_in}, a.dy.as<const float>(), weight_of(a.W), a.A.as<const float>(),
                a.B.as<const float>(), a.lambda_d.as<const float>(), a.lambda_b.as<const float>(),
                a.u.as<const float>(), a.drop, a.dx.as<float>(), a.d_lambda_d.as<float>(), a.d_lambda_b.as<float>());
}

void vera_merge(const ops::VeraMerge& a) {
  const VeraDims d{1, a.in, a.out, a.r, a.max_in};
  const float *A = a.A.as<const float>(), *B = a.B.as<const float>();
  const float *ld = a.lambda_d.as<const float>(), *lb = a.lambda_b.as<const float>();
  if (!a.safe) return vera_merge(d, weight_mut_of(a.W), A, B, ld, lb, a.sign);
  float value = 0.0f;
  const int64_t bad = vera_merge_safe(d, weight_mut_of(a.W), A, B, ld, lb, a.sign, &value);
  if (bad >= 0) ops::merge_not_finite(bad, value, a.in);
}

}  // namespace lowrank::cpu
