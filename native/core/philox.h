// Philox4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3", SC'11):
// a counter-based generator, so any element's random word is a pure function of
// (seed, element index). The same code runs on the host and on CUDA devices, which is
// what lets the CPU and GPU backends draw identical dropout masks and projections.
#pragma once

#include <cstdint>

#include "hd.h"

namespace lowrank {

struct Philox4 {
  uint32_t v[4];
};

LR_HD void philox_mulhilo(uint32_t a, uint32_t b, uint32_t* hi, uint32_t* lo) {
  const uint64_t p = static_cast<uint64_t>(a) * static_cast<uint64_t>(b);
  *hi = static_cast<uint32_t>(p >> 32);
  *lo = static_cast<uint32_t>(p);
}

// One block of four 32-bit words for counter (c0..c3) and key (k0, k1).
LR_HD Philox4 philox4x32_10(uint32_t c0, uint32_t c1, uint32_t c2, uint32_t c3, uint32_t k0, uint32_t k1) {
  constexpr uint32_t kM0 = 0xD2511F53u, kM1 = 0xCD9E8D57u;
  constexpr uint32_t kW0 = 0x9E3779B9u, kW1 = 0xBB67AE85u;
  for (int round = 0; round < 10; ++round) {
    uint32_t hi0, lo0, hi1, lo1;
    philox_mulhilo(kM0, c0, &hi0, &lo0);
    philox_mulhilo(kM1, c2, &hi1, &lo1);
    const uint32_t n0 = hi1 ^ c1 ^ k0;
    const uint32_t n2 = hi0 ^ c3 ^ k1;
    c0 = n0;
    c1 = lo1;
    c2 = n2;
    c3 = lo0;
    k0 += kW0;
    k1 += kW1;
  }
  return Philox4{{c0, c1, c2, c3}};
}

// The random word of element `index` for stream `seed`: element i uses word i % 4 of the
// block with counter (i / 4 as a 64-bit value, 0, 0) and key (seed low, seed high).
LR_HD uint32_t philox_word(uint64_t seed, uint64_t index) {
  const uint64_t block = index >> 2;
  const Philox4 r = philox4x32_10(static_cast<uint32_t>(block), static_cast<uint32_t>(block >> 32), 0u, 0u,
                                  static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32));
  return r.v[index & 3];
}

// Inverted dropout with probability p, keyed by (seed, element index). An element is kept
// when its word >= threshold, where threshold = floor(p * 2^32); kept values are scaled by
// 1 / (1 - p). p = 0 gives threshold 0: every element kept, scale 1.
struct Dropout {
  uint64_t seed = 0;
  uint32_t threshold = 0;
  float scale = 1.0f;
  bool active = false;

  static Dropout make(double p, uint64_t seed) {
    Dropout d;
    d.seed = seed;
    if (p > 0.0) {
      const double t = p * 4294967296.0;
      d.threshold = t >= 4294967295.0 ? 4294967295u : static_cast<uint32_t>(t);
      d.scale = static_cast<float>(1.0 / (1.0 - p));
      d.active = true;
    }
    return d;
  }
  LR_HD bool keep(uint64_t index) const { return philox_word(seed, index) >= threshold; }
  // The multiplier of element `index`: 0 when dropped, 1 / (1 - p) when kept.
  LR_HD float factor(uint64_t index) const {
    if (!active) return 1.0f;
    return keep(index) ? scale : 0.0f;
  }
  // out[i * stride] = src[i] * factor(index0 + i) * alpha for i in [0, n), drawing one Philox
  // block per four consecutive elements instead of one per element.
  LR_HD void apply(const float* src, uint64_t index0, int64_t n, float alpha, float* out, int64_t stride) const {
    int64_t i = 0;
    while (i < n) {
      const uint64_t index = index0 + static_cast<uint64_t>(i);
      const uint64_t block = index >> 2;
      const Philox4 r = philox4x32_10(static_cast<uint32_t>(block), static_cast<uint32_t>(block >> 32), 0u, 0u,
                                      static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32));
      for (uint64_t w = index & 3; w < 4 && i < n; ++w, ++i)
        out[i * stride] = src[i] * (r.v[w] >= threshold ? scale : 0.0f) * alpha;
    }
  }
};

}  // namespace lowrank
