// Node-API boundary for the plain linear layer (full fine-tuning).
#include "linear.h"

#include "../cpu/linear.h"
#include "common.h"

namespace lowrank::addon {
namespace {

cpu::LinearDims dims(const Napi::Object& a) {
  cpu::LinearDims d;
  d.t = i64(a, "t");
  d.in = i64(a, "in");
  d.out = i64(a, "out");
  LR_CHECK("linear", d.t > 0 && d.in > 0 && d.out > 0, "every dimension must be positive");
  return d;
}

}  // namespace

Napi::Value LinearForward(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    Napi::Object a = args_object(info);
    const cpu::LinearDims d = dims(a);
    auto x = f32(a, "x"), y = f32(a, "y"), bias = f32(a, "bias", true);
    const cpu::WeightMut W = weight(a, "linearForward", d.out * d.in);
    expect_size("linearForward", "x", x.size, d.t * d.in);
    expect_size("linearForward", "y", y.size, d.t * d.out);
    if (bias.data) expect_size("linearForward", "bias", bias.size, d.out);
    return run(info.Env(), async_flag(info), a, [=] {
      cpu::linear_forward(d, x.data, {W.f32, W.bf16}, bias.data, y.data);
    });
  });
}

Napi::Value LinearBackward(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    Napi::Object a = args_object(info);
    const cpu::LinearDims d = dims(a);
    auto dy = f32(a, "dy"), x = f32(a, "x");
    auto dx = f32(a, "dx", true), dW = f32(a, "dW", true), db = f32(a, "db", true);
    const cpu::WeightMut W = weight(a, "linearBackward", d.out * d.in);
    expect_size("linearBackward", "dy", dy.size, d.t * d.out);
    expect_size("linearBackward", "x", x.size, d.t * d.in);
    if (dx.data) expect_size("linearBackward", "dx", dx.size, d.t * d.in);
    if (dW.data) expect_size("linearBackward", "dW", dW.size, d.out * d.in);
    if (db.data) expect_size("linearBackward", "db", db.size, d.out);
    return run(info.Env(), async_flag(info), a, [=] {
      cpu::linear_backward(d, dy.data, x.data, {W.f32, W.bf16}, dx.data, dW.data, db.data);
    });
  });
}

}  // namespace lowrank::addon
