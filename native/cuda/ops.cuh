// Pieces every CUDA op file shares: scratch device memory that frees itself (stream-ordered,
// so freeing while a queued kernel still reads it is safe), views of op arguments for gemm(),
// and launch geometry. Internal to the CUDA backend.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "common.cuh"
#include "cuda.h"
#include "gemm.cuh"

namespace lowrank::cuda {

class Scratch {
 public:
  explicit Scratch(size_t bytes) : ptr_(bytes > 0 ? device_alloc(bytes) : nullptr) {}
  ~Scratch() { device_free(ptr_); }
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
  float* f32() const { return static_cast<float*>(ptr_); }
  void* get() const { return ptr_; }

 private:
  void* ptr_;
};

// A device tensor operand: a pointer and its dtype. A null pointer means "absent" where the
// op allows it (bias, x for LoRA-FA, dx when not wanted).
struct DevIn {
  const void* data = nullptr;
  DType dtype = DType::kFloat32;
};
struct DevOut {
  void* data = nullptr;
  DType dtype = DType::kFloat32;
};

// A tensor of an op struct as an operand (null when absent).
inline DevIn dev_in(const TensorRef& t) { return {t.data, t.dtype}; }
inline DevOut dev_out(const TensorRef& t) { return {t.data, t.dtype}; }

inline MatView view(DevIn t, int64_t ld, bool trans, Dropout drop = {}) {
  return MatView{t.data, t.dtype, ld, trans, drop};
}
inline MatView view(const float* p, int64_t ld, bool trans, Dropout drop = {}) {
  return MatView{p, DType::kFloat32, ld, trans, drop};
}
inline DevIn in(DevOut t) { return DevIn{t.data, t.dtype}; }

// C = the terms' product (beta 0) or C += it (beta 1), C with dtype c_dtype.
inline void product(int64_t m, int64_t n, const GemmTerm* terms, int nterms, void* c, DType c_dtype, int64_t ldc,
                    float beta, Compute compute, DevIn bias = {}) {
  GemmArgs g;
  g.m = m;
  g.n = n;
  g.terms = terms;
  g.nterms = nterms;
  g.c = c;
  g.c_dtype = c_dtype;
  g.ldc = ldc;
  g.beta = beta;
  g.bias = bias.data;
  g.bias_dtype = bias.dtype;
  g.compute = compute;
  gemm(g);
}

constexpr int kElementwiseThreads = 256;

// Blocks for a grid-stride loop over n elements.
inline unsigned blocks_for(int64_t n) {
  const int64_t b = (n + kElementwiseThreads - 1) / kElementwiseThreads;
  return static_cast<unsigned>(b < 4096 ? (b > 0 ? b : 1) : 4096);
}

// ---- adapter.cu: pieces the adapter ops share (the mirror of native/cpu/adapter.h) --------

// W[out, in] += scale · B A with B [out, r] (row stride ldb) and A [r, in] (row stride lda),
// float32 operands, W of any dtype (updated in float32, rounded back).
void add_product(int64_t out, int64_t in, int64_t r, const float* B, int64_t ldb, const float* A, int64_t lda,
                 float scale, DevOut W);
// Like add_product into a copy; W is written only when every value is finite. Synchronizes.
int64_t add_product_safe(int64_t out, int64_t in, int64_t r, const float* B, int64_t ldb, const float* A, int64_t lda,
                         float scale, DevOut W, float* bad_value);
// dx[t, i] += D(g A)[t, i] with g [rows, r] and A [r, in] (row stride lda), the mask keyed by t·in + i.
void add_masked_product(int64_t rows, int64_t in, int64_t r, const float* g, const float* A, int64_t lda,
                        const Dropout& drop, DevOut dx, Compute compute);
// An adapter's input gradient: dx = dy W + D(g A) (joined into one product when no mask).
void input_grad(int64_t t, int64_t in, int64_t out, int64_t r, DevIn dy, DevIn W, const float* g, const float* A,
                int64_t lda, const Dropout& drop, DevOut dx);

}  // namespace lowrank::cuda
