// Micro-kernels of the GEMM core: one per ISA, each computing an MR x NR tile of C from a
// packed MR-row strip of op(A) and a packed NR-column strip of op(B):
//
//   C[0:rows, 0:cols] = (accumulate ? C : 0) + (bias ? bias[0:cols] : 0) + Σ_p a[p] ⊗ b[p]
//
// a holds kc groups of MR values (one per row), b kc groups of NR values (one per column);
// rows <= MR and cols <= NR select the part of the tile that exists in C.
#pragma once

#include <cstdint>

namespace lowrank::cpu::gemm_detail {

using MicroKernel = void (*)(int64_t kc, const float* a, const float* b, float* c, int64_t ldc, int rows, int cols,
                             const float* bias, bool accumulate);

// C[0:rows, 0:cols] += a·b for one row strip of a rank-r update (see KernelSet::update).
using UpdateStrip = void (*)(int64_t kc, const float* a, const float* b, float* c, int64_t ldc, int rows, int64_t cols);

// Optional packing helper: transposes a block of 16 steps. Reads `rows` (<= 16) rows of 16
// floats at src + i * ld, and writes for each step p = 0..15 the row values (times alpha) to
// dst + p * dst_stride, lanes 0..lanes-1 (lanes <= 16), zeros in lanes >= rows.
using Transpose16 = void (*)(const float* src, int64_t ld, int rows, float* dst, int64_t dst_stride, int lanes,
                             float alpha);

// The same for bfloat16 rows (widened to float32; alpha is 1).
using Transpose16Bf16 = void (*)(const uint16_t* src, int64_t ld, int rows, float* dst, int64_t dst_stride, int lanes);

struct KernelSet {
  const char* name;
  int mr, nr;
  MicroKernel kernel;
  Transpose16 transpose16;           // null: pack with plain loops
  Transpose16Bf16 transpose16_bf16;  // null: pack with plain loops
  // Optional, for rank-r updates (a short kc, kc <= 512, accumulated into C with no bias): a
  // sweep along one row strip, C[0:rows, 0:cols] += a·b, on its own tile geometry (rows <= mr;
  // a is packed for mr, b is ⌈cols / nr⌉ packed nr-wide strips one after another). It fetches
  // C's tiles ahead itself. Null: updates use kernel.
  struct {
    int mr = 0, nr = 0;
    UpdateStrip strip = nullptr;
  } update;
};

extern const KernelSet kAvx512;  // kernel_avx512.cc: 12 x 32 (updates 4 x 64), AVX-512F
extern const KernelSet kAvx2;    // kernel_avx2.cc: 6 x 16, AVX2 + FMA
extern const KernelSet kScalar;  // kernel_scalar.cc: 4 x 8, portable C++

}  // namespace lowrank::cpu::gemm_detail
