// Storage ops on whole tensors, on both devices (native/cpu/elementwise.cc and convert.cc,
// native/cuda/elementwise.cu and memory.cu), the CPU's seeded fill (native/cpu/random.cc), and
// the element-wise building blocks of a training loop (activations and their gradients, add,
// scale: native/cpu/elementwise.cc, native/cuda/elementwise.cu).
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

// dst[i] = value rounded to dst's dtype (an int32 dst: value truncated toward zero; a double,
// so every int32 is exact). FLOPs 0. Fewest bytes: n·size written.
struct Fill {
  TensorRef dst;
  double value = 0;
  template <class V>
  void visit(V& v) {
    v.output("dst", dst, kAnyDtype);
    v.number("value", value);
  }
  void validate(const char* op) const {
    if (dst.dtype == DType::kInt32) {
      LR_CHECK(op, value >= -2147483648.0 && value <= 2147483647.0, "value must lie in int32's range for an int32 dst");
    } else {
      LR_CHECK(op, !std::isfinite(value) || std::fabs(value) <= 3.4028234663852886e38,
               "value must lie in float32's range");
    }
  }
};

// dst += src, float32: gradient accumulation; src may alias dst. FLOPs n. Fewest bytes: 12·n.
struct AddInto {
  TensorRef dst, src;
  template <class V>
  void visit(V& v) {
    v.inout("dst", dst, kF32);
    v.input("src", src, kF32, {dst.elements});
    v.may_alias("dst", "src");
  }
};

// y = f(x) element by element, float32: reluForward (max(x, 0), NaN kept), geluForward (the
// exact form x·Φ(x) = x/2·(1 + erf(x/√2)), torch's nn.GELU default), tanhForward. y may alias x.
// FLOPs: n (relu), ~25·n (gelu, erf), ~20·n (tanh). Fewest bytes: 8·n.
struct Unary {
  TensorRef x, y;
  template <class V>
  void visit(V& v) {
    v.input("x", x, kF32);
    v.output("y", y, kF32, {x.elements});
    v.may_alias("y", "x");
  }
};

// dx = dy ⊙ f'(x), from the forward's input x, float32: reluBackward (dy where x > 0, else 0),
// geluBackward (Φ(x) + x·φ(x)), tanhBackward (1 − tanh²(x)). dx may alias dy or x.
// FLOPs: n (relu), ~35·n (gelu), ~22·n (tanh). Fewest bytes: 12·n.
struct UnaryBackward {
  TensorRef x, dy, dx;
  template <class V>
  void visit(V& v) {
    v.input("x", x, kF32);
    v.input("dy", dy, kF32, {x.elements});
    v.output("dx", dx, kF32, {x.elements});
    v.may_alias("dx", "dy"), v.may_alias("dx", "x");
  }
};

// out = a + alpha·b, float32; out may be a new tensor or alias a or b. FLOPs 2·n. Fewest
// bytes: 12·n.
struct Add {
  TensorRef a, b, out;
  float alpha = 1;
  template <class V>
  void visit(V& v) {
    v.input("a", a, kF32);
    v.input("b", b, kF32, {a.elements});
    v.output("out", out, kF32, {a.elements});
    v.may_alias("out", "a"), v.may_alias("out", "b");
    v.scalar("alpha", alpha);
  }
};

// y = alpha·x, float32; y may alias x. FLOPs n. Fewest bytes: 8·n.
struct Scale {
  TensorRef x, y;
  float alpha = 1;
  template <class V>
  void visit(V& v) {
    v.input("x", x, kF32);
    v.output("y", y, kF32, {x.elements});
    v.may_alias("y", "x");
    v.scalar("alpha", alpha);
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
