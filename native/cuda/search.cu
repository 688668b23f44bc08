// Search on the device (native/core/ops/search.h), the mirror of native/cpu/search.cc.
// topk: one block per row, in chunks of at most kChunk results. Each chunk finds its last
// key by radix selection (8-bit digits of the 64-bit topk_key, most significant first: a
// shared-memory histogram per digit over the row's keys below the previous chunk's last), gathers
// the chunk's keys into shared memory, sorts them with a bitonic network and writes them out.
// The keys are distinct, so the selection is exact and the output is the CPU's, bit for bit.
// Limits: every chunk reads the row up to 8 times, so k <= kChunk (2048) costs at most 8 reads
// of each row and a larger k another 8 per further 2048 results (correct, slow for k in the
// tens of thousands); rows below 2^31 (one block each).
#include <cuda_runtime.h>

#include <cstdint>

#include "../core/check.h"
#include "ops.cuh"

namespace lowrank::cuda {
namespace {

constexpr int kTopkThreads = 256;  // also the histogram's bins (8-bit digits)
constexpr int kChunk = 2048;       // results per chunk: kChunk keys in shared memory (16 KiB)

// Block `row`: indices / values [row, 0..k) as ops::TopK describes.
__global__ void topk_rows(const float* __restrict__ scores, int64_t cols, int64_t k, int32_t* __restrict__ indices,
                          float* __restrict__ values) {
  __shared__ unsigned hist[kTopkThreads];
  __shared__ unsigned long long keys[kChunk];
  __shared__ unsigned long long prefix_s, mask_s;
  __shared__ unsigned need_s, count_s;
  __shared__ bool done_s;
  const int64_t row = blockIdx.x;
  const float* sr = scores + row * cols;
  const int tid = static_cast<int>(threadIdx.x);
  bool bounded = false;  // after the first chunk: only keys below `bound`
  unsigned long long bound = 0;
  for (int64_t first = 0; first < k; first += kChunk) {
    const unsigned m = static_cast<unsigned>(k - first < kChunk ? k - first : kChunk);
    // Radix selection of the m-th largest key below `bound`: the digits of `prefix` under `mask`
    // are fixed; need_s is how many keys of that prefix are still wanted.
    if (tid == 0) {
      prefix_s = 0, mask_s = 0, need_s = m, done_s = false;
    }
    __syncthreads();
    for (int shift = 56; shift >= 0; shift -= 8) {
      hist[tid] = 0;
      __syncthreads();
      const unsigned long long prefix = prefix_s, mask = mask_s;
      for (int64_t j = tid; j < cols; j += kTopkThreads) {
        const unsigned long long key = ops::topk_key(sr[j], j);
        if ((bounded && key >= bound) || (key & mask) != prefix) continue;
        atomicAdd(&hist[(key >> shift) & 0xffu], 1u);
      }
      __syncthreads();
      if (tid == 0) {
        unsigned above = 0, need = need_s;
        int d = kTopkThreads - 1;
        for (; d > 0 && above + hist[d] < need; --d) above += hist[d];
        need -= above;
        prefix_s = prefix | (static_cast<unsigned long long>(d) << shift);
        mask_s = mask | (0xffull << shift);
        need_s = need;
        done_s = hist[d] == need;  // the whole bin is wanted: the prefix bounds the chunk
      }
      __syncthreads();
      if (done_s) break;
    }
    // The chunk: the m keys in [prefix_s, bound), gathered, then sorted best first.
    const unsigned long long lowest = prefix_s;
    unsigned size = 1;
    while (size < m) size <<= 1;
    if (tid == 0) count_s = 0;
    for (unsigned i = m + tid; i < size; i += kTopkThreads) keys[i] = 0;  // below every key
    __syncthreads();
    for (int64_t j = tid; j < cols; j += kTopkThreads) {
      const unsigned long long key = ops::topk_key(sr[j], j);
      if (key >= lowest && (!bounded || key < bound)) keys[atomicAdd(&count_s, 1u)] = key;
    }
    __syncthreads();
    for (unsigned len = 2; len <= size; len <<= 1) {
      for (unsigned half = len >> 1; half > 0; half >>= 1) {
        for (unsigned i = tid; i < size; i += kTopkThreads) {
          const unsigned partner = i ^ half;
          if (partner <= i) continue;
          const bool descending = (i & len) == 0;
          const unsigned long long x = keys[i], y = keys[partner];
          if (descending ? x < y : x > y) keys[i] = y, keys[partner] = x;
        }
        __syncthreads();
      }
    }
    for (unsigned i = tid; i < m; i += kTopkThreads) {
      const int32_t j = ops::topk_column(keys[i]);
      indices[row * k + first + i] = j;
      values[row * k + first + i] = sr[j];
    }
    bound = keys[m - 1];
    bounded = true;
    __syncthreads();
  }
}

}  // namespace

// ---- the op entry points (native/core/ops/search.h) ----------------------------------------

void topk(const ops::TopK& a) {
  LR_CHECK("topk", a.rows <= 0x7fffffff, "rows must be below 2^31 on CUDA");
  topk_rows<<<static_cast<unsigned>(a.rows), kTopkThreads, 0, stream()>>>(
      a.scores.as<const float>(), a.cols, a.k, a.indices.as<int32_t>(), a.values.as<float>());
  check(cudaGetLastError(), "topk_rows launch");
}

}  // namespace lowrank::cuda
