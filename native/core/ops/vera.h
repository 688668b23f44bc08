// VeRA's ops (native/cpu/vera.cc, native/cuda/vera.cu). The shared projections are whole:
// A [r, maxIn], B [maxOut, r]; a layer (out, in) reads their top-left slices. λd [r], λb [out].
#pragma once

#include "../philox.h"
#include "fields.h"

namespace lowrank::ops {

// Av ~ U(±√(6 / maxIn)), Bv ~ U(±√(6 / r)) from one Philox stream keyed by seed (CPU only).
// FLOPs ~0 (one Philox word per element). Fewest bytes: A and B written once.
struct VeraProjections {
  int64_t r = 0, max_in = 0, max_out = 0;
  uint64_t seed = 0;
  TensorRef A, B;
  template <class V>
  void visit(V& v) {
    v.dim("r", r), v.dim("maxIn", max_in), v.dim("maxOut", max_out);
    v.seed("seed", seed);
    v.output("A", A, kF32, {r, max_in});
    v.output("B", B, kF32, {max_out, r});
  }
};

// The layer's dimensions beside the projections'; a layer never exceeds them (checked before
// any tensor is read).
#define LOWRANK_VERA_DIMS(v, with_t)                                                \
  do {                                                                              \
    if (with_t) v.dim("t", t);                                                      \
    v.dim("in", in), v.dim("out", out), v.dim("r", r);                              \
    v.dim("maxIn", max_in), v.dim("maxOut", max_out);                               \
    v.invariant(in <= max_in, "the layer's in exceeds the projections' maxIn");     \
    v.invariant(out <= max_out, "the layer's out exceeds the projections' maxOut"); \
  } while (0)

// u = D(x) Aᵀ; y = x Wᵀ + bias + λb ⊙ ((u ⊙ λd) Bᵀ).
// FLOPs 2·T·out·(in + r) + 2·T·in·r. Fewest bytes: x, W, the slices of A and B read, y, u written.
struct VeraForward {
  int64_t t = 0, in = 0, out = 0, r = 0, max_in = 0, max_out = 0;
  TensorRef x, W, bias, A, B, lambda_d, lambda_b, y, u;
  Dropout drop;
  template <class V>
  void visit(V& v) {
    LOWRANK_VERA_DIMS(v, true);
    v.input("x", x, kActivation, {t, in});
    v.input("W", W, kWeight, {out, in});
    v.optional_input("bias", bias, kActivation, {out});
    v.input("A", A, kF32, {r, max_in});
    v.input("B", B, kF32, {max_out, r});
    v.input("lambdaD", lambda_d, kF32, {r});
    v.input("lambdaB", lambda_b, kF32, {out});
    v.output("y", y, kActivation, {t, out});
    v.output("u", u, kF32, {t, r});
    v.dropout(drop);
  }
};

// dλb, dλd and dx from dy and the saved u (dx absent when not wanted).
// FLOPs 4·T·out·r + 2·T·in·(out + r). Fewest bytes: dy, W, u, the slices read, dx, dλ written.
struct VeraBackward {
  int64_t t = 0, in = 0, out = 0, r = 0, max_in = 0, max_out = 0;
  TensorRef dy, W, A, B, lambda_d, lambda_b, u, dx, d_lambda_d, d_lambda_b;
  Dropout drop;
  template <class V>
  void visit(V& v) {
    LOWRANK_VERA_DIMS(v, true);
    v.input("dy", dy, kActivation, {t, out});
    v.input("W", W, kWeight, {out, in});
    v.input("A", A, kF32, {r, max_in});
    v.input("B", B, kF32, {max_out, r});
    v.input("lambdaD", lambda_d, kF32, {r});
    v.input("lambdaB", lambda_b, kF32, {out});
    v.input("u", u, kF32, {t, r});
    v.optional_output("dx", dx, kActivation, {t, in});
    v.output("dLambdaD", d_lambda_d, kF32, {r});
    v.output("dLambdaB", d_lambda_b, kF32, {out});
    v.dropout(drop);
  }
};

// W += sign · (λb ⊙ B)(λd ⊙ A); `safe` as in LoraMerge. FLOPs 2·out·in·r. Fewest bytes: W read
// and written, the slices read.
struct VeraMerge {
  int64_t t = 1, in = 0, out = 0, r = 0, max_in = 0, max_out = 0;
  TensorRef W, A, B, lambda_d, lambda_b;
  float sign = 1;
  bool safe = false;
  template <class V>
  void visit(V& v) {
    LOWRANK_VERA_DIMS(v, false);
    v.inout("W", W, kWeight, {out, in});
    v.input("A", A, kF32, {r, max_in});
    v.input("B", B, kF32, {max_out, r});
    v.input("lambdaD", lambda_d, kF32, {r});
    v.input("lambdaB", lambda_b, kF32, {out});
    v.sign("sign", sign);
    v.flag("safe", safe);
  }
};

}  // namespace lowrank::ops
