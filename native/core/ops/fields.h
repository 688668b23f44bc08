// The op argument structs (native/core/ops/*.h) and the one protocol that reads, checks, fills
// and compares them. Each struct holds plain fields (dimensions, TensorRefs, scalars) and
// declares them once, beside them, in a member template
//
//   template <class V> void visit(V& v) { v.dim("t", t); v.input("x", x, kActivation, {t, in}); ... }
//
// A visitor V walks the fields in that order. Its method set (every visitor implements all):
//   dim(name, int64_t&)                    a positive dimension. Dimensions come before the
//                                          tensor shapes that use them (the shapes are
//                                          evaluated at the call, from the fields already read).
//   input(name, TensorRef&, Kind, shape)   a tensor the op reads; shape is a list of
//                                          dimensions whose product (overflow-checked) is the
//                                          element count; without a shape, any element count.
//   output(...)                            a tensor the op writes completely (never read).
//   inout(...)                             a tensor the op reads and updates in place.
//   optional_input / optional_output(...)  the same, null when absent.
//   scalar(name, float&)                   a number (a finite one within float32's range, or
//                                          NaN or ±Infinity).
//   number(name, double&)                  a number kept as a double (fill's value, exact for
//                                          every int32).
//   sign(name, float&)                     +1 or -1.
//   flag(name, bool&)                      a boolean.
//   seed(name, uint64_t&)                  a 64-bit seed (BigInt or safe integer in JS).
//   dropout(Dropout&)                      the dropout fields "p" (in [0, 1)) and "seed".
//   invariant(bool, message)               a relation between the fields read so far (a
//                                          RangeError "<op>: <message>" when false).
//   may_alias(written, read)               the op is element-wise in these two: the tensor it
//                                          writes may be the very same memory as the one it
//                                          reads. Any other overlap between a tensor an op
//                                          writes and another of its tensors is refused (the
//                                          addon's RangeError naming both).
//   tensors(name, vector<TensorRef>&, Kind, like)   a list of tensors; when `like` is given,
//                                          as many as it has, each with its entry's count.
//   numbers(name, vector<double>&, example)  a list of numbers (per group); `example` is a
//                                          typical value, what the checker fills in.
//   indices(name, vector<double>&, count, range)  a list of `count` indices into a list of
//                                          `range` entries (checked by validate()).
//   labels(name, TensorRef&, shape, bound)  an int32 tensor the op reads (class labels, row
//                                          indices) whose values must lie in [0, bound); the
//                                          element count as for input(). The values are the
//                                          kernel's to check (they live on the tensor's device).
// After the visit, `validate(op)` (optional) checks what sizes cannot say (LR_CHECK).
//
// The visitors: the addon's unpacker (native/addon/marshal.cc: reads the JS argument object,
// checks kind, dtype, element count and device, naming the field and the op in every error)
// and the checker's random filler (native/tools/check_ops.cc). The op list is
// native/core/ops.def.
#pragma once

#include <cmath>
#include <cstdint>
#include <initializer_list>
#include <sstream>
#include <string>

#include "../check.h"
#include "../tensor.h"

namespace lowrank::ops {

// What a tensor field accepts, by device:
//   kF32         adapter parameters, their gradients, saved xa / u, λ: float32 on both devices;
//   kWeight      the base weight: float32 or bfloat16 on the CPU, any float dtype on CUDA;
//   kActivation  x, y, dy, dx, the base bias: float32 on the CPU, any float dtype on CUDA;
//   kAnyDtype    storage ops (convert, fill): every dtype, int32 included, on both devices;
//   kInt32       index tensors: int32 on both devices. An op reads int32 indices through
//                labels() (their values bounded); an op that produces indices declares an
//                output(name, ref, kInt32, shape) (topk's indices).
enum Kind { kF32, kWeight, kActivation, kAnyDtype, kInt32 };

inline bool accepts(Kind k, Device dev, DType t) {
  switch (k) {
    case kF32: return t == DType::kFloat32;
    case kWeight:
      return t == DType::kFloat32 || t == DType::kBFloat16 || (dev == Device::kCuda && t == DType::kFloat16);
    case kActivation: return t == DType::kFloat32 || (dev == Device::kCuda && dtype_is_float(t));
    case kAnyDtype: return true;
    case kInt32: return t == DType::kInt32;
  }
  return false;
}

using Shape = std::initializer_list<int64_t>;

// The element count of `shape`; "<op>: the dimensions overflow" (RangeError) past int64.
inline int64_t elements_of(const char* op, Shape shape) {
  int64_t n = 1;
  for (int64_t d : shape)
    if (__builtin_mul_overflow(n, d, &n)) throw RangeError(std::string(op) + ": the dimensions overflow");
  return n;
}

// The RangeError of a safe merge whose result at flat index `bad` of W [*, in] is `value`.
[[noreturn]] inline void merge_not_finite(int64_t bad, float value, int64_t in) {
  std::ostringstream s;
  const char* text = std::isnan(value) ? "NaN" : value > 0 ? "Infinity" : "-Infinity";
  s << "Expected a finite merged weight for W but received " << text << " at W[" << bad / in << ", " << bad % in
    << "]; W was left unchanged";
  throw RangeError(s.str());
}

}  // namespace lowrank::ops
