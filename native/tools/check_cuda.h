// The checker's CUDA part (check_cuda.cc): every op on CUDA against the CPU, and timing.
#pragma once

namespace lowrank::check {

// Every CUDA op (LoRA, LoRA-FA, VeRA, Delta-LoRA, merges, AdamW, linear, dtype conversion) in
// float32, bfloat16 and float16 against the CPU's float32 result on the same (rounded) inputs,
// at awkward shapes, with and without dropout and bias. Records each check. Needs a device.
void cuda_op_checks();

// Times the ops at T = 8192, in = out = 4096, r = 16 in bfloat16 (and float32) with CUDA
// events, prints medians, TFLOP/s and the ratio to the base product. False on a failure.
bool cuda_timing();

}  // namespace lowrank::check
