// Losses, on both devices (native/cpu/loss.cc, native/cuda/loss.cu): each fuses the forward
// value with its gradient, so a training step reads the logits once.
#pragma once

#include "fields.h"

namespace lowrank::ops {

// Softmax cross-entropy of logits z [t, c] against int32 labels [t] in [0, c):
//   loss [1] = (1/t) Σ_rows (logsumexp(z_row) − z_row[label_row])
//   dlogits [t, c] = (softmax(z_row) − onehot(label_row)) / t   (optional)
// The mean is summed in row order on both devices (the same bits for any thread count). A label
// out of range: a RangeError naming it on the CPU; on CUDA that row's loss (so the mean) and its
// dlogits row are NaN (a kernel cannot cheaply throw).
// FLOPs ~ t·c·(exp + 4) (+ 3·t·c with dlogits). Fewest bytes: 4·t·c + 4·t + 4 (+ 4·t·c with dlogits).
struct SoftmaxCrossEntropy {
  int64_t t = 0, c = 0;
  TensorRef logits, labels, loss, dlogits;
  template <class V>
  void visit(V& v) {
    v.dim("t", t), v.dim("c", c);
    v.input("logits", logits, kF32, {t, c});
    v.labels("labels", labels, {t}, c);
    v.output("loss", loss, kF32, {1});
    v.optional_output("dlogits", dlogits, kF32, {t, c});
  }
};

}  // namespace lowrank::ops
