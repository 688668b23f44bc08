#include "random.h"

#include <algorithm>
#include <cmath>

#include "../core/ops.h"
#include "../core/philox.h"
#include "threadpool.h"

namespace lowrank::cpu {
namespace {

constexpr int64_t kChunk = 1 << 14;

template <typename F>
void chunked(int64_t n, F&& f) {
  parallel_for((n + kChunk - 1) / kChunk, [&](int64_t c) {
    const int64_t end = std::min(n, (c + 1) * kChunk);
    for (int64_t i = c * kChunk; i < end; ++i) f(i);
  });
}

}  // namespace

void fill_uniform(float* out, int64_t n, uint64_t seed, float lo, float hi) {
  const float below_hi = lo < hi ? std::nextafter(hi, lo) : lo;
  chunked(n, [&](int64_t i) {
    const double u = static_cast<double>(philox_word(seed, static_cast<uint64_t>(i)) >> 8) * 0x1p-24;
    const float v = static_cast<float>(lo + (static_cast<double>(hi) - lo) * u);
    out[i] = v < hi ? v : below_hi;  // rounding to float32 may reach hi; the range is [lo, hi)
  });
}

void fill_normal(float* out, int64_t n, uint64_t seed, float mean, float std) {
  chunked(n, [&](int64_t i) {
    // Element i uses the pair of words (2⌊i/2⌋, 2⌊i/2⌋ + 1): cos for even i, sin for odd.
    const uint64_t pair = static_cast<uint64_t>(i) & ~static_cast<uint64_t>(1);
    const double u1 = (static_cast<double>(philox_word(seed, pair)) + 0.5) * 0x1p-32;
    const double u2 = static_cast<double>(philox_word(seed, pair + 1)) * 0x1p-32;
    const double radius = std::sqrt(-2.0 * std::log(u1));
    const double angle = 2.0 * M_PI * u2;
    const double z = (i & 1) ? radius * std::sin(angle) : radius * std::cos(angle);
    out[i] = static_cast<float>(mean + std * z);
  });
}

void dropout_mask(uint8_t* out, int64_t offset, int64_t n, uint64_t seed, double p) {
  const Dropout d = Dropout::make(p, seed);
  chunked(n, [&](int64_t i) { out[i] = d.keep(static_cast<uint64_t>(offset + i)) ? 1 : 0; });
}

// The op entry point (native/core/ops/elementwise.h).
void fill_random(const ops::FillRandom& a) {
  if (a.normal)
    fill_normal(a.out.as<float>(), a.out.elements, a.seed, a.a, a.b);
  else
    fill_uniform(a.out.as<float>(), a.out.elements, a.seed, a.a, a.b);
}

}  // namespace lowrank::cpu
