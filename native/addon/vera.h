#pragma once
#include <napi.h>

namespace lowrank::addon {
Napi::Value VeraProjections(const Napi::CallbackInfo& info);  // ({A, B, r, maxIn, maxOut, seed}, async)
Napi::Value VeraForward(const Napi::CallbackInfo& info);      // ({x, W, wDtype, bias?, A, B, lambdaD, lambdaB, y, u, dims, p, seed}, async)
Napi::Value VeraBackward(const Napi::CallbackInfo& info);     // ({dy, W, wDtype, A, B, lambdaD, lambdaB, u, dx?, dLambdaD, dLambdaB, dims, p, seed}, async)
Napi::Value VeraMerge(const Napi::CallbackInfo& info);        // ({W, wDtype, A, B, lambdaD, lambdaB, out, in, r, maxIn, maxOut, sign, safe}, async)
}  // namespace lowrank::addon
