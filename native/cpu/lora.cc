#include "lora.h"

#include <cmath>
#include <algorithm>
#include <cstring>
#include <vector>

#include "../core/dtype.h"
#include "../core/check.h"
#include "gemm.h"
#include "gemm/thin.h"
#include "threadpool.h"

namespace lowrank::cpu {

// Forward. FLOPs: 2·T·out·in (base) + 2·T·in·r + 2·T·out·r. Fewest bytes: x, W, A, B read
// once; y and xa written once.
void lora_forward(const LoraDims& d, const float* x, const Weight& W, const float* bias,
                  const float* A, const float* B, float scale, const Dropout& drop, float* y,
                  float* xa) {
  // xa = D(x) Aᵀ: [T, in] · [in, r], a thin product reading x once
  thin_nt({d.t, d.r, d.in, x, d.in, A, d.in, 1.0f, drop.active ? &drop : nullptr, xa, d.r});
  // y = [x | xa] · [W | scale·B]ᵀ + bias
  const GemmTerm joined[2] = {
      {{x, d.in, false}, weight_view(W, d.in, true), d.in, 1.0f},
      {{xa, d.r, false}, {B, d.r, true}, d.r, scale},
  };
  gemm({d.t, d.out, joined, 2, y, d.out, 0.0f, bias});
}

namespace {

// dx[t, i] += D(g A)[t, i]: the adapter's input gradient when dropout is on, where the mask
// sits on the product's output and so cannot join the base product. One pass over rows.
void add_dropout_rowprod(const LoraDims& d, const float* g, const float* A, const Dropout& drop,
                         float* dx) {
  parallel_for(d.t, [&](int64_t t) {
    thread_local std::vector<float> row;
    row.assign(static_cast<size_t>(d.in), 0.0f);
    const float* gt = g + t * d.r;
    for (int64_t j = 0; j < d.r; ++j) {
      const float gj = gt[j];
      const float* a = A + j * d.in;
      for (int64_t i = 0; i < d.in; ++i) row[i] += gj * a[i];
    }
    float* out = dx + t * d.in;
    const uint64_t base = static_cast<uint64_t>(t) * static_cast<uint64_t>(d.in);
    for (int64_t i = 0; i < d.in; ++i) out[i] += drop.factor(base + i) * row[i];
  });
}

}  // namespace

// Backward. FLOPs: 2·T·out·in (dx base) + 2·T·r·(2·out + 2·in). Fewest bytes: dy, x, W, A, B,
// xa read once; dx, dA, dB written once.
void lora_backward(const LoraDims& d, const float* dy, const float* x, const Weight& W,
                   const float* A, const float* B, const float* xa, float scale,
                   const Dropout& drop, float* dx, float* dA, float* dB) {
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
  if (!drop.active) {
    // dx = [dy | g] · [W ; A]: one product over the joined inner dimension out + r.
    const GemmTerm joined[2] = {
        {{dy, d.out, false}, weight_view(W, d.in, false), d.out, 1.0f},
        {{g.data(), d.r, false}, {A, d.in, false}, d.r, 1.0f},
    };
    gemm({d.t, d.in, joined, 2, dx, d.in, 0.0f, nullptr});
  } else {
    const GemmTerm base{{dy, d.out, false}, weight_view(W, d.in, false), d.out, 1.0f};
    gemm({d.t, d.in, &base, 1, dx, d.in, 0.0f, nullptr});
    add_dropout_rowprod(d, g.data(), A, drop, dx);
  }
}

// FLOPs: 2·r·r·in (A Aᵀ) + r³/3 (factor) + 2·out·r² (solves).
void lora_fa_project_grad(const LoraDims& d, const float* A, float scale, float* dB) {
  const int64_t r = d.r;
  std::vector<float> gram(static_cast<size_t>(r * r));
  const GemmTerm t{{A, d.in, false}, {A, d.in, true}, d.in, 1.0f};
  gemm({r, r, &t, 1, gram.data(), r, 0.0f, nullptr});
  // Cholesky L Lᵀ = A Aᵀ + 1e-8·I in double (symmetric positive definite for a full-rank A).
  std::vector<double> L(static_cast<size_t>(r * r), 0.0);
  for (int64_t i = 0; i < r; ++i) {
    for (int64_t j = 0; j <= i; ++j) {
      double sum = 0.5 * (static_cast<double>(gram[i * r + j]) + gram[j * r + i]) + (i == j ? 1e-8 : 0.0);
      for (int64_t k = 0; k < j; ++k) sum -= L[i * r + k] * L[j * r + k];
      if (i == j) {
        if (!(sum > 0.0)) throw RangeError("lora-fa gradient projection: A Aᵀ is not positive definite (A is rank-deficient)");
        L[i * r + i] = std::sqrt(sum);
      } else {
        L[i * r + j] = sum / L[j * r + j];
      }
    }
  }
  const double inv_s2 = 1.0 / (static_cast<double>(scale) * scale);
  // Row o of the result solves x (L Lᵀ) = dB[o]: forward then back substitution.
  parallel_for(d.out, [&](int64_t o) {
    thread_local std::vector<double> y;
    y.assign(static_cast<size_t>(r), 0.0);
    float* row = dB + o * r;
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
  });
}

namespace {

constexpr int64_t kMergeRows = 64;  // rows of a bfloat16 W widened at a time

// W[rows] += scale · B[rows] A in float32, for a float32 W.
void merge_f32(const LoraDims& d, float* W, const float* A, const float* B, float scale) {
  const GemmTerm t{{B, d.r, false}, {A, d.in, false}, d.r, scale};
  gemm({d.out, d.in, &t, 1, W, d.in, 1.0f, nullptr});
}

// The merged rows [i0, i0 + rows) of a bfloat16 W, rounded to bfloat16, into out.
void merge_bf16_rows(const LoraDims& d, const uint16_t* W, const float* A, const float* B, float scale, int64_t i0,
                     int64_t rows, uint16_t* out) {
  thread_local std::vector<float> wide;
  wide.resize(static_cast<size_t>(rows * d.in));
  for (int64_t i = 0; i < rows * d.in; ++i) wide[i] = bf16_to_f32(W[i0 * d.in + i]);
  const GemmTerm t{{B + i0 * d.r, d.r, false}, {A, d.in, false}, d.r, scale};
  gemm({rows, d.in, &t, 1, wide.data(), d.in, 1.0f, nullptr});  // inside a pool task: runs here
  for (int64_t i = 0; i < rows * d.in; ++i) out[i] = f32_to_bf16(wide[i]);
}

template <typename F>
void for_row_chunks(const LoraDims& d, F&& f) {
  parallel_for((d.out + kMergeRows - 1) / kMergeRows, [&](int64_t c) {
    const int64_t i0 = c * kMergeRows;
    f(i0, std::min(kMergeRows, d.out - i0));
  });
}

bool bf16_finite(uint16_t h) { return (h & 0x7f80u) != 0x7f80u; }

}  // namespace

// Merge. FLOPs: 2·out·in·r. Fewest bytes: W read and written once, A and B read once.
void lora_merge(const LoraDims& d, const WeightMut& W, const float* A, const float* B, float scale) {
  if (W.f32) return merge_f32(d, W.f32, A, B, scale);
  for_row_chunks(d, [&](int64_t i0, int64_t rows) {
    merge_bf16_rows(d, W.bf16, A, B, scale, i0, rows, W.bf16 + i0 * d.in);
  });
}

int64_t lora_merge_safe(const LoraDims& d, const WeightMut& W, const float* A, const float* B, float scale,
                        float* bad_value) {
  const size_t n = static_cast<size_t>(d.out * d.in);
  if (W.f32) {
    std::vector<float> copy(W.f32, W.f32 + n);
    merge_f32(d, copy.data(), A, B, scale);
    for (size_t i = 0; i < n; ++i)
      if (!std::isfinite(copy[i])) {
        *bad_value = copy[i];
        return static_cast<int64_t>(i);
      }
    std::memcpy(W.f32, copy.data(), n * sizeof(float));
    return -1;
  }
  std::vector<uint16_t> copy(n);
  for_row_chunks(d, [&](int64_t i0, int64_t rows) {
    merge_bf16_rows(d, W.bf16, A, B, scale, i0, rows, copy.data() + i0 * d.in);
  });
  for (size_t i = 0; i < n; ++i)
    if (!bf16_finite(copy[i])) {
      *bad_value = bf16_to_f32(copy[i]);
      return static_cast<int64_t>(i);
    }
  std::memcpy(W.bf16, copy.data(), n * sizeof(uint16_t));
  return -1;
}

}  // namespace lowrank::cpu
