// The float32 matrix-multiply interface every CPU op goes through.
//
//   C[m, n] = beta * C + bias[n] + sum over terms t of alpha_t * op(A_t)[m, k_t] * op(B_t)[k_t, n]
//
// Several terms make a product over a joined inner dimension: LoRA's forward is
// [x | xa] · [W | sB]ᵀ, one pass writing y once. An operand may carry a dropout mask,
// applied to its elements as they are read (the mask of element (row, col) of the stored
// matrix is keyed by row * ld + col), so D(x) never exists in memory.
//
// Results do not depend on the thread count: every element of C is reduced in the same
// order whichever thread computes it.
#pragma once

#include <cstdint>

#include "../core/philox.h"
#include "../core/tensor.h"

namespace lowrank::cpu {

// A read-only view of a stored row-major matrix, used as op(X): element (i, j) of the view is
// data[i * ld + j], or data[j * ld + i] when trans is set.
struct MatView {
  const float* data = nullptr;
  int64_t ld = 0;
  bool trans = false;
  const Dropout* dropout = nullptr;  // optional mask on the stored elements
  const uint16_t* bf16 = nullptr;    // when set, the matrix is stored as bfloat16 here (data unused)
};

// A weight matrix stored as float32 or as bfloat16 (exactly one of the two set). bfloat16
// halves its memory; products widen it to float32 as they pack it and accumulate in float32.
struct Weight {
  const float* f32 = nullptr;
  const uint16_t* bf16 = nullptr;
};

// A float32 or bfloat16 weight tensor (the op structs' kWeight on the CPU) as a Weight.
inline Weight weight_of(const TensorRef& t) {
  return t.dtype == DType::kFloat32 ? Weight{t.as<const float>(), nullptr} : Weight{nullptr, t.as<const uint16_t>()};
}

// The same, writable (merge updates it in place).
struct WeightMut {
  float* f32 = nullptr;
  uint16_t* bf16 = nullptr;
};

inline WeightMut weight_mut_of(const TensorRef& t) {
  return t.dtype == DType::kFloat32 ? WeightMut{t.as<float>(), nullptr} : WeightMut{nullptr, t.as<uint16_t>()};
}

inline MatView weight_view(const Weight& w, int64_t ld, bool trans) {
  return MatView{w.f32, ld, trans, nullptr, w.bf16};
}

struct GemmTerm {
  MatView a;  // op(A): m x k
  MatView b;  // op(B): k x n
  int64_t k = 0;
  float alpha = 1.0f;
};

struct GemmArgs {
  int64_t m = 0, n = 0;
  const GemmTerm* terms = nullptr;
  int nterms = 0;
  float* c = nullptr;
  int64_t ldc = 0;
  float beta = 0.0f;            // 0: C is overwritten (never read); 1: accumulated into
  const float* bias = nullptr;  // optional [n], added to every row
};

// Runs on the thread pool.
void gemm(const GemmArgs& args);

// Plain triple-loop version of the same contract, accumulating in double: the oracle the fast
// path is tested against from the native checker.
void gemm_reference(const GemmArgs& args);

// Name of the micro-kernel set in use: "avx512", "avx2" or "scalar". The best one the CPU
// supports is chosen at load time; LOWRANK_ISA=avx512|avx2|scalar forces one.
const char* gemm_isa();

// The data caches this CPU reports (bytes per core for L1d and L2, the whole L3), from
// /sys/devices/system/cpu/cpu0/cache, else sysconf, else 32 KiB / 512 KiB / 8 MiB.
struct CpuCaches {
  int64_t l1d = 0, l2 = 0, l3 = 0;
  const char* source = "";  // "sysfs", "sysconf" or "default"
};
const CpuCaches& cpu_caches();

// The block sizes of the packed product for a micro-kernel of mr x nr (native/cpu/gemm/blocking.cc):
// kc inner-dimension steps per block, mc rows of A per packed block, nc columns of B per panel.
struct GemmBlocking {
  int64_t kc = 0, mc = 0, nc = 0;
  const char* rule = "";  // "tuned" (a measured choice for these caches), "derived" or "env"
};
GemmBlocking blocking_for(const char* isa, int mr, int nr);
// The blocking of the current ISA's main micro-kernel, and its mr x nr.
GemmBlocking gemm_blocking(int* mr, int* nr);

// Switches the micro-kernel set (null or "" = the best supported). Returns false, changing
// nothing, for an unknown name or one this CPU cannot run. Not safe while a GEMM runs.
bool set_gemm_isa(const char* name);

}  // namespace lowrank::cpu
