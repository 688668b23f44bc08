// Node-API boundary for VeRA: unpack arguments into plain structs, check sizes, hand the work
// to native/cpu (now or off the event loop). No arithmetic here. `dims` carries the layer's
// (t, in, out, r) and the shared projections' (maxIn, maxOut): A is [r, maxIn], B [maxOut, r].
#include "vera.h"

#include <cmath>
#include <sstream>

#include "../cpu/vera.h"
#include "common.h"

namespace lowrank::addon {
namespace {

struct Adapter {
  const float* A = nullptr;
  const float* B = nullptr;
  const float* lambda_d = nullptr;
  const float* lambda_b = nullptr;
};

// The shared projections (whole: A [r, maxIn], B [maxOut, r]) and the layer's λd [r], λb [out].
Adapter adapter(const Napi::Object& a, const char* op, const cpu::VeraDims& d, int64_t max_out) {
  auto A = f32(a, "A"), B = f32(a, "B"), ld = f32(a, "lambdaD"), lb = f32(a, "lambdaB");
  expect_size(op, "A", A.size, d.r * d.max_in);
  expect_size(op, "B", B.size, max_out * d.r);
  expect_size(op, "lambdaD", ld.size, d.r);
  expect_size(op, "lambdaB", lb.size, d.out);
  return {A.data, B.data, ld.data, lb.data};
}

}  // namespace

Napi::Value VeraProjections(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    Napi::Object a = args_object(info);
    const int64_t r = i64(a, "r"), max_in = i64(a, "maxIn"), max_out = i64(a, "maxOut");
    LR_CHECK("veraProjections", r > 0 && max_in > 0 && max_out > 0, "every dimension must be positive");
    const uint64_t seed = u64(a, "seed");
    auto A = f32(a, "A"), B = f32(a, "B");
    expect_size("veraProjections", "A", A.size, r * max_in);
    expect_size("veraProjections", "B", B.size, max_out * r);
    return run(info.Env(), async_flag(info), a,
               [=] { cpu::vera_projections(r, max_in, max_out, seed, A.data, B.data); });
  });
}

Napi::Value VeraForward(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    Napi::Object a = args_object(info);
    int64_t max_out = 0;
    const cpu::VeraDims d = vera_dims(a, "veraForward", true, &max_out);
    const Adapter ad = adapter(a, "veraForward", d, max_out);
    const cpu::Weight W = as_const(weight(a, "veraForward", d.out * d.in));
    auto x = f32(a, "x"), bias = f32(a, "bias", true), y = f32(a, "y"), u = f32(a, "u");
    expect_size("veraForward", "x", x.size, d.t * d.in);
    if (bias.data) expect_size("veraForward", "bias", bias.size, d.out);
    expect_size("veraForward", "y", y.size, d.t * d.out);
    expect_size("veraForward", "u", u.size, d.t * d.r);
    const Dropout drop = dropout_field(a);
    return run(info.Env(), async_flag(info), a, [=] {
      cpu::vera_forward(d, x.data, W, bias.data, ad.A, ad.B, ad.lambda_d, ad.lambda_b, drop, y.data, u.data);
    });
  });
}

Napi::Value VeraBackward(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    Napi::Object a = args_object(info);
    int64_t max_out = 0;
    const cpu::VeraDims d = vera_dims(a, "veraBackward", true, &max_out);
    const Adapter ad = adapter(a, "veraBackward", d, max_out);
    const cpu::Weight W = as_const(weight(a, "veraBackward", d.out * d.in));
    auto dy = f32(a, "dy"), u = f32(a, "u"), dx = f32(a, "dx", true);
    auto dld = f32(a, "dLambdaD"), dlb = f32(a, "dLambdaB");
    expect_size("veraBackward", "dy", dy.size, d.t * d.out);
    expect_size("veraBackward", "u", u.size, d.t * d.r);
    if (dx.data) expect_size("veraBackward", "dx", dx.size, d.t * d.in);
    expect_size("veraBackward", "dLambdaD", dld.size, d.r);
    expect_size("veraBackward", "dLambdaB", dlb.size, d.out);
    const Dropout drop = dropout_field(a);
    return run(info.Env(), async_flag(info), a, [=] {
      cpu::vera_backward(d, dy.data, W, ad.A, ad.B, ad.lambda_d, ad.lambda_b, u.data, drop, dx.data, dld.data,
                         dlb.data);
    });
  });
}

Napi::Value VeraMerge(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    Napi::Object a = args_object(info);
    int64_t max_out = 0;
    const cpu::VeraDims d = vera_dims(a, "veraMerge", false, &max_out);
    const Adapter ad = adapter(a, "veraMerge", d, max_out);
    const cpu::WeightMut W = weight(a, "veraMerge", d.out * d.in);
    const float sign = static_cast<float>(f64(a, "sign"));
    LR_CHECK("veraMerge", sign == 1.0f || sign == -1.0f, "sign must be 1 (merge) or -1 (unmerge)");
    const bool safe = boolean(a, "safe");
    return run(info.Env(), async_flag(info), a, [=] {
      if (!safe) return cpu::vera_merge(d, W, ad.A, ad.B, ad.lambda_d, ad.lambda_b, sign);
      float value = 0.0f;
      const int64_t bad = cpu::vera_merge_safe(d, W, ad.A, ad.B, ad.lambda_d, ad.lambda_b, sign, &value);
      if (bad >= 0) merge_not_finite(bad, value, d.in);
    });
  });
}

}  // namespace lowrank::addon
