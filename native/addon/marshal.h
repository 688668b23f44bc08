// The Node-API boundary's one set of tools: reading fields, tensors and scalars out of an
// argument object; the ONE mapping of lowrank's C++ errors to JavaScript errors (guarded() on
// the calling thread, the same mapping in run()'s worker); running CPU work now or off the
// event loop; and dispatch<Args>(), the single place where an op's arguments are unpacked by
// its visitor (native/core/ops/fields.h), checked to agree on one device, and run on it.
#pragma once

#include <napi.h>

#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "../core/check.h"
#include "../core/ops.h"
#include "../cpu/lora.h"
#include "../cuda/cuda.h"

namespace lowrank::addon {

// ---- errors --------------------------------------------------------------------------------

// A C++ error as it crosses to JavaScript: its class and its message (plain data, so it can
// leave a worker thread).
struct Failure {
  enum Class { kRange, kType, kError } cls = kError;
  std::string message;
};
// The Failure of the exception being handled (lowrank::RangeError, lowrank::TypeError, any other).
Failure capture(std::exception_ptr e);
// The JavaScript error of a Failure: RangeError, TypeError or Error.
Napi::Error to_js(Napi::Env env, const Failure& f);

// Runs `body` on the calling thread; a C++ error leaves it as to_js(capture(it)).
template <typename F>
Napi::Value guarded(Napi::Env env, F&& body) {
  try {
    return body();
  } catch (const Napi::Error&) {
    throw;
  } catch (...) {
    throw to_js(env, capture(std::current_exception()));
  }
}

// ---- host memory held by work off the event loop -------------------------------------------

// The backing stores of the typed arrays an op reads or writes. Work off the event loop holds
// them until it is done: a buffer detached meanwhile (transferred to a worker or by
// structuredClone, then collected) keeps its memory until then.
class HostStores {
 public:
  // Adds the store behind typed array `ta` (nothing for an empty one).
  void add(const Napi::TypedArray& ta);
  bool empty() const { return stores_.empty(); }

 private:
  std::vector<std::shared_ptr<void>> stores_;
};

// Runs `work` on the calling thread when `async` is false (returns undefined), or on a libuv
// worker (returns a Promise, rejected with to_js(capture(error))). Until the work is done,
// `keep` stays referenced and `stores` held. Completion never throws: when the environment is
// going away (a worker terminated, process.exit) the Promise is dropped and the job freed.
Napi::Value run(Napi::Env env, bool async, Napi::Object keep, HostStores stores, std::function<void()> work);

// ---- plain fields --------------------------------------------------------------------------

template <typename T>
struct Span {
  T* data = nullptr;
  size_t size = 0;
};

// Required typed-array field `key` of `obj`; null when the field is null or undefined and
// `optional` is set.
template <typename T>
Span<T> typed(const Napi::Object& obj, const char* key, napi_typedarray_type type, bool optional = false);

inline Span<float> f32(const Napi::Object& obj, const char* key, bool optional = false) {
  return typed<float>(obj, key, napi_float32_array, optional);
}

int64_t i64(const Napi::Object& obj, const char* key);
double f64(const Napi::Object& obj, const char* key);
bool boolean(const Napi::Object& obj, const char* key);
uint64_t u64(const Napi::Object& obj, const char* key);  // a BigInt or a safe integer

// The element count a field must have: "<op>: <name> has N elements but its shape needs M".
void expect_size(const char* op, const char* name, size_t got, int64_t want);

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

inline bool async_flag(const Napi::CallbackInfo& info) {
  return info.Length() > 1 && info[1].IsBoolean() && info[1].As<Napi::Boolean>().Value();
}

inline Napi::Object args_object(const Napi::CallbackInfo& info) {
  if (info.Length() < 1 || !info[0].IsObject())
    throw Napi::TypeError::New(info.Env(), "native call expects an argument object");
  return info[0].As<Napi::Object>();
}

// ---- ops -----------------------------------------------------------------------------------

// The visitor that fills an op struct from its JS argument object (the method set of
// native/core/ops/fields.h). A tensor field is { data, dtype }: data a typed array (CPU:
// Float32Array for float32, Uint16Array for bfloat16 / float16 bits, Int32Array for int32) or a
// device block from cudaAlloc (CUDA); dtype the code 0 float32, 1 bfloat16, 2 float16, 3 int32;
// null for an absent optional tensor. Every error names the op and the field. On the CPU a
// tensor's element count must equal its shape's; a CUDA block must hold at least its bytes.
class Unpacker {
 public:
  Unpacker(const Napi::Object& args, const char* op) : args_(args), op_(op) {}

  void dim(const char* name, int64_t& d);
  void input(const char* name, TensorRef& t, ops::Kind k) { tensor(name, t, k, -1, false, false); }
  void input(const char* name, TensorRef& t, ops::Kind k, ops::Shape s) { tensor(name, t, k, count(s), false, false); }
  void output(const char* name, TensorRef& t, ops::Kind k) { tensor(name, t, k, -1, false, true); }
  void output(const char* name, TensorRef& t, ops::Kind k, ops::Shape s) { tensor(name, t, k, count(s), false, true); }
  void inout(const char* name, TensorRef& t, ops::Kind k) { tensor(name, t, k, -1, false, true); }
  void inout(const char* name, TensorRef& t, ops::Kind k, ops::Shape s) { tensor(name, t, k, count(s), false, true); }
  void optional_input(const char* name, TensorRef& t, ops::Kind k, ops::Shape s) {
    tensor(name, t, k, count(s), true, false);
  }
  void optional_output(const char* name, TensorRef& t, ops::Kind k, ops::Shape s) {
    tensor(name, t, k, count(s), true, true);
  }
  void labels(const char* name, TensorRef& t, ops::Shape s, int64_t /*bound*/) {
    tensor(name, t, ops::kInt32, count(s), false, false);
  }
  void may_alias(const char* written, const char* read) { aliases_.emplace_back(written, read); }
  void scalar(const char* name, float& x);
  void number(const char* name, double& x);
  void sign(const char* name, float& x);
  void flag(const char* name, bool& x);
  void seed(const char* name, uint64_t& x);
  void dropout(Dropout& d);
  void invariant(bool holds, const char* message) { LR_CHECK(op_, holds, message); }
  void tensors(const char* name, std::vector<TensorRef>& list, ops::Kind k, const std::vector<TensorRef>* like);
  void numbers(const char* name, std::vector<double>& list, double /*example*/) { read_numbers(name, list); }
  void indices(const char* name, std::vector<double>& list, size_t /*count*/, size_t /*range*/) {
    read_numbers(name, list);
  }

  // After the visit: refuses fields the op does not declare, and a tensor the op writes that
  // overlaps another of its tensors (unless may_alias() allows that pair to be the same memory).
  void finish();
  Device device() const { return device_; }
  bool has_test_block() const { return test_block_; }
  // The backing stores of the host tensors read so far (for run()).
  HostStores& stores() { return stores_; }

 private:
  int64_t count(ops::Shape s) const { return ops::elements_of(op_, s); }
  Napi::Value field(const char* name);
  void read_numbers(const char* name, std::vector<double>& list);
  void tensor(const char* name, TensorRef& t, ops::Kind k, int64_t want, bool optional, bool written);
  void check_aliasing() const;

  // The bytes a tensor field's storage covers (a CUDA block: all of it), for the aliasing check.
  struct Region {
    std::string name;
    bool written = false;
    const uint8_t* begin = nullptr;
    const uint8_t* end = nullptr;
  };
  TensorRef read(const std::string& name, const Napi::Value& v, ops::Kind k, int64_t want);

  Napi::Object args_;
  const char* op_;
  std::vector<std::string> seen_;
  std::string first_;  // the first tensor read, for the device check
  Device device_ = Device::kCpu;
  bool test_block_ = false;
  HostStores stores_;
  std::vector<Region> regions_;
  std::vector<std::pair<std::string, std::string>> aliases_;
};

namespace detail {
template <class T, class = void>
struct has_validate : std::false_type {};
template <class T>
struct has_validate<T, std::void_t<decltype(std::declval<T&>().validate(""))>> : std::true_type {};

Napi::Value resolved(Napi::Env env);
[[noreturn]] void refuse_cuda(const char* op, bool cpu_only, bool test_block);
}  // namespace detail

// An op's entry point: (args, async?) => undefined | Promise. Unpacks with Unpacker, runs the
// struct's validate(), then: CUDA tensors → cuda_fn on the calling thread (queued on the
// backend stream; an already-resolved Promise when async); CPU → cpu_fn now or on a worker.
template <class Args>
Napi::Value dispatch(const Napi::CallbackInfo& info, const char* op, void (*cpu_fn)(const Args&),
                     void (*cuda_fn)(const Args&)) {
  Napi::Env env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    const Napi::Object a = args_object(info);
    const bool async = async_flag(info);
    auto args = std::make_shared<Args>();
    Unpacker u(a, op);
    args->visit(u);
    u.finish();
    if constexpr (detail::has_validate<Args>::value) args->validate(op);
    if (u.device() == Device::kCuda) {
      if (cuda_fn == nullptr || !cuda::kCompiled || u.has_test_block())
        detail::refuse_cuda(op, cuda_fn == nullptr, u.has_test_block());
      cuda_fn(*args);
      return async ? detail::resolved(env) : env.Undefined();
    }
    return run(env, async, a, std::move(u.stores()), [args, cpu_fn] { cpu_fn(*args); });
  });
}

}  // namespace lowrank::addon
