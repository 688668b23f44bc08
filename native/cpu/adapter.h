// Pieces the adapter kernels share (LoRA, VeRA): adding a rank-r product into a stored weight
// (merge, unmerge, safe merge) for a float32 or bfloat16 W, and the forward's output and the
// backward's input gradient, each with the adapter joined to the base product. Operands are strided views, so an
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

// y = [x | xa] · [W | scale·B]ᵀ + bias for x [t, in], xa [t, r], W [out, in] and B [out, r]:
// the base product with the adapter's r steps joined to its inner dimension, so y is written
// once. FLOPs: 2·t·out·(in + r).
void adapter_output(int64_t t, int64_t in, int64_t out, int64_t r, const float* x, const Weight& W, const float* xa,
                    const float* B, float scale, const float* bias, float* y);

// dx = dy W + D(g A) for dy [t, out], g [t, r] and A [r, in] (row stride lda): an adapter's
// input gradient. Without dropout it is one product over the joined inner dimension out + r;
// with it the mask sits on g A's output, so that product is added afterwards in blocks of rows
// that the mask (keyed by t·in + i) scales. FLOPs: 2·t·in·(out + r).
void adapter_input_grad(int64_t t, int64_t in, int64_t out, int64_t r, const float* dy, const Weight& W, const float* g,
                        const float* A, int64_t lda, const Dropout& drop, float* dx);

}  // namespace lowrank::cpu
