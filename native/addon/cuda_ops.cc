// Node-API boundary for the ops on CUDA tensors: the mirror of lora.cc, vera.cc, delta_lora.cc,
// optim.cc and linear.cc with device blocks in place of typed arrays. Each entry point reads
// the dimensions and scalars its CPU twin reads, the device pointers with device_field() (each
// block checked to hold the bytes its shape and dtype need), and calls lowrank::cuda on the
// calling thread: the device work is queued on the backend stream, so nothing here waits (only
// a safe merge, which must read its result). No arithmetic here.
#include "cuda_ops.h"

#include <cmath>
#include <sstream>
#include <string>
#include <vector>

#include "../core/check.h"
#include "../core/dtype.h"
#include "../cuda/cuda.h"
#include "common.h"
#include "device.h"

namespace lowrank::addon {
namespace {

// Bytes of `count` elements of `elem_bytes` each; a RangeError rather than a wrapped product.
size_t bytes_of(const char* op, const char* key, int64_t count, int elem_bytes) {
  const auto limit = static_cast<int64_t>(SIZE_MAX / 8);
  if (count < 0 || count > limit / elem_bytes) {
    std::ostringstream s;
    s << op << ": " << key << " would need " << count << " elements, more than a device block can hold";
    throw lowrank::RangeError(s.str());
  }
  return static_cast<size_t>(count) * static_cast<size_t>(elem_bytes);
}

// The product of positive dimensions, refusing one that overflows.
int64_t product(const char* op, int64_t a, int64_t b) {
  int64_t p = 0;
  if (__builtin_mul_overflow(a, b, &p)) throw lowrank::RangeError(std::string(op) + ": the dimensions overflow");
  return p;
}

// An activation or weight operand: the block in `key` with its dtype code in `dtype_key`, at
// least `count` elements. Optional: null (and the dtype code not read) when the field is null
// or undefined.
cuda::DevIn dev_in(const Napi::Object& a, const char* op, const char* key, const char* dtype_key, int64_t count,
                   bool optional = false) {
  const Napi::Value v = a.Get(key);
  if (optional && (v.IsNull() || v.IsUndefined())) return {};
  const DType dt = dtype_field(a, dtype_key, op);
  return {device_field(a, key, bytes_of(op, key, count, dtype_size(dt))), dt};
}

cuda::DevOut dev_out(const Napi::Object& a, const char* op, const char* key, const char* dtype_key, int64_t count,
                     bool optional = false) {
  const cuda::DevIn in = dev_in(a, op, key, dtype_key, count, optional);
  return {const_cast<void*>(in.data), in.dtype};
}

// A float32 operand (adapter parameters, their gradients, xa, u, λ) of at least `count` elements.
float* dev_f32(const Napi::Object& a, const char* op, const char* key, int64_t count, bool optional = false) {
  return static_cast<float*>(device_field(a, key, bytes_of(op, key, count, 4), optional));
}

struct VeraAdapter {
  const float* A = nullptr;
  const float* B = nullptr;
  const float* lambda_d = nullptr;
  const float* lambda_b = nullptr;
};

// The shared projections (whole: A [r, maxIn], B [maxOut, r]) and the layer's λd [r], λb [out].
VeraAdapter vera_adapter(const Napi::Object& a, const char* op, const cpu::VeraDims& d, int64_t max_out) {
  VeraAdapter ad;
  ad.A = dev_f32(a, op, "A", product(op, d.r, d.max_in));
  ad.B = dev_f32(a, op, "B", product(op, max_out, d.r));
  ad.lambda_d = dev_f32(a, op, "lambdaD", d.r);
  ad.lambda_b = dev_f32(a, op, "lambdaB", d.out);
  return ad;
}

cpu::LinearDims linear_dims(const Napi::Object& a, const char* op) {
  cpu::LinearDims d;
  d.t = i64(a, "t");
  d.in = i64(a, "in");
  d.out = i64(a, "out");
  LR_CHECK(op, d.t > 0 && d.in > 0 && d.out > 0, "every dimension must be positive");
  return d;
}

}  // namespace

Napi::Value CudaLoraForward(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    constexpr const char* op = "cudaLoraForward";
    const Napi::Object a = args_object(info);
    const cpu::LoraDims d = lora_dims(a, op, true);
    const float scale = static_cast<float>(f64(a, "scale"));
    const Dropout drop = dropout_field(a);
    const cuda::DevIn x = dev_in(a, op, "x", "xDtype", product(op, d.t, d.in));
    const cuda::DevIn W = dev_in(a, op, "W", "wDtype", product(op, d.out, d.in));
    const cuda::DevIn bias = dev_in(a, op, "bias", "biasDtype", d.out, true);
    const float* A = dev_f32(a, op, "A", product(op, d.r, d.in));
    const float* B = dev_f32(a, op, "B", product(op, d.out, d.r));
    const cuda::DevOut y = dev_out(a, op, "y", "yDtype", product(op, d.t, d.out));
    float* xa = dev_f32(a, op, "xa", product(op, d.t, d.r));
    cuda::lora_forward(d, x, W, bias, A, B, scale, drop, y, xa);
    return env.Undefined();
  });
}

Napi::Value CudaLoraBackward(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    constexpr const char* op = "cudaLoraBackward";
    const Napi::Object a = args_object(info);
    const cpu::LoraDims d = lora_dims(a, op, true);
    const float scale = static_cast<float>(f64(a, "scale"));
    const Dropout drop = dropout_field(a);
    const cuda::DevIn dy = dev_in(a, op, "dy", "dyDtype", product(op, d.t, d.out));
    const cuda::DevIn x = dev_in(a, op, "x", "xDtype", product(op, d.t, d.in), true);
    const cuda::DevIn W = dev_in(a, op, "W", "wDtype", product(op, d.out, d.in));
    const float* A = dev_f32(a, op, "A", product(op, d.r, d.in));
    const float* B = dev_f32(a, op, "B", product(op, d.out, d.r));
    const float* xa = dev_f32(a, op, "xa", product(op, d.t, d.r));
    const cuda::DevOut dx = dev_out(a, op, "dx", "dxDtype", product(op, d.t, d.in), true);
    float* dA = dev_f32(a, op, "dA", product(op, d.r, d.in), true);
    float* dB = dev_f32(a, op, "dB", product(op, d.out, d.r));
    LR_CHECK(op, (dA == nullptr) == (x.data == nullptr), "dA needs x, and x is kept only for dA");
    cuda::lora_backward(d, dy, x, W, A, B, xa, scale, drop, dx, dA, dB);
    return env.Undefined();
  });
}

Napi::Value CudaLoraFaProjectGrad(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    constexpr const char* op = "cudaLoraFaProjectGrad";
    const Napi::Object a = args_object(info);
    const cpu::LoraDims d = lora_dims(a, op, false);
    const float scale = static_cast<float>(f64(a, "scale"));
    const float* A = dev_f32(a, op, "A", product(op, d.r, d.in));
    float* dB = dev_f32(a, op, "dB", product(op, d.out, d.r));
    cuda::lora_fa_project_grad(d, A, scale, dB);
    return env.Undefined();
  });
}

Napi::Value CudaLoraMerge(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    constexpr const char* op = "cudaLoraMerge";
    const Napi::Object a = args_object(info);
    const cpu::LoraDims d = lora_dims(a, op, false);
    const float scale = static_cast<float>(f64(a, "scale"));
    const bool safe = boolean(a, "safe");
    const cuda::DevOut W = dev_out(a, op, "W", "wDtype", product(op, d.out, d.in));
    const float* A = dev_f32(a, op, "A", product(op, d.r, d.in));
    const float* B = dev_f32(a, op, "B", product(op, d.out, d.r));
    if (!safe) {
      cuda::lora_merge(d, W, A, B, scale);
      return env.Undefined();
    }
    float value = 0.0f;
    const int64_t bad = cuda::lora_merge_safe(d, W, A, B, scale, &value);
    if (bad >= 0) merge_not_finite(bad, value, d.in);
    return env.Undefined();
  });
}

Napi::Value CudaVeraForward(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    constexpr const char* op = "cudaVeraForward";
    const Napi::Object a = args_object(info);
    int64_t max_out = 0;
    const cpu::VeraDims d = vera_dims(a, op, true, &max_out);
    const Dropout drop = dropout_field(a);
    const cuda::DevIn x = dev_in(a, op, "x", "xDtype", product(op, d.t, d.in));
    const cuda::DevIn W = dev_in(a, op, "W", "wDtype", product(op, d.out, d.in));
    const cuda::DevIn bias = dev_in(a, op, "bias", "biasDtype", d.out, true);
    const VeraAdapter ad = vera_adapter(a, op, d, max_out);
    const cuda::DevOut y = dev_out(a, op, "y", "yDtype", product(op, d.t, d.out));
    float* u = dev_f32(a, op, "u", product(op, d.t, d.r));
    cuda::vera_forward(d, x, W, bias, ad.A, ad.B, ad.lambda_d, ad.lambda_b, drop, y, u);
    return env.Undefined();
  });
}

Napi::Value CudaVeraBackward(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    constexpr const char* op = "cudaVeraBackward";
    const Napi::Object a = args_object(info);
    int64_t max_out = 0;
    const cpu::VeraDims d = vera_dims(a, op, true, &max_out);
    const Dropout drop = dropout_field(a);
    const cuda::DevIn dy = dev_in(a, op, "dy", "dyDtype", product(op, d.t, d.out));
    const cuda::DevIn W = dev_in(a, op, "W", "wDtype", product(op, d.out, d.in));
    const VeraAdapter ad = vera_adapter(a, op, d, max_out);
    const float* u = dev_f32(a, op, "u", product(op, d.t, d.r));
    const cuda::DevOut dx = dev_out(a, op, "dx", "dxDtype", product(op, d.t, d.in), true);
    float* dld = dev_f32(a, op, "dLambdaD", d.r);
    float* dlb = dev_f32(a, op, "dLambdaB", d.out);
    cuda::vera_backward(d, dy, W, ad.A, ad.B, ad.lambda_d, ad.lambda_b, u, drop, dx, dld, dlb);
    return env.Undefined();
  });
}

Napi::Value CudaVeraMerge(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    constexpr const char* op = "cudaVeraMerge";
    const Napi::Object a = args_object(info);
    int64_t max_out = 0;
    const cpu::VeraDims d = vera_dims(a, op, false, &max_out);
    const float sign = static_cast<float>(f64(a, "sign"));
    LR_CHECK(op, sign == 1.0f || sign == -1.0f, "sign must be 1 (merge) or -1 (unmerge)");
    const bool safe = boolean(a, "safe");
    const cuda::DevOut W = dev_out(a, op, "W", "wDtype", product(op, d.out, d.in));
    const VeraAdapter ad = vera_adapter(a, op, d, max_out);
    if (!safe) {
      cuda::vera_merge(d, W, ad.A, ad.B, ad.lambda_d, ad.lambda_b, sign);
      return env.Undefined();
    }
    float value = 0.0f;
    const int64_t bad = cuda::vera_merge_safe(d, W, ad.A, ad.B, ad.lambda_d, ad.lambda_b, sign, &value);
    if (bad >= 0) merge_not_finite(bad, value, d.in);
    return env.Undefined();
  });
}

Napi::Value CudaDeltaLoraUpdate(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    constexpr const char* op = "cudaDeltaLoraUpdate";
    const Napi::Object a = args_object(info);
    cpu::DeltaLoraDims d;
    d.out = i64(a, "out");
    d.in = i64(a, "in");
    d.r = i64(a, "r");
    LR_CHECK(op, d.out > 0 && d.in > 0 && d.r > 0, "every dimension must be positive");
    const float lambda = static_cast<float>(f64(a, "lambda"));
    const float scale = static_cast<float>(f64(a, "scale"));
    const cuda::DevOut W = dev_out(a, op, "W", "wDtype", product(op, d.out, d.in));
    const int64_t a_count = product(op, d.r, d.in), b_count = product(op, d.out, d.r);
    const float* A0 = dev_f32(a, op, "A0", a_count);
    const float* B0 = dev_f32(a, op, "B0", b_count);
    const float* A1 = dev_f32(a, op, "A1", a_count);
    const float* B1 = dev_f32(a, op, "B1", b_count);
    cuda::delta_lora_update(d, W, A0, B0, A1, B1, lambda, scale);
    return env.Undefined();
  });
}

namespace {


// Element i of a list of device blocks, named "<key>[i]" in errors, of at least `count` floats.
float* dev_f32_at(Napi::Env env, const Napi::Array& list, const char* key, uint32_t i, int64_t count) {
  const std::string name = at(key, i);
  Napi::Object one = Napi::Object::New(env);
  one.Set(name, list.Get(i));
  return static_cast<float*>(device_field(one, name.c_str(), bytes_of("cudaAdamwStep", name.c_str(), count, 4)));
}

}  // namespace

Napi::Value CudaAdamwStep(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    constexpr const char* op = "cudaAdamwStep";
    const Napi::Object a = args_object(info);
    const Napi::Array params = array_field(a, "params"), grads = array_field(a, "grads");
    const Napi::Array m = array_field(a, "m"), v = array_field(a, "v"), sizes = array_field(a, "n");
    const uint32_t count = params.Length();
    LR_CHECK_EQ(op, grads.Length(), count);
    LR_CHECK_EQ(op, m.Length(), count);
    LR_CHECK_EQ(op, v.Length(), count);
    LR_CHECK_EQ(op, sizes.Length(), count);
    const std::vector<cpu::AdamwHyper> hyper = adamw_hyper(a, op, count);

    std::vector<cpu::AdamwTensor> tensors(count);
    for (uint32_t i = 0; i < count; ++i) {
      const double n = number_at(sizes, "n", i);
      LR_CHECK(op, n >= 0 && n <= 9007199254740991.0 && n == std::floor(n), at("n", i) + " is not an element count");
      const auto elems = static_cast<int64_t>(n);
      float* p = dev_f32_at(env, params, "params", i, elems);
      float* g = dev_f32_at(env, grads, "grads", i, elems);
      float* mi = dev_f32_at(env, m, "m", i, elems);
      float* vi = dev_f32_at(env, v, "v", i, elems);
      tensors[i] = {p, g, mi, vi, elems};
    }
    cuda::adamw_step(tensors.data(), hyper.data(), static_cast<int64_t>(count));
    return env.Undefined();
  });
}

Napi::Value CudaLinearForward(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    constexpr const char* op = "cudaLinearForward";
    const Napi::Object a = args_object(info);
    const cpu::LinearDims d = linear_dims(a, op);
    const cuda::DevIn x = dev_in(a, op, "x", "xDtype", product(op, d.t, d.in));
    const cuda::DevIn W = dev_in(a, op, "W", "wDtype", product(op, d.out, d.in));
    const cuda::DevIn bias = dev_in(a, op, "bias", "biasDtype", d.out, true);
    const cuda::DevOut y = dev_out(a, op, "y", "yDtype", product(op, d.t, d.out));
    cuda::linear_forward(d, x, W, bias, y);
    return env.Undefined();
  });
}

Napi::Value CudaLinearBackward(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    constexpr const char* op = "cudaLinearBackward";
    const Napi::Object a = args_object(info);
    const cpu::LinearDims d = linear_dims(a, op);
    const cuda::DevIn dy = dev_in(a, op, "dy", "dyDtype", product(op, d.t, d.out));
    const cuda::DevIn x = dev_in(a, op, "x", "xDtype", product(op, d.t, d.in));
    const cuda::DevIn W = dev_in(a, op, "W", "wDtype", product(op, d.out, d.in));
    const cuda::DevOut dx = dev_out(a, op, "dx", "dxDtype", product(op, d.t, d.in), true);
    float* dW = dev_f32(a, op, "dW", product(op, d.out, d.in), true);
    float* db = dev_f32(a, op, "db", d.out, true);
    LR_CHECK(op, dW == nullptr || W.dtype == DType::kFloat32, "W must be float32 when dW is wanted");
    cuda::linear_backward(d, dy, x, W, dx, dW, db);
    return env.Undefined();
  });
}

}  // namespace lowrank::addon
