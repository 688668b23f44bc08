// Losses (native/core/ops/loss.h), the mirror of native/cuda/loss.cu.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <sstream>
#include <vector>

#include "../core/ops.h"
#include "threadpool.h"

namespace lowrank::cpu {

namespace {

// The cross-entropy of `count` logits z[k·stride] against class `label`, in double, shifted by
// their max: returns logsumexp(z) − z[label]. With g set, also g[k·stride] = w·(softmax(z)_k −
// [k = label]) (added to what g holds when `accumulate`). The softmax cross-entropy's rows and
// InfoNCE's rows and columns.
template <typename Z, typename G>
double cross_entropy_of(const Z* z, int64_t count, int64_t stride, int64_t label, double w, G* g, bool accumulate) {
  double m = z[0];
  for (int64_t k = 1; k < count; ++k) m = std::max(m, static_cast<double>(z[k * stride]));
  double sum = 0;
  for (int64_t k = 0; k < count; ++k) sum += std::exp(z[k * stride] - m);
  const double lse = m + std::log(sum);
  if (g != nullptr) {
    for (int64_t k = 0; k < count; ++k) {
      const double v = (std::exp(z[k * stride] - lse) - (k == label ? 1.0 : 0.0)) * w;
      G& out = g[k * stride];
      out = static_cast<G>(accumulate ? out + v : v);
    }
  }
  return lse - z[label * stride];
}

}  // namespace

// Rows in parallel, each in double (shifted by its max); the row losses summed in row order,
// so the mean does not depend on the thread count.
void softmax_cross_entropy(const ops::SoftmaxCrossEntropy& a) {
  const int64_t t = a.t, c = a.c;
  const float* z = a.logits.as<const float>();
  const int32_t* labels = a.labels.as<const int32_t>();
  for (int64_t i = 0; i < t; ++i) {
    if (labels[i] < 0 || labels[i] >= c) {
      std::ostringstream s;
      s << "Expected an integer in [0, " << c << ") for labels[" << i << "] but received " << labels[i];
      throw RangeError(s.str());
    }
  }
  float* dz = a.dlogits ? a.dlogits.as<float>() : nullptr;
  std::vector<double> row_loss(static_cast<size_t>(t));
  const double inv_t = 1.0 / static_cast<double>(t);
  const int64_t rows = std::max<int64_t>(1, 8192 / c);  // rows per task
  auto row = [&](int64_t i) {
    row_loss[i] = cross_entropy_of(z + i * c, c, 1, labels[i], inv_t, dz ? dz + i * c : nullptr, false);
  };
  parallel_for((t + rows - 1) / rows, [&](int64_t g) {
    for (int64_t i = g * rows, end = std::min(t, (g + 1) * rows); i < end; ++i) row(i);
  });
  double total = 0;
  for (double l : row_loss) total += l;
  a.loss.as<float>()[0] = static_cast<float>(total * inv_t);
}

namespace {

constexpr double kNormEps = 1e-12;  // torch's F.normalize clamp on the norm

// x̂ = x / max(‖x‖, eps) per row (or x itself), in double; den[row] = that divisor (1 without
// normalisation).
void normalize_rows(const float* x, int64_t rows, int64_t d, bool normalize, std::vector<double>& xh,
                    std::vector<double>& den) {
  xh.resize(static_cast<size_t>(rows * d));
  den.assign(static_cast<size_t>(rows), 1.0);
  parallel_for(rows, [&](int64_t r) {
    const float* xr = x + r * d;
    double* out = xh.data() + r * d;
    double s = 0;
    for (int64_t k = 0; k < d; ++k) s += static_cast<double>(xr[k]) * xr[k];
    const double dn = normalize ? std::max(std::sqrt(s), kNormEps) : 1.0;
    den[r] = dn;
    for (int64_t k = 0; k < d; ++k) out[k] = xr[k] / dn;
  });
}

// dx = (dx̂ − x̂ (x̂·dx̂)) / ‖x‖ where ‖x‖ > eps, dx̂ / eps where the clamp holds, dx̂ without
// normalisation; row r of dxh, into dx.
void normalize_backward(const double* xh, const double* dxh, const double* den, int64_t rows, int64_t d, bool normalize,
                        float* dx) {
  parallel_for(rows, [&](int64_t r) {
    const double* x = xh + r * d;
    const double* g = dxh + r * d;
    float* out = dx + r * d;
    if (!normalize) {
      for (int64_t k = 0; k < d; ++k) out[k] = static_cast<float>(g[k]);
      return;
    }
    double dot = 0;
    if (den[r] > kNormEps)
      for (int64_t k = 0; k < d; ++k) dot += x[k] * g[k];
    for (int64_t k = 0; k < d; ++k) out[k] = static_cast<float>((g[k] - x[k] * dot) / den[r]);
  });
}

// out [d] += Σ_c scale·g[c·g_step]·X[c, :] over the `count` rows of X [count, d], in row order:
// one row of dq̂ = scale·G p̂ (g a row of G) or of dp̂ = scale·Gᵀ q̂ (g a column).
void weighted_sum(const double* g, int64_t g_step, const double* X, int64_t count, int64_t d, double scale,
                  double* out) {
  for (int64_t c = 0; c < count; ++c) {
    const double gc = scale * g[c * g_step];
    const double* xc = X + c * d;
    for (int64_t k = 0; k < d; ++k) out[k] += gc * xc[k];
  }
}

}  // namespace

// Everything in double: the normalised rows, the logits S [n, rows] (one row per task), the
// row (and, symmetric, column) log-softmax with the gradient G = dloss/dS, then the products
// dq̂ = scale·G p̂, dp̂ = scale·Gᵀ q̂ (each output row one task, its sum in a fixed order) and the
// normalisation's backward. The row and column losses are summed in order.
void info_nce(const ops::InfoNce& a) {
  const int64_t n = a.n, d = a.d, rows = a.rows;
  const double scale = a.scale;
  std::vector<double> qh, ph, qden, pden;
  normalize_rows(a.q.as<const float>(), n, d, a.normalize, qh, qden);
  normalize_rows(a.p.as<const float>(), rows, d, a.normalize, ph, pden);
  std::vector<double> S(static_cast<size_t>(n * rows));
  parallel_for(n, [&](int64_t i) {
    const double* qi = qh.data() + i * d;
    for (int64_t j = 0; j < rows; ++j) {
      const double* pj = ph.data() + j * d;
      double s = 0;
      for (int64_t k = 0; k < d; ++k) s += qi[k] * pj[k];
      S[i * rows + j] = scale * s;
    }
  });
  const double w = (a.symmetric ? 0.5 : 1.0) / static_cast<double>(n);  // each term's weight
  const bool grad = a.dq || a.dp;
  std::vector<double> G(grad ? static_cast<size_t>(n * rows) : 0);
  std::vector<double> row_loss(static_cast<size_t>(n)), col_loss(static_cast<size_t>(n), 0.0);
  parallel_for(n, [&](int64_t i) {
    row_loss[i] = cross_entropy_of(S.data() + i * rows, rows, 1, i, w, grad ? G.data() + i * rows : nullptr, false);
  });
  if (a.symmetric) {
    // Column j < n over the n queries; each task owns its column of G (added after the rows).
    parallel_for(n, [&](int64_t j) {
      col_loss[j] = cross_entropy_of(S.data() + j, n, rows, j, w, grad ? G.data() + j : nullptr, true);
    });
  }
  double total = 0;
  for (double l : row_loss) total += l;
  for (double l : col_loss) total += l;
  a.loss.as<float>()[0] = static_cast<float>(total * w);
  if (a.dq) {
    std::vector<double> dqh(static_cast<size_t>(n * d), 0.0);
    parallel_for(
        n, [&](int64_t i) { weighted_sum(G.data() + i * rows, 1, ph.data(), rows, d, scale, dqh.data() + i * d); });
    normalize_backward(qh.data(), dqh.data(), qden.data(), n, d, a.normalize, a.dq.as<float>());
  }
  if (a.dp) {
    std::vector<double> dph(static_cast<size_t>(rows * d), 0.0);
    parallel_for(rows,
                 [&](int64_t j) { weighted_sum(G.data() + j, rows, qh.data(), n, d, scale, dph.data() + j * d); });
    normalize_backward(ph.data(), dph.data(), pden.data(), rows, d, a.normalize, a.dp.as<float>());
  }
}

}  // namespace lowrank::cpu
