// Node-API boundary for the LoRA family: unpack arguments into plain structs, check sizes,
// hand the work to native/cpu (now or off the event loop). No arithmetic here.
#include "lora.h"

#include <cmath>
#include <sstream>

#include "../cpu/lora.h"
#include "common.h"

namespace lowrank::addon {

Napi::Value LoraForward(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    Napi::Object a = args_object(info);
    const cpu::LoraDims d = lora_dims(a, "lora", true);
    auto x = f32(a, "x"), A = f32(a, "A"), B = f32(a, "B");
    const cpu::Weight W = as_const(weight(a, "loraForward", d.out * d.in));
    auto bias = f32(a, "bias", true);
    auto y = f32(a, "y"), xa = f32(a, "xa");
    expect_size("loraForward", "x", x.size, d.t * d.in);
    expect_size("loraForward", "A", A.size, d.r * d.in);
    expect_size("loraForward", "B", B.size, d.out * d.r);
    if (bias.data) expect_size("loraForward", "bias", bias.size, d.out);
    expect_size("loraForward", "y", y.size, d.t * d.out);
    expect_size("loraForward", "xa", xa.size, d.t * d.r);
    const float scale = static_cast<float>(f64(a, "scale"));
    const Dropout drop = dropout_field(a);
    return run(info.Env(), async_flag(info), a, [=] {
      cpu::lora_forward(d, x.data, W, bias.data, A.data, B.data, scale, drop, y.data, xa.data);
    });
  });
}

Napi::Value LoraBackward(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    Napi::Object a = args_object(info);
    const cpu::LoraDims d = lora_dims(a, "lora", true);
    auto dy = f32(a, "dy"), A = f32(a, "A"), B = f32(a, "B"), xa = f32(a, "xa");
    const cpu::Weight W = as_const(weight(a, "loraBackward", d.out * d.in));
    auto x = f32(a, "x", true), dx = f32(a, "dx", true), dA = f32(a, "dA", true);
    auto dB = f32(a, "dB");
    expect_size("loraBackward", "dy", dy.size, d.t * d.out);
    expect_size("loraBackward", "A", A.size, d.r * d.in);
    expect_size("loraBackward", "B", B.size, d.out * d.r);
    expect_size("loraBackward", "xa", xa.size, d.t * d.r);
    expect_size("loraBackward", "dB", dB.size, d.out * d.r);
    LR_CHECK("loraBackward", (dA.data == nullptr) == (x.data == nullptr), "dA needs x, and x is kept only for dA");
    if (x.data) expect_size("loraBackward", "x", x.size, d.t * d.in);
    if (dA.data) expect_size("loraBackward", "dA", dA.size, d.r * d.in);
    if (dx.data) expect_size("loraBackward", "dx", dx.size, d.t * d.in);
    const float scale = static_cast<float>(f64(a, "scale"));
    const Dropout drop = dropout_field(a);
    return run(info.Env(), async_flag(info), a, [=] {
      cpu::lora_backward(d, dy.data, x.data, W, A.data, B.data, xa.data, scale, drop, dx.data,
                         dA.data, dB.data);
    });
  });
}

Napi::Value LoraFaProjectGrad(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    Napi::Object a = args_object(info);
    const cpu::LoraDims d = lora_dims(a, "loraFaProjectGrad", false);
    auto A = f32(a, "A"), dB = f32(a, "dB");
    expect_size("loraFaProjectGrad", "A", A.size, d.r * d.in);
    expect_size("loraFaProjectGrad", "dB", dB.size, d.out * d.r);
    const float scale = static_cast<float>(f64(a, "scale"));
    return run(info.Env(), async_flag(info), a, [=] { cpu::lora_fa_project_grad(d, A.data, scale, dB.data); });
  });
}

Napi::Value LoraMerge(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    Napi::Object a = args_object(info);
    const cpu::LoraDims d = lora_dims(a, "loraMerge", false);
    auto A = f32(a, "A"), B = f32(a, "B");
    const cpu::WeightMut W = weight(a, "loraMerge", d.out * d.in);
    expect_size("loraMerge", "A", A.size, d.r * d.in);
    expect_size("loraMerge", "B", B.size, d.out * d.r);
    const float scale = static_cast<float>(f64(a, "scale"));
    const bool safe = boolean(a, "safe");
    return run(info.Env(), async_flag(info), a, [=] {
      if (!safe) return cpu::lora_merge(d, W, A.data, B.data, scale);
      float value = 0.0f;
      const int64_t bad = cpu::lora_merge_safe(d, W, A.data, B.data, scale, &value);
      if (bad >= 0) merge_not_finite(bad, value, d.in);
    });
  });
}

}  // namespace lowrank::addon
