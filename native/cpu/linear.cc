// A plain linear layer, y = x Wᵀ + b with W trainable: the full fine-tuning baseline the
// adapters are compared against.
#include <algorithm>

#include "../core/ops.h"
#include "gemm.h"
#include "threadpool.h"

namespace lowrank::cpu {

// ---- the op entry points (native/core/ops/linear.h) ----------------------------------------

// y = x Wᵀ + bias (bias may be null). FLOPs 2·T·in·out.
void linear_forward(const ops::LinearForward& a) {
  const GemmTerm t{{a.x.as<const float>(), a.in, false}, weight_view(weight_of(a.W), a.in, true), a.in, 1.0f};
  gemm({a.t, a.out, &t, 1, a.y.as<float>(), a.out, 0.0f, a.bias.as<const float>()});
}

// dx = dy W (dx may be null), dW = dyᵀ x (dW may be null), db = Σ_t dy (db may be null).
// FLOPs 4·T·in·out. W must be float32 when dW is wanted (a bfloat16 W cannot train in place).
void linear_backward(const ops::LinearBackward& a) {
  const int64_t T = a.t, in = a.in, out = a.out;
  const float *dy = a.dy.as<const float>(), *x = a.x.as<const float>();
  float *dx = a.dx.as<float>(), *dW = a.dW.as<float>(), *db = a.db.as<float>();
  if (dx) {
    const GemmTerm t{{dy, out, false}, weight_view(weight_of(a.W), in, false), out, 1.0f};
    gemm({T, in, &t, 1, dx, in, 0.0f, nullptr});
  }
  if (dW) {
    // dW = dyᵀ x: [out, T] · [T, in]
    const GemmTerm t{{dy, out, true}, {x, in, false}, T, 1.0f};
    gemm({out, in, &t, 1, dW, in, 0.0f, nullptr});
  }
  if (db) {
    // Column sums of dy, each column reduced in row order (deterministic).
    constexpr int64_t kCols = 256;
    parallel_for((out + kCols - 1) / kCols, [&](int64_t c) {
      const int64_t o0 = c * kCols, o1 = std::min(out, o0 + kCols);
      for (int64_t o = o0; o < o1; ++o) db[o] = 0.0f;
      for (int64_t t = 0; t < T; ++t)
        for (int64_t o = o0; o < o1; ++o) db[o] += dy[t * out + o];
    });
  }
}

}  // namespace lowrank::cpu
