#pragma once
#include <napi.h>

namespace lowrank::addon {
Napi::Value ProbePeak(const Napi::CallbackInfo& info);       // (seconds) => { gflops, isa }
Napi::Value ProbeBandwidth(const Napi::CallbackInfo& info);  // (bytes, rounds) => GB/s
}  // namespace lowrank::addon
