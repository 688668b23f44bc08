#pragma once
#include <napi.h>

namespace lowrank::addon {
Napi::Value DeltaLoraUpdate(const Napi::CallbackInfo& info);  // ({W, wDtype, A0, B0, A1, B1, out, in, r, lambda, scale}, async)
}  // namespace lowrank::addon
