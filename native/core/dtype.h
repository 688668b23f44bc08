// Storage dtypes and their conversions. bfloat16 and float16 are storage formats: values
// convert to float32 for arithmetic and back with round-to-nearest-even, NaN kept NaN
// (quiet), overflow to infinity, and float16 subnormals exact. int32 (indices, token ids,
// offsets) is stored and copied but never converted: dtype_is_float() tells which is which,
// and the conversions refuse int32 with a lowrank::RangeError.
#pragma once

#include <cstdint>
#include <cstring>

#include "hd.h"

namespace lowrank {

enum class DType : int { kFloat32 = 0, kBFloat16 = 1, kFloat16 = 2, kInt32 = 3 };

// The largest dtype code; codes 0..kLastDType are valid.
constexpr int kLastDType = 3;

inline const char* dtype_name(DType d) {
  switch (d) {
    case DType::kFloat32: return "float32";
    case DType::kBFloat16: return "bfloat16";
    case DType::kFloat16: return "float16";
    case DType::kInt32: return "int32";
  }
  return "unknown";
}

inline int dtype_size(DType d) { return d == DType::kFloat32 || d == DType::kInt32 ? 4 : 2; }

inline bool dtype_is_float(DType d) { return d != DType::kInt32; }

LR_HD uint32_t f32_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

LR_HD float f32_from_bits(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

LR_HD uint16_t f32_to_bf16(float f) {
  uint32_t u = f32_bits(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x0040u);  // quiet NaN
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}

LR_HD float bf16_to_f32(uint16_t h) { return f32_from_bits(static_cast<uint32_t>(h) << 16); }

LR_HD uint16_t f32_to_f16(float f) {
  const uint32_t x = f32_bits(f);
  const uint32_t sign = (x >> 16) & 0x8000u;
  const uint32_t ax = x & 0x7fffffffu;
  if (ax >= 0x7f800000u) {  // infinity or NaN
    if (ax == 0x7f800000u) return static_cast<uint16_t>(sign | 0x7c00u);
    return static_cast<uint16_t>(sign | 0x7e00u | ((ax >> 13) & 0x3ffu));
  }
  if (ax >= 0x477ff000u) return static_cast<uint16_t>(sign | 0x7c00u);  // >= 65520 rounds to inf
  if (ax < 0x38800000u) {                                               // below 2^-14: subnormal
    if (ax < 0x33000000u) return static_cast<uint16_t>(sign);           // <= 2^-25 rounds to 0
    const uint32_t e = ax >> 23;
    const uint32_t m = (ax & 0x7fffffu) | 0x800000u;
    const uint32_t shift = 126u - e;  // 14..24
    uint32_t r = m >> shift;
    const uint32_t rem = m & ((1u << shift) - 1u);
    const uint32_t half = 1u << (shift - 1u);
    if (rem > half || (rem == half && (r & 1u))) ++r;
    return static_cast<uint16_t>(sign | r);
  }
  const uint32_t mant = ax & 0x7fffffu;
  uint32_t h = (((ax >> 23) - 112u) << 10) | (mant >> 13);
  const uint32_t rem = mant & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (h & 1u))) ++h;
  return static_cast<uint16_t>(sign | h);
}

LR_HD float f16_to_f32(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t e = (h >> 10) & 0x1fu;
  uint32_t m = h & 0x3ffu;
  if (e == 0x1fu) return f32_from_bits(sign | 0x7f800000u | (m << 13));
  if (e == 0) {
    if (m == 0) return f32_from_bits(sign);
    int exp = -1;  // normalise the subnormal
    do {
      m <<= 1;
      ++exp;
    } while ((m & 0x400u) == 0);
    m &= 0x3ffu;
    return f32_from_bits(sign | ((112u - static_cast<uint32_t>(exp)) << 23) | (m << 13));
  }
  return f32_from_bits(sign | ((e + 112u) << 23) | (m << 13));
}

// Element i of a buffer of dtype t, as float32 (exact: every bfloat16 / float16 value is a float32).
LR_HD float load_f32(const void* src, DType t, int64_t i) {
  switch (t) {
    case DType::kFloat32: return static_cast<const float*>(src)[i];
    case DType::kBFloat16: return bf16_to_f32(static_cast<const uint16_t*>(src)[i]);
    case DType::kFloat16: return f16_to_f32(static_cast<const uint16_t*>(src)[i]);
    case DType::kInt32: break;  // not a float dtype: callers check dtype_is_float() first
  }
  return 0.0f;
}

// Element i of a buffer of dtype t ← v, rounded to nearest even.
LR_HD void store_f32(void* dst, DType t, int64_t i, float v) {
  switch (t) {
    case DType::kFloat32: static_cast<float*>(dst)[i] = v; break;
    case DType::kBFloat16: static_cast<uint16_t*>(dst)[i] = f32_to_bf16(v); break;
    case DType::kFloat16: static_cast<uint16_t*>(dst)[i] = f32_to_f16(v); break;
    case DType::kInt32: break;  // not a float dtype: callers check dtype_is_float() first
  }
}

}  // namespace lowrank
