// Dropout masks on the device, drawn from the same counter-based generator as the CPU
// (native/core/philox.h), so element i of a mask is identical on both backends.
#include <cuda_runtime.h>

#include <cstdint>
#include <stdexcept>

#include "../core/philox.h"
#include "common.cuh"
#include "cuda.h"

namespace lowrank::cuda {

// out[i] = keep(offset + i). One Philox block per element (4 words, 1 used): the mask is a
// test hook, not a hot path; fused kernels call Dropout::factor where they read an operand.
__global__ void dropout_mask_kernel(Dropout drop, uint64_t offset, int64_t n, uint8_t* out) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride)
    out[i] = drop.keep(offset + static_cast<uint64_t>(i)) ? 1 : 0;
}

void dropout_mask_host(uint64_t seed, double p, int64_t offset, int64_t n, uint8_t* out) {
  if (offset < 0 || n < 0) throw std::runtime_error("dropout_mask_host: offset and n must be >= 0");
  require_available();
  if (n == 0) return;
  const Dropout drop = Dropout::make(p, seed);
  DeviceBuffer mask(static_cast<size_t>(n));
  constexpr int kThreads = 256;
  const int64_t blocks_needed = (n + kThreads - 1) / kThreads;
  const unsigned blocks = static_cast<unsigned>(blocks_needed < 65535 ? blocks_needed : 65535);
  dropout_mask_kernel<<<blocks, kThreads>>>(drop, static_cast<uint64_t>(offset), n, mask.as<uint8_t>());
  check(cudaGetLastError(), "dropout_mask_kernel launch");
  check(cudaMemcpy(out, mask.as<uint8_t>(), static_cast<size_t>(n), cudaMemcpyDeviceToHost),
        "cudaMemcpy (mask to host)");
  check(cudaDeviceSynchronize(), "cudaDeviceSynchronize");
}

}  // namespace lowrank::cuda
