// Element-wise device ops the layers and the optimizer need: filling a tensor and adding one
// float32 tensor into another (gradient accumulation), so neither goes through the host; and
// the building blocks of a training loop (activations and their gradients, add, scale), the
// mirror of native/cpu/elementwise.cc. Grid-stride kernels, one element per thread per turn.
// FLOPs: n (add into). Fewest bytes: n·size (fill), 12·n (add into: two reads, one write);
// the others' counts are at their structs (native/core/ops/elementwise.h).
#include <cuda_runtime.h>

#include <cstdint>

#include "../core/check.h"
#include "ops.cuh"

namespace lowrank::cuda {
namespace {

template <typename T>
__global__ void fill_kernel(T* dst, T value, int64_t n) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) dst[i] = value;
}

__global__ void add_into_kernel(float* __restrict__ dst, const float* __restrict__ src, int64_t n) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) dst[i] += src[i];
}

// f(i) for every i in [0, n): f is a small functor of device pointers (below).
template <class F>
__global__ void map_kernel(int64_t n, F f) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) f(i);
}

template <class F>
void map(const char* what, int64_t n, F f) {
  if (n == 0) return;
  map_kernel<<<blocks_for(n), kElementwiseThreads, 0, stream()>>>(n, f);
  check(cudaGetLastError(), what);
}

constexpr float kInvSqrt2 = 0.70710678118654752f;
constexpr float kInvSqrt2Pi = 0.39894228040143268f;

__device__ float relu(float x) { return x < 0.0f ? 0.0f : x; }  // NaN stays NaN
__device__ float gelu(float x) { return 0.5f * x * (1.0f + erff(x * kInvSqrt2)); }
__device__ float gelu_grad(float x) {
  return 0.5f * (1.0f + erff(x * kInvSqrt2)) + x * kInvSqrt2Pi * expf(-0.5f * x * x);
}
__device__ float tanh_grad(float x) {
  const float t = tanhf(x);
  return 1.0f - t * t;
}

enum class Act { kRelu, kGelu, kTanh };

template <Act A>
struct Forward {
  const float* x;
  float* y;
  __device__ void operator()(int64_t i) const {
    const float v = x[i];
    y[i] = A == Act::kRelu ? relu(v) : A == Act::kGelu ? gelu(v) : tanhf(v);
  }
};

template <Act A>
struct Backward {
  const float *x, *dy;
  float* dx;
  __device__ void operator()(int64_t i) const {
    const float v = x[i];
    dx[i] = A == Act::kRelu ? (v > 0.0f ? dy[i] : 0.0f) : dy[i] * (A == Act::kGelu ? gelu_grad(v) : tanh_grad(v));
  }
};

struct AddScaled {
  const float *a, *b;
  float* out;
  float alpha;
  __device__ void operator()(int64_t i) const { out[i] = a[i] + alpha * b[i]; }
};

struct ScaleBy {
  const float* x;
  float* y;
  float alpha;
  __device__ void operator()(int64_t i) const { y[i] = alpha * x[i]; }
};

template <Act A>
void forward(const char* what, const ops::Unary& a) {
  map(what, a.x.elements, Forward<A>{a.x.as<const float>(), a.y.as<float>()});
}

template <Act A>
void backward(const char* what, const ops::UnaryBackward& a) {
  map(what, a.x.elements, Backward<A>{a.x.as<const float>(), a.dy.as<const float>(), a.dx.as<float>()});
}

}  // namespace

// ---- the op entry points (native/core/ops/elementwise.h) -----------------------------------

void fill(const ops::Fill& a) {
  const DevOut dst = dev_out(a.dst);
  const auto value = static_cast<float>(a.value);
  const int64_t n = a.dst.elements;
  LR_CHECK("fill", n >= 0, "n must be >= 0");
  if (n == 0) return;
  if (dst.dtype == DType::kFloat32) {
    fill_kernel<<<blocks_for(n), kElementwiseThreads, 0, stream()>>>(static_cast<float*>(dst.data), value, n);
  } else if (dst.dtype == DType::kInt32) {
    const auto v = static_cast<int32_t>(a.value);  // exact: a.value is a double
    fill_kernel<<<blocks_for(n), kElementwiseThreads, 0, stream()>>>(static_cast<int32_t*>(dst.data), v, n);
  } else {
    const uint16_t bits = dst.dtype == DType::kBFloat16 ? f32_to_bf16(value) : f32_to_f16(value);
    fill_kernel<<<blocks_for(n), kElementwiseThreads, 0, stream()>>>(static_cast<uint16_t*>(dst.data), bits, n);
  }
  check(cudaGetLastError(), "fill_kernel launch");
}

void add_into(const ops::AddInto& a) {
  const int64_t n = a.dst.elements;
  LR_CHECK("add_into", n >= 0, "n must be >= 0");
  if (n == 0) return;
  add_into_kernel<<<blocks_for(n), kElementwiseThreads, 0, stream()>>>(a.dst.as<float>(), a.src.as<const float>(), n);
  check(cudaGetLastError(), "add_into_kernel launch");
}

void relu_forward(const ops::Unary& a) { forward<Act::kRelu>("relu_forward launch", a); }
void relu_backward(const ops::UnaryBackward& a) { backward<Act::kRelu>("relu_backward launch", a); }
void gelu_forward(const ops::Unary& a) { forward<Act::kGelu>("gelu_forward launch", a); }
void gelu_backward(const ops::UnaryBackward& a) { backward<Act::kGelu>("gelu_backward launch", a); }
void tanh_forward(const ops::Unary& a) { forward<Act::kTanh>("tanh_forward launch", a); }
void tanh_backward(const ops::UnaryBackward& a) { backward<Act::kTanh>("tanh_backward launch", a); }
void add(const ops::Add& a) {
  map("add launch", a.a.elements, AddScaled{a.a.as<const float>(), a.b.as<const float>(), a.out.as<float>(), a.alpha});
}
void scale_by(const ops::Scale& a) {
  map("scale launch", a.x.elements, ScaleBy{a.x.as<const float>(), a.y.as<float>(), a.alpha});
}

}  // namespace lowrank::cuda
