#pragma once
#include <napi.h>

namespace lowrank::addon {
Napi::Value LoraForward(const Napi::CallbackInfo& info);   // ({x, W, bias?, A, B, y, xa, dims, scale, p, seed}, async)
Napi::Value LoraBackward(const Napi::CallbackInfo& info);  // ({dy, x?, W, A, B, xa, dx?, dA?, dB, dims, scale, p, seed}, async)
Napi::Value LoraFaProjectGrad(const Napi::CallbackInfo& info);  // ({A, dB, out, in, r, scale}, async): dB in place
Napi::Value LoraMerge(const Napi::CallbackInfo& info);     // ({W, A, B, out, in, r, scale, safe}, async)
}  // namespace lowrank::addon
