// Node-API boundary for Delta-LoRA's weight update: unpack, check sizes, hand the work to
// native/cpu (now or off the event loop). No arithmetic here.
#include "delta_lora.h"

#include "../cpu/delta_lora.h"
#include "common.h"

namespace lowrank::addon {

Napi::Value DeltaLoraUpdate(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    Napi::Object a = args_object(info);
    cpu::DeltaLoraDims d;
    d.out = i64(a, "out");
    d.in = i64(a, "in");
    d.r = i64(a, "r");
    LR_CHECK("deltaLoraUpdate", d.out > 0 && d.in > 0 && d.r > 0, "every dimension must be positive");
    const cpu::WeightMut W = weight(a, "deltaLoraUpdate", d.out * d.in);
    auto A0 = f32(a, "A0"), B0 = f32(a, "B0"), A1 = f32(a, "A1"), B1 = f32(a, "B1");
    expect_size("deltaLoraUpdate", "A0", A0.size, d.r * d.in);
    expect_size("deltaLoraUpdate", "B0", B0.size, d.out * d.r);
    expect_size("deltaLoraUpdate", "A1", A1.size, d.r * d.in);
    expect_size("deltaLoraUpdate", "B1", B1.size, d.out * d.r);
    const float lambda = static_cast<float>(f64(a, "lambda"));
    const float scale = static_cast<float>(f64(a, "scale"));
    return run(info.Env(), async_flag(info), a, [=] {
      cpu::delta_lora_update(d, W, A0.data, B0.data, A1.data, B1.data, lambda, scale);
    });
  });
}

}  // namespace lowrank::addon
