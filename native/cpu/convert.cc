#include "convert.h"

#include <algorithm>
#include <cstring>
#include <string>

#include "../core/check.h"
#include "../core/ops.h"
#include "threadpool.h"

namespace lowrank::cpu {
void convert(const void* src, DType src_type, void* dst, DType dst_type, int64_t n) {
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

// The op entry point (native/core/ops/elementwise.h).
void convert(const ops::Convert& a) { convert(a.src.data, a.src.dtype, a.dst.data, a.dst.dtype, a.src.elements); }

}  // namespace lowrank::cpu
