// The matrix-multiply interface every CUDA op goes through, the device mirror of
// native/cpu/gemm.h:
//
//   C[m, n] = beta · C + bias[n] + Σ over terms t of alpha_t · op(A_t)[m, k_t] · op(B_t)[k_t, n]
//
// on tensor cores. Several terms make one product over a joined inner dimension (LoRA's
// forward is [x | xa] · [W | sB]ᵀ, y written once). Operands and C may each be float32,
// bfloat16 or float16; an operand may carry a dropout mask applied as its elements are read,
// keyed like the CPU's (row · ld + col of the stored matrix), so D(x) never exists in memory.
// Internal to the CUDA backend.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "../core/dtype.h"
#include "../core/philox.h"

namespace lowrank::cuda {

// The backend's stream (memory.cu): every launch goes there.
cudaStream_t stream();

// A read-only view of a stored row-major device matrix, used as op(X): element (i, j) of the
// view is data[i · ld + j], or data[j · ld + i] when trans is set.
struct MatView {
  const void* data = nullptr;
  DType dtype = DType::kFloat32;
  int64_t ld = 0;
  bool trans = false;
  Dropout drop{};  // applied when drop.active
};

struct GemmTerm {
  MatView a;  // op(A): m x k
  MatView b;  // op(B): k x n
  int64_t k = 0;
  float alpha = 1.0f;
};

// What the tensor cores compute in. bfloat16 / float16: operands rounded to that type (exact
// for operands already in it), m16n8k16 MMAs. TF32x3: float32 operands split into a TF32 high
// part and a TF32 remainder, three m16n8k8 MMAs per step (about float32 accuracy). TF32: one.
enum class Compute { kBF16, kF16, kTF32x3, kTF32 };

// The compute type for products whose main operand has dtype `d` (float32 follows set_tf32).
Compute compute_for(DType d);

constexpr int kMaxTerms = 3;

struct GemmArgs {
  int64_t m = 0, n = 0;
  const GemmTerm* terms = nullptr;
  int nterms = 0;  // 1..kMaxTerms
  void* c = nullptr;
  DType c_dtype = DType::kFloat32;
  int64_t ldc = 0;
  float beta = 0.0f;           // 0: C is overwritten (never read); otherwise read and scaled
  const void* bias = nullptr;  // optional [n], added to every row
  DType bias_dtype = DType::kFloat32;
  Compute compute = Compute::kTF32x3;
};

// Enqueues the product on stream(). Throws lowrank::RangeError for bad arguments and
// std::runtime_error on a launch failure.
void gemm(const GemmArgs& args);

}  // namespace lowrank::cuda
