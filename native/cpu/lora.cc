#include "lora.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "../core/check.h"
#include "../core/dtype.h"
#include "../core/ops.h"
#include "adapter.h"
#include "gemm.h"
#include "gemm/thin.h"
#include "threadpool.h"

namespace lowrank::cpu {

namespace {

// LU with partial pivoting of M = G + 1e-8·I in double (G symmetrised), as PEFT inverts it
// (torch.inverse): M need not be positive definite, so a rank-deficient A (r > in, or repeated
// rows) still gives the finite, large projection PEFT gives. Only an exactly singular M fails.
struct GramLu {
  std::vector<double> lu;
  std::vector<int64_t> pivot;
};

GramLu gram_factor(const float* gram, int64_t r) {
  GramLu f{std::vector<double>(static_cast<size_t>(r * r)), std::vector<int64_t>(static_cast<size_t>(r))};
  double* a = f.lu.data();
  for (int64_t i = 0; i < r; ++i)
    for (int64_t j = 0; j < r; ++j)
      a[i * r + j] = 0.5 * (static_cast<double>(gram[i * r + j]) + gram[j * r + i]) + (i == j ? 1e-8 : 0.0);
  for (int64_t k = 0; k < r; ++k) {
    int64_t p = k;
    for (int64_t i = k + 1; i < r; ++i)
      if (std::fabs(a[i * r + k]) > std::fabs(a[p * r + k])) p = i;
    f.pivot[k] = p;
    if (!(a[p * r + k] != 0.0) || !std::isfinite(a[p * r + k]))
      throw RangeError("lora-fa gradient projection: A Aᵀ + 1e-8·I is singular (A is not finite or far too large)");
    if (p != k)
      for (int64_t j = 0; j < r; ++j) std::swap(a[k * r + j], a[p * r + j]);
    for (int64_t i = k + 1; i < r; ++i) {
      const double m = a[i * r + k] / a[k * r + k];
      a[i * r + k] = m;
      for (int64_t j = k + 1; j < r; ++j) a[i * r + j] -= m * a[k * r + j];
    }
  }
  return f;
}

// Row `row` (r values) ← the solution x of x M = row (M symmetric: M xᵀ = rowᵀ), times inv_s2.
void solve_row(const GramLu& f, int64_t r, double inv_s2, float* row) {
  thread_local std::vector<double> y;
  y.assign(row, row + r);
  const double* a = f.lu.data();
  for (int64_t k = 0; k < r; ++k) std::swap(y[k], y[f.pivot[k]]);
  for (int64_t i = 0; i < r; ++i)
    for (int64_t k = 0; k < i; ++k) y[i] -= a[i * r + k] * y[k];
  for (int64_t i = r - 1; i >= 0; --i) {
    for (int64_t k = i + 1; k < r; ++k) y[i] -= a[i * r + k] * y[k];
    y[i] /= a[i * r + i];
  }
  for (int64_t i = 0; i < r; ++i) row[i] = static_cast<float>(y[i] * inv_s2);
}

}  // namespace

std::vector<float> lora_fa_projector(const float* gram, int64_t r, float scale) {
  const GramLu L = gram_factor(gram, r);
  const double inv_s2 = 1.0 / (static_cast<double>(scale) * scale);
  std::vector<float> M(static_cast<size_t>(r * r), 0.0f);
  for (int64_t o = 0; o < r; ++o) {
    M[o * r + o] = 1.0f;
    solve_row(L, r, inv_s2, M.data() + o * r);
  }
  return M;
}

// ---- the op entry points (native/core/ops/lora.h) ------------------------------------------

// Forward. FLOPs: 2·T·out·in (base) + 2·T·in·r + 2·T·out·r. Fewest bytes: x, W, A, B read
// once; y and xa written once.
void lora_forward(const ops::LoraForward& a) {
  const float *x = a.x.as<const float>(), *A = a.A.as<const float>(), *B = a.B.as<const float>();
  float* xa = a.xa.as<float>();
  const Dropout& drop = a.drop;
  // xa = D(x) Aᵀ: [T, in] · [in, r], a thin product reading x once
  thin_nt({a.t, a.r, a.in, x, a.in, A, a.in, 1.0f, drop.active ? &drop : nullptr, xa, a.r});
  // y = [x | xa] · [W | scale·B]ᵀ + bias
  adapter_output(a.t, a.in, a.out, a.r, x, weight_of(a.W), xa, B, a.scale, a.bias.as<const float>(), a.y.as<float>());
}

// x and dA may be absent together (LoRA-FA: A frozen, x never kept); the dropout mask is
// regenerated from `drop`, never stored. dx may be absent when the input gradient is not needed.
// Backward. FLOPs: 2·T·out·in (dx base) + 2·T·r·(2·out + 2·in). Fewest bytes: dy, x, W, A, B,
// xa read once; dx, dA, dB written once.
void lora_backward(const ops::LoraBackward& a) {
  const int64_t t = a.t, in = a.in, out = a.out, r = a.r;
  const float *dy = a.dy.as<const float>(), *x = a.x.as<const float>(), *A = a.A.as<const float>();
  const float *B = a.B.as<const float>(), *xa = a.xa.as<const float>();
  float *dx = a.dx.as<float>(), *dA = a.dA.as<float>(), *dB = a.dB.as<float>();
  const float scale = a.scale;
  const Dropout& drop = a.drop;
  // dB = scale · dyᵀ xa: [out, T] · [T, r]
  const GemmTerm tdb{{dy, out, true}, {xa, r, false}, t, scale};
  gemm({out, r, &tdb, 1, dB, r, 0.0f, nullptr});
  // g = scale · dy B = scale · dy (Bᵀ)ᵀ: [T, out] · [out, r], a thin product over Bᵀ [r, out]
  std::vector<float> bt(static_cast<size_t>(r * out));
  for (int64_t o = 0; o < out; ++o)
    for (int64_t j = 0; j < r; ++j) bt[j * out + o] = B[o * r + j];
  std::vector<float> g(static_cast<size_t>(t * r));
  thin_nt({t, r, out, dy, out, bt.data(), out, scale, nullptr, g.data(), r});
  if (dA) {
    // dA = gᵀ D(x): [r, T] · [T, in]
    const GemmTerm tda{{g.data(), r, true}, {x, in, false, drop.active ? &drop : nullptr}, t, 1.0f};
    gemm({r, in, &tda, 1, dA, in, 0.0f, nullptr});
  }
  if (!dx) return;
  // dx = [dy | g] · [W ; A] (dropout: dy W + D(g A))
  adapter_input_grad(t, in, out, r, dy, weight_of(a.W), g.data(), A, in, drop, dx);
}

// FLOPs: 2·r·r·in (A Aᵀ) + r³/3 (factor) + 2·out·r² (solves).
void lora_fa_project_grad(const ops::LoraFaProjectGrad& a) {
  const int64_t r = a.r;
  const float* A = a.A.as<const float>();
  float* dB = a.dB.as<float>();
  std::vector<float> gram(static_cast<size_t>(r * r));
  const GemmTerm t{{A, a.in, false}, {A, a.in, true}, a.in, 1.0f};
  gemm({r, r, &t, 1, gram.data(), r, 0.0f, nullptr});
  const GramLu L = gram_factor(gram.data(), r);
  const double inv_s2 = 1.0 / (static_cast<double>(a.scale) * a.scale);
  // Row o of the result solves x (L Lᵀ) = dB[o]: forward then back substitution.
  parallel_for(a.out, [&](int64_t o) { solve_row(L, r, inv_s2, dB + o * r); });
}

// Merge: W += scale · B A (unmerge: -scale). A bfloat16 W is updated in float32 and rounded to
// the nearest bfloat16 (ties to even), so merge then unmerge restores it only to within rounding.
// FLOPs: 2·out·in·r. Fewest bytes: W read and written once, A and B read once. The safe merge
// computes into a copy first and writes W only when every merged value is finite.
void lora_merge(const ops::LoraMerge& a) {
  const ProductUpdate u{a.out, a.in, a.r, a.B.as<const float>(), a.r, a.A.as<const float>(), a.in, a.scale};
  if (!a.safe) return add_product(u, weight_mut_of(a.W));
  float value = 0.0f;
  const int64_t bad = add_product_safe(u, weight_mut_of(a.W), &value);
  if (bad >= 0) ops::merge_not_finite(bad, value, a.in);
}

}  // namespace lowrank::cpu
