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

}  // namespace lowrank::cpu
