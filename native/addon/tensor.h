#pragma once
#include <napi.h>

namespace lowrank::addon {
Napi::Value Convert(const Napi::CallbackInfo& info);      // ({src, srcDtype, dst, dstDtype}, async)
Napi::Value FillRandom(const Napi::CallbackInfo& info);   // ({out, seed, normal, a, b}, async)
Napi::Value Philox(const Napi::CallbackInfo& info);       // ({counter, key, out})
Napi::Value DropoutMask(const Napi::CallbackInfo& info);  // ({out, offset, p, seed})
Napi::Value Gemm(const Napi::CallbackInfo& info);         // the GEMM core, for tests
}  // namespace lowrank::addon
