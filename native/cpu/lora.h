// LoRA on the CPU (README.md, LoRA): the ops are cpu::lora_* of native/core/ops.h, taking the
// argument structs of native/core/ops/lora.h; this header holds what the CUDA backend shares.
#pragma once

#include <cstdint>
#include <vector>

#include "../core/philox.h"
#include "gemm.h"

namespace lowrank::cpu {

// The sizes of a LoRA layer (the CUDA backend's host-data merge hook, native/cuda/cuda.h). The
// ops themselves take their argument structs (native/core/ops/lora.h).
struct LoraDims {
  int64_t t = 0, in = 0, out = 0, r = 0;
};

// The projection's r x r matrix M = (G + 1e-8·I)⁻¹ / scale² for the Gram matrix G = A Aᵀ
// (row-major, symmetrised), from the same LU factor in double: dB ← dB M is the
// projection (the CUDA backend computes G and dB M on the device).
std::vector<float> lora_fa_projector(const float* gram, int64_t r, float scale);

}  // namespace lowrank::cpu
