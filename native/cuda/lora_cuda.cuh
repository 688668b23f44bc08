// LoRA launchers on device pointers, mirroring native/cpu/lora.h function for function.
// Internal to the CUDA backend (includes the CUDA runtime header).
#pragma once

#include <cuda_runtime.h>

#include "../cpu/lora.h"

namespace lowrank::cuda {

// W += scale · B A on device memory, enqueued on `stream` (unmerge: pass -scale).
// W [out, in], A [r, in], B [out, r], row-major. Throws std::runtime_error on a launch error.
void lora_merge_device(const cpu::LoraDims& d, float* W, const float* A, const float* B, float scale,
                cudaStream_t stream);

}  // namespace lowrank::cuda
