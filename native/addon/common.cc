#include "common.h"

#include <cmath>
#include <exception>
#include <sstream>

#include "../core/check.h"

namespace lowrank::addon {
namespace {

Napi::Value field(const Napi::Object& obj, const char* key) {
  if (!obj.Has(key)) throw lowrank::TypeError(std::string("missing native argument '") + key + "'");
  return obj.Get(key);
}

enum class Kind { kNone, kRange, kType, kOther };

class Job : public Napi::AsyncWorker {
 public:
  Job(Napi::Env env, Napi::Object keep, std::function<void()> work)
      : Napi::AsyncWorker(env, "lowrank"), deferred_(Napi::Promise::Deferred::New(env)),
        keep_(Napi::Persistent(keep)), work_(std::move(work)) {}

  Napi::Promise promise() { return deferred_.Promise(); }

  void Execute() override {
    try {
      work_();
    } catch (const lowrank::RangeError& e) {
      kind_ = Kind::kRange;
      SetError(e.what());
    } catch (const lowrank::TypeError& e) {
      kind_ = Kind::kType;
      SetError(e.what());
    } catch (const std::exception& e) {
      kind_ = Kind::kOther;
      SetError(e.what());
    }
  }

  void OnOK() override { deferred_.Resolve(Env().Undefined()); }

  void OnError(const Napi::Error& e) override {
    const std::string msg = e.Message();
    Napi::Env env = Env();
    if (kind_ == Kind::kRange)
      deferred_.Reject(Napi::RangeError::New(env, msg).Value());
    else if (kind_ == Kind::kType)
      deferred_.Reject(Napi::TypeError::New(env, msg).Value());
    else
      deferred_.Reject(Napi::Error::New(env, msg).Value());
  }

 private:
  Napi::Promise::Deferred deferred_;
  Napi::ObjectReference keep_;
  std::function<void()> work_;
  Kind kind_ = Kind::kNone;
};

}  // namespace

template <typename T>
Span<T> typed(const Napi::Object& obj, const char* key, napi_typedarray_type type, bool optional) {
  Napi::Value v = field(obj, key);
  if (optional && (v.IsNull() || v.IsUndefined())) return {};
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != type)
    throw lowrank::TypeError(std::string("native argument '") + key + "' has the wrong typed-array class");
  Napi::TypedArray ta = v.As<Napi::TypedArray>();
  Napi::ArrayBuffer buf = ta.ArrayBuffer();
  auto* base = static_cast<uint8_t*>(buf.Data()) + ta.ByteOffset();
  return {reinterpret_cast<T*>(base), ta.ElementLength()};
}

template Span<float> typed<float>(const Napi::Object&, const char*, napi_typedarray_type, bool);
template Span<uint16_t> typed<uint16_t>(const Napi::Object&, const char*, napi_typedarray_type, bool);
template Span<uint8_t> typed<uint8_t>(const Napi::Object&, const char*, napi_typedarray_type, bool);
template Span<uint32_t> typed<uint32_t>(const Napi::Object&, const char*, napi_typedarray_type, bool);

int64_t i64(const Napi::Object& obj, const char* key) {
  Napi::Value v = field(obj, key);
  if (!v.IsNumber()) throw lowrank::TypeError(std::string("native argument '") + key + "' is not a number");
  return v.As<Napi::Number>().Int64Value();
}

double f64(const Napi::Object& obj, const char* key) {
  Napi::Value v = field(obj, key);
  if (!v.IsNumber()) throw lowrank::TypeError(std::string("native argument '") + key + "' is not a number");
  return v.As<Napi::Number>().DoubleValue();
}

bool boolean(const Napi::Object& obj, const char* key) {
  Napi::Value v = field(obj, key);
  return v.IsBoolean() && v.As<Napi::Boolean>().Value();
}

uint64_t u64(const Napi::Object& obj, const char* key) {
  Napi::Value v = field(obj, key);
  if (v.IsBigInt()) {
    bool lossless = false;
    const uint64_t x = v.As<Napi::BigInt>().Uint64Value(&lossless);
    if (!lossless) throw lowrank::RangeError(std::string("native argument '") + key + "' does not fit in 64 bits");
    return x;
  }
  if (v.IsNumber()) return static_cast<uint64_t>(v.As<Napi::Number>().Int64Value());
  throw lowrank::TypeError(std::string("native argument '") + key + "' is not a BigInt");
}

void expect_size(const char* op, const char* name, size_t got, int64_t want) {
  if (want < 0 || got != static_cast<size_t>(want)) {
    std::ostringstream s;
    s << op << ": " << name << " has " << got << " elements but its shape needs " << want;
    throw lowrank::RangeError(s.str());
  }
}

// W as float32 (wDtype 0) or bfloat16 bits (wDtype 1), with `count` elements.
cpu::WeightMut weight(const Napi::Object& a, const char* op, int64_t count) {
  const int64_t code = i64(a, "wDtype");
  cpu::WeightMut w;
  if (code == 0) {
    auto s = f32(a, "W");
    expect_size(op, "W", s.size, count);
    w.f32 = s.data;
  } else if (code == 1) {
    auto s = typed<uint16_t>(a, "W", napi_uint16_array);
    expect_size(op, "W", s.size, count);
    w.bf16 = s.data;
  } else {
    throw lowrank::TypeError(std::string(op) + ": W must be float32 or bfloat16");
  }
  return w;
}

cpu::LoraDims lora_dims(const Napi::Object& a, const char* op, bool with_t) {
  cpu::LoraDims d;
  d.t = with_t ? i64(a, "t") : 1;
  d.in = i64(a, "in");
  d.out = i64(a, "out");
  d.r = i64(a, "r");
  LR_CHECK(op, d.t > 0 && d.in > 0 && d.out > 0 && d.r > 0, "every dimension must be positive");
  return d;
}

MaskRequest mask_request(const Napi::Object& a, const char* op) {
  MaskRequest m;
  m.out = typed<uint8_t>(a, "out", napi_uint8_array);
  m.offset = i64(a, "offset");
  m.p = f64(a, "p");
  m.seed = u64(a, "seed");
  LR_CHECK(op, m.p >= 0.0 && m.p < 1.0 && m.offset >= 0, "p must be in [0, 1) and offset >= 0");
  return m;
}

Napi::Value run(Napi::Env env, bool async, Napi::Object keep, std::function<void()> work) {
  if (async) {
    auto* job = new Job(env, keep, std::move(work));
    Napi::Promise p = job->promise();
    job->Queue();
    return p;
  }
  try {
    work();
  } catch (const lowrank::RangeError& e) {
    throw Napi::RangeError::New(env, e.what());
  } catch (const lowrank::TypeError& e) {
    throw Napi::TypeError::New(env, e.what());
  } catch (const Napi::Error&) {
    throw;
  } catch (const std::exception& e) {
    throw Napi::Error::New(env, e.what());
  }
  return env.Undefined();
}

Dropout dropout_field(const Napi::Object& a) { return Dropout::make(f64(a, "p"), u64(a, "seed")); }

cpu::VeraDims vera_dims(const Napi::Object& a, const char* op, bool tokens, int64_t* max_out) {
  cpu::VeraDims d;
  d.t = tokens ? i64(a, "t") : 1;
  d.in = i64(a, "in");
  d.out = i64(a, "out");
  d.r = i64(a, "r");
  d.max_in = i64(a, "maxIn");
  *max_out = i64(a, "maxOut");
  LR_CHECK(op, d.t > 0 && d.in > 0 && d.out > 0 && d.r > 0, "every dimension must be positive");
  LR_CHECK(op, d.in <= d.max_in, "the layer's in exceeds the projections' maxIn");
  LR_CHECK(op, d.out <= *max_out, "the layer's out exceeds the projections' maxOut");
  return d;
}

void merge_not_finite(int64_t bad, float value, int64_t in) {
  std::ostringstream s;
  const char* text = std::isnan(value) ? "NaN" : value > 0 ? "Infinity" : "-Infinity";
  s << "Expected a finite merged weight for W but received " << text << " at W[" << bad / in << ", " << bad % in
    << "]; W was left unchanged";
  throw lowrank::RangeError(s.str());
}

Napi::Array array_field(const Napi::Object& a, const char* key) {
  if (!a.Has(key)) throw lowrank::TypeError(std::string("missing native argument '") + key + "'");
  Napi::Value v = a.Get(key);
  if (!v.IsArray()) throw lowrank::TypeError(std::string("native argument '") + key + "' is not an array");
  return v.As<Napi::Array>();
}

std::string at(const char* key, uint32_t i) { return std::string(key) + "[" + std::to_string(i) + "]"; }

double number_at(const Napi::Array& list, const char* key, uint32_t i) {
  Napi::Value v = list.Get(i);
  if (!v.IsNumber()) throw lowrank::TypeError(std::string("native argument '") + at(key, i) + "' is not a number");
  return v.As<Napi::Number>().DoubleValue();
}

std::vector<cpu::AdamwHyper> adamw_hyper(const Napi::Object& a, const char* op, uint32_t count) {
  const Napi::Array group = array_field(a, "group");
  LR_CHECK_EQ(op, group.Length(), count);
  const char* keys[] = {"lr", "beta1", "beta2", "eps", "weightDecay", "step"};
  Napi::Array per_group[6];
  for (int k = 0; k < 6; ++k) per_group[k] = array_field(a, keys[k]);
  const uint32_t ngroups = per_group[0].Length();
  for (int k = 1; k < 6; ++k) LR_CHECK_EQ(op, per_group[k].Length(), ngroups);
  std::vector<cpu::AdamwHyper> groups(ngroups);
  for (uint32_t g = 0; g < ngroups; ++g) {
    cpu::AdamwHyper& h = groups[g];
    h.lr = number_at(per_group[0], "lr", g);
    h.beta1 = number_at(per_group[1], "beta1", g);
    h.beta2 = number_at(per_group[2], "beta2", g);
    h.eps = number_at(per_group[3], "eps", g);
    h.weight_decay = number_at(per_group[4], "weightDecay", g);
    const double step = number_at(per_group[5], "step", g);
    LR_CHECK(op, step >= 1 && step <= 9007199254740991.0, "step must be a positive integer");
    h.step = static_cast<int64_t>(step);
  }
  std::vector<cpu::AdamwHyper> hyper(count);
  for (uint32_t i = 0; i < count; ++i) {
    const double gi = number_at(group, "group", i);
    LR_CHECK(op, gi >= 0 && gi < ngroups && gi == static_cast<double>(static_cast<uint32_t>(gi)),
             at("group", i) + " is not the index of a group");
    hyper[i] = groups[static_cast<uint32_t>(gi)];
  }
  return hyper;
}

}  // namespace lowrank::addon
