// Delta-LoRA's weight update (native/cpu/delta_lora.cc, native/cuda/delta_lora.cu).
#pragma once

#include "fields.h"

namespace lowrank::ops {

// W += lambda · scale · (B1 A1 − B0 A0), W [out, in], A0, A1 [r, in], B0, B1 [out, r].
// FLOPs 4·out·in·r. Fewest bytes: W read and written once, the four adapter matrices read.
struct DeltaLoraUpdate {
  int64_t out = 0, in = 0, r = 0;
  TensorRef W, A0, B0, A1, B1;
  float lambda = 1, scale = 1;
  template <class V>
  void visit(V& v) {
    v.dim("out", out), v.dim("in", in), v.dim("r", r);
    v.inout("W", W, kWeight, {out, in});
    v.input("A0", A0, kF32, {r, in});
    v.input("B0", B0, kF32, {out, r});
    v.input("A1", A1, kF32, {r, in});
    v.input("B1", B1, kF32, {out, r});
    v.scalar("lambda", lambda);
    v.scalar("scale", scale);
  }
};

}  // namespace lowrank::ops
