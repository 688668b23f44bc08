#pragma once
#include <napi.h>

namespace lowrank::addon {
Napi::Value ProbePeak(const Napi::CallbackInfo& info);       // (seconds) => { gflops, isa }
Napi::Value ProbeBandwidth(const Napi::CallbackInfo& info);  // (bytes, rounds) => GB/s
// ({ m, n, k, a, b, c, threads }) => undefined (c = a·bᵀ by OpenBLAS), or why OpenBLAS is missing
Napi::Value OpenBlasSgemm(const Napi::CallbackInfo& info);
}  // namespace lowrank::addon
