// Losses (native/core/ops/loss.h), the mirror of native/cuda/loss.cu.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <sstream>
#include <vector>

#include "../core/ops.h"
#include "threadpool.h"

namespace lowrank::cpu {

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
    const float* zr = z + i * c;
    double m = zr[0];
    for (int64_t j = 1; j < c; ++j) m = std::max(m, static_cast<double>(zr[j]));
    double sum = 0;
    for (int64_t j = 0; j < c; ++j) sum += std::exp(zr[j] - m);
    const double lse = m + std::log(sum);
    row_loss[i] = lse - zr[labels[i]];
    if (dz == nullptr) return;
    float* dr = dz + i * c;
    for (int64_t j = 0; j < c; ++j)
      dr[j] = static_cast<float>((std::exp(zr[j] - lse) - (j == labels[i] ? 1.0 : 0.0)) * inv_t);
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
    const double* sr = S.data() + i * rows;
    double m = sr[0];
    for (int64_t j = 1; j < rows; ++j) m = std::max(m, sr[j]);
    double sum = 0;
    for (int64_t j = 0; j < rows; ++j) sum += std::exp(sr[j] - m);
    const double lse = m + std::log(sum);
    row_loss[i] = lse - sr[i];
    if (!grad) return;
    double* gr = G.data() + i * rows;
    for (int64_t j = 0; j < rows; ++j) gr[j] = w * (std::exp(sr[j] - lse) - (j == i ? 1.0 : 0.0));
  });
  if (a.symmetric) {
    // Column j < n over the n queries; each task owns its column of G (added after the rows).
    parallel_for(n, [&](int64_t j) {
      double m = S[j];
      for (int64_t i = 1; i < n; ++i) m = std::max(m, S[i * rows + j]);
      double sum = 0;
      for (int64_t i = 0; i < n; ++i) sum += std::exp(S[i * rows + j] - m);
      const double lse = m + std::log(sum);
      col_loss[j] = lse - S[j * rows + j];
      if (!grad) return;
      for (int64_t i = 0; i < n; ++i) G[i * rows + j] += w * (std::exp(S[i * rows + j] - lse) - (i == j ? 1.0 : 0.0));
    });
  }
  double total = 0;
  for (double l : row_loss) total += l;
  for (double l : col_loss) total += l;
  a.loss.as<float>()[0] = static_cast<float>(total * w);
  if (a.dq) {
    std::vector<double> dqh(static_cast<size_t>(n * d), 0.0);
    parallel_for(n, [&](int64_t i) {
      double* out = dqh.data() + i * d;
      for (int64_t j = 0; j < rows; ++j) {
        const double g = scale * G[i * rows + j];
        const double* pj = ph.data() + j * d;
        for (int64_t k = 0; k < d; ++k) out[k] += g * pj[k];
      }
    });
    normalize_backward(qh.data(), dqh.data(), qden.data(), n, d, a.normalize, a.dq.as<float>());
  }
  if (a.dp) {
    std::vector<double> dph(static_cast<size_t>(rows * d), 0.0);
    parallel_for(rows, [&](int64_t j) {
      double* out = dph.data() + j * d;
      for (int64_t i = 0; i < n; ++i) {
        const double g = scale * G[i * rows + j];
        const double* qi = qh.data() + i * d;
        for (int64_t k = 0; k < d; ++k) out[k] += g * qi[k];
      }
    });
    normalize_backward(ph.data(), dph.data(), pden.data(), rows, d, a.normalize, a.dp.as<float>());
  }
}

}  // namespace lowrank::cpu
