#include "marshal.h"

#include <v8.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <sstream>

#include "device.h"

namespace lowrank::addon {
namespace {

// An op off the event loop, as raw Node-API async work rather than Napi::AsyncWorker: its
// completion runs while the environment may be tearing down (a worker terminated or exiting,
// process.exit), when every call into JavaScript can fail. It then must not throw (a C++
// exception out of a libuv callback ends the process): each failing call is skipped, the
// Promise is dropped, and the job is freed.
struct Job {
  napi_env env = nullptr;
  napi_async_work work = nullptr;
  napi_deferred deferred = nullptr;
  napi_ref keep = nullptr;
  HostStores stores;
  std::function<void()> fn;
  bool failed = false;
  Failure failure;

  static void execute(napi_env /*env*/, void* data) {
    auto* job = static_cast<Job*>(data);
    try {
      job->fn();
    } catch (...) {
      job->failed = true;
      job->failure = capture(std::current_exception());
    }
  }

  static void complete(napi_env env, napi_status status, void* data) {
    std::unique_ptr<Job> job(static_cast<Job*>(data));
    napi_handle_scope scope = nullptr;
    if (status == napi_ok && napi_open_handle_scope(env, &scope) == napi_ok) {
      if (!job->failed) {
        napi_value undefined = nullptr;
        if (napi_get_undefined(env, &undefined) == napi_ok) napi_resolve_deferred(env, job->deferred, undefined);
      } else {
        napi_value error = rejection(env, job->failure);
        if (error != nullptr) napi_reject_deferred(env, job->deferred, error);
      }
      napi_close_handle_scope(env, scope);
    }
    if (job->keep != nullptr) napi_delete_reference(env, job->keep);
    napi_delete_async_work(env, job->work);
  }

  // The JavaScript error of a failure, or null when it cannot be made now.
  static napi_value rejection(napi_env env, const Failure& f) {
    napi_value message = nullptr, error = nullptr;
    if (napi_create_string_utf8(env, f.message.data(), f.message.size(), &message) != napi_ok) return nullptr;
    napi_status made = napi_ok;
    switch (f.cls) {
      case Failure::kRange: made = napi_create_range_error(env, nullptr, message, &error); break;
      case Failure::kType: made = napi_create_type_error(env, nullptr, message, &error); break;
      case Failure::kError: made = napi_create_error(env, nullptr, message, &error); break;
    }
    return made == napi_ok ? error : nullptr;
  }
};

// Node-API's napi_value is a v8::Local<v8::Value> (node's js_native_api_v8.h converts them the
// same way); the backing store is the one thing Node-API does not expose.
v8::Local<v8::Value> v8_local(napi_value v) {
  v8::Local<v8::Value> local;
  static_assert(sizeof(local) == sizeof(v), "napi_value and v8::Local differ in size");
  std::memcpy(static_cast<void*>(&local), &v, sizeof(v));
  return local;
}

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

void HostStores::add(const Napi::TypedArray& ta) {
  const v8::Local<v8::Value> v = v8_local(ta);
  if (!v->IsArrayBufferView()) return;
  std::shared_ptr<v8::BackingStore> store = v.As<v8::ArrayBufferView>()->Buffer()->GetBackingStore();
  if (store && store->Data() != nullptr) stores_.push_back(std::move(store));
}

Napi::Value run(Napi::Env env, bool async, Napi::Object keep, HostStores stores, std::function<void()> work) {
  if (!async) {
    work();  // errors go to the caller's guarded()
    return env.Undefined();
  }
  auto job = std::make_unique<Job>();
  job->env = env;
  job->stores = std::move(stores);
  job->fn = std::move(work);
  napi_value promise = nullptr, name = nullptr;
  NAPI_THROW_IF_FAILED(env, napi_create_promise(env, &job->deferred, &promise), Napi::Value());
  NAPI_THROW_IF_FAILED(env, napi_create_reference(env, keep, 1, &job->keep), Napi::Value());
  NAPI_THROW_IF_FAILED(env, napi_create_string_utf8(env, "lowrank", NAPI_AUTO_LENGTH, &name), Napi::Value());
  NAPI_THROW_IF_FAILED(env,
                       napi_create_async_work(env, nullptr, name, &Job::execute, &Job::complete, job.get(), &job->work),
                       Napi::Value());
  NAPI_THROW_IF_FAILED(env, napi_queue_async_work(env, job->work), Napi::Value());
  job.release();  // Job::complete frees it
  return Napi::Value(env, promise);
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
  const double d = v.As<Napi::Number>().DoubleValue();
  // A finite double beyond float32 would become Infinity here (NaN and ±Infinity are values a
  // fill may ask for; TypeScript refuses them where an op cannot take them).
  if (std::isfinite(d) && std::fabs(d) > static_cast<double>(std::numeric_limits<float>::max())) {
    std::ostringstream s;
    s << op_ << ": " << name << " = " << d << " is outside float32's range";
    throw lowrank::RangeError(s.str());
  }
  x = static_cast<float>(d);
}

void Unpacker::number(const char* name, double& x) {
  const Napi::Value v = field(name);
  if (!v.IsNumber()) throw lowrank::TypeError(std::string(op_) + ": native argument '" + name + "' is not a number");
  x = v.As<Napi::Number>().DoubleValue();
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

void Unpacker::tensor(const char* name, TensorRef& t, ops::Kind k, int64_t want, bool optional, bool written) {
  const Napi::Value v = field(name);
  if (optional && (v.IsNull() || v.IsUndefined())) {
    t = TensorRef{};
    return;
  }
  t = read(name, v, k, want);
  const auto* begin = static_cast<const uint8_t*>(t.data);
  size_t bytes = static_cast<size_t>(t.elements) * static_cast<size_t>(dtype_size(t.dtype));
  const Napi::Value data = v.As<Napi::Object>().Get("data");
  if (data.IsExternal()) {
    const DeviceBlock* b = live_block(data, name);
    if (b->test_only) return;  // a stand-in block of no memory, refused by dispatch()
    bytes = b->bytes;          // a CUDA block: views share all of it
  }
  regions_.push_back({name, written, begin, begin + bytes});
}

void Unpacker::check_aliasing() const {
  for (size_t i = 0; i < regions_.size(); ++i) {
    for (size_t j = 0; j < regions_.size(); ++j) {
      const Region &w = regions_[i], &o = regions_[j];
      if (i == j || !w.written || (o.written && j < i)) continue;  // each written pair once
      if (w.begin == w.end || o.begin == o.end || !(w.begin < o.end && o.begin < w.end)) continue;
      const bool same = w.begin == o.begin && w.end == o.end;
      const auto allowed = [&](const std::string& a, const std::string& b) {
        return std::find(aliases_.begin(), aliases_.end(), std::make_pair(a, b)) != aliases_.end();
      };
      if (same && !o.written && allowed(w.name, o.name)) continue;
      throw lowrank::RangeError(std::string(op_) + ": " + o.name + " shares memory with " + w.name +
                                ", which the op writes; pass a copy of " + o.name);
    }
  }
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
    stores_.add(ta);
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
  check_aliasing();
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
