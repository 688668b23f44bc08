// VeRA on CUDA, mirroring native/cpu/vera.cc function for function. The shared projections are
// drawn on the host by cpu::vera_projections (the same Philox words on every backend) and
// uploaded; here A is a slice of Av with row stride max_in and B the first `out` rows of Bv.
#include <cuda_runtime.h>

#include <cstdint>

#include "../cpu/vera.h"
#include "ops.cuh"

namespace lowrank::cuda {
namespace {

// bs[o, j] = λb[o]·(λd[j]·B[o, j]) (with_d) or λb[o]·B[o, j]: B with the scaling vectors
// folded in, in the CPU's order of rounding.
__global__ void scale_b_kernel(int64_t out, int64_t r, const float* B, const float* lambda_d, const float* lambda_b,
                               bool with_d, float* bs) {
  const int64_t n = out * r, stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    const int64_t o = i / r, j = i % r;
    bs[i] = lambda_b[o] * (with_d ? lambda_d[j] * B[i] : B[i]);
  }
}

// dλb[o] = Σ_j B[o, j]·λd[j]·M'[o, j], in double and in j order.
__global__ void lambda_b_grad_kernel(int64_t out, int64_t r, const float* B, const float* lambda_d, const float* m,
                                     float* d_lambda_b) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t o = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; o < out; o += stride) {
    double s = 0.0;
    for (int64_t j = 0; j < r; ++j) s += static_cast<double>(B[o * r + j]) * lambda_d[j] * m[o * r + j];
    d_lambda_b[o] = static_cast<float>(s);
  }
}

constexpr int kReduceThreads = 256;

// dλd[j] = Σ_t h[t, j]·u[t, j] in double: block j, a fixed-shape tree, so the sum does not
// depend on scheduling.
__global__ void __launch_bounds__(kReduceThreads)
    lambda_d_grad_kernel(int64_t t, int64_t r, const float* h, const float* u, float* d_lambda_d) {
  __shared__ double part[kReduceThreads];
  const int64_t j = blockIdx.x;
  double s = 0.0;
  for (int64_t i = threadIdx.x; i < t; i += kReduceThreads) s += static_cast<double>(h[i * r + j]) * u[i * r + j];
  part[threadIdx.x] = s;
  __syncthreads();
  for (int w = kReduceThreads / 2; w > 0; w /= 2) {
    if (static_cast<int>(threadIdx.x) < w) part[threadIdx.x] += part[threadIdx.x + w];
    __syncthreads();
  }
  if (threadIdx.x == 0) d_lambda_d[j] = static_cast<float>(part[0]);
}

// h[t, j] *= λd[j].
__global__ void scale_columns_kernel(int64_t t, int64_t r, const float* lambda_d, float* h) {
  const int64_t n = t * r, stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride)
    h[i] *= lambda_d[i % r];
}

void scale_b(const cpu::VeraDims& d, const float* B, const float* lambda_d, const float* lambda_b, bool with_d,
             float* bs) {
  scale_b_kernel<<<blocks_for(d.out * d.r), kElementwiseThreads, 0, stream()>>>(d.out, d.r, B, lambda_d, lambda_b,
                                                                                with_d, bs);
  check(cudaGetLastError(), "scale_b_kernel launch");
}

}  // namespace

// Forward. FLOPs: 2·T·out·in (base) + 2·T·in·r + 2·T·out·r. Fewest bytes: x, W, the A and B
// slices, λd, λb read once; y and u written once.
void vera_forward(const cpu::VeraDims& d, DevIn x, DevIn W, DevIn bias, const float* A, const float* B,
                  const float* lambda_d, const float* lambda_b, const Dropout& drop, DevOut y, float* u) {
  const Compute c = compute_for(W.dtype);
  // u = D(x) Aᵀ (A's rows of stride max_in)
  const GemmTerm tu{view(x, d.in, false, drop), view(A, d.max_in, true), d.in, 1.0f};
  product(d.t, d.r, &tu, 1, u, DType::kFloat32, d.r, 0.0f, c);
  // y = [x | u] · [W | Bs]ᵀ + bias
  Scratch bs(static_cast<size_t>(d.out * d.r) * sizeof(float));
  scale_b(d, B, lambda_d, lambda_b, true, bs.f32());
  const GemmTerm joined[2] = {
      {view(x, d.in, false), view(W, d.in, true), d.in, 1.0f},
      {view(u, d.r, false), view(bs.f32(), d.r, true), d.r, 1.0f},
  };
  product(d.t, d.out, joined, 2, y.data, y.dtype, d.out, 0.0f, c, bias);
}

// Backward. FLOPs: 2·T·out·in (dx base) + 2·T·r·(2·out + in). Fewest bytes: dy, u, W, the A
// and B slices read once; dx, dλd, dλb written once. x is never read.
void vera_backward(const cpu::VeraDims& d, DevIn dy, DevIn W, const float* A, const float* B, const float* lambda_d,
                   const float* lambda_b, const float* u, const Dropout& drop, DevOut dx, float* d_lambda_d,
                   float* d_lambda_b) {
  const Compute c = compute_for(W.dtype);
  // M' = dyᵀ u [out, r]
  Scratch m(static_cast<size_t>(d.out * d.r) * sizeof(float));
  const GemmTerm tm{view(dy, d.out, true), view(u, d.r, false), d.t, 1.0f};
  product(d.out, d.r, &tm, 1, m.get(), DType::kFloat32, d.r, 0.0f, c);
  lambda_b_grad_kernel<<<blocks_for(d.out), kElementwiseThreads, 0, stream()>>>(d.out, d.r, B, lambda_d, m.f32(),
                                                                                d_lambda_b);
  check(cudaGetLastError(), "lambda_b_grad_kernel launch");
  // h = dy (λb ⊙ B) [T, r]
  Scratch bl(static_cast<size_t>(d.out * d.r) * sizeof(float));
  scale_b(d, B, lambda_d, lambda_b, false, bl.f32());
  Scratch h(static_cast<size_t>(d.t * d.r) * sizeof(float));
  const GemmTerm th{view(dy, d.out, false), view(bl.f32(), d.r, false), d.out, 1.0f};
  product(d.t, d.r, &th, 1, h.get(), DType::kFloat32, d.r, 0.0f, c);
  // dλd = Σ_t h ⊙ u; then h ← h ⊙ λd, the adapter's share of dx before A
  lambda_d_grad_kernel<<<static_cast<unsigned>(d.r), kReduceThreads, 0, stream()>>>(d.t, d.r, h.f32(), u, d_lambda_d);
  check(cudaGetLastError(), "lambda_d_grad_kernel launch");
  if (!dx.data) return;
  scale_columns_kernel<<<blocks_for(d.t * d.r), kElementwiseThreads, 0, stream()>>>(d.t, d.r, lambda_d, h.f32());
  check(cudaGetLastError(), "scale_columns_kernel launch");
  input_grad(d.t, d.in, d.out, d.r, dy, W, h.f32(), A, d.max_in, drop, dx);
}

// Merge. FLOPs: 2·out·in·r. Fewest bytes: W read and written once, the A and B slices once.
void vera_merge(const cpu::VeraDims& d, DevOut W, const float* A, const float* B, const float* lambda_d,
                const float* lambda_b, float sign) {
  Scratch bs(static_cast<size_t>(d.out * d.r) * sizeof(float));
  scale_b(d, B, lambda_d, lambda_b, true, bs.f32());
  add_product(d.out, d.in, d.r, bs.f32(), d.r, A, d.max_in, sign, W);
}

int64_t vera_merge_safe(const cpu::VeraDims& d, DevOut W, const float* A, const float* B, const float* lambda_d,
                        const float* lambda_b, float sign, float* bad_value) {
  Scratch bs(static_cast<size_t>(d.out * d.r) * sizeof(float));
  scale_b(d, B, lambda_d, lambda_b, true, bs.f32());
  return add_product_safe(d.out, d.in, d.r, bs.f32(), d.r, A, d.max_in, sign, W, bad_value);
}

// ---- the op entry points (native/core/ops/vera.h) ------------------------------------------

void vera_forward(const ops::VeraForward& a) {
  vera_forward({a.t, a.in, a.out, a.r, a.max_in}, dev_in(a.x), dev_in(a.W), dev_in(a.bias), a.A.as<const float>(),
               a.B.as<const float>(), a.lambda_d.as<const float>(), a.lambda_b.as<const float>(), a.drop, dev_out(a.y),
               a.u.as<float>());
}

void vera_backward(const ops::VeraBackward& a) {
  vera_backward({a.t, a.in, a.out, a.r, a.max_in}, dev_in(a.dy), dev_in(a.W), a.A.as<const float>(),
                a.B.as<const float>(), a.lambda_d.as<const float>(), a.lambda_b.as<const float>(),
                a.u.as<const float>(), a.drop, dev_out(a.dx), a.d_lambda_d.as<float>(), a.d_lambda_b.as<float>());
}

void vera_merge(const ops::VeraMerge& a) {
  const cpu::VeraDims d{1, a.in, a.out, a.r, a.max_in};
  const float *A = a.A.as<const float>(), *B = a.B.as<const float>();
  const float *ld = a.lambda_d.as<const float>(), *lb = a.lambda_b.as<const float>();
  if (!a.safe) return vera_merge(d, dev_out(a.W), A, B, ld, lb, a.sign);
  float value = 0.0f;
  const int64_t bad = vera_merge_safe(d, dev_out(a.W), A, B, ld, lb, a.sign, &value);
  if (bad >= 0) ops::merge_not_finite(bad, value, a.in);
}

}  // namespace lowrank::cuda
