#pragma once
#include <napi.h>

namespace lowrank::addon {
Napi::Value LinearForward(const Napi::CallbackInfo& info);   // ({x, W, wDtype, bias?, y, t, in, out}, async)
Napi::Value LinearBackward(const Napi::CallbackInfo& info);  // ({dy, x, W, wDtype, dx?, dW?, db?, t, in, out}, async)
}  // namespace lowrank::addon
