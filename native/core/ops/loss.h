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

// InfoNCE (sentence-transformers' MultipleNegativesRankingLoss) of queries q [n, d] against
// p [rows, d], rows = n + m: row i of p is the positive of query i, rows n.. are hard negatives
// shared by every query. With `normalize`, each row of q and p is divided by max(‖row‖, 1e-12)
// first (as torch's F.normalize). Logits S = scale · q̂ p̂ᵀ [n, rows];
//   loss_q = (1/n) Σ_i (logsumexp(S[i, :]) − S[i, i]);
// `symmetric` (MultipleNegativesSymmetricRankingLoss): loss = (loss_q + loss_p) / 2 with
//   loss_p = (1/n) Σ_{j<n} (logsumexp(S[:n, j]) − S[j, j]) (the hard negatives take no part).
// dq [n, d], dp [rows, d] (optional): the gradients with respect to q and p as given (through the
// normalisation). The only temporaries are [n, rows] (the logits and their gradient) and the
// normalised rows. The loss is summed in row order on both devices.
// FLOPs ~ 2·n·rows·d (+ 4·n·rows·d with the gradients) + n·rows·(exp + 4). Fewest bytes:
// 4·(n + rows)·d + 4 (+ 4·(n + rows)·d with the gradients).
struct InfoNce {
  int64_t n = 0, d = 0, rows = 0;
  float scale = 20.0f;
  bool symmetric = false, normalize = true;
  TensorRef q, p, loss, dq, dp;
  template <class V>
  void visit(V& v) {
    v.dim("n", n), v.dim("d", d), v.dim("rows", rows);
    v.invariant(rows >= n, "p must have at least n rows (rows >= n)");
    v.input("q", q, kF32, {n, d});
    v.input("p", p, kF32, {rows, d});
    v.scalar("scale", scale);
    v.flag("symmetric", symmetric);
    v.flag("normalize", normalize);
    v.output("loss", loss, kF32, {1});
    v.optional_output("dq", dq, kF32, {n, d});
    v.optional_output("dp", dp, kF32, {rows, d});
  }
};

}  // namespace lowrank::ops
