#pragma once
#include <napi.h>

namespace lowrank::addon {
// ({params, grads, m, v: Float32Array[], group: number[] (a group index per tensor),
//   lr, beta1, beta2, eps, weightDecay, step: number[] (one per group)}, async)
Napi::Value AdamwStep(const Napi::CallbackInfo& info);
}  // namespace lowrank::addon
