#include "marshal.h"

#include <algorithm>
#include <cmath>
#include <sstream>

#include "device.h"

namespace lowrank::addon {
namespace {

class Job : public Napi::AsyncWorker {
 public:
  Job(Napi::Env env, Napi::Object keep, std::function<void()> work)
      : Napi::AsyncWorker(env, "lowrank"),
        deferred_(Napi::Promise::Deferred::New(env)),
        keep_(Napi::Persistent(keep)),
        work_(std::move(work)) {}

  Napi::Promise promise() { return deferred_.Promise(); }

  void Execute() override {
    try {
      work_();
    } catch (...) {
      failure_ = capture(std::current_exception());
      SetError(failure_.message);
    }
  }

  void OnOK() override { deferred_.Resolve(Env().Undefined()); }
  void OnError(const Napi::Error&) override { deferred_.Reject(to_js(Env(), failure_).Value()); }

 private:
  Napi::Promise::Deferred deferred_;
  Napi::ObjectReference keep_;
  std::function<void()> work_;
  Failure failure_;
};

Napi::Value get(const Napi::Object& obj, const char* key) {
  if (!obj.Has(key)) throw lowrank::TypeError(std::string("missing native argument '") + key + "'");
  return obj.Get(key);
}

// The typed-array class that holds a dtype's elements on the host.
napi_typedarray_type host_class(DType t) {
  switch (t) {
    case DType::kFloat32: return napi_float32_array;
    case DType::kBFloat16:
    case DType::kFloat16: return napi_uint16_array;
    case DType::kInt32: return napi_int32_array;
  }
  return napi_float32_array;
}

const char* kind_text(ops::Kind k, Device d) {
  switch (k) {
    case ops::kF32: return "float32";
    case ops::kWeight: return d == Device::kCuda ? "float32, bfloat16 or float16" : "float32 or bfloat16";
    case ops::kActivation: return d == Device::kCuda ? "float32, bfloat16 or float16" : "float32";
    case ops::kAnyDtype: return "any dtype";
    case ops::kInt32: return "int32";
  }
  return "?";
}

}  // namespace

// ---- errors --------------------------------------------------------------------------------

Failure capture(std::exception_ptr e) {
  try {
    std::rethrow_exception(e);
  } catch (const lowrank::RangeError& x) {
    return {Failure::kRange, x.what()};
  } catch (const lowrank::TypeError& x) {
    return {Failure::kType, x.what()};
  } catch (const std::exception& x) {
    return {Failure::kError, x.what()};
  } catch (...) {
    return {Failure::kError, "unknown native error"};
  }
}

Napi::Error to_js(Napi::Env env, const Failure& f) {
  switch (f.cls) {
    case Failure::kRange: return Napi::RangeError::New(env, f.message);
    case Failure::kType: return Napi::TypeError::New(env, f.message);
    case Failure::kError: break;
  }
  return Napi::Error::New(env, f.message);
}

Napi::Value run(Napi::Env env, bool async, Napi::Object keep, std::function<void()> work) {
  if (async) {
    auto* job = new Job(env, keep, std::move(work));
    Napi::Promise p = job->promise();
    job->Queue();
    return p;
  }
  work();  // errors go to the caller's guarded()
  return env.Undefined();
}

// ---- plain fields --------------------------------------------------------------------------

template <typename T>
Span<T> typed(const Napi::Object& obj, const char* key, napi_typedarray_type type, bool optional) {
  Napi::Value v = get(obj, key);
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
  Napi::Value v = get(obj, key);
  if (!v.IsNumber()) throw lowrank::TypeError(std::string("native argument '") + key + "' is not a number");
  return v.As<Napi::Number>().Int64Value();
}

double f64(const Napi::Object& obj, const char* key) {
  Napi::Value v = get(obj, key);
  if (!v.IsNumber()) throw lowrank::TypeError(std::string("native argument '") + key + "' is not a number");
  return v.As<Napi::Number>().DoubleValue();
}

bool boolean(const Napi::Object& obj, const char* key) {
  Napi::Value v = get(obj, key);
  return v.IsBoolean() && v.As<Napi::Boolean>().Value();
}

uint64_t u64(const Napi::Object& obj, const char* key) {
  Napi::Value v = get(obj, key);
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

// ---- the unpacker --------------------------------------------------------------------------

Napi::Value Unpacker::field(const char* name) {
  seen_.emplace_back(name);
  if (!args_.Has(name)) throw lowrank::TypeError(std::string(op_) + ": missing native argument '" + name + "'");
  return args_.Get(name);
}

void Unpacker::dim(const char* name, int64_t& d) {
  const Napi::Value v = field(name);
  if (!v.IsNumber()) throw lowrank::TypeError(std::string(op_) + ": native argument '" + name + "' is not a number");
  const double x = v.As<Napi::Number>().DoubleValue();
  LR_CHECK(op_, x >= 1, "every dimension must be positive");
  LR_CHECK(op_, x == std::floor(x) && x <= 9007199254740991.0, std::string(name) + " must be an integer");
  d = static_cast<int64_t>(x);
}

void Unpacker::scalar(const char* name, float& x) {
  const Napi::Value v = field(name);
  if (!v.IsNumber()) throw lowrank::TypeError(std::string(op_) + ": native argument '" + name + "' is not a number");
  x = static_cast<float>(v.As<Napi::Number>().DoubleValue());
}

void Unpacker::sign(const char* name, float& x) {
  scalar(name, x);
  LR_CHECK(op_, x == 1.0f || x == -1.0f, std::string(name) + " must be 1 (merge) or -1 (unmerge)");
}

void Unpacker::flag(const char* name, bool& x) {
  const Napi::Value v = field(name);
  if (!v.IsBoolean()) throw lowrank::TypeError(std::string(op_) + ": native argument '" + name + "' is not a boolean");
  x = v.As<Napi::Boolean>().Value();
}

void Unpacker::seed(const char* name, uint64_t& x) {
  field(name);
  x = u64(args_, name);
}

void Unpacker::dropout(Dropout& d) {
  float p = 0;
  scalar("p", p);
  const double pd = args_.Get("p").As<Napi::Number>().DoubleValue();
  LR_CHECK(op_, pd >= 0.0 && pd < 1.0, "p must be in [0, 1)");
  uint64_t s = 0;
  seed("seed", s);
  d = Dropout::make(pd, s);
}

void Unpacker::read_numbers(const char* name, std::vector<double>& list) {
  const Napi::Value v = field(name);
  if (!v.IsArray()) throw lowrank::TypeError(std::string(op_) + ": native argument '" + name + "' is not an array");
  const Napi::Array a = v.As<Napi::Array>();
  list.resize(a.Length());
  for (uint32_t i = 0; i < a.Length(); ++i) {
    const Napi::Value x = a.Get(i);
    if (!x.IsNumber())
      throw lowrank::TypeError(std::string(op_) + ": native argument '" + name + "[" + std::to_string(i) +
                               "]' is not a number");
    list[i] = x.As<Napi::Number>().DoubleValue();
  }
}

void Unpacker::tensors(const char* name, std::vector<TensorRef>& list, ops::Kind k,
                       const std::vector<TensorRef>* like) {
  const Napi::Value v = field(name);
  if (!v.IsArray()) throw lowrank::TypeError(std::string(op_) + ": native argument '" + name + "' is not an array");
  const Napi::Array a = v.As<Napi::Array>();
  const uint32_t n = a.Length();
  if (like != nullptr && n != like->size()) {
    std::ostringstream s;
    s << op_ << ": expected " << name << " to hold " << like->size() << " tensors (one per parameter) but it holds "
      << n;
    throw lowrank::RangeError(s.str());
  }
  list.resize(n);
  for (uint32_t i = 0; i < n; ++i)
    list[i] = read(std::string(name) + "[" + std::to_string(i) + "]", a.Get(i), k,
                   like != nullptr ? (*like)[i].elements : -1);
}

void Unpacker::tensor(const char* name, TensorRef& t, ops::Kind k, int64_t want, bool optional) {
  const Napi::Value v = field(name);
  if (optional && (v.IsNull() || v.IsUndefined())) {
    t = TensorRef{};
    return;
  }
  t = read(name, v, k, want);
}

TensorRef Unpacker::read(const std::string& name, const Napi::Value& v, ops::Kind k, int64_t want) {
  const char* key = name.c_str();
  if (!v.IsObject() || v.IsTypedArray() || v.IsExternal() || v.IsArray() || v.IsFunction())
    throw lowrank::TypeError(std::string("Expected a tensor { data, dtype } for ") + key + " but received " +
                             received(v));
  const Napi::Object o = v.As<Napi::Object>();
  const Napi::Value code = o.Get("dtype");
  if (!code.IsNumber())
    throw lowrank::TypeError(std::string(op_) + ": expected a dtype code for " + key + ".dtype but received " +
                             received(code));
  const double c = code.As<Napi::Number>().DoubleValue();
  if (!(c >= 0 && c <= kLastDType && c == std::floor(c))) {
    std::ostringstream s;
    s << op_ << ": expected 0 (float32), 1 (bfloat16), 2 (float16) or 3 (int32) for " << key << ".dtype but received "
      << c;
    throw lowrank::RangeError(s.str());
  }
  TensorRef t;
  t.present = true;
  t.dtype = static_cast<DType>(static_cast<int>(c));
  const Napi::Value data = o.Get("data");
  const int size = dtype_size(t.dtype);
  DeviceBlock* b = nullptr;
  if (data.IsTypedArray()) {
    const Napi::TypedArray ta = data.As<Napi::TypedArray>();
    if (ta.TypedArrayType() != host_class(t.dtype))
      throw lowrank::TypeError(std::string("native argument '") + key + "' has the wrong typed-array class");
    t.device = Device::kCpu;
    t.data = static_cast<uint8_t*>(ta.ArrayBuffer().Data()) + ta.ByteOffset();
    t.elements = static_cast<int64_t>(ta.ElementLength());
  } else if (data.IsExternal()) {
    b = live_block(data, key);
    t.device = Device::kCuda;
    t.data = b->ptr;
    t.elements = static_cast<int64_t>(b->bytes / static_cast<size_t>(size));
    test_block_ = test_block_ || b->test_only;
  } else {
    throw lowrank::TypeError(std::string("Expected a typed array or a live CUDA tensor for ") + key +
                             ".data but received " + received(data));
  }
  if (!ops::accepts(k, t.device, t.dtype))
    throw lowrank::TypeError(std::string(op_) + ": " + key + " must be " + kind_text(k, t.device) + " on " +
                             device_name(t.device) + " but is " + dtype_name(t.dtype));
  if (first_.empty()) {
    first_ = name;
    device_ = t.device;
  } else if (t.device != device_) {
    throw lowrank::RangeError(std::string(op_) + ": every tensor must be on one device, but " + first_ + " is on " +
                              device_name(device_) + " and " + name + " on " + device_name(t.device));
  }
  // The element count: exact on the CPU; a CUDA block holds at least the bytes of the shape.
  if (want < 0) return t;
  if (b == nullptr) {
    expect_size(op_, key, static_cast<size_t>(t.elements), want);
    return t;
  }
  const auto limit = static_cast<int64_t>(SIZE_MAX / 8);
  if (want > limit / size) {
    std::ostringstream s;
    s << op_ << ": " << key << " would need " << want << " elements, more than a device block can hold";
    throw lowrank::RangeError(s.str());
  }
  const size_t min_bytes = static_cast<size_t>(want) * static_cast<size_t>(size);
  if (b->bytes < min_bytes) {
    std::ostringstream s;
    s << "Expected a CUDA tensor of at least " << min_bytes << " bytes for " << key << " but received one of "
      << b->bytes << " bytes";
    throw lowrank::RangeError(s.str());
  }
  t.elements = want;
  return t;
}

void Unpacker::finish() {
  const Napi::Array names = args_.GetPropertyNames();
  for (uint32_t i = 0; i < names.Length(); ++i) {
    const std::string key = names.Get(i).As<Napi::String>().Utf8Value();
    if (std::find(seen_.begin(), seen_.end(), key) == seen_.end())
      throw lowrank::TypeError(std::string(op_) + ": unknown native argument '" + key + "'");
  }
}

namespace detail {

Napi::Value resolved(Napi::Env env) {
  Napi::Promise::Deferred d = Napi::Promise::Deferred::New(env);
  d.Resolve(env.Undefined());
  return d.Promise();
}

void refuse_cuda(const char* op, bool cpu_only, bool test_block) {
  if (cpu_only) throw lowrank::RangeError(std::string(op) + ": runs on the CPU only but received CUDA tensors");
  if (!cuda::kCompiled) throw lowrank::RangeError(std::string(op) + ": CUDA backend not compiled in");
  if (test_block)
    throw lowrank::RangeError(std::string(op) + ": a test block stands in for device memory and is never run on");
  throw lowrank::RangeError(std::string(op) + ": cannot run on CUDA");
}

}  // namespace detail
}  // namespace lowrank::addon
