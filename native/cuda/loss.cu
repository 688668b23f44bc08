// Losses on the device (native/core/ops/loss.h), the mirror of native/cpu/loss.cc. Softmax
// cross-entropy: one block per row (shared-memory reductions for the row's max and sum, in
// double like the CPU), the row losses into scratch, then one block sums them in a fixed order,
// so the mean is the same bits run to run. A label out of [0, c) makes that row's loss (so the
// mean) and its dlogits row NaN: the values live on the device, and a kernel cannot cheaply throw.
// InfoNCE: per-row normalisation, per-element logits and gradient products (sums in a fixed
// order), row and column softmax blocks as above, all in double in scratch.
#include <cuda_runtime.h>

#include <algorithm>
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

// ---- InfoNCE ------------------------------------------------------------------------------

constexpr double kNormEps = 1e-12;  // torch's F.normalize clamp on the norm

// Block `row`: xh_row = x_row / max(‖x_row‖, eps) (or x_row), in double; den[row] its divisor.
__global__ void nce_normalize_rows(const float* __restrict__ x, int64_t d, bool normalize, double* __restrict__ xh,
                                   double* __restrict__ den) {
  __shared__ double shared[kRowThreads];
  const int64_t row = blockIdx.x;
  const float* xr = x + row * d;
  double s = 0;
  for (int64_t k = threadIdx.x; k < d; k += kRowThreads) s += static_cast<double>(xr[k]) * xr[k];
  s = block_reduce(s, shared, Sum{});
  const double dn = normalize ? fmax(sqrt(s), kNormEps) : 1.0;
  if (threadIdx.x == 0) den[row] = dn;
  for (int64_t k = threadIdx.x; k < d; k += kRowThreads) xh[row * d + k] = xr[k] / dn;
}

// S [n, rows] = scale · qh phᵀ, one element per thread (grid-stride), k summed in order.
__global__ void nce_logits(const double* __restrict__ qh, const double* __restrict__ ph, int64_t n, int64_t rows,
                           int64_t d, double scale, double* __restrict__ S) {
  const int64_t total = n * rows;
  for (int64_t e = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; e < total;
       e += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t i = e / rows, j = e % rows;
    const double* qi = qh + i * d;
    const double* pj = ph + j * d;
    double s = 0;
    for (int64_t k = 0; k < d; ++k) s += qi[k] * pj[k];
    S[e] = scale * s;
  }
}

// Block `i`: row_loss[i] = logsumexp(S[i, :]) − S[i, i]; G[i, :] = w·(softmax − onehot(i)).
__global__ void nce_rows(const double* __restrict__ S, int64_t rows, double w, double* __restrict__ row_loss,
                         double* __restrict__ G) {
  __shared__ double shared[kRowThreads];
  const int64_t i = blockIdx.x;
  const double* sr = S + i * rows;
  double m = -HUGE_VAL;
  for (int64_t j = threadIdx.x; j < rows; j += kRowThreads) m = fmax(m, sr[j]);
  m = block_reduce(m, shared, Max{});
  double s = 0;
  for (int64_t j = threadIdx.x; j < rows; j += kRowThreads) s += exp(sr[j] - m);
  s = block_reduce(s, shared, Sum{});
  const double lse = m + log(s);
  if (threadIdx.x == 0) row_loss[i] = lse - sr[i];
  if (G == nullptr) return;
  for (int64_t j = threadIdx.x; j < rows; j += kRowThreads)
    G[i * rows + j] = w * (exp(sr[j] - lse) - (j == i ? 1.0 : 0.0));
}

// Block `j` (< n), after nce_rows: col_loss[j] = logsumexp(S[:n, j]) − S[j, j];
// G[:n, j] += w·(softmax − onehot(j)). Each block owns its column.
__global__ void nce_cols(const double* __restrict__ S, int64_t n, int64_t rows, double w, double* __restrict__ col_loss,
                         double* __restrict__ G) {
  __shared__ double shared[kRowThreads];
  const int64_t j = blockIdx.x;
  double m = -HUGE_VAL;
  for (int64_t i = threadIdx.x; i < n; i += kRowThreads) m = fmax(m, S[i * rows + j]);
  m = block_reduce(m, shared, Max{});
  double s = 0;
  for (int64_t i = threadIdx.x; i < n; i += kRowThreads) s += exp(S[i * rows + j] - m);
  s = block_reduce(s, shared, Sum{});
  const double lse = m + log(s);
  if (threadIdx.x == 0) col_loss[j] = lse - S[j * rows + j];
  if (G == nullptr) return;
  for (int64_t i = threadIdx.x; i < n; i += kRowThreads)
    G[i * rows + j] += w * (exp(S[i * rows + j] - lse) - (i == j ? 1.0 : 0.0));
}

// loss[0] = w · (Σ row_loss + Σ col_loss) (col_loss null when not symmetric), one block, the
// rows' sum and the columns' sum each in a fixed order.
__global__ void nce_loss(const double* __restrict__ row_loss, const double* __restrict__ col_loss, int64_t n, double w,
                         float* __restrict__ loss) {
  __shared__ double shared[kRowThreads];
  double s = 0;
  for (int64_t i = threadIdx.x; i < n; i += kRowThreads) s += row_loss[i];
  s = block_reduce(s, shared, Sum{});
  double c = 0;
  if (col_loss != nullptr) {
    for (int64_t i = threadIdx.x; i < n; i += kRowThreads) c += col_loss[i];
    c = block_reduce(c, shared, Sum{});
  }
  if (threadIdx.x == 0) loss[0] = static_cast<float>((s + c) * w);
}

// out [r, d] = scale · Σ_t G(r, t) · x[t, :] over t < count, where G(r, t) = G[r·rows + t]
// (dq̂: x = ph, count = rows) or G[t·rows + r] (dp̂, `transposed`: x = qh, count = n); one
// element per thread, t summed in order.
__global__ void nce_product(const double* __restrict__ G, const double* __restrict__ x, int64_t out_rows, int64_t count,
                            int64_t rows, int64_t d, double scale, bool transposed, double* __restrict__ out) {
  const int64_t total = out_rows * d;
  for (int64_t e = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; e < total;
       e += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t r = e / d, k = e % d;
    double s = 0;
    for (int64_t t = 0; t < count; ++t) s += (transposed ? G[t * rows + r] : G[r * rows + t]) * x[t * d + k];
    out[e] = scale * s;
  }
}

// Block `row`: dx = (dxh − xh (xh·dxh)) / den where den > eps, dxh / eps where the clamp
// holds, dxh without normalisation.
__global__ void nce_normalize_backward(const double* __restrict__ xh, const double* __restrict__ dxh,
                                       const double* __restrict__ den, int64_t d, bool normalize,
                                       float* __restrict__ dx) {
  __shared__ double shared[kRowThreads];
  const int64_t row = blockIdx.x;
  const double* x = xh + row * d;
  const double* g = dxh + row * d;
  const double dn = den[row];
  double dot = 0;
  if (normalize && dn > kNormEps)
    for (int64_t k = threadIdx.x; k < d; k += kRowThreads) dot += x[k] * g[k];
  dot = block_reduce(dot, shared, Sum{});
  for (int64_t k = threadIdx.x; k < d; k += kRowThreads)
    dx[row * d + k] = static_cast<float>(normalize ? (g[k] - x[k] * dot) / dn : g[k]);
}

unsigned grid_for(int64_t total) {
  return static_cast<unsigned>(std::min<int64_t>((total + kRowThreads - 1) / kRowThreads, 1 << 16));
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

void info_nce(const ops::InfoNce& a) {
  LR_CHECK("infoNce", a.rows <= 0x7fffffff, "p must have fewer than 2^31 rows on CUDA");
  const int64_t n = a.n, d = a.d, rows = a.rows;
  const double scale = a.scale;
  const double w = (a.symmetric ? 0.5 : 1.0) / static_cast<double>(n);
  const bool grad = a.dq || a.dp;
  const size_t f64 = sizeof(double);
  Scratch qh(static_cast<size_t>(n * d) * f64), ph(static_cast<size_t>(rows * d) * f64);
  Scratch qden(static_cast<size_t>(n) * f64), pden(static_cast<size_t>(rows) * f64);
  Scratch S(static_cast<size_t>(n * rows) * f64), G(grad ? static_cast<size_t>(n * rows) * f64 : 0);
  Scratch losses(static_cast<size_t>(2 * n) * f64);
  auto* q_h = static_cast<double*>(qh.get());
  auto* p_h = static_cast<double*>(ph.get());
  auto* q_den = static_cast<double*>(qden.get());
  auto* p_den = static_cast<double*>(pden.get());
  auto* s = static_cast<double*>(S.get());
  auto* g = static_cast<double*>(G.get());
  auto* row_loss = static_cast<double*>(losses.get());
  double* col_loss = a.symmetric ? row_loss + n : nullptr;
  cudaStream_t st = stream();
  nce_normalize_rows<<<static_cast<unsigned>(n), kRowThreads, 0, st>>>(a.q.as<const float>(), d, a.normalize, q_h,
                                                                       q_den);
  check(cudaGetLastError(), "nce_normalize_rows launch");
  nce_normalize_rows<<<static_cast<unsigned>(rows), kRowThreads, 0, st>>>(a.p.as<const float>(), d, a.normalize, p_h,
                                                                          p_den);
  check(cudaGetLastError(), "nce_normalize_rows launch");
  nce_logits<<<grid_for(n * rows), kRowThreads, 0, st>>>(q_h, p_h, n, rows, d, scale, s);
  check(cudaGetLastError(), "nce_logits launch");
  nce_rows<<<static_cast<unsigned>(n), kRowThreads, 0, st>>>(s, rows, w, row_loss, g);
  check(cudaGetLastError(), "nce_rows launch");
  if (a.symmetric) {
    nce_cols<<<static_cast<unsigned>(n), kRowThreads, 0, st>>>(s, n, rows, w, col_loss, g);
    check(cudaGetLastError(), "nce_cols launch");
  }
  nce_loss<<<1, kRowThreads, 0, st>>>(row_loss, col_loss, n, w, a.loss.as<float>());
  check(cudaGetLastError(), "nce_loss launch");
  if (a.dq) {
    Scratch dqh(static_cast<size_t>(n * d) * f64);
    auto* dq_h = static_cast<double*>(dqh.get());
    nce_product<<<grid_for(n * d), kRowThreads, 0, st>>>(g, p_h, n, rows, rows, d, scale, false, dq_h);
    check(cudaGetLastError(), "nce_product launch");
    nce_normalize_backward<<<static_cast<unsigned>(n), kRowThreads, 0, st>>>(q_h, dq_h, q_den, d, a.normalize,
                                                                             a.dq.as<float>());
    check(cudaGetLastError(), "nce_normalize_backward launch");
  }
  if (a.dp) {
    Scratch dph(static_cast<size_t>(rows * d) * f64);
    auto* dp_h = static_cast<double*>(dph.get());
    nce_product<<<grid_for(rows * d), kRowThreads, 0, st>>>(g, q_h, rows, n, rows, d, scale, true, dp_h);
    check(cudaGetLastError(), "nce_product launch");
    nce_normalize_backward<<<static_cast<unsigned>(rows), kRowThreads, 0, st>>>(p_h, dp_h, p_den, d, a.normalize,
                                                                                a.dp.as<float>());
    check(cudaGetLastError(), "nce_normalize_backward launch");
  }
}

}  // namespace lowrank::cuda
