// LoRA's ops (native/cpu/lora.cc, native/cuda/lora.cu). Shapes, row-major:
//   x [T, in], W [out, in], bias [out], A [r, in], B [out, r], y [T, out], xa [T, r].
#pragma once

#include "../philox.h"
#include "fields.h"

namespace lowrank::ops {

// xa = D(x) Aᵀ; y = x Wᵀ + bias + scale · xa Bᵀ.
// FLOPs 2·T·out·(in + r) + 2·T·in·r. Fewest bytes: x, W, A, B read and y, xa written once.
struct LoraForward {
  int64_t t = 0, in = 0, out = 0, r = 0;
  TensorRef x, W, bias, A, B, y, xa;
  float scale = 1;
  Dropout drop;
  template <class V>
  void visit(V& v) {
    v.dim("t", t), v.dim("in", in), v.dim("out", out), v.dim("r", r);
    v.input("x", x, kActivation, {t, in});
    v.input("W", W, kWeight, {out, in});
    v.optional_input("bias", bias, kActivation, {out});
    v.input("A", A, kF32, {r, in});
    v.input("B", B, kF32, {out, r});
    v.output("y", y, kActivation, {t, out});
    v.output("xa", xa, kF32, {t, r});
    v.scalar("scale", scale);
    v.dropout(drop);
  }
};

// dB = scale · dyᵀ xa; g = scale · dy B; dA = gᵀ D(x); dx = dy W + D(g A). x and dA absent
// together (LoRA-FA); dx absent when not wanted.
// FLOPs 2·T·r·(2·out + in) + 2·T·in·(out + r). Fewest bytes: dy, x, W, A, B, xa read, dx, dA, dB written.
struct LoraBackward {
  int64_t t = 0, in = 0, out = 0, r = 0;
  TensorRef dy, x, W, A, B, xa, dx, dA, dB;
  float scale = 1;
  Dropout drop;
  template <class V>
  void visit(V& v) {
    v.dim("t", t), v.dim("in", in), v.dim("out", out), v.dim("r", r);
    v.input("dy", dy, kActivation, {t, out});
    v.optional_input("x", x, kActivation, {t, in});
    v.input("W", W, kWeight, {out, in});
    v.input("A", A, kF32, {r, in});
    v.input("B", B, kF32, {out, r});
    v.input("xa", xa, kF32, {t, r});
    v.optional_output("dx", dx, kActivation, {t, in});
    v.optional_output("dA", dA, kF32, {r, in});
    v.output("dB", dB, kF32, {out, r});
    v.scalar("scale", scale);
    v.dropout(drop);
  }
  void validate(const char* op) const { LR_CHECK(op, !dA == !x, "dA needs x, and x is kept only for dA"); }
};

// LoRA-FA's projection of B's gradient: dB ← dB (A Aᵀ + 1e-8·I)⁻¹ / scale², in place.
// FLOPs 2·r²·in + r³/3 + 2·out·r². Fewest bytes: A read, dB read and written.
struct LoraFaProjectGrad {
  int64_t in = 0, out = 0, r = 0;
  TensorRef A, dB;
  float scale = 1;
  template <class V>
  void visit(V& v) {
    v.dim("in", in), v.dim("out", out), v.dim("r", r);
    v.input("A", A, kF32, {r, in});
    v.inout("dB", dB, kF32, {out, r});
    v.scalar("scale", scale);
  }
};

// W += scale · B A (unmerge: -scale); `safe`: W written only when every value is finite, else
// the RangeError of merge_not_finite. FLOPs 2·out·in·r. Fewest bytes: W read and written, A, B read.
struct LoraMerge {
  int64_t in = 0, out = 0, r = 0;
  TensorRef W, A, B;
  float scale = 1;
  bool safe = false;
  template <class V>
  void visit(V& v) {
    v.dim("in", in), v.dim("out", out), v.dim("r", r);
    v.inout("W", W, kWeight, {out, in});
    v.input("A", A, kF32, {r, in});
    v.input("B", B, kF32, {out, r});
    v.scalar("scale", scale);
    v.flag("safe", safe);
  }
};

}  // namespace lowrank::ops
