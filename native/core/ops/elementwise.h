// Storage ops on whole tensors, on both devices (native/cpu/elementwise.cc and convert.cc,
// native/cuda/elementwise.cu and memory.cu), and the CPU's seeded fill (native/cpu/random.cc).
#pragma once

#include "fields.h"

namespace lowrank::ops {

// dst = src converted to dst's dtype (round-to-nearest-even); the same dtype copies, int32
// converts to nothing else (RangeError). FLOPs 0. Fewest bytes: n·(src size + dst size).
struct Convert {
  TensorRef src, dst;
  template <class V>
  void visit(V& v) {
    v.input("src", src, kAnyDtype);
    v.output("dst", dst, kAnyDtype, {src.elements});
  }
};

// dst[i] = value rounded to dst's dtype (an int32 dst: value truncated toward zero).
// FLOPs 0. Fewest bytes: n·size written.
struct Fill {
  TensorRef dst;
  float value = 0;
  template <class V>
  void visit(V& v) {
    v.output("dst", dst, kAnyDtype);
    v.scalar("value", value);
  }
};

// dst += src, float32: gradient accumulation. FLOPs n. Fewest bytes: 12·n.
struct AddInto {
  TensorRef dst, src;
  template <class V>
  void visit(V& v) {
    v.inout("dst", dst, kF32);
    v.input("src", src, kF32, {dst.elements});
  }
};

// out ~ U[a, b) (normal: N(a, b²)) from the counter-based generator keyed by seed (CPU only).
// FLOPs ~0. Fewest bytes: 4·n written.
struct FillRandom {
  TensorRef out;
  uint64_t seed = 0;
  bool normal = false;
  float a = 0, b = 1;
  template <class V>
  void visit(V& v) {
    v.output("out", out, kF32);
    v.seed("seed", seed);
    v.flag("normal", normal);
    v.scalar("a", a), v.scalar("b", b);
  }
};

}  // namespace lowrank::ops
