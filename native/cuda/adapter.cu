// Pieces the adapter ops share on CUDA, the mirror of native/cpu/adapter.cc: adding a rank-r
// product into a stored weight (merge, unmerge, safe merge) and an adapter's input gradient.
#include <cuda_runtime.h>

#include <cstdint>

#include "../core/check.h"
#include "ops.cuh"

namespace lowrank::cuda {
namespace {

// *first = min over non-finite elements of their index (initialised to n by the caller).
__global__ void first_non_finite_kernel(const void* p, DType d, int64_t n, unsigned long long* first) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride)
    if (!isfinite(load_f32(p, d, i))) atomicMin(first, static_cast<unsigned long long>(i));
}

// dx[i] += factor(i) · tmp[i]: the mask of D(g A), applied where the product lands.
__global__ void add_masked_kernel(const float* tmp, Dropout drop, int64_t n, void* dx, DType d) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    store_f32(dx, d, i, load_f32(dx, d, i) + drop.factor(static_cast<uint64_t>(i)) * tmp[i]);
  }
}

}  // namespace

// FLOPs: 2·out·in·r. Fewest bytes: W read and written once, A and B read once. Merges run in
// float32 (split TF32) whatever W's dtype: only the final rounding into W is W's.
void add_product(int64_t out, int64_t in, int64_t r, const float* B, int64_t ldb, const float* A, int64_t lda,
                 float scale, DevOut W) {
  const GemmTerm t{view(B, ldb, false), view(A, lda, false), r, scale};
  product(out, in, &t, 1, W.data, W.dtype, in, 1.0f, compute_for(DType::kFloat32));
}

int64_t add_product_safe(int64_t out, int64_t in, int64_t r, const float* B, int64_t ldb, const float* A, int64_t lda,
                         float scale, DevOut W, float* bad_value) {
  const int64_t n = out * in;
  const size_t bytes = static_cast<size_t>(n) * static_cast<size_t>(dtype_size(W.dtype));
  Scratch copy_of_w(bytes);
  copy(copy_of_w.get(), W.data, bytes);
  add_product(out, in, r, B, ldb, A, lda, scale, DevOut{copy_of_w.get(), W.dtype});
  Scratch first(sizeof(unsigned long long));
  const unsigned long long none = static_cast<unsigned long long>(n);
  upload(first.get(), &none, sizeof none);
  first_non_finite_kernel<<<blocks_for(n), kElementwiseThreads, 0, stream()>>>(
      copy_of_w.get(), W.dtype, n, static_cast<unsigned long long*>(first.get()));
  check(cudaGetLastError(), "first_non_finite_kernel launch");
  unsigned long long found = none;
  download(&found, first.get(), sizeof found);
  if (found < none) {
    const int64_t i = static_cast<int64_t>(found);
    const size_t size = static_cast<size_t>(dtype_size(W.dtype));
    uint32_t word = 0;  // the element's bytes (little-endian: a 16-bit value sits in the low half)
    download(&word, static_cast<const uint8_t*>(copy_of_w.get()) + static_cast<size_t>(i) * size, size);
    *bad_value = load_f32(&word, W.dtype, 0);
    return i;
  }
  copy(W.data, copy_of_w.get(), bytes);
  return -1;
}

void add_masked_product(int64_t rows, int64_t in, int64_t r, const float* g, const float* A, int64_t lda,
                        const Dropout& drop, DevOut dx, Compute compute) {
  const int64_t n = rows * in;
  Scratch tmp(static_cast<size_t>(n) * sizeof(float));
  const GemmTerm t{view(g, r, false), view(A, lda, false), r, 1.0f};
  product(rows, in, &t, 1, tmp.get(), DType::kFloat32, in, 0.0f, compute);
  add_masked_kernel<<<blocks_for(n), kElementwiseThreads, 0, stream()>>>(tmp.f32(), drop, n, dx.data, dx.dtype);
  check(cudaGetLastError(), "add_masked_kernel launch");
}

// FLOPs: 2·t·in·(out + r). Without dropout one product over the joined inner dimension out + r:
// dx = [dy | g] · [W ; A], written once.
void input_grad(int64_t t, int64_t in, int64_t out, int64_t r, DevIn dy, DevIn W, const float* g, const float* A,
                int64_t lda, const Dropout& drop, DevOut dx) {
  const Compute c = compute_for(W.dtype);
  if (!drop.active) {
    const GemmTerm joined[2] = {
        {view(dy, out, false), view(W, in, false), out, 1.0f},
        {view(g, r, false), view(A, lda, false), r, 1.0f},
    };
    product(t, in, joined, 2, dx.data, dx.dtype, in, 0.0f, c);
    return;
  }
  const GemmTerm base{view(dy, out, false), view(W, in, false), out, 1.0f};
  product(t, in, &base, 1, dx.data, dx.dtype, in, 0.0f, c);
  add_masked_product(t, in, r, g, A, lda, drop, dx, c);
}

}  // namespace lowrank::cuda
