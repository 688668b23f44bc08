// VeRA on the CPU (README.md, VeRA). One pair of frozen random projections is shared by every
// adapted layer: Av [r, max_in] and Bv [max_out, r]. A layer of shape (out, in) uses the
// top-left slices A = Av[:, :in] (row stride max_in) and B = Bv[:out, :] (the first `out` rows,
// row stride r); the slices are read in place, never copied. Per layer, trainable λd [r] and
// λb [out]; no scale. Shapes, row-major:
//   x [T, in], W [out, in], bias [out], y [T, out], u [T, r].
// W may be stored as float32 or bfloat16 (Weight); everything else is float32.
#pragma once

#include <cstdint>

#include "../core/philox.h"
#include "gemm.h"

namespace lowrank::cpu {

struct VeraDims {
  int64_t t = 0, in = 0, out = 0, r = 0;
  int64_t max_in = 0;  // the row stride of A (columns of the shared Av), max_in >= in
};

// The shared projections, kaiming-uniform as PEFT draws them, from the counter-based generator:
//   Av [r, max_in]  ~ U(±√(6 / max_in))   (fan_in = max_in)
//   Bv [max_out, r] ~ U(±√(6 / r))        (fan_in = r)
// Both come from one Philox stream keyed by `seed`, Av first, like PEFT's one generator:
// element i of Av (row-major) uses philox_word(seed, i) and element i of Bv uses
// philox_word(seed, r·max_in + i), so Av and Bv never share a word. A value is
// lo + (hi - lo)·u with u = (word >> 8)·2⁻²⁴, computed in double and rounded to float32, never
// reaching hi (fill_uniform's formula). Deterministic in (r, max_in, max_out, seed) alone, on
// any thread count: storing those four numbers is enough to recreate both matrices.
void vera_projections(int64_t r, int64_t max_in, int64_t max_out, uint64_t seed, float* A, float* B);

// u = D(x) Aᵀ; y = x Wᵀ + bias + λb ⊙ ((u ⊙ λd) Bᵀ) (y written once: the adapter is joined to
// the base product as u · Bsᵀ with Bs[o, j] = λb[o]·λd[j]·B[o, j], a tiny [out, r] copy).
// A has row stride d.max_in; B is [out, r]. bias may be null. u [T, r] is all backward keeps.
void vera_forward(const VeraDims& d, const float* x, const Weight& W, const float* bias, const float* A, const float* B,
                  const float* lambda_d, const float* lambda_b, const Dropout& drop, float* y, float* u);

// Gradients from dy and the saved u alone (x is never kept), with no [T, out] temporary:
//   M = dyᵀ (u ⊙ λd) [out, r]; dλb[o] = Σ_j B[o, j]·M[o, j];
//   h = dy (λb ⊙ B) [T, r];     dλd = Σ_t h ⊙ u;
//   dx = dy W + D((h ⊙ λd) A).
// The dropout mask is regenerated from `drop` (keyed by t·in + i, as in forward), never stored.
// dx may be null when the input gradient is not needed.
void vera_backward(const VeraDims& d, const float* dy, const Weight& W, const float* A, const float* B,
                   const float* lambda_d, const float* lambda_b, const float* u, const Dropout& drop, float* dx,
                   float* d_lambda_d, float* d_lambda_b);

// W += sign · (λb ⊙ B)(λd ⊙ A) (merge: sign 1; unmerge: sign -1). A bfloat16 W is updated in
// float32 and rounded to the nearest bfloat16, so unmerge restores it only to within rounding.
void vera_merge(const VeraDims& d, const WeightMut& W, const float* A, const float* B, const float* lambda_d,
                const float* lambda_b, float sign);

// Like vera_merge, but writes W only when every merged value is finite. Returns -1 on success,
// else the flat index of the first non-finite value (W untouched), its value in *bad_value.
int64_t vera_merge_safe(const VeraDims& d, const WeightMut& W, const float* A, const float* B, const float* lambda_d,
                        const float* lambda_b, float sign, float* bad_value);

}  // namespace lowrank::cpu
