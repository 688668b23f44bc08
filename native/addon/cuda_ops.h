// Node-API boundary for the ops on CUDA tensors. Each entry point takes the same dimensions and
// scalars as its CPU twin, device blocks (Externals from cudaAlloc) where the CPU path takes typed
// arrays, and a dtype code (0 float32, 1 bfloat16, 2 float16) beside every activation or weight
// operand. Adapter parameters, their gradients and the small saved tensors (A, B, xa, u, λ) are
// float32. The calls return at once: the work is queued on the backend's stream, in order.
#pragma once
#include <napi.h>

namespace lowrank::addon {
// ({t, in, out, r, x, xDtype, W, wDtype, bias?, biasDtype?, A, B, y, yDtype, xa, scale, p, seed})
Napi::Value CudaLoraForward(const Napi::CallbackInfo& info);
// ({t, in, out, r, dy, dyDtype, x?, xDtype?, W, wDtype, A, B, xa, dx?, dxDtype?, dA?, dB, scale, p, seed})
Napi::Value CudaLoraBackward(const Napi::CallbackInfo& info);
// ({in, out, r, A, dB, scale}): dB in place
Napi::Value CudaLoraFaProjectGrad(const Napi::CallbackInfo& info);
// ({in, out, r, W, wDtype, A, B, scale, safe}): W in place; safe waits for the device
Napi::Value CudaLoraMerge(const Napi::CallbackInfo& info);
// ({t, in, out, r, maxIn, maxOut, x, xDtype, W, wDtype, bias?, biasDtype?, A, B, lambdaD, lambdaB, y, yDtype, u, p, seed})
Napi::Value CudaVeraForward(const Napi::CallbackInfo& info);
// ({t, in, out, r, maxIn, maxOut, dy, dyDtype, W, wDtype, A, B, lambdaD, lambdaB, u, dx?, dxDtype?,
//   dLambdaD, dLambdaB, p, seed})
Napi::Value CudaVeraBackward(const Napi::CallbackInfo& info);
// ({in, out, r, maxIn, maxOut, W, wDtype, A, B, lambdaD, lambdaB, sign, safe}): W in place
Napi::Value CudaVeraMerge(const Napi::CallbackInfo& info);
// ({out, in, r, W, wDtype, A0, B0, A1, B1, lambda, scale}): W in place
Napi::Value CudaDeltaLoraUpdate(const Napi::CallbackInfo& info);
// ({params, grads, m, v, n, group, lr, beta1, beta2, eps, weightDecay, step}): n[i] elements of tensor i
Napi::Value CudaAdamwStep(const Napi::CallbackInfo& info);
// ({t, in, out, x, xDtype, W, wDtype, bias?, biasDtype?, y, yDtype})
Napi::Value CudaLinearForward(const Napi::CallbackInfo& info);
// ({t, in, out, dy, dyDtype, x, xDtype, W, wDtype, dx?, dxDtype?, dW?, db?})
Napi::Value CudaLinearBackward(const Napi::CallbackInfo& info);
}  // namespace lowrank::addon
