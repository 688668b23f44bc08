// LoRA on CUDA, mirroring native/cpu/lora.cc function for function.
#include <cuda_runtime.h>

#include <cstdint>
#include <stdexcept>
#include <string>

#include "common.cuh"
#include "cuda.h"
#include "lora_cuda.cuh"

namespace lowrank::cuda {
namespace {

// A block computes a kTile x kTile tile of W with kThreads x kThreads threads, each thread
// kPer x kPer outputs strided by kThreads (so a warp's loads and stores of W are contiguous).
// The r dimension is walked in chunks of kTK through shared-memory tiles of B and A.
constexpr int kThreads = 16;
constexpr int kPer = 4;
constexpr int kTile = kThreads * kPer;  // 64
constexpr int kTK = 16;

// W[out, in] += scale · B[out, r] · A[r, in].
// FLOPs: 2·out·in·r. Fewest bytes: 4·(2·out·in + r·in + out·r): W read and written once, A
// and B read once. For LoRA ranks (r <= ~64) this is memory bound: about r/4 FLOP per byte.
__global__ void __launch_bounds__(kThreads * kThreads)
    lora_merge_kernel(int64_t out, int64_t in, int64_t r, float* __restrict__ W,
                      const float* __restrict__ A, const float* __restrict__ B, float scale) {
  __shared__ float As[kTK][kTile];  // A[k0 + kk, j0 + jj]
  __shared__ float Bs[kTile][kTK];  // B[i0 + ii, k0 + kk]
  const int tx = threadIdx.x, ty = threadIdx.y;
  const int tid = ty * kThreads + tx;
  const int64_t j0 = static_cast<int64_t>(blockIdx.x) * kTile;
  const int64_t tiles_out = (out + kTile - 1) / kTile;
  // Rows of tiles beyond gridDim.y's limit are walked by the same blocks.
  for (int64_t bi = blockIdx.y; bi < tiles_out; bi += gridDim.y) {
    const int64_t i0 = bi * kTile;
    float acc[kPer][kPer] = {};
    for (int64_t k0 = 0; k0 < r; k0 += kTK) {
      for (int e = tid; e < kTK * kTile; e += kThreads * kThreads) {
        const int kk = e / kTile, jj = e % kTile;
        const int64_t k = k0 + kk, j = j0 + jj;
        As[kk][jj] = (k < r && j < in) ? A[k * in + j] : 0.0f;
      }
      for (int e = tid; e < kTile * kTK; e += kThreads * kThreads) {
        const int ii = e / kTK, kk = e % kTK;
        const int64_t i = i0 + ii, k = k0 + kk;
        Bs[ii][kk] = (i < out && k < r) ? B[i * r + k] : 0.0f;
      }
      __syncthreads();
#pragma unroll
      for (int kk = 0; kk < kTK; ++kk) {
        float a[kPer], b[kPer];
#pragma unroll
        for (int c = 0; c < kPer; ++c) a[c] = As[kk][tx + kThreads * c];
#pragma unroll
        for (int q = 0; q < kPer; ++q) b[q] = Bs[ty + kThreads * q][kk];
#pragma unroll
        for (int q = 0; q < kPer; ++q)
#pragma unroll
          for (int c = 0; c < kPer; ++c) acc[q][c] += b[q] * a[c];
      }
      __syncthreads();
    }
#pragma unroll
    for (int q = 0; q < kPer; ++q) {
      const int64_t i = i0 + ty + kThreads * q;
      if (i >= out) continue;
#pragma unroll
      for (int c = 0; c < kPer; ++c) {
        const int64_t j = j0 + tx + kThreads * c;
        if (j < in) W[i * in + j] += scale * acc[q][c];
      }
    }
  }
}

void check_dims(const cpu::LoraDims& d, const char* what) {
  if (d.out < 0 || d.in < 0 || d.r < 0)
    throw std::runtime_error(std::string(what) + ": out, in and r must be >= 0");
}

}  // namespace

void lora_merge_device(const cpu::LoraDims& d, float* W, const float* A, const float* B, float scale,
                cudaStream_t stream) {
  check_dims(d, "lora_merge");
  if (d.out == 0 || d.in == 0 || d.r == 0) return;  // nothing to add
  const int64_t tiles_in = (d.in + kTile - 1) / kTile;
  const int64_t tiles_out = (d.out + kTile - 1) / kTile;
  if (tiles_in > 0x7fffffff) throw std::runtime_error("lora_merge: in too large for one grid");
  const dim3 grid(static_cast<unsigned>(tiles_in),
                  static_cast<unsigned>(tiles_out < 65535 ? tiles_out : 65535));
  const dim3 block(kThreads, kThreads);
  lora_merge_kernel<<<grid, block, 0, stream>>>(d.out, d.in, d.r, W, A, B, scale);
  check(cudaGetLastError(), "lora_merge_kernel launch");
}

void lora_merge_host(const cpu::LoraDims& d, float* W, const float* A, const float* B,
                     float scale) {
  check_dims(d, "lora_merge_host");
  require_available();
  if (d.out == 0 || d.in == 0) return;
  const size_t nW = static_cast<size_t>(d.out * d.in);
  const size_t nA = static_cast<size_t>(d.r * d.in);
  const size_t nB = static_cast<size_t>(d.out * d.r);
  DeviceBuffer dW(nW * sizeof(float)), dA(nA * sizeof(float)), dB(nB * sizeof(float));
  auto upload = [](float* dst, const float* src, size_t n, const char* what) {
    if (n) check(cudaMemcpy(dst, src, n * sizeof(float), cudaMemcpyHostToDevice), what);
  };
  upload(dW.as<float>(), W, nW, "cudaMemcpy (W to device)");
  upload(dA.as<float>(), A, nA, "cudaMemcpy (A to device)");
  upload(dB.as<float>(), B, nB, "cudaMemcpy (B to device)");
  lora_merge_device(d, dW.as<float>(), dA.as<float>(), dB.as<float>(), scale, nullptr);
  check(cudaMemcpy(W, dW.as<float>(), nW * sizeof(float), cudaMemcpyDeviceToHost),
        "cudaMemcpy (W to host)");
  check(cudaDeviceSynchronize(), "cudaDeviceSynchronize");
}

}  // namespace lowrank::cuda
