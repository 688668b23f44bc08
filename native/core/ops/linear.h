// The plain linear layer (native/cpu/linear.cc, native/cuda/linear.cu): x [T, in], W [out, in].
#pragma once

#include "fields.h"

namespace lowrank::ops {

// y = x Wᵀ + bias. FLOPs 2·T·in·out. Fewest bytes: x, W, bias read, y written.
struct LinearForward {
  int64_t t = 0, in = 0, out = 0;
  TensorRef x, W, bias, y;
  template <class V>
  void visit(V& v) {
    v.dim("t", t), v.dim("in", in), v.dim("out", out);
    v.input("x", x, kActivation, {t, in});
    v.input("W", W, kWeight, {out, in});
    v.optional_input("bias", bias, kActivation, {out});
    v.output("y", y, kActivation, {t, out});
  }
};

// dx = dy W, dW = dyᵀ x, db = Σ_t dy (each absent when not wanted). FLOPs 4·T·in·out.
// Fewest bytes: dy, x, W read, dx, dW, db written.
struct LinearBackward {
  int64_t t = 0, in = 0, out = 0;
  TensorRef dy, x, W, dx, dW, db;
  template <class V>
  void visit(V& v) {
    v.dim("t", t), v.dim("in", in), v.dim("out", out);
    v.input("dy", dy, kActivation, {t, out});
    v.input("x", x, kActivation, {t, in});
    v.input("W", W, kWeight, {out, in});
    v.optional_output("dx", dx, kActivation, {t, in});
    v.optional_output("dW", dW, kF32, {out, in});
    v.optional_output("db", db, kF32, {out});
  }
  void validate(const char* op) const {
    LR_CHECK(op, !dW || W.dtype == DType::kFloat32, "W must be float32 when dW is wanted");
  }
};

}  // namespace lowrank::ops
