// Pieces the adapter kernels share (LoRA, VeRA): adding a rank-r product into a stored weight
// (merge, unmerge, safe merge) for a float32 or bfloat16 W. Operands are strided views, so an
// adapter that uses a slice of a larger matrix (VeRA's shared projections) passes its row
// stride instead of copying the slice.
#pragma once

#include <cstdint>

#include "../core/philox.h"
#include "gemm.h"

namespace lowrank::cpu {

// W[out, in] += scale · B A, with B [out, r] of row stride ldb and A [r, in] of row stride lda.
struct ProductUpdate {
  int64_t out = 0, in = 0, r = 0;
  const float* B = nullptr;
  int64_t ldb = 0;
  const float* A = nullptr;
  int64_t lda = 0;
  float scale = 1.0f;
};

// In place. A float32 W is one GEMM with beta = 1; a bfloat16 W is widened by chunks of rows,
// updated in float32 and rounded to the nearest bfloat16 (ties to even).
// FLOPs: 2·out·in·r. Fewest bytes: W read and written once, A and B read once.
void add_product(const ProductUpdate& u, const WeightMut& W);

// Like add_product, but computes into a copy first and writes W only when every updated value
// is finite. Returns -1 on success, else the flat index of the first non-finite value (W
// untouched), whose value goes to *bad_value.
int64_t add_product_safe(const ProductUpdate& u, const WeightMut& W, float* bad_value);

// dx[t, i] += D(g A)[t, i] for t < rows, i < in, with g [rows, r] (row stride r) and A [r, in]
// (row stride lda): an adapter's input gradient when dropout is on, where the mask sits on the
// product's output and so cannot join the base product. Blocks of rows, each a small GEMM (run
// inline on its pool thread) into a buffer that the mask (keyed by t·in + i) then scales.
void add_masked_product(int64_t rows, int64_t in, int64_t r, const float* g, const float* A, int64_t lda,
                        const Dropout& drop, float* dx);

}  // namespace lowrank::cpu
