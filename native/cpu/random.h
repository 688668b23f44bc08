// Tensors filled from the counter-based generator: element i of a fill with seed s depends on
// (s, i) alone, so a fill is reproducible across runs, thread counts and backends.
#pragma once

#include <cstdint>

namespace lowrank::cpu {

// out[i] = lo + (hi - lo) * u_i, u_i uniform in [0, 1) with 24 random bits.
void fill_uniform(float* out, int64_t n, uint64_t seed, float lo, float hi);
// out[i] = mean + std * z_i, z_i standard normal (Box-Muller over pairs of words).
void fill_normal(float* out, int64_t n, uint64_t seed, float mean, float std);
// out[i] = 1 when element offset + i is kept by dropout(p, seed), else 0.
void dropout_mask(uint8_t* out, int64_t offset, int64_t n, uint64_t seed, double p);

}  // namespace lowrank::cpu
