#include "convert.h"

#include <algorithm>
#include <cstring>

#include "threadpool.h"

namespace lowrank::cpu {
namespace {

float to_f32(const void* src, DType t, int64_t i) {
  switch (t) {
    case DType::kFloat32: return static_cast<const float*>(src)[i];
    case DType::kBFloat16: return bf16_to_f32(static_cast<const uint16_t*>(src)[i]);
    case DType::kFloat16: return f16_to_f32(static_cast<const uint16_t*>(src)[i]);
  }
  return 0.0f;
}

void from_f32(float v, void* dst, DType t, int64_t i) {
  switch (t) {
    case DType::kFloat32: static_cast<float*>(dst)[i] = v; break;
    case DType::kBFloat16: static_cast<uint16_t*>(dst)[i] = f32_to_bf16(v); break;
    case DType::kFloat16: static_cast<uint16_t*>(dst)[i] = f32_to_f16(v); break;
  }
}

}  // namespace

void convert(const void* src, DType src_type, void* dst, DType dst_type, int64_t n) {
  if (src_type == dst_type) {
    std::memmove(dst, src, static_cast<size_t>(n) * dtype_size(src_type));
    return;
  }
  constexpr int64_t kChunk = 1 << 15;
  parallel_for((n + kChunk - 1) / kChunk, [&](int64_t c) {
    const int64_t end = std::min(n, (c + 1) * kChunk);
    for (int64_t i = c * kChunk; i < end; ++i) from_f32(to_f32(src, src_type, i), dst, dst_type, i);
  });
}

}  // namespace lowrank::cpu
