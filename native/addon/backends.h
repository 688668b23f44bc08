#pragma once
#include <napi.h>

namespace lowrank::addon {
Napi::Value Backends(const Napi::CallbackInfo& info);         // () => { cpu, cuda }
Napi::Value SetThreads(const Napi::CallbackInfo& info);       // (n) => threads now in use
Napi::Value SetIsa(const Napi::CallbackInfo& info);           // (name) => the CPU kernel set now in use
Napi::Value CudaDropoutMask(const Napi::CallbackInfo& info);  // ({out, offset, p, seed}): the CUDA kernel's mask
Napi::Value CudaLoraMergeHost(
    const Napi::CallbackInfo& info);  // ({W, A, B, out, in, r, scale}): the CUDA merge kernel on host arrays
}  // namespace lowrank::addon
