// Element-wise device ops the layers and the optimizer need: filling a tensor and adding one
// float32 tensor into another (gradient accumulation), so neither goes through the host.
// FLOPs: n (add). Fewest bytes: n·size (fill), 12·n (add: two reads, one write).
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

}  // namespace

void fill(DevOut dst, float value, int64_t n) {
  LR_CHECK("fill", n >= 0, "n must be >= 0");
  if (n == 0) return;
  if (dst.dtype == DType::kFloat32) {
    fill_kernel<<<blocks_for(n), kElementwiseThreads, 0, stream()>>>(static_cast<float*>(dst.data), value, n);
  } else if (dst.dtype == DType::kInt32) {
    const auto v = static_cast<int32_t>(value);
    fill_kernel<<<blocks_for(n), kElementwiseThreads, 0, stream()>>>(static_cast<int32_t*>(dst.data), v, n);
  } else {
    const uint16_t bits = dst.dtype == DType::kBFloat16 ? f32_to_bf16(value) : f32_to_f16(value);
    fill_kernel<<<blocks_for(n), kElementwiseThreads, 0, stream()>>>(static_cast<uint16_t*>(dst.data), bits, n);
  }
  check(cudaGetLastError(), "fill_kernel launch");
}

void add_into(float* dst, const float* src, int64_t n) {
  LR_CHECK("add_into", n >= 0, "n must be >= 0");
  if (n == 0) return;
  add_into_kernel<<<blocks_for(n), kElementwiseThreads, 0, stream()>>>(dst, src, n);
  check(cudaGetLastError(), "add_into_kernel launch");
}

// ---- the op entry points (native/core/ops/elementwise.h) -----------------------------------

void fill(const ops::Fill& a) { fill(dev_out(a.dst), a.value, a.dst.elements); }
void add_into(const ops::AddInto& a) { add_into(a.dst.as<float>(), a.src.as<const float>(), a.dst.elements); }

}  // namespace lowrank::cuda
