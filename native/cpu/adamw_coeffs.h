// AdamW's per-step float32 coefficients, derived in double as torch's Python computes them.
// Shared by the CPU step (adamw.cc) and the CUDA step (native/cuda/adamw.cu), so both round
// the same scalars and give the same bits.
#pragma once

#include <cmath>

#include "adamw.h"

namespace lowrank::cpu {

struct Coeffs {
  float decay;     // 1 − lr·wd
  float coeff;     // lerp: w = 1 − β1 when w < 0.5, else w − 1
  bool small;      // lerp's base: m when w < 0.5, else g (torch's is_lerp_weight_small)
  float beta2;     // β2
  float c2;        // 1 − β2
  float bc2_sqrt;  // √(1 − β2^t)
  float eps;
  float neg_step;  // −lr / (1 − β1^t)
};

inline Coeffs coeffs(const AdamwHyper& h) {
  Coeffs c;
  const double t = static_cast<double>(h.step);
  c.decay = static_cast<float>(1.0 - h.lr * h.weight_decay);
  const float w = static_cast<float>(1.0 - h.beta1);
  c.small = std::fabs(w) < 0.5f;
  c.coeff = c.small ? w : w - 1.0f;
  c.beta2 = static_cast<float>(h.beta2);
  c.c2 = static_cast<float>(1.0 - h.beta2);
  c.bc2_sqrt = static_cast<float>(std::sqrt(1.0 - std::pow(h.beta2, t)));
  c.eps = static_cast<float>(h.eps);
  c.neg_step = static_cast<float>(-(h.lr / (1.0 - std::pow(h.beta1, t))));
  return c;
}

}  // namespace lowrank::cpu
