// Helpers the checker's parts share: counting checks, random inputs that are never zero, the
// relative error every comparison reports, medians and wall-clock timing.
#pragma once

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <functional>
#include <random>
#include <vector>

namespace lowrank::check {

inline int g_checks = 0;
inline int g_failures = 0;

inline void record(bool ok) {
  ++g_checks;
  if (!ok) ++g_failures;
}

inline std::vector<float> random_values(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  std::vector<float> v(n);
  for (float& x : v) {
    do x = dist(rng);
    while (x == 0.0f);  // never test on zeros
  }
  return v;
}

// max|got - ref| / max|ref|: one number per output, independent of its scale.
inline double rel_err(const std::vector<float>& got, const std::vector<float>& ref) {
  double diff = 0.0, mag = 0.0;
  for (size_t i = 0; i < ref.size(); ++i) {
    const double d = std::fabs(static_cast<double>(got[i]) - ref[i]);
    diff = std::isnan(d) ? INFINITY : std::max(diff, d);
    mag = std::max(mag, std::fabs(static_cast<double>(ref[i])));
  }
  return mag > 0.0 ? diff / mag : diff;
}

inline double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0.0 : v[v.size() / 2];
}

// Median wall time of fn in milliseconds over `runs` runs, after one warm-up run.
inline double time_ms(int runs, const std::function<void()>& fn) {
  fn();
  std::vector<double> t;
  for (int i = 0; i < runs; ++i) {
    const auto a = std::chrono::steady_clock::now();
    fn();
    const auto b = std::chrono::steady_clock::now();
    t.push_back(std::chrono::duration<double, std::milli>(b - a).count());
  }
  return median(t);
}

}  // namespace lowrank::check
