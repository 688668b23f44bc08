// AdamW on the CPU (README.md, Optimizers): one fused step over a list of float32 tensors,
// each with its own hyperparameters (parameter groups), as torch.optim.AdamW computes it.
#pragma once

#include <cstdint>
#include <vector>

#include "../core/ops/adamw.h"

namespace lowrank::cpu {

// One parameter tensor and its state, n elements each. grad is read; param, m (torch's
// exp_avg) and v (exp_avg_sq) are updated in place. No two tensors may overlap.
struct AdamwTensor {
  float* param = nullptr;
  const float* grad = nullptr;
  float* m = nullptr;
  float* v = nullptr;
  int64_t n = 0;
};

// A tensor's hyperparameters for this step (native/core/ops/adamw.h).
using AdamwHyper = ops::AdamwHyper;

// One AdamW step for tensors[i] with hyper[i], i < count, in one parallel pass over all of them
// (the tensors are cut into chunks spread over the thread pool). Per element, in float32, in
// torch's order (torch.optim.AdamW, single-tensor path; the scalar coefficients are computed in
// double as torch's Python does, then rounded to float32):
//   p ← p · (1 − lr·wd)
//   m ← m.lerp(g, 1 − β1)                      (m + (1 − β1)(g − m), one fused multiply-add)
//   v ← v · β2;  v ← v + ((1 − β2) · g) · g
//   p ← p + (−lr / (1 − β1^t)) · m / (√v / √(1 − β2^t) + eps)
// Results do not depend on the thread count or on the instruction set used.
void adamw_step(const AdamwTensor* tensors, const AdamwHyper* hyper, int64_t count);

// The op's lists as AdamwTensors (their pointers on the op's device), for either backend.
std::vector<AdamwTensor> adamw_tensors(const ops::AdamwStep& a);

}  // namespace lowrank::cpu
