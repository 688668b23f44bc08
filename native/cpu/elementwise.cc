// Element-wise ops on whole tensors (native/core/ops/elementwise.h), the mirror of
// native/cuda/elementwise.cu: fill and gradient accumulation.
#include <algorithm>
#include <cstdint>
#include <cstring>

#include "../core/ops.h"
#include "threadpool.h"

namespace lowrank::cpu {
namespace {

constexpr int64_t kChunk = 1 << 15;

template <typename T>
void fill_with(T* dst, T value, int64_t n) {
  parallel_for((n + kChunk - 1) / kChunk, [&](int64_t c) {
    std::fill(dst + c * kChunk, dst + std::min(n, (c + 1) * kChunk), value);
  });
}

}  // namespace

void fill(const ops::Fill& a) {
  const int64_t n = a.dst.elements;
  switch (a.dst.dtype) {
    case DType::kFloat32: return fill_with(a.dst.as<float>(), a.value, n);
    case DType::kBFloat16: return fill_with(a.dst.as<uint16_t>(), f32_to_bf16(a.value), n);
    case DType::kFloat16: return fill_with(a.dst.as<uint16_t>(), f32_to_f16(a.value), n);
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

}  // namespace lowrank::cpu
