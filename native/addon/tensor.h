#pragma once
#include <napi.h>

namespace lowrank::addon {
Napi::Value Philox(const Napi::CallbackInfo& info);       // ({counter, key, out})
Napi::Value DropoutMask(const Napi::CallbackInfo& info);  // ({out, offset, p, seed})
Napi::Value Gemm(const Napi::CallbackInfo& info);         // the GEMM core, for tests
}  // namespace lowrank::addon
