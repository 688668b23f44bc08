// Conversions between storage dtypes (native/core/dtype.h), over whole buffers on the pool.
#pragma once

#include <cstdint>

#include "../core/dtype.h"

namespace lowrank::cpu {

// dst (dst_type) = src (src_type), element by element, round-to-nearest-even when narrowing.
void convert(const void* src, DType src_type, void* dst, DType dst_type, int64_t n);

}  // namespace lowrank::cpu
