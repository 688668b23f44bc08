// A plain linear layer on CUDA, the mirror of native/cpu/linear.cc (the full fine-tuning
// baseline and the base product alone that the LoRA bench compares against).
#include <cuda_runtime.h>

#include <cstdint>

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

// ---- the op entry points (native/core/ops/linear.h) ----------------------------------------

// y = x Wᵀ + bias. FLOPs 2·T·in·out. Fewest bytes: x, W read once, y written once.
void linear_forward(const ops::LinearForward& a) {
  const DevIn W = dev_in(a.W);
  const GemmTerm t{view(dev_in(a.x), a.in, false), view(W, a.in, true), a.in, 1.0f};
  product(a.t, a.out, &t, 1, a.y.data, a.y.dtype, a.out, 0.0f, compute_for(W.dtype), dev_in(a.bias));
}

// dx = dy W, dW = dyᵀ x, db = Σ_t dy (each absent when not wanted; dW, db float32, dx like x).
// FLOPs 4·T·in·out.
void linear_backward(const ops::LinearBackward& a) {
  const DevIn dy = dev_in(a.dy), W = dev_in(a.W);
  const Compute c = compute_for(W.dtype);
  if (a.dx.data) {
    const GemmTerm t{view(dy, a.out, false), view(W, a.in, false), a.out, 1.0f};
    product(a.t, a.in, &t, 1, a.dx.data, a.dx.dtype, a.in, 0.0f, c);
  }
  if (a.dW.data) {
    const GemmTerm t{view(dy, a.out, true), view(dev_in(a.x), a.in, false), a.t, 1.0f};
    product(a.out, a.in, &t, 1, a.dW.data, DType::kFloat32, a.in, 0.0f, c);
  }
  if (a.db.data) {
    column_sums_kernel<<<blocks_for(a.out), kElementwiseThreads, 0, stream()>>>(a.t, a.out, dy.data, dy.dtype,
                                                                                a.db.as<float>());
    check(cudaGetLastError(), "column_sums_kernel launch");
  }
}

}  // namespace lowrank::cuda
