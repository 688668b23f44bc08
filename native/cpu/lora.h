// LoRA on the CPU (README.md, LoRA). Shapes, row-major:
//   x [T, in], W [out, in], bias [out], A [r, in], B [out, r], y [T, out], xa [T, r].
// W may be stored as float32 or bfloat16 (Weight); everything else is float32.
#pragma once

#include <cstdint>
#include <vector>

#include "../core/philox.h"
#include "gemm.h"

namespace lowrank::cpu {

struct LoraDims {
  int64_t t = 0, in = 0, out = 0, r = 0;
};

// xa = D(x) Aᵀ; y = x Wᵀ + bias + scale · xa Bᵀ (y written once, the adapter joined to the
// base product). bias may be null.
void lora_forward(const LoraDims& d, const float* x, const Weight& W, const float* bias, const float* A, const float* B,
                  float scale, const Dropout& drop, float* y, float* xa);

// dB = scale · dyᵀ xa; g = scale · dy B; dA = gᵀ D(x); dx = dy W + D(g A).
// x and dA may be null together (LoRA-FA: A frozen, x never kept); the dropout mask is
// regenerated from `drop`, never stored. dx may be null when the input gradient is not needed.
void lora_backward(const LoraDims& d, const float* dy, const float* x, const Weight& W, const float* A, const float* B,
                   const float* xa, float scale, const Dropout& drop, float* dx, float* dA, float* dB);

// LoRA-FA's optional projection of B's gradient (PEFT): dB ← dB (A Aᵀ + 1e-8·I)⁻¹ / scale²,
// in place. The r x r system is factored once (Cholesky, in double) and every row of dB solved.
void lora_fa_project_grad(const LoraDims& d, const float* A, float scale, float* dB);

// The projection's r x r matrix M = (G + 1e-8·I)⁻¹ / scale² for the Gram matrix G = A Aᵀ
// (row-major, symmetrised), from the same Cholesky factor in double: dB ← dB M is the
// projection (the CUDA backend computes G and dB M on the device).
std::vector<float> lora_fa_projector(const float* gram, int64_t r, float scale);

// W += scale · B A (unmerge: pass -scale). A bfloat16 W is updated in float32 and rounded to
// the nearest bfloat16 (ties to even), so merge then unmerge restores it only to within rounding.
void lora_merge(const LoraDims& d, const WeightMut& W, const float* A, const float* B, float scale);

// Like lora_merge, but computes into a copy first and writes W only when every merged value is
// finite. Returns -1 on success, else the flat index of the first non-finite value (W
// untouched), whose value goes to *bad_value.
int64_t lora_merge_safe(const LoraDims& d, const WeightMut& W, const float* A, const float* B, float scale,
                        float* bad_value);

}  // namespace lowrank::cpu
