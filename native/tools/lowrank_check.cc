// lowrank_check: the native checker. Runs every kernel on the CPU against its reference and,
// where a CUDA device is usable, on CUDA against the CPU, at awkward shapes (1, 7, 33,
// non-multiples of every tile). Prints the max relative error (max|diff| / max|ref|) and the
// median time per op; exits 1 on any mismatch. Needs no Node:
//
//   cmake -S . -B build-check -DLOWRANK_ADDON=OFF && cmake --build build-check -j
//   build-check/lowrank_check           # every check (CUDA ones where a device is usable)
//   build-check/lowrank_check --time    # CUDA timing at T = 8192, 4096 x 4096, r = 16
//
// The CUDA op checks and the timing mode live in check_cuda.cc; the loop over every op of the op
// list (native/core/ops.def) in check_ops.cc.
#include <algorithm>
#include <chrono>
#include <cinttypes>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <functional>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "../core/ops.h"
#include "../core/philox.h"
#include "../cpu/gemm.h"
#include "../cpu/threadpool.h"
#include "../cuda/cuda.h"
#include "check_cuda.h"
#include "check_ops.h"
#include "check_util.h"

namespace {

using namespace lowrank::check;
using lowrank::Dropout;
namespace cpu = lowrank::cpu;
namespace cuda = lowrank::cuda;

// ---------------------------------------------------------------------------------------------
// Backend info

void print_info(const cuda::Info& info) {
  std::printf("backend info\n");
  std::printf("  cpu: gemm isa %s, %d threads\n", cpu::gemm_isa(), cpu::threads());
  std::printf("  cuda: compiled %s, available %s, runtime %d, driver %d\n", info.compiled ? "yes" : "no",
              info.available ? "yes" : "no", info.runtime_version, info.driver_version);
  if (!info.reason.empty()) std::printf("  cuda: reason: %s\n", info.reason.c_str());
  for (size_t i = 0; i < info.devices.size(); ++i) {
    const cuda::DeviceInfo& d = info.devices[i];
    std::printf("  device %zu: %s, compute capability %d.%d, %.1f GiB, %d SMs\n", i, d.name.c_str(), d.major, d.minor,
                static_cast<double>(d.memory) / (1u << 30), d.multiprocessors);
  }
}

// ---------------------------------------------------------------------------------------------
// CPU: the blocked gemm against gemm_reference

struct GemmCase {
  int64_t m, n, k;
  bool ta, tb;
  int mask;  // 0: none, 1: dropout on A's stored elements, 2: on B's
  bool two_terms, bias, accumulate;
};

// A stored matrix holding op(X) of rows x cols, with a leading dimension wider than needed.
struct Stored {
  std::vector<float> data;
  int64_t ld;
};

Stored make_operand(int64_t rows, int64_t cols, bool trans, uint32_t seed) {
  const int64_t srows = trans ? cols : rows, scols = trans ? rows : cols;
  const int64_t ld = scols + 3;  // padding the kernel must skip
  return {random_values(static_cast<size_t>(srows * ld), seed), ld};
}

bool check_gemm(const GemmCase& c, uint32_t seed) {
  const Dropout drop = Dropout::make(0.3, 0x5eed0000u + seed);
  const Stored a = make_operand(c.m, c.k, c.ta, seed * 7 + 1);
  const Stored b = make_operand(c.k, c.n, c.tb, seed * 7 + 2);
  const int64_t k2 = 5;  // the second term's inner dimension (LoRA's joined product)
  const Stored a2 = make_operand(c.m, k2, false, seed * 7 + 3);
  const Stored b2 = make_operand(k2, c.n, true, seed * 7 + 4);
  const std::vector<float> bias = random_values(static_cast<size_t>(c.n), seed * 7 + 5);
  const int64_t ldc = c.n + 2;
  const std::vector<float> c0 = random_values(static_cast<size_t>(c.m * ldc), seed * 7 + 6);

  cpu::GemmTerm terms[2] = {
      {{a.data.data(), a.ld, c.ta, c.mask == 1 ? &drop : nullptr},
       {b.data.data(), b.ld, c.tb, c.mask == 2 ? &drop : nullptr},
       c.k,
       0.75f},
      {{a2.data.data(), a2.ld, false, nullptr}, {b2.data.data(), b2.ld, true, nullptr}, k2, -1.5f},
  };
  std::vector<float> got = c0, ref = c0, one_thread = c0;
  cpu::GemmArgs args{
      c.m, c.n, terms, c.two_terms ? 2 : 1, nullptr, ldc, c.accumulate ? 1.0f : 0.0f, c.bias ? bias.data() : nullptr};
  args.c = ref.data();
  cpu::gemm_reference(args);
  args.c = got.data();
  cpu::gemm(args);
  // Results must not depend on the thread count.
  const int nthreads = cpu::threads();
  cpu::set_threads(1);
  args.c = one_thread.data();
  cpu::gemm(args);
  cpu::set_threads(nthreads);

  const double err = rel_err(got, ref);
  const bool same = got == one_thread;
  const bool ok = err <= 1e-5 && same;
  std::printf("  gemm m=%-4" PRId64 " n=%-4" PRId64 " k=%-4" PRId64
              " op=%c%c mask=%s terms=%d bias=%d beta=%d: rel err %.2e%s %s\n",
              c.m, c.n, c.k, c.ta ? 'T' : 'N', c.tb ? 'T' : 'N', c.mask == 0 ? "-" : (c.mask == 1 ? "A" : "B"),
              c.two_terms ? 2 : 1, c.bias ? 1 : 0, c.accumulate ? 1 : 0, err, same ? "" : ", differs with 1 thread",
              ok ? "ok" : "FAIL");
  return ok;
}

// The keep rate of the CPU mask is 1 - p within sampling noise (n = 100003: sd < 0.0016).
bool check_keep_rate(double p) {
  const Dropout drop = Dropout::make(p, 1234567);
  const int64_t n = 100003;
  int64_t kept = 0;
  for (int64_t i = 0; i < n; ++i) kept += drop.keep(static_cast<uint64_t>(i)) ? 1 : 0;
  const double rate = static_cast<double>(kept) / static_cast<double>(n);
  const bool ok = std::fabs(rate - (1.0 - p)) < 0.01;
  std::printf("  dropout p=%.1f: keep rate %.4f (expected %.4f) %s\n", p, rate, 1.0 - p, ok ? "ok" : "FAIL");
  return ok;
}

void cpu_checks() {
  std::printf("cpu checks\n");
  const GemmCase shapes[] = {
      // m, n, k, ta, tb, mask, two_terms, bias, accumulate
      {1, 1, 1, false, false, 0, false, false, false},   {7, 33, 5, false, false, 1, false, true, false},
      {33, 7, 300, false, false, 2, true, false, true},   // k over one 256-deep panel
      {97, 130, 17, false, false, 1, true, true, true},   // m over one 96-row block
      {5, 1100, 3, false, false, 2, false, true, false},  // n over one 1024-wide block
      {200, 19, 64, false, false, 0, true, false, true},
  };
  uint32_t seed = 1;
  for (const GemmCase& s : shapes) {
    for (int t = 0; t < 4; ++t) {
      GemmCase c = s;
      c.ta = (t & 1) != 0;
      c.tb = (t & 2) != 0;
      record(check_gemm(c, seed++));
    }
  }
  for (double p : {0.1, 0.5, 0.9}) record(check_keep_rate(p));

  // The CPU merge, timed: the baseline the CUDA merge is compared with.
  lowrank::ops::LoraMerge d;
  d.in = 1500, d.out = 1000, d.r = 16, d.scale = 0.5f;
  std::vector<float> W = random_values(static_cast<size_t>(d.out * d.in), 11);
  std::vector<float> A = random_values(static_cast<size_t>(d.r * d.in), 12);
  std::vector<float> B = random_values(static_cast<size_t>(d.out * d.r), 13);
  for (auto [ref, v] : {std::pair{&d.W, &W}, std::pair{&d.A, &A}, std::pair{&d.B, &B}}) {
    ref->data = v->data();
    ref->dtype = lowrank::DType::kFloat32;
    ref->device = lowrank::Device::kCpu;
    ref->elements = static_cast<int64_t>(v->size());
    ref->present = true;
  }
  const double ms = time_ms(5, [&] { cpu::lora_merge(d); });
  std::printf("  lora_merge out=%" PRId64 " in=%" PRId64 " r=%" PRId64 ": cpu %.3f ms (median of 5)\n", d.out, d.in,
              d.r, ms);
}

// ---------------------------------------------------------------------------------------------
// CUDA against the CPU

bool check_mask(uint64_t seed, double p, int64_t offset, int64_t n) {
  const Dropout drop = Dropout::make(p, seed);
  std::vector<uint8_t> got(static_cast<size_t>(n), 0xAA);  // poison: neither 0 nor 1
  try {
    cuda::dropout_mask_host(seed, p, offset, n, got.data());
  } catch (const std::exception& e) {
    std::printf("  mask seed=%" PRIu64 " p=%.1f offset=%" PRId64 " n=%" PRId64 ": threw: %s FAIL\n", seed, p, offset, n,
                e.what());
    return false;
  }
  int64_t bad = 0, first = -1;
  for (int64_t i = 0; i < n; ++i) {
    const uint8_t want = drop.keep(static_cast<uint64_t>(offset + i)) ? 1 : 0;
    if (got[static_cast<size_t>(i)] != want) {
      if (first < 0) first = i;
      ++bad;
    }
  }
  if (bad == 0) return true;
  std::printf("  mask seed=%" PRIu64 " p=%.1f offset=%" PRId64 " n=%" PRId64 ": %" PRId64
              " elements differ, first at %" PRId64 " FAIL\n",
              seed, p, offset, n, bad, first);
  return false;
}

void cuda_mask_checks() {
  const struct {
    uint64_t seed;
    int64_t offset;
  } streams[] = {// the last reaches the high word of the Philox counter (index / 4 >= 2^32)
                 {0, 0},
                 {42, 3},
                 {0xDEADBEEFCAFEF00Dull, 4097},
                 {(1ull << 32) | 7, (1ll << 34) + 1}};
  for (double p : {0.0, 0.1, 0.5, 0.9}) {
    int cases = 0, failed = 0;
    for (const auto& s : streams)
      for (int64_t n : {1, 7, 33, 100003}) {
        ++cases;
        const bool ok = check_mask(s.seed, p, s.offset, n);
        record(ok);
        failed += ok ? 0 : 1;
      }
    std::printf(
        "  dropout_mask p=%.1f: %d cases (n in 1, 7, 33, 100003; "
        "offsets 0, 3, 4097, 2^34+1), %d differ %s\n",
        p, cases, failed, failed ? "FAIL" : "ok");
  }
}

void cuda_checks(const cuda::Info& info) {
  std::printf("cuda checks\n");
  if (!info.available) {
    std::printf("  cuda: skipped (%s)\n", info.reason.c_str());
    return;
  }
  cuda_mask_checks();
  cuda_op_checks();
}

}  // namespace

int main(int argc, char** argv) {
  const bool time_mode = argc > 1 && std::string(argv[1]) == "--time";
  if (argc > 2 || (argc == 2 && !time_mode)) {
    std::fprintf(stderr, "usage: lowrank_check [--time]\n");
    return 2;
  }
  std::printf("lowrank_check%s\n", time_mode ? " --time" : "");
  const cuda::Info info = cuda::info();
  print_info(info);
  if (time_mode) {
    if (!info.available) {
      std::printf("cuda timing: skipped (%s)\n", info.reason.c_str());
      return 1;
    }
    return cuda_timing() ? 0 : 1;
  }
  cpu_checks();
  op_table_checks(info.available);
  cuda_checks(info);
  if (g_failures == 0) {
    std::printf("result: all %d checks passed\n", g_checks);
    return 0;
  }
  std::printf("result: %d of %d checks FAILED\n", g_failures, g_checks);
  return 1;
}
