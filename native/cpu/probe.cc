#include "probe.h"

#include <immintrin.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <vector>

#include "gemm.h"
#include "threadpool.h"

namespace lowrank::cpu {
namespace {

// Independent FMA chains: enough to cover latency x pipes on every core we know (4 cycles x 2
// pipes needs 8). On a 2 x 512-bit Zen 5, 12 chains read 479 GFLOP/s (2 threads) and 16 only
// about 350 in this build; AVX2 has 16 ymm registers, so 12 chains and the two constants fit.
constexpr int kChains = 12;
constexpr int kChains512 = 12;

__attribute__((target("avx512f"))) float fma_loop_avx512(int64_t iters) {
  __m512 acc[kChains512];
  const __m512 mul = _mm512_set1_ps(0.999999f), add = _mm512_set1_ps(1e-7f);
  for (int i = 0; i < kChains512; ++i) acc[i] = _mm512_set1_ps(static_cast<float>(i));
  for (int64_t k = 0; k < iters; ++k) {
#pragma GCC unroll 12
    for (int i = 0; i < kChains512; ++i) acc[i] = _mm512_fmadd_ps(acc[i], mul, add);
  }
  __m512 s = acc[0];
  for (int i = 1; i < kChains512; ++i) s = _mm512_add_ps(s, acc[i]);
  float out[16];
  _mm512_storeu_ps(out, s);  // (not _mm512_reduce_add_ps: GCC 12 warns inside it)
  float sum = 0;
  for (float v : out) sum += v;
  return sum;
}

__attribute__((target("avx2,fma"))) float fma_loop_avx2(int64_t iters) {
  __m256 acc[kChains];
  const __m256 mul = _mm256_set1_ps(0.999999f), add = _mm256_set1_ps(1e-7f);
  for (int i = 0; i < kChains; ++i) acc[i] = _mm256_set1_ps(static_cast<float>(i));
  for (int64_t k = 0; k < iters; ++k) {
#pragma GCC unroll 12
    for (int i = 0; i < kChains; ++i) acc[i] = _mm256_fmadd_ps(acc[i], mul, add);
  }
  __m256 s = acc[0];
  for (int i = 1; i < kChains; ++i) s = _mm256_add_ps(s, acc[i]);
  float out[8];
  _mm256_storeu_ps(out, s);
  return out[0] + out[1] + out[2] + out[3] + out[4] + out[5] + out[6] + out[7];
}

float fma_loop_scalar(int64_t iters) {
  float acc[kChains];
  for (int i = 0; i < kChains; ++i) acc[i] = static_cast<float>(i);
  for (int64_t k = 0; k < iters; ++k)
    for (int i = 0; i < kChains; ++i) acc[i] = acc[i] * 0.999999f + 1e-7f;
  float s = 0;
  for (float a : acc) s += a;
  return s;
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

PeakResult measure_fma_peak(double seconds) {
  // The peak of the ISA the GEMM runs on (LOWRANK_ISA=avx2 on an AVX-512 CPU: the AVX2 peak),
  // so that every GEMM rate has its own ceiling.
  const char* isa = gemm_isa();
  const bool avx512 = std::strcmp(isa, "avx512") == 0;
  const bool avx2 = std::strcmp(isa, "avx2") == 0;
  const int width = avx512 ? 16 : avx2 ? 8 : 1;
  auto loop = [&](int64_t iters) {
    return avx512 ? fma_loop_avx512(iters) : avx2 ? fma_loop_avx2(iters) : fma_loop_scalar(iters);
  };
  const int n = threads();
  std::vector<float> sink(static_cast<size_t>(n));
  // Calibrate iterations on one thread, then run every thread at once.
  int64_t iters = 1 << 16;
  for (;;) {
    const auto t0 = std::chrono::steady_clock::now();
    sink[0] = loop(iters);
    if (seconds_since(t0) > 0.02) break;
    iters *= 2;
  }
  const auto t_cal = std::chrono::steady_clock::now();
  sink[0] = loop(iters);
  const double per = seconds_since(t_cal);
  iters = std::max<int64_t>(1, static_cast<int64_t>(iters * (seconds / 3) / per));
  double best = 0;
  for (int round = 0; round < 3; ++round) {
    const auto t0 = std::chrono::steady_clock::now();
    parallel_for(n, [&](int64_t t) { sink[static_cast<size_t>(t)] = loop(iters); });
    const double s = seconds_since(t0);
    best = std::max(best, 2.0 * kChains * width * static_cast<double>(iters) * n / s / 1e9);
  }
  volatile float keep = sink[0];
  (void)keep;
  return {best, avx512 ? "avx512" : avx2 ? "avx2" : "scalar"};
}

double measure_copy_bandwidth(int64_t bytes, int rounds) {
  std::vector<char> src(static_cast<size_t>(bytes), 1), dst(static_cast<size_t>(bytes), 0);
  const int64_t chunks = threads() * 4;
  const int64_t per = (bytes + chunks - 1) / chunks;
  double best = 0;
  for (int round = 0; round < rounds; ++round) {
    const auto t0 = std::chrono::steady_clock::now();
    parallel_for(chunks, [&](int64_t c) {
      const int64_t begin = c * per, end = std::min(bytes, begin + per);
      if (begin < end) std::memcpy(dst.data() + begin, src.data() + begin, static_cast<size_t>(end - begin));
    });
    best = std::max(best, 2.0 * static_cast<double>(bytes) / seconds_since(t0) / 1e9);
  }
  return best;
}

}  // namespace lowrank::cpu
