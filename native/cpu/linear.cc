#include "linear.h"

#include <algorithm>

#include "../core/ops.h"
#include "threadpool.h"

namespace lowrank::cpu {

void linear_forward(const LinearDims& d, const float* x, const Weight& W, const float* bias, float* y) {
  const GemmTerm t{{x, d.in, false}, weight_view(W, d.in, true), d.in, 1.0f};
  gemm({d.t, d.out, &t, 1, y, d.out, 0.0f, bias});
}

void linear_backward(const LinearDims& d, const float* dy, const float* x, const Weight& W, float* dx, float* dW,
                     float* db) {
  if (dx) {
    const GemmTerm t{{dy, d.out, false}, weight_view(W, d.in, false), d.out, 1.0f};
    gemm({d.t, d.in, &t, 1, dx, d.in, 0.0f, nullptr});
  }
  if (dW) {
    // dW = dyᵀ x: [out, T] · [T, in]
    const GemmTerm t{{dy, d.out, true}, {x, d.in, false}, d.t, 1.0f};
    gemm({d.out, d.in, &t, 1, dW, d.in, 0.0f, nullptr});
  }
  if (db) {
    // Column sums of dy, each column reduced in row order (deterministic).
    constexpr int64_t kCols = 256;
    parallel_for((d.out + kCols - 1) / kCols, [&](int64_t c) {
      const int64_t o0 = c * kCols, o1 = std::min(d.out, o0 + kCols);
      for (int64_t o = o0; o < o1; ++o) db[o] = 0.0f;
      for (int64_t t = 0; t < d.t; ++t)
        for (int64_t o = o0; o < o1; ++o) db[o] += dy[t * d.out + o];
    });
  }
}

// ---- the op entry points (native/core/ops/linear.h) ----------------------------------------

void linear_forward(const ops::LinearForward& a) {
  linear_forward({a.t, a.in, a.out}, a.x.as<const float>(), weight_of(a.W), a.bias.as<const float>(), a.y.as<float>());
}

void linear_backward(const ops::LinearBackward& a) {
  linear_backward({a.t, a.in, a.out}, a.dy.as<const float>(), a.x.as<const float>(), weight_of(a.W), a.dx.as<float>(),
                  a.dW.as<float>(), a.db.as<float>());
}

}  // namespace lowrank::cpu
