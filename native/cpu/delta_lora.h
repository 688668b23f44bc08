// Delta-LoRA on the CPU (README.md, Delta-LoRA). After an optimizer step moves the adapter from
// (A0, B0) to (A1, B1), the frozen weight moves too:
//   W ← W + λ·s·(B1 A1 − B0 A0)
// as one product over the joined inner dimension 2r, [λs·B1 | −λs·B0] · [A1 ; A0], added into W
// with beta = 1: W is read once and written once. Shapes, row-major:
//   W [out, in] (float32 or bfloat16), A0, A1 [r, in], B0, B1 [out, r].
#pragma once

#include <cstdint>

#include "gemm.h"

namespace lowrank::cpu {

struct DeltaLoraDims {
  int64_t out = 0, in = 0, r = 0;
};

// W += lambda · scale · (B1 A1 − B0 A0), in place. A bfloat16 W is updated in float32 by chunks
// of rows and rounded to the nearest bfloat16 (ties to even), like lora_merge.
void delta_lora_update(const DeltaLoraDims& d, const WeightMut& W, const float* A0, const float* B0, const float* A1,
                       const float* B1, float lambda, float scale);

}  // namespace lowrank::cpu
