// A plain linear layer on CUDA, the mirror of native/cpu/linear.cc (the full fine-tuning
// baseline and the base product alone that the LoRA bench compares against).
#include <cuda_runtime.h>

#include <cstdint>

#include "../cpu/linear.h"
#include "ops.cuh"

namespace lowrank::cuda {
namespace {

// db[o] = Σ_t dy[t, o] in double, in t order: one thread per column, coalesced across columns.
__global__ void column_sums_kernel(int64_t t, int64_t out, const void* dy, DType d, float* db) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t o = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; o < out; o += stride) {
    double s = 0.0;
    for (int64_t i = 0; i < t; ++i) s += load_f32(dy, d, i * out + o);
    db[o] = static_cast<float>(s);
  }
}

}  // namespace

// y = x Wᵀ + bias. FLOPs 2·T·in·out. Fewest bytes: x, W read once, y written once.
void linear_forward(const cpu::LinearDims& d, DevIn x, DevIn W, DevIn bias, DevOut y) {
  const GemmTerm t{view(x, d.in, false), view(W, d.in, true), d.in, 1.0f};
  product(d.t, d.out, &t, 1, y.data, y.dtype, d.out, 0.0f, compute_for(W.dtype), bias);
}

// dx = dy W, dW = dyᵀ x, db = Σ_t dy. FLOPs 4·T·in·out.
void linear_backward(const cpu::LinearDims& d, DevIn dy, DevIn x, DevIn W, DevOut dx, float* dW, float* db) {
  const Compute c = compute_for(W.dtype);
  if (dx.data) {
    const GemmTerm t{view(dy, d.out, false), view(W, d.in, false), d.out, 1.0f};
    product(d.t, d.in, &t, 1, dx.data, dx.dtype, d.in, 0.0f, c);
  }
  if (dW) {
    const GemmTerm t{view(dy, d.out, true), view(x, d.in, false), d.t, 1.0f};
    product(d.out, d.in, &t, 1, dW, DType::kFloat32, d.in, 0.0f, c);
  }
  if (db) {
    column_sums_kernel<<<blocks_for(d.out), kElementwiseThreads, 0, stream()>>>(d.t, d.out, dy.data, dy.dtype, db);
    check(cudaGetLastError(), "column_sums_kernel launch");
  }
}

// ---- the op entry points (native/core/ops/linear.h) ----------------------------------------

void linear_forward(const ops::LinearForward& a) {
  linear_forward({a.t, a.in, a.out}, dev_in(a.x), dev_in(a.W), dev_in(a.bias), dev_out(a.y));
}

void linear_backward(const ops::LinearBackward& a) {
  linear_backward({a.t, a.in, a.out}, dev_in(a.dy), dev_in(a.x), dev_in(a.W), dev_out(a.dx), a.dW.as<float>(),
                  a.db.as<float>());
}

}  // namespace lowrank::cuda
