// AdamW (README.md, Optimizers): what the CPU's and the CUDA backend's adamw_step share. The op
// (native/core/ops/adamw.h) is one fused step over a list of float32 tensors, each with its own
// hyperparameters (parameter groups), as torch.optim.AdamW computes it (native/cpu/adamw.cc).
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

// The op's lists as AdamwTensors (their pointers on the op's device), for either backend.
std::vector<AdamwTensor> adamw_tensors(const ops::AdamwStep& a);

}  // namespace lowrank::cpu
