// The packed product's block sizes, chosen once per micro-kernel geometry from the caches this
// CPU reports (BLIS's analytical rule, Low et al. 2016): the kc x (mr + nr) micro-panels of A and
// B stay in L1 while a micro-kernel runs, the mc x kc block of A in L2 while every B strip of a
// panel passes it, and the kc x nc panel of B in (a share of) L3. Where a choice was measured
// for these caches it wins ("tuned"). LOWRANK_KC, LOWRANK_MC and LOWRANK_NC override each
// (rounded to the kernel's multiples) for experiments.
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <mutex>
#include <string>
#include <vector>

#include "../gemm.h"

namespace lowrank::cpu {
namespace {

// "48K", "1024K", "32M" as bytes; 0 when unreadable.
int64_t parse_size(const std::string& text) {
  char* end = nullptr;
  const long long v = std::strtoll(text.c_str(), &end, 10);
  if (v <= 0 || end == text.c_str()) return 0;
  const char unit = *end;
  if (unit == 'K' || unit == 'k') return v * 1024;
  if (unit == 'M' || unit == 'm') return v * 1024 * 1024;
  return v;
}

std::string read_line(const std::string& path) {
  std::ifstream f(path);
  std::string line;
  if (f) std::getline(f, line);
  return line;
}

CpuCaches detect() {
  CpuCaches c;
  for (int i = 0; i < 16; ++i) {
    const std::string dir = "/sys/devices/system/cpu/cpu0/cache/index" + std::to_string(i) + "/";
    const std::string level = read_line(dir + "level");
    if (level.empty()) break;
    const std::string type = read_line(dir + "type");
    const int64_t size = parse_size(read_line(dir + "size"));
    if (type == "Instruction" || size <= 0) continue;
    if (level == "1") c.l1d = size;
    if (level == "2") c.l2 = size;
    if (level == "3") c.l3 = size;
  }
  if (c.l1d > 0 && c.l2 > 0) {
    c.source = "sysfs";
  } else {
#if defined(_SC_LEVEL1_DCACHE_SIZE)
    c.l1d = sysconf(_SC_LEVEL1_DCACHE_SIZE);
    c.l2 = sysconf(_SC_LEVEL2_CACHE_SIZE);
    c.l3 = sysconf(_SC_LEVEL3_CACHE_SIZE);
#endif
    c.source = c.l1d > 0 && c.l2 > 0 ? "sysconf" : "default";
  }
  if (c.l1d <= 0) c.l1d = 32 * 1024;
  if (c.l2 <= 0) c.l2 = 512 * 1024;
  if (c.l3 <= 0) c.l3 = 8 * 1024 * 1024;
  return c;
}

int64_t round_down(int64_t x, int64_t m) { return std::max<int64_t>(m, x / m * m); }

// A positive integer from the environment, or 0.
int64_t env_size(const char* name) {
  const char* v = std::getenv(name);
  if (v == nullptr || *v == '\0') return 0;
  const long long n = std::strtoll(v, nullptr, 10);
  return n > 0 ? n : 0;
}

GemmBlocking derive(const char* isa, int mr, int nr) {
  const CpuCaches& c = cpu_caches();
  // Measured: on Zen 4 (48 KiB L1d, 1 MiB L2) the AVX-512 kernels reached 92–94 % of peak with
  // a deep block, kc = 2048, mc = 120 (C is read and written once per block), nc = 4096.
  if (std::strcmp(isa, "avx512") == 0 && c.l1d == 48 * 1024 && c.l2 == 1024 * 1024) return {2048, 120, 4096, "tuned"};
  GemmBlocking b;
  b.rule = "derived";
  // B's kc x nr strip and A's mr x kc strip in three quarters of L1d.
  b.kc = std::clamp<int64_t>((c.l1d * 3 / 4) / ((mr + nr) * 4) / 16 * 16, 64, 2048);
  // A's mc x kc block in half of L2 (the rest: the B strip, C's tiles).
  b.mc = std::clamp<int64_t>(round_down((c.l2 / 2) / (b.kc * 4), mr), mr, 1024 / mr * mr);
  // B's kc x nc panel in a quarter of L3 (shared by the cores).
  b.nc = std::clamp<int64_t>(round_down((c.l3 / 4) / (b.kc * 4), nr), 8 * nr, 8192 / nr * nr);
  return b;
}

}  // namespace

const CpuCaches& cpu_caches() {
  static const CpuCaches caches = detect();
  return caches;
}

GemmBlocking blocking_for(const char* isa, int mr, int nr) {
  // One entry per (isa, mr, nr), computed once.
  struct Entry {
    const char* isa;
    int mr, nr;
    GemmBlocking b;
  };
  static std::mutex mutex;
  static std::vector<Entry> entries;
  std::lock_guard<std::mutex> lock(mutex);
  for (const Entry& e : entries)
    if (e.isa == isa && e.mr == mr && e.nr == nr) return e.b;
  GemmBlocking b = derive(isa, mr, nr);
  const int64_t kc = env_size("LOWRANK_KC"), mc = env_size("LOWRANK_MC"), nc = env_size("LOWRANK_NC");
  if (kc || mc || nc) b.rule = "env";
  if (kc) b.kc = std::clamp<int64_t>(kc, 16, 1 << 16);
  if (mc) b.mc = round_down(std::min<int64_t>(mc, 1 << 16), mr);
  if (nc) b.nc = round_down(std::min<int64_t>(nc, 1 << 20), nr);
  entries.push_back({isa, mr, nr, b});
  return b;
}

}  // namespace lowrank::cpu
