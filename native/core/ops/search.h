// Search, on both devices (native/cpu/search.cc, native/cuda/search.cu): the k best scores of
// each row, the selection step of exact nearest-neighbour search over a block of scores.
#pragma once

#include "../hd.h"
#include "fields.h"

namespace lowrank::ops {

// The order of topk as one unsigned key per (score, column), larger is better; every key of a
// row is distinct. The high 32 bits order the score: NaN lowest (below -Infinity), then the
// numbers ascending, -0 and +0 equal; the low 32 bits, 0xffffffff − column, break ties toward
// the lower column. Both devices select and sort by it, so they agree bit for bit.
LR_HD uint64_t topk_key(float score, int64_t column) {
  uint32_t order = 0;  // NaN
  if (score == score) {
    const uint32_t bits = score == 0.0f ? 0u : f32_bits(score);  // -0 as +0
    order = (bits & 0x80000000u) != 0 ? ~bits : bits | 0x80000000u;
  }
  return (static_cast<uint64_t>(order) << 32) | (0xffffffffu - static_cast<uint32_t>(column));
}

// The column of a topk_key.
LR_HD int32_t topk_column(uint64_t key) {
  return static_cast<int32_t>(0xffffffffu - static_cast<uint32_t>(key & 0xffffffffu));
}

// The k largest scores of each row of scores [rows, cols], 1 <= k <= cols < 2^31:
//   indices [rows, k] int32: their columns, best first;
//   values [rows, k] float32: scores[row, indices[row, i]] (the input's bits, NaN and -0 kept).
// Order: descending score, ties by the lower column, NaN after every number (and -Infinity), -0
// equal to +0 (topk_key). Deterministic: the same output on both devices and any thread count.
// FLOPs ~ rows·cols·log2(k) comparisons on the CPU (a bounded heap per row; no arithmetic).
// Fewest bytes: 4·rows·cols + 8·rows·k.
struct TopK {
  int64_t rows = 0, cols = 0, k = 0;
  TensorRef scores, indices, values;
  template <class V>
  void visit(V& v) {
    v.dim("rows", rows), v.dim("cols", cols), v.dim("k", k);
    v.invariant(k <= cols, "k must be at most cols");
    v.invariant(cols <= 0x7fffffff, "cols must be below 2^31 (the indices are int32)");
    v.input("scores", scores, kF32, {rows, cols});
    v.output("indices", indices, kInt32, {rows, k});
    v.output("values", values, kF32, {rows, k});
  }
};

}  // namespace lowrank::ops
