// Thin products: out[i, j] = alpha · Σ_k D(x)[i, k] · A[j, k] for a few columns j (LoRA's
// xa = D(x) Aᵀ and g = s · dy B), where a packed GEMM would waste most of its tile on N = r.
// x [m, k] and A [r, k] are both read along k, x once per row block; no packing.
//
// FLOPs: 2·m·r·k. Fewest bytes: x read once (A stays in cache), out written once.
#pragma once

#include <cstdint>

#include "../../core/philox.h"

namespace lowrank::cpu {

struct ThinArgs {
  int64_t m = 0, r = 0, k = 0;
  const float* x = nullptr;  // [m, k], row stride ldx
  int64_t ldx = 0;
  const float* a = nullptr;  // [r, k], row stride lda
  int64_t lda = 0;
  float alpha = 1.0f;
  const Dropout* dropout = nullptr;  // on x, keyed by row * ldx + col
  float* out = nullptr;              // [m, r], row stride ldo (written, never read)
  int64_t ldo = 0;
};

// Runs on the thread pool; uses the AVX-512 path when the current GEMM kernels are AVX-512,
// else a portable loop. Results do not depend on the thread count.
void thin_nt(const ThinArgs& args);

}  // namespace lowrank::cpu
