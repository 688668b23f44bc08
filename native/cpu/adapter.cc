#include "adapter.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "../core/dtype.h"
#include "threadpool.h"

namespace lowrank::cpu {
namespace {

constexpr int64_t kMergeRows = 64;  // rows of a bfloat16 W widened at a time

// W += scale · B A in float32, for a float32 W.
void add_product_f32(const ProductUpdate& u, float* W) {
  const GemmTerm t{{u.B, u.ldb, false}, {u.A, u.lda, false}, u.r, u.scale};
  gemm({u.out, u.in, &t, 1, W, u.in, 1.0f, nullptr});
}

// The updated rows [i0, i0 + rows) of a bfloat16 W, rounded to bfloat16, into out.
void add_product_bf16_rows(const ProductUpdate& u, const uint16_t* W, int64_t i0, int64_t rows, uint16_t* out) {
  thread_local std::vector<float> wide;
  wide.resize(static_cast<size_t>(rows * u.in));
  for (int64_t i = 0; i < rows * u.in; ++i) wide[i] = bf16_to_f32(W[i0 * u.in + i]);
  const GemmTerm t{{u.B + i0 * u.ldb, u.ldb, false}, {u.A, u.lda, false}, u.r, u.scale};
  gemm({rows, u.in, &t, 1, wide.data(), u.in, 1.0f, nullptr});  // inside a pool task: runs here
  for (int64_t i = 0; i < rows * u.in; ++i) out[i] = f32_to_bf16(wide[i]);
}

template <typename F>
void for_row_chunks(int64_t out, F&& f) {
  parallel_for((out + kMergeRows - 1) / kMergeRows, [&](int64_t c) {
    const int64_t i0 = c * kMergeRows;
    f(i0, std::min(kMergeRows, out - i0));
  });
}

bool bf16_finite(uint16_t h) { return (h & 0x7f80u) != 0x7f80u; }

}  // namespace

void add_product(const ProductUpdate& u, const WeightMut& W) {
  if (W.f32) return add_product_f32(u, W.f32);
  for_row_chunks(u.out,
                 [&](int64_t i0, int64_t rows) { add_product_bf16_rows(u, W.bf16, i0, rows, W.bf16 + i0 * u.in); });
}

int64_t add_product_safe(const ProductUpdate& u, const WeightMut& W, float* bad_value) {
  const size_t n = static_cast<size_t>(u.out * u.in);
  if (W.f32) {
    std::vector<float> copy(W.f32, W.f32 + n);
    add_product_f32(u, copy.data());
    for (size_t i = 0; i < n; ++i)
      if (!std::isfinite(copy[i])) {
        *bad_value = copy[i];
        return static_cast<int64_t>(i);
      }
    std::memcpy(W.f32, copy.data(), n * sizeof(float));
    return -1;
  }
  std::vector<uint16_t> copy(n);
  for_row_chunks(
      u.out, [&](int64_t i0, int64_t rows) { add_product_bf16_rows(u, W.bf16, i0, rows, copy.data() + i0 * u.in); });
  for (size_t i = 0; i < n; ++i)
    if (!bf16_finite(copy[i])) {
      *bad_value = bf16_to_f32(copy[i]);
      return static_cast<int64_t>(i);
    }
  std::memcpy(W.bf16, copy.data(), n * sizeof(uint16_t));
  return -1;
}

namespace {

// dx[t, i] += D(g A)[t, i] for t < rows, i < in: blocks of rows, each a small GEMM (run inline
// on its pool thread) into a buffer that the mask then scales.
void add_masked_product(int64_t rows, int64_t in, int64_t r, const float* g, const float* A, int64_t lda,
                        const Dropout& drop, float* dx) {
  constexpr int64_t kRowBlock = 32;  // rows of dx per task
  parallel_for((rows + kRowBlock - 1) / kRowBlock, [&](int64_t b) {
    const int64_t t0 = b * kRowBlock;
    const int64_t n = std::min(kRowBlock, rows - t0);
    thread_local std::vector<float> buf;
    buf.resize(static_cast<size_t>(n * in));
    const GemmTerm term{{g + t0 * r, r, false}, {A, lda, false}, r, 1.0f};
    gemm({n, in, &term, 1, buf.data(), in, 0.0f, nullptr});
    for (int64_t i = 0; i < n; ++i) {
      float* row = buf.data() + i * in;
      drop.apply(row, static_cast<uint64_t>((t0 + i) * in), in, 1.0f, row, 1);
      float* out = dx + (t0 + i) * in;
      for (int64_t k = 0; k < in; ++k) out[k] += row[k];
    }
  });
}

}  // namespace

void adapter_output(int64_t t, int64_t in, int64_t out, int64_t r, const float* x, const Weight& W, const float* xa,
                    const float* B, float scale, const float* bias, float* y) {
  const GemmTerm joined[2] = {
      {{x, in, false}, weight_view(W, in, true), in, 1.0f},
      {{xa, r, false}, {B, r, true}, r, scale},
  };
  gemm({t, out, joined, 2, y, out, 0.0f, bias});
}

void adapter_input_grad(int64_t t, int64_t in, int64_t out, int64_t r, const float* dy, const Weight& W, const float* g,
                        const float* A, int64_t lda, const Dropout& drop, float* dx) {
  const GemmTerm joined[2] = {
      {{dy, out, false}, weight_view(W, in, false), out, 1.0f},
      {{g, r, false}, {A, lda, false}, r, 1.0f},
  };
  if (!drop.active) {
    gemm({t, in, joined, 2, dx, in, 0.0f, nullptr});
    return;
  }
  gemm({t, in, joined, 1, dx, in, 0.0f, nullptr});
  add_masked_product(t, in, r, g, A, lda, drop, dx);
}

}  // namespace lowrank::cpu
