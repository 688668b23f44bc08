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

Span<float> f32_at(const Napi::Array& list, const char* key, uint32_t i) {
  Napi::Value v = list.Get(i);
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_float32_array)
    throw lowrank::TypeError(std::string("native argument '") + at(key, i) + "' is not a Float32Array");
  Napi::TypedArray ta = v.As<Napi::TypedArray>();
  auto* base = static_cast<uint8_t*>(ta.ArrayBuffer().Data()) + ta.ByteOffset();
  return {reinterpret_cast<float*>(base), ta.ElementLength()};
}


}  // namespace

Napi::Value AdamwStep(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    Napi::Object a = args_object(info);
    Napi::Array params = array_field(a, "params"), grads = array_field(a, "grads");
    Napi::Array m = array_field(a, "m"), v = array_field(a, "v");
    const uint32_t count = params.Length();
    LR_CHECK_EQ(kOp, grads.Length(), count);
    LR_CHECK_EQ(kOp, m.Length(), count);
    LR_CHECK_EQ(kOp, v.Length(), count);
    std::vector<cpu::AdamwHyper> hyper = adamw_hyper(a, kOp, count);
    std::vector<cpu::AdamwTensor> tensors(count);
    for (uint32_t i = 0; i < count; ++i) {
      auto p = f32_at(params, "params", i), g = f32_at(grads, "grads", i);
      auto mi = f32_at(m, "m", i), vi = f32_at(v, "v", i);
      const auto n = static_cast<int64_t>(p.size);
      expect_size(kOp, at("grads", i).c_str(), g.size, n);
      expect_size(kOp, at("m", i).c_str(), mi.size, n);
      expect_size(kOp, at("v", i).c_str(), vi.size, n);
      tensors[i] = {p.data, g.data, mi.data, vi.data, n};
    }
    return run(info.Env(), async_flag(info), a, [tensors = std::move(tensors), hyper = std::move(hyper)] {
      cpu::adamw_step(tensors.data(), hyper.data(), static_cast<int64_t>(tensors.size()));
    });
  });
}

}  // namespace lowrank::addon
