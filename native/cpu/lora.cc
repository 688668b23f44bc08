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

// Forward. FLOPs: 2·T·out·in (base) + 2·T·in·r + 2·T·out·r. Fewest bytes: x, W, A, B read
// once; y and xa written once.
void lora_forward(const LoraDims& d, const float* x, const Weight& W, const float* bias, const float* A, const float* B,
                  float scale, const Dropout& drop, float* y, float* xa) {
  // xa = D(x) Aᵀ: [T, in] · [in, r], a thin product reading x once
  thin_nt({d.t, d.r, d.in, x, d.in, A, d.in, 1.0f, drop.active ? &drop : nullptr, xa, d.r});
  // y = [x | xa] · [W | scale·B]ᵀ + bias
  adapter_output(d.t, d.in, d.out, d.r, x, W, xa, B, scale, bias, y);
}

// Backward. FLOPs: 2·T·out·in (dx base) + 2·T·r·(2·out + 2·in). Fewest bytes: dy, x, W, A, B,
// xa read once; dx, dA, dB written once.
void lora_backward(const LoraDims& d, const float* dy, const float* x, const Weight& W, const float* A, const float* B,
                   const float* xa, float scale, const Dropout& drop, float* dx, float* dA, float* dB) {
  // dB = scale · dyᵀ xa: [out, T] · [T, r]
  const GemmTerm tdb{{dy, d.out, true}, {xa, d.r, false}, d.t, scale};
  gemm({d.out, d.r, &tdb, 1, dB, d.r, 0.0f, nullptr});
  // g = scale · dy B = scale · dy (Bᵀ)ᵀ: [T, out] · [out, r], a thin product over Bᵀ [r, out]
  std::vector<float> bt(static_cast<size_t>(d.r * d.out));
  for (int64_t o = 0; o < d.out; ++o)
    for (int64_t j = 0; j < d.r; ++j) bt[j * d.out + o] = B[o * d.r + j];
  std::vector<float> g(static_cast<size_t>(d.t * d.r));
  thin_nt({d.t, d.r, d.out, dy, d.out, bt.data(), d.out, scale, nullptr, g.data(), d.r});
  if (dA) {
    // dA = gᵀ D(x): [r, T] · [T, in]
    const GemmTerm tda{{g.data(), d.r, true}, {x, d.in, false, drop.active ? &drop : nullptr}, d.t, 1.0f};
    gemm({d.r, d.in, &tda, 1, dA, d.in, 0.0f, nullptr});
  }
  if (!dx) return;
  // dx = [dy | g] · [W ; A] (dropout: dy W + D(g A))
  adapter_input_grad(d.t, d.in, d.out, d.r, dy, W, g.data(), A, d.in, drop, dx);
}

namespace {

// Cholesky L Lᵀ = G + 1e-8·I in double (symmetric positive definite for a full-rank A).
std::vector<double> gram_factor(const float* gram, int64_t r) {
  std::vector<double> L(static_cast<size_t>(r * r), 0.0);
  for (int64_t i = 0; i < r; ++i) {
    for (int64_t j = 0; j <= i; ++j) {
      double sum = 0.5 * (static_cast<double>(gram[i * r + j]) + gram[j * r + i]) + (i == j ? 1e-8 : 0.0);
      for (int64_t k = 0; k < j; ++k) sum -= L[i * r + k] * L[j * r + k];
      if (i == j) {
        if (!(sum > 0.0))
          throw RangeError("lora-fa gradient projection: A Aᵀ is not positive definite (A is rank-deficient)");
        L[i * r + i] = std::sqrt(sum);
      } else {
        L[i * r + j] = sum / L[j * r + j];
      }
    }
  }
  return L;
}

// Row `row` (r values) ← the solution x of x (L Lᵀ) = row, times inv_s2.
void solve_row(const std::vector<double>& L, int64_t r, double inv_s2, float* row) {
  thread_local std::vector<double> y;
  y.assign(static_cast<size_t>(r), 0.0);
  for (int64_t i = 0; i < r; ++i) {
    double v = row[i];
    for (int64_t k = 0; k < i; ++k) v -= L[i * r + k] * y[k];
    y[i] = v / L[i * r + i];
  }
  for (int64_t i = r - 1; i >= 0; --i) {
    double v = y[i];
    for (int64_t k = i + 1; k < r; ++k) v -= L[k * r + i] * y[k];
    y[i] = v / L[i * r + i];
  }
  for (int64_t i = 0; i < r; ++i) row[i] = static_cast<float>(y[i] * inv_s2);
}

}  // namespace

std::vector<float> lora_fa_projector(const float* gram, int64_t r, float scale) {
  const std::vector<double> L = gram_factor(gram, r);
  const double inv_s2 = 1.0 / (static_cast<double>(scale) * scale);
  std::vector<float> M(static_cast<size_t>(r * r), 0.0f);
  for (int64_t o = 0; o < r; ++o) {
    M[o * r + o] = 1.0f;
    solve_row(L, r, inv_s2, M.data() + o * r);
  }
  return M;
}

// FLOPs: 2·r·r·in (A Aᵀ) + r³/3 (factor) + 2·out·r² (solves).
void lora_fa_project_grad(const LoraDims& d, const float* A, float scale, float* dB) {
  const int64_t r = d.r;
  std::vector<float> gram(static_cast<size_t>(r * r));
  const GemmTerm t{{A, d.in, false}, {A, d.in, true}, d.in, 1.0f};
  gemm({r, r, &t, 1, gram.data(), r, 0.0f, nullptr});
  const std::vector<double> L = gram_factor(gram.data(), r);
  const double inv_s2 = 1.0 / (static_cast<double>(scale) * scale);
  // Row o of the result solves x (L Lᵀ) = dB[o]: forward then back substitution.
  parallel_for(d.out, [&](int64_t o) { solve_row(L, r, inv_s2, dB + o * r); });
}

namespace {

ProductUpdate lora_update(const LoraDims& d, const float* A, const float* B, float scale) {
  return {d.out, d.in, d.r, B, d.r, A, d.in, scale};
}

}  // namespace

// Merge. FLOPs: 2·out·in·r. Fewest bytes: W read and written once, A and B read once.
void lora_merge(const LoraDims& d, const WeightMut& W, const float* A, const float* B, float scale) {
  add_product(lora_update(d, A, B, scale), W);
}

int64_t lora_merge_safe(const LoraDims& d, const WeightMut& W, const float* A, const float* B, float scale,
                        float* bad_value) {
  return add_product_safe(lora_update(d, A, B, scale), W, bad_value);
}

// ---- the op entry points (native/core/ops/lora.h) ------------------------------------------

void lora_forward(const ops::LoraForward& a) {
  lora_forward({a.t, a.in, a.out, a.r}, a.x.as<const float>(), weight_of(a.W), a.bias.as<const float>(),
               a.A.as<const float>(), a.B.as<const float>(), a.scale, a.drop, a.y.as<float>(), a.xa.as<float>());
}

void lora_backward(const ops::LoraBackward& a) {
  lora_backward({a.t, a.in, a.out, a.r}, a.dy.as<const float>(), a.x.as<const float>(), weight_of(a.W),
                a.A.as<const float>(), a.B.as<const float>(), a.xa.as<const float>(), a.scale, a.drop, a.dx.as<float>(),
                a.dA.as<float>(), a.dB.as<float>());
}

void lora_fa_project_grad(const ops::LoraFaProjectGrad& a) {
  lora_fa_project_grad({1, a.in, a.out, a.r}, a.A.as<const float>(), a.scale, a.dB.as<float>());
}

void lora_merge(const ops::LoraMerge& a) {
  const LoraDims d{1, a.in, a.out, a.r};
  if (!a.safe) return lora_merge(d, weight_mut_of(a.W), a.A.as<const float>(), a.B.as<const float>(), a.scale);
  float value = 0.0f;
  const int64_t bad =
      lora_merge_safe(d, weight_mut_of(a.W), a.A.as<const float>(), a.B.as<const float>(), a.scale, &value);
  if (bad >= 0) ops::merge_not_finite(bad, value, a.in);
}

}  // namespace lowrank::cpu
