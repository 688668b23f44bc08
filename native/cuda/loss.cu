// Losses on the device (native/core/ops/loss.h), the mirror of native/cpu/loss.cc. Softmax
// cross-entropy: one block per row (shared-memory reductions for the row's max and sum, in
// double like the CPU), the row losses into scratch, then one block sums them in a fixed order,
// so the mean is the same bits run to run. A label out of [0, c) makes that row's loss (so the
// mean) and its dlogits row NaN: the values live on the device, and a kernel cannot cheaply throw.
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>

#include "../core/check.h"
#include "ops.cuh"

namespace lowrank::cuda {
namespace {

constexpr int kRowThreads = 256;  // a power of two (the reductions halve it)

struct Max {
  __device__ double operator()(double a, double b) const { return a > b ? a : b; }
};
struct Sum {
  __device__ double operator()(double a, double b) const { return a + b; }
};

// The block-wide reduction of each thread's v through `shared` (kRowThreads entries), in a fixed
// order; every thread gets the result.
template <class Op>
__device__ double block_reduce(double v, double* shared, Op op) {
  shared[threadIdx.x] = v;
  __syncthreads();
  for (int s = kRowThreads / 2; s > 0; s >>= 1) {
    if (static_cast<int>(threadIdx.x) < s) shared[threadIdx.x] = op(shared[threadIdx.x], shared[threadIdx.x + s]);
    __syncthreads();
  }
  const double r = shared[0];
  __syncthreads();
  return r;
}

// Block `row`: row_loss[row] = logsumexp(z_row) − z_row[label]; dz_row = (softmax − onehot)·inv_t.
__global__ void softmax_cross_entropy_rows(const float* __restrict__ z, const int32_t* __restrict__ labels, int64_t c,
                                           double inv_t, double* __restrict__ row_loss, float* __restrict__ dz) {
  __shared__ double shared[kRowThreads];
  const int64_t row = blockIdx.x;
  const float* zr = z + row * c;
  double m = -HUGE_VAL;
  for (int64_t j = threadIdx.x; j < c; j += kRowThreads) m = fmax(m, static_cast<double>(zr[j]));
  m = block_reduce(m, shared, Max{});
  double s = 0;
  for (int64_t j = threadIdx.x; j < c; j += kRowThreads) s += exp(static_cast<double>(zr[j]) - m);
  s = block_reduce(s, shared, Sum{});
  const double lse = m + log(s);
  const int32_t label = labels[row];
  const bool ok = label >= 0 && label < c;
  if (threadIdx.x == 0) row_loss[row] = ok ? lse - static_cast<double>(zr[label]) : nan("");
  if (dz == nullptr) return;
  float* dr = dz + row * c;
  for (int64_t j = threadIdx.x; j < c; j += kRowThreads)
    dr[j] =
        ok ? static_cast<float>((exp(static_cast<double>(zr[j]) - lse) - (j == label ? 1.0 : 0.0)) * inv_t) : nanf("");
}

// loss[0] = inv_t · Σ row_loss, one block: thread k sums rows k, k + kRowThreads, … in order, then
// the fixed-order tree.
__global__ void mean_of_rows(const double* __restrict__ row_loss, int64_t t, double inv_t, float* __restrict__ loss) {
  __shared__ double shared[kRowThreads];
  double s = 0;
  for (int64_t i = threadIdx.x; i < t; i += kRowThreads) s += row_loss[i];
  s = block_reduce(s, shared, Sum{});
  if (threadIdx.x == 0) loss[0] = static_cast<float>(s * inv_t);
}

}  // namespace

// ---- the op entry points (native/core/ops/loss.h) ------------------------------------------

void softmax_cross_entropy(const ops::SoftmaxCrossEntropy& a) {
  LR_CHECK("softmaxCrossEntropy", a.t <= 0x7fffffff, "t must be below 2^31 rows on CUDA");
  const double inv_t = 1.0 / static_cast<double>(a.t);
  Scratch rows(static_cast<size_t>(a.t) * sizeof(double));
  auto* row_loss = static_cast<double*>(rows.get());
  float* dz = a.dlogits ? a.dlogits.as<float>() : nullptr;
  softmax_cross_entropy_rows<<<static_cast<unsigned>(a.t), kRowThreads, 0, stream()>>>(
      a.logits.as<const float>(), a.labels.as<const int32_t>(), a.c, inv_t, row_loss, dz);
  check(cudaGetLastError(), "softmax_cross_entropy_rows launch");
  mean_of_rows<<<1, kRowThreads, 0, stream()>>>(row_loss, a.t, inv_t, a.loss.as<float>());
  check(cudaGetLastError(), "mean_of_rows launch");
}

}  // namespace lowrank::cuda
