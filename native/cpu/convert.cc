// Conversions between storage dtypes (native/core/dtype.h), over whole buffers on the pool.
#include <algorithm>
#include <cstring>
#include <string>

#include "../core/check.h"
#include "../core/ops.h"
#include "threadpool.h"

namespace lowrank::cpu {

// The op entry point (native/core/ops/elementwise.h): dst (its dtype) = src (its dtype),
// element by element, round-to-nearest-even when narrowing.
void convert(const ops::Convert& a) {
  const void* src = a.src.data;
  void* dst = a.dst.data;
  const DType src_type = a.src.dtype, dst_type = a.dst.dtype;
  const int64_t n = a.src.elements;
  if (src_type == dst_type) {
    std::memmove(dst, src, static_cast<size_t>(n) * dtype_size(src_type));
    return;
  }
  if (!dtype_is_float(src_type) || !dtype_is_float(dst_type))
    throw RangeError(std::string("convert: ") + dtype_name(src_type) + " does not convert to " + dtype_name(dst_type));
  constexpr int64_t kChunk = 1 << 15;
  parallel_for((n + kChunk - 1) / kChunk, [&](int64_t c) {
    const int64_t end = std::min(n, (c + 1) * kChunk);
    for (int64_t i = c * kChunk; i < end; ++i) store_f32(dst, dst_type, i, load_f32(src, src_type, i));
  });
}

}  // namespace lowrank::cpu
