// Element-wise ops on whole tensors (native/core/ops/elementwise.h), the mirror of
// native/cuda/elementwise.cu: fill, gradient accumulation, the activations and their
// gradients, add and scale.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>

#include "../core/ops.h"
#include "threadpool.h"

namespace lowrank::cpu {
namespace {

constexpr int64_t kChunk = 1 << 15;

template <typename T>
void fill_with(T* dst, T value, int64_t n) {
  parallel_for((n + kChunk - 1) / kChunk,
               [&](int64_t c) { std::fill(dst + c * kChunk, dst + std::min(n, (c + 1) * kChunk), value); });
}

// f(i) for every i in [0, n), chunk by chunk on the pool.
template <class F>
void for_each_index(int64_t n, F f) {
  parallel_for((n + kChunk - 1) / kChunk, [&](int64_t c) {
    for (int64_t i = c * kChunk, end = std::min(n, (c + 1) * kChunk); i < end; ++i) f(i);
  });
}

constexpr float kInvSqrt2 = 0.70710678118654752f;
constexpr float kInvSqrt2Pi = 0.39894228040143268f;

float relu(float x) { return x < 0.0f ? 0.0f : x; }  // NaN stays NaN
float gelu(float x) { return 0.5f * x * (1.0f + std::erf(x * kInvSqrt2)); }
float gelu_grad(float x) { return 0.5f * (1.0f + std::erf(x * kInvSqrt2)) + x * kInvSqrt2Pi * std::exp(-0.5f * x * x); }
float tanh_grad(float x) {
  const float t = std::tanh(x);
  return 1.0f - t * t;
}

}  // namespace

void fill(const ops::Fill& a) {
  const int64_t n = a.dst.elements;
  switch (a.dst.dtype) {
    case DType::kFloat32: return fill_with(a.dst.as<float>(), static_cast<float>(a.value), n);
    case DType::kBFloat16: return fill_with(a.dst.as<uint16_t>(), f32_to_bf16(static_cast<float>(a.value)), n);
    case DType::kFloat16: return fill_with(a.dst.as<uint16_t>(), f32_to_f16(static_cast<float>(a.value)), n);
    case DType::kInt32: return fill_with(a.dst.as<int32_t>(), static_cast<int32_t>(a.value), n);
  }
}

void add_into(const ops::AddInto& a) {
  float* dst = a.dst.as<float>();
  const float* src = a.src.as<const float>();
  const int64_t n = a.dst.elements;
  parallel_for((n + kChunk - 1) / kChunk, [&](int64_t c) {
    for (int64_t i = c * kChunk, end = std::min(n, (c + 1) * kChunk); i < end; ++i) dst[i] += src[i];
  });
}

void relu_forward(const ops::Unary& a) {
  const float* x = a.x.as<const float>();
  float* y = a.y.as<float>();
  for_each_index(a.x.elements, [&](int64_t i) { y[i] = relu(x[i]); });
}

void relu_backward(const ops::UnaryBackward& a) {
  const float *x = a.x.as<const float>(), *dy = a.dy.as<const float>();
  float* dx = a.dx.as<float>();
  for_each_index(a.x.elements, [&](int64_t i) { dx[i] = x[i] > 0.0f ? dy[i] : 0.0f; });
}

void gelu_forward(const ops::Unary& a) {
  const float* x = a.x.as<const float>();
  float* y = a.y.as<float>();
  for_each_index(a.x.elements, [&](int64_t i) { y[i] = gelu(x[i]); });
}

void gelu_backward(const ops::UnaryBackward& a) {
  const float *x = a.x.as<const float>(), *dy = a.dy.as<const float>();
  float* dx = a.dx.as<float>();
  for_each_index(a.x.elements, [&](int64_t i) { dx[i] = dy[i] * gelu_grad(x[i]); });
}

void tanh_forward(const ops::Unary& a) {
  const float* x = a.x.as<const float>();
  float* y = a.y.as<float>();
  for_each_index(a.x.elements, [&](int64_t i) { y[i] = std::tanh(x[i]); });
}

void tanh_backward(const ops::UnaryBackward& a) {
  const float *x = a.x.as<const float>(), *dy = a.dy.as<const float>();
  float* dx = a.dx.as<float>();
  for_each_index(a.x.elements, [&](int64_t i) { dx[i] = dy[i] * tanh_grad(x[i]); });
}

void add(const ops::Add& a) {
  const float *p = a.a.as<const float>(), *q = a.b.as<const float>();
  float* out = a.out.as<float>();
  const float alpha = a.alpha;
  for_each_index(a.a.elements, [&](int64_t i) { out[i] = p[i] + alpha * q[i]; });
}

void scale_by(const ops::Scale& a) {
  const float* x = a.x.as<const float>();
  float* y = a.y.as<float>();
  const float alpha = a.alpha;
  for_each_index(a.x.elements, [&](int64_t i) { y[i] = alpha * x[i]; });
}

}  // namespace lowrank::cpu
