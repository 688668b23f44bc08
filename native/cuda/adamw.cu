// AdamW on CUDA, the mirror of native/cpu/adamw.cc: one fused multi-tensor step. The tensors
// are cut into chunks; one table of (pointers, count, coefficients) goes to the device and one
// launch runs every chunk, a block per chunk. The coefficients are the CPU's (adamw_coeffs.h)
// and every operation is a correctly rounded intrinsic that the compiler cannot contract, in
// torch's order, so the step gives the CPU's bits.
//
// FLOPs: about 14 per element. Fewest bytes: 28 per element (param, grad, m, v read; param, m,
// v written).
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <vector>

#include "../core/check.h"
#include "../cpu/adamw_coeffs.h"
#include "ops.cuh"

namespace lowrank::cuda {
namespace {

constexpr int64_t kChunk = 1 << 16;  // elements per block
constexpr int kThreads = 256;

struct Chunk {
  float* p;
  const float* g;
  float* m;
  float* v;
  int64_t n;
  cpu::Coeffs c;
};

__global__ void __launch_bounds__(kThreads) adamw_kernel(const Chunk* chunks) {
  const Chunk ch = chunks[blockIdx.x];
  const cpu::Coeffs& c = ch.c;
  for (int64_t i = threadIdx.x; i < ch.n; i += kThreads) {
    const float g = ch.g[i];
    float p = ch.p[i], m = ch.m[i], v = ch.v[i];
    p = __fmul_rn(p, c.decay);
    m = fmaf(c.coeff, __fsub_rn(g, m), c.small ? m : g);  // lerp, one fused multiply-add
    v = __fmul_rn(v, c.beta2);
    v = __fadd_rn(v, __fmul_rn(__fmul_rn(c.c2, g), g));
    const float denom = __fadd_rn(__fdiv_rn(__fsqrt_rn(v), c.bc2_sqrt), c.eps);
    p = __fadd_rn(p, __fdiv_rn(__fmul_rn(c.neg_step, m), denom));
    ch.p[i] = p;
    ch.m[i] = m;
    ch.v[i] = v;
  }
}

}  // namespace

// The op entry point (native/core/ops/adamw.h): the tensor list on the host, device pointers in it.
void adamw_step(const ops::AdamwStep& a) {
  const std::vector<cpu::AdamwTensor> tensors = cpu::adamw_tensors(a);
  std::vector<Chunk> chunks;
  for (size_t t = 0; t < tensors.size(); ++t) {
    const cpu::AdamwTensor& x = tensors[t];
    const cpu::Coeffs c = cpu::coeffs(a.hyper[t]);
    for (int64_t i = 0; i < x.n; i += kChunk)
      chunks.push_back(Chunk{x.param + i, x.grad + i, x.m + i, x.v + i, std::min(kChunk, x.n - i), c});
  }
  if (chunks.empty()) return;
  LR_CHECK("adamw_step", chunks.size() <= 0x7fffffffu, "too many chunks for one launch");
  const size_t bytes = chunks.size() * sizeof(Chunk);
  Scratch table(bytes);
  upload(table.get(), chunks.data(), bytes);  // staged: the host vector may go once this returns
  adamw_kernel<<<static_cast<unsigned>(chunks.size()), kThreads, 0, stream()>>>(static_cast<const Chunk*>(table.get()));
  check(cudaGetLastError(), "adamw_kernel launch");
}

}  // namespace lowrank::cuda
