// A plain linear layer, y = x Wᵀ + b with W trainable: the full fine-tuning baseline the
// adapters are compared against.
#pragma once

#include <cstdint>

#include "gemm.h"

namespace lowrank::cpu {

struct LinearDims {
  int64_t t = 0, in = 0, out = 0;
};

// y = x Wᵀ + bias (bias may be null). FLOPs 2·T·in·out.
void linear_forward(const LinearDims& d, const float* x, const Weight& W, const float* bias, float* y);

// dx = dy W (dx may be null), dW = dyᵀ x (dW may be null), db = Σ_t dy (db may be null).
// FLOPs 4·T·in·out. W must be float32 when dW is wanted (a bfloat16 W cannot train in place).
void linear_backward(const LinearDims& d, const float* dy, const float* x, const Weight& W, float* dx, float* dW,
                     float* db);

}  // namespace lowrank::cpu
