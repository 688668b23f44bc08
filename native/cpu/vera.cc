// VeRA on the CPU (README.md, VeRA). One pair of frozen random projections is shared by every
// adapted layer: Av [r, max_in] and Bv [max_out, r]. A layer of shape (out, in) uses the
// top-left slices A = Av[:, :in] (row stride max_in) and B = Bv[:out, :] (the first `out` rows,
// row stride r); the slices are read in place, never copied. Per layer, trainable λd [r] and
// λb [out]; no scale. Shapes, row-major:
//   x [T, in], W [out, in], bias [out], y [T, out], u [T, r].
// W may be stored as float32 or bfloat16 (Weight); everything else is float32.
#include <algorithm>
#include <cmath>
#include <vector>

#include "../core/ops.h"
#include "../core/philox.h"
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
std::vector<float> scaled_b(int64_t out, int64_t r, const float* B, const float* lambda_d, const float* lambda_b) {
  std::vector<float> bs(static_cast<size_t>(out * r));
  for (int64_t o = 0; o < out; ++o)
    for (int64_t j = 0; j < r; ++j) bs[o * r + j] = lambda_b[o] * (lambda_d[j] * B[o * r + j]);
  return bs;
}

}  // namespace

// ---- the op entry points (native/core/ops/vera.h) ------------------------------------------

// The shared projections, kaiming-uniform as PEFT draws them, from the counter-based generator:
//   Av [r, max_in]  ~ U(±√(6 / max_in))   (fan_in = max_in)
//   Bv [max_out, r] ~ U(±√(6 / r))        (fan_in = r)
// Both come from one Philox stream keyed by `seed`, Av first, like PEFT's one generator:
// element i of Av (row-major) uses philox_word(seed, i) and element i of Bv uses
// philox_word(seed, r·max_in + i), so Av and Bv never share a word. A value is
// lo + (hi - lo)·u with u = (word >> 8)·2⁻²⁴, computed in double and rounded to float32, never
// reaching hi (fill_uniform's formula). Deterministic in (r, max_in, max_out, seed) alone, on
// any thread count: storing those four numbers is enough to recreate both matrices.
// Projections. FLOPs: none to speak of (10 Philox rounds per four elements). Fewest bytes: Av
// and Bv written once, r·(max_in + max_out)·4.
void vera_projections(const ops::VeraProjections& p) {
  const float a = static_cast<float>(std::sqrt(6.0 / static_cast<double>(p.max_in)));
  const float b = static_cast<float>(std::sqrt(6.0 / static_cast<double>(p.r)));
  uniform_words(p.A.as<float>(), p.r * p.max_in, p.seed, 0, -a, a);
  uniform_words(p.B.as<float>(), p.max_out * p.r, p.seed, static_cast<uint64_t>(p.r * p.max_in), -b, b);
}

// Forward. FLOPs: 2·T·out·in (base) + 2·T·in·r + 2·T·out·r. Fewest bytes: x, W, the A and B
// slices, λd, λb read once; y and u written once.
void vera_forward(const ops::VeraForward& a) {
  const float* x = a.x.as<const float>();
  float* u = a.u.as<float>();
  const Dropout& drop = a.drop;
  // u = D(x) Aᵀ: [T, in] · [in, r], a thin product reading x once (A's rows of stride max_in)
  thin_nt({a.t, a.r, a.in, x, a.in, a.A.as<const float>(), a.max_in, 1.0f, drop.active ? &drop : nullptr, u, a.r});
  // y = [x | u] · [W | Bs]ᵀ + bias
  const std::vector<float> bs =
      scaled_b(a.out, a.r, a.B.as<const float>(), a.lambda_d.as<const float>(), a.lambda_b.as<const float>());
  adapter_output(a.t, a.in, a.out, a.r, x, weight_of(a.W), u, bs.data(), 1.0f, a.bias.as<const float>(),
                 a.y.as<float>());
}

// Backward. FLOPs: 2·T·out·in (dx base) + 2·T·r·(2·out + in). Fewest bytes: dy, u, W, the A
// and B slices read once; dx, dλd, dλb written once. x is never read.
void vera_backward(const ops::VeraBackward& a) {
  const int64_t T = a.t, in = a.in, out = a.out, r = a.r;
  const float *dy = a.dy.as<const float>(), *A = a.A.as<const float>(), *B = a.B.as<const float>();
  const float *lambda_d = a.lambda_d.as<const float>(), *lambda_b = a.lambda_b.as<const float>();
  const float* u = a.u.as<const float>();
  float *dx = a.dx.as<float>(), *d_lambda_d = a.d_lambda_d.as<float>(), *d_lambda_b = a.d_lambda_b.as<float>();
  // M' = dyᵀ u [out, r]: [out, T] · [T, r]; M = M' ⊙ λd (column j scaled), folded in below.
  std::vector<float> m(static_cast<size_t>(out * r));
  const GemmTerm tm{{dy, out, true}, {u, r, false}, T, 1.0f};
  gemm({out, r, &tm, 1, m.data(), r, 0.0f, nullptr});
  // dλb[o] = Σ_j B[o, j]·λd[j]·M'[o, j]
  for (int64_t o = 0; o < out; ++o) {
    double s = 0.0;
    for (int64_t j = 0; j < r; ++j) s += static_cast<double>(B[o * r + j]) * lambda_d[j] * m[o * r + j];
    d_lambda_b[o] = static_cast<float>(s);
  }
  // h = dy (λb ⊙ B): [T, out] · [out, r], a thin product over (λb ⊙ B)ᵀ [r, out]
  std::vector<float> bt(static_cast<size_t>(r * out));
  for (int64_t o = 0; o < out; ++o)
    for (int64_t j = 0; j < r; ++j) bt[j * out + o] = lambda_b[o] * B[o * r + j];
  std::vector<float> h(static_cast<size_t>(T * r));
  thin_nt({T, r, out, dy, out, bt.data(), out, 1.0f, nullptr, h.data(), r});
  // dλd = Σ_t h ⊙ u, in double and in row order (independent of the thread count); then
  // h ← h ⊙ λd, the adapter's share of dx before A.
  std::vector<double> acc(static_cast<size_t>(r), 0.0);
  for (int64_t t = 0; t < T; ++t)
    for (int64_t j = 0; j < r; ++j) acc[j] += static_cast<double>(h[t * r + j]) * u[t * r + j];
  for (int64_t j = 0; j < r; ++j) d_lambda_d[j] = static_cast<float>(acc[j]);
  if (!dx) return;
  for (int64_t t = 0; t < T; ++t)
    for (int64_t j = 0; j < r; ++j) h[t * r + j] *= lambda_d[j];
  // dx = [dy | h ⊙ λd] · [W ; A] (dropout: dy W + D((h ⊙ λd) A))
  adapter_input_grad(T, in, out, r, dy, weight_of(a.W), h.data(), A, a.max_in, a.drop, dx);
}

// Merge. FLOPs: 2·out·in·r. Fewest bytes: W read and written once, the A and B slices read once.
// The safe merge computes into a copy first and writes W only when every merged value is finite.
void vera_merge(const ops::VeraMerge& a) {
  const std::vector<float> bs =
      scaled_b(a.out, a.r, a.B.as<const float>(), a.lambda_d.as<const float>(), a.lambda_b.as<const float>());
  const ProductUpdate u{a.out, a.in, a.r, bs.data(), a.r, a.A.as<const float>(), a.max_in, a.sign};
  if (!a.safe) return add_product(u, weight_mut_of(a.W));
  float value = 0.0f;
  const int64_t bad = add_product_safe(u, weight_mut_of(a.W), &value);
  if (bad >= 0) ops::merge_not_finite(bad, value, a.in);
}

}  // namespace lowrank::cpu
