// VeRA on CUDA, mirroring native/cpu/vera.cc function for function. The shared projections are
// drawn on the host by cpu::vera_projections (the same Philox words on every backend) and
// uploaded; here A is a slice of Av with row stride max_in and B the first `out` rows of Bv.
#include <cuda_runtime.h>

#include <cstdint>

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

void scale_b(int64_t out, int64_t r, const float* B, const float* lambda_d, const float* lambda_b, bool with_d,
             float* bs) {
  scale_b_kernel<<<blocks_for(out * r), kElementwiseThreads, 0, stream()>>>(out, r, B, lambda_d, lambda_b, with_d, bs);
  check(cudaGetLastError(), "scale_b_kernel launch");
}

}  // namespace

// ---- the op entry points (native/core/ops/vera.h) ------------------------------------------

// Forward. FLOPs: 2·T·out·in (base) + 2·T·in·r + 2·T·out·r. Fewest bytes: x, W, the A and B
// slices, λd, λb read once; y and u written once.
void vera_forward(const ops::VeraForward& a) {
  const DevIn x = dev_in(a.x), W = dev_in(a.W);
  float* u = a.u.as<float>();
  const Compute c = compute_for(W.dtype);
  // u = D(x) Aᵀ (A's rows of stride max_in)
  const GemmTerm tu{view(x, a.in, false, a.drop), view(a.A.as<const float>(), a.max_in, true), a.in, 1.0f};
  product(a.t, a.r, &tu, 1, u, DType::kFloat32, a.r, 0.0f, c);
  // y = [x | u] · [W | Bs]ᵀ + bias
  Scratch bs(static_cast<size_t>(a.out * a.r) * sizeof(float));
  scale_b(a.out, a.r, a.B.as<const float>(), a.lambda_d.as<const float>(), a.lambda_b.as<const float>(), true,
          bs.f32());
  const GemmTerm joined[2] = {
      {view(x, a.in, false), view(W, a.in, true), a.in, 1.0f},
      {view(u, a.r, false), view(bs.f32(), a.r, true), a.r, 1.0f},
  };
  product(a.t, a.out, joined, 2, a.y.data, a.y.dtype, a.out, 0.0f, c, dev_in(a.bias));
}

// Backward. FLOPs: 2·T·out·in (dx base) + 2·T·r·(2·out + in). Fewest bytes: dy, u, W, the A
// and B slices read once; dx, dλd, dλb written once. x is never read.
void vera_backward(const ops::VeraBackward& a) {
  const int64_t t = a.t, in = a.in, out = a.out, r = a.r;
  const DevIn dy = dev_in(a.dy), W = dev_in(a.W);
  const float *A = a.A.as<const float>(), *B = a.B.as<const float>(), *u = a.u.as<const float>();
  const float *lambda_d = a.lambda_d.as<const float>(), *lambda_b = a.lambda_b.as<const float>();
  const Compute c = compute_for(W.dtype);
  // M' = dyᵀ u [out, r]
  Scratch m(static_cast<size_t>(out * r) * sizeof(float));
  const GemmTerm tm{view(dy, out, true), view(u, r, false), t, 1.0f};
  product(out, r, &tm, 1, m.get(), DType::kFloat32, r, 0.0f, c);
  lambda_b_grad_kernel<<<blocks_for(out), kElementwiseThreads, 0, stream()>>>(out, r, B, lambda_d, m.f32(),
                                                                              a.d_lambda_b.as<float>());
  check(cudaGetLastError(), "lambda_b_grad_kernel launch");
  // h = dy (λb ⊙ B) [T, r]
  Scratch bl(static_cast<size_t>(out * r) * sizeof(float));
  scale_b(out, r, B, lambda_d, lambda_b, false, bl.f32());
  Scratch h(static_cast<size_t>(t * r) * sizeof(float));
  const GemmTerm th{view(dy, out, false), view(bl.f32(), r, false), out, 1.0f};
  product(t, r, &th, 1, h.get(), DType::kFloat32, r, 0.0f, c);
  // dλd = Σ_t h ⊙ u; then h ← h ⊙ λd, the adapter's share of dx before A
  lambda_d_grad_kernel<<<static_cast<unsigned>(r), kReduceThreads, 0, stream()>>>(t, r, h.f32(), u,
                                                                                  a.d_lambda_d.as<float>());
  check(cudaGetLastError(), "lambda_d_grad_kernel launch");
  if (!a.dx.data) return;
  scale_columns_kernel<<<blocks_for(t * r), kElementwiseThreads, 0, stream()>>>(t, r, lambda_d, h.f32());
  check(cudaGetLastError(), "scale_columns_kernel launch");
  input_grad(t, in, out, r, dy, W, h.f32(), A, a.max_in, a.drop, dev_out(a.dx));
}

// Merge. FLOPs: 2·out·in·r. Fewest bytes: W read and written once, the A and B slices once. The
// safe merge synchronizes (it must read the result).
void vera_merge(const ops::VeraMerge& a) {
  Scratch bs(static_cast<size_t>(a.out * a.r) * sizeof(float));
  scale_b(a.out, a.r, a.B.as<const float>(), a.lambda_d.as<const float>(), a.lambda_b.as<const float>(), true,
          bs.f32());
  const float* A = a.A.as<const float>();
  if (!a.safe) return add_product(a.out, a.in, a.r, bs.f32(), a.r, A, a.max_in, a.sign, dev_out(a.W));
  float value = 0.0f;
  const int64_t bad = add_product_safe(a.out, a.in, a.r, bs.f32(), a.r, A, a.max_in, a.sign, dev_out(a.W), &value);
  if (bad >= 0) ops::merge_not_finite(bad, value, a.in);
}

}  // namespace lowrank::cuda
