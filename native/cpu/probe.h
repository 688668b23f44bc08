// Measurements of this machine that the bench divides by: the FMA peak and the copy
// bandwidth, taken in the same run as the kernels they judge.
#pragma once

#include <cstdint>

namespace lowrank::cpu {

struct PeakResult {
  double gflops;    // float32 FLOPs per second / 1e9, all pool threads
  const char* isa;  // the vector width used: "avx512", "avx2" or "scalar"
};

// Independent FMA chains on every pool thread for about `seconds`; the best of three rounds.
PeakResult measure_fma_peak(double seconds);

// memcpy of `bytes` between two buffers, split over the pool; GB/s counted as bytes read plus
// bytes written, the best of `rounds`.
double measure_copy_bandwidth(int64_t bytes, int rounds);

}  // namespace lowrank::cpu
