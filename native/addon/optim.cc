// Node-API boundary for the optimizers: unpack the lists of tensors and the per-group numbers
// into plain structs, check sizes, hand the fused step to native/cpu (now or off the event
// loop). No arithmetic here.
#include "optim.h"

#include <string>
#include <vector>

#include "../cpu/adamw.h"
#include "common.h"

namespace lowrank::addon {
namespace {

constexpr const char* kOp = "adamwStep";

Napi::Array array(const Napi::Object& a, const char* key) {
  if (!a.Has(key)) throw lowrank::TypeError(std::string("missing native argument '") + key + "'");
  Napi::Value v = a.Get(key);
  if (!v.IsArray()) throw lowrank::TypeError(std::string("native argument '") + key + "' is not an array");
  return v.As<Napi::Array>();
}

std::string at(const char* key, uint32_t i) { return std::string(key) + "[" + std::to_string(i) + "]"; }

Span<float> f32_at(const Napi::Array& list, const char* key, uint32_t i) {
  Napi::Value v = list.Get(i);
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_float32_array)
    throw lowrank::TypeError(std::string("native argument '") + at(key, i) + "' is not a Float32Array");
  Napi::TypedArray ta = v.As<Napi::TypedArray>();
  auto* base = static_cast<uint8_t*>(ta.ArrayBuffer().Data()) + ta.ByteOffset();
  return {reinterpret_cast<float*>(base), ta.ElementLength()};
}

double number_at(const Napi::Array& list, const char* key, uint32_t i) {
  Napi::Value v = list.Get(i);
  if (!v.IsNumber()) throw lowrank::TypeError(std::string("native argument '") + at(key, i) + "' is not a number");
  return v.As<Napi::Number>().DoubleValue();
}

}  // namespace

Napi::Value AdamwStep(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    Napi::Object a = args_object(info);
    Napi::Array params = array(a, "params"), grads = array(a, "grads"), m = array(a, "m"), v = array(a, "v");
    Napi::Array group = array(a, "group");
    const uint32_t count = params.Length();
    LR_CHECK_EQ(kOp, grads.Length(), count);
    LR_CHECK_EQ(kOp, m.Length(), count);
    LR_CHECK_EQ(kOp, v.Length(), count);
    LR_CHECK_EQ(kOp, group.Length(), count);

    const char* keys[] = {"lr", "beta1", "beta2", "eps", "weightDecay", "step"};
    Napi::Array per_group[6];
    for (int k = 0; k < 6; ++k) per_group[k] = array(a, keys[k]);
    const uint32_t ngroups = per_group[0].Length();
    for (int k = 1; k < 6; ++k) LR_CHECK_EQ(kOp, per_group[k].Length(), ngroups);
    std::vector<cpu::AdamwHyper> groups(ngroups);
    for (uint32_t g = 0; g < ngroups; ++g) {
      cpu::AdamwHyper& h = groups[g];
      h.lr = number_at(per_group[0], "lr", g);
      h.beta1 = number_at(per_group[1], "beta1", g);
      h.beta2 = number_at(per_group[2], "beta2", g);
      h.eps = number_at(per_group[3], "eps", g);
      h.weight_decay = number_at(per_group[4], "weightDecay", g);
      const double step = number_at(per_group[5], "step", g);
      LR_CHECK(kOp, step >= 1 && step <= 9007199254740991.0, "step must be a positive integer");
      h.step = static_cast<int64_t>(step);
    }

    std::vector<cpu::AdamwTensor> tensors(count);
    std::vector<cpu::AdamwHyper> hyper(count);
    for (uint32_t i = 0; i < count; ++i) {
      auto p = f32_at(params, "params", i), g = f32_at(grads, "grads", i);
      auto mi = f32_at(m, "m", i), vi = f32_at(v, "v", i);
      const auto n = static_cast<int64_t>(p.size);
      expect_size(kOp, at("grads", i).c_str(), g.size, n);
      expect_size(kOp, at("m", i).c_str(), mi.size, n);
      expect_size(kOp, at("v", i).c_str(), vi.size, n);
      const double gi = number_at(group, "group", i);
      LR_CHECK(kOp, gi >= 0 && gi < ngroups && gi == static_cast<double>(static_cast<uint32_t>(gi)),
               at("group", i) + " is not the index of a group");
      tensors[i] = {p.data, g.data, mi.data, vi.data, n};
      hyper[i] = groups[static_cast<uint32_t>(gi)];
    }
    return run(info.Env(), async_flag(info), a, [tensors = std::move(tensors), hyper = std::move(hyper)] {
      cpu::adamw_step(tensors.data(), hyper.data(), static_cast<int64_t>(tensors.size()));
    });
  });
}

}  // namespace lowrank::addon
