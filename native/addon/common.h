// Helpers shared by the Node-API boundary files: reading plain values and typed arrays out of
// an argument object, and running a piece of work either now or off the event loop.
#pragma once

#include <napi.h>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "../core/check.h"
#include "../cpu/adamw.h"
#include "../cpu/gemm.h"
#include "../cpu/lora.h"
#include "../cpu/vera.h"

namespace lowrank::addon {

template <typename T>
struct Span {
  T* data = nullptr;
  size_t size = 0;
};

// Required typed-array field `key` of `obj` (a Float32Array, Uint16Array, ...); null when the
// field is null or undefined and `optional` is set.
template <typename T>
Span<T> typed(const Napi::Object& obj, const char* key, napi_typedarray_type type, bool optional = false);

inline Span<float> f32(const Napi::Object& obj, const char* key, bool optional = false) {
  return typed<float>(obj, key, napi_float32_array, optional);
}

int64_t i64(const Napi::Object& obj, const char* key);
double f64(const Napi::Object& obj, const char* key);
bool boolean(const Napi::Object& obj, const char* key);
uint64_t u64(const Napi::Object& obj, const char* key);  // a BigInt or a safe integer

// Runs `work` on the calling thread when `async` is false (returns undefined, throws on
// error), or on a libuv worker (returns a Promise). `keep` stays referenced until the work is
// done, so the typed arrays it holds stay alive. lowrank::RangeError / TypeError from the work
// become JavaScript RangeError / TypeError; anything else an Error.
Napi::Value run(Napi::Env env, bool async, Napi::Object keep, std::function<void()> work);

// The weight field "W" with its dtype code "wDtype": float32 (0) or bfloat16 bits (1), with
// `count` elements. Exactly one pointer of the result is set.
cpu::WeightMut weight(const Napi::Object& a, const char* op, int64_t count);

inline cpu::Weight as_const(const cpu::WeightMut& w) { return {w.f32, w.bf16}; }

// The adapter dimensions "in", "out", "r" (and "t" when with_t), each checked positive.
cpu::LoraDims lora_dims(const Napi::Object& a, const char* op, bool with_t);

// The fields of a dropout-mask request: out (Uint8Array), offset, p in [0, 1), seed.
struct MaskRequest {
  Span<uint8_t> out;
  int64_t offset = 0;
  double p = 0;
  uint64_t seed = 0;
};
MaskRequest mask_request(const Napi::Object& a, const char* op);

// The element count a field must have: LR_EXPECT_SIZE("loraForward", x, T * in).
void expect_size(const char* op, const char* name, size_t got, int64_t want);

// The dropout fields "p" and "seed".
Dropout dropout_field(const Napi::Object& a);

// VeRA's dimensions ("t" skipped unless `tokens`) and the projections' "maxOut", checked.
cpu::VeraDims vera_dims(const Napi::Object& a, const char* op, bool tokens, int64_t* max_out);

// The RangeError of a safe merge whose result at flat index `bad` of W [*, in] is `value`.
[[noreturn]] void merge_not_finite(int64_t bad, float value, int64_t in);

// Array field `key`; `key[i]` as a string for messages; element i of a number array.
Napi::Array array_field(const Napi::Object& a, const char* key);
std::string at(const char* key, uint32_t i);
double number_at(const Napi::Array& list, const char* key, uint32_t i);

// AdamW's per-tensor hyperparameters: the group arrays "lr", "beta1", "beta2", "eps",
// "weightDecay", "step" and each of the `count` tensors' "group" index, checked.
std::vector<cpu::AdamwHyper> adamw_hyper(const Napi::Object& a, const char* op, uint32_t count);

}  // namespace lowrank::addon

namespace lowrank::addon {

}  // namespace lowrank::addon

namespace lowrank::addon {

// Runs `body` and turns lowrank's C++ errors into JavaScript exceptions of the matching class.
template <typename F>
Napi::Value guarded(Napi::Env env, F&& body) {
  try {
    return body();
  } catch (const Napi::Error&) {
    throw;
  } catch (const lowrank::RangeError& e) {
    throw Napi::RangeError::New(env, e.what());
  } catch (const lowrank::TypeError& e) {
    throw Napi::TypeError::New(env, e.what());
  } catch (const std::exception& e) {
    throw Napi::Error::New(env, e.what());
  }
}

inline bool async_flag(const Napi::CallbackInfo& info) {
  return info.Length() > 1 && info[1].IsBoolean() && info[1].As<Napi::Boolean>().Value();
}

inline Napi::Object args_object(const Napi::CallbackInfo& info) {
  if (info.Length() < 1 || !info[0].IsObject())
    throw Napi::TypeError::New(info.Env(), "native call expects an argument object");
  return info[0].As<Napi::Object>();
}

}  // namespace lowrank::addon
