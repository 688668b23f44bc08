// Node-API boundary for the machine probes the bench divides by, and the bench's OpenBLAS peer.
#include "probe.h"

#include <dlfcn.h>

#include <string>

#include "../cpu/probe.h"
#include "marshal.h"

namespace lowrank::addon {

Napi::Value ProbePeak(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    const double seconds = info.Length() > 0 && info[0].IsNumber() ? info[0].As<Napi::Number>().DoubleValue() : 0.5;
    LR_CHECK("probePeak", seconds > 0 && seconds < 60, "seconds must be in (0, 60)");
    const cpu::PeakResult r = cpu::measure_fma_peak(seconds);
    Napi::Object out = Napi::Object::New(info.Env());
    out.Set("gflops", r.gflops);
    out.Set("isa", r.isa);
    return out;
  });
}

Napi::Value ProbeBandwidth(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    if (info.Length() < 2 || !info[0].IsNumber() || !info[1].IsNumber())
      throw lowrank::TypeError("probeBandwidth expects (bytes, rounds)");
    const int64_t bytes = info[0].As<Napi::Number>().Int64Value();
    const int rounds = info[1].As<Napi::Number>().Int32Value();
    LR_CHECK("probeBandwidth", bytes >= (1 << 20) && bytes <= (int64_t{1} << 33) && rounds >= 1,
             "bytes in [1 MiB, 8 GiB], rounds >= 1");
    return Napi::Number::New(info.Env(), cpu::measure_copy_bandwidth(bytes, rounds));
  });
}

// ---- OpenBLAS, loaded at run time for the bench (never linked) ------------------------------

namespace {

// cblas_sgemm's enums (cblas.h): row-major 101, no transpose 111, transpose 112.
using CblasSgemm = void (*)(int, int, int, int, int, int, float, const float*, int, const float*, int, float, float*,
                            int);
using SetThreads = void (*)(int);

struct OpenBlas {
  CblasSgemm sgemm = nullptr;
  SetThreads set_threads = nullptr;
  std::string reason;
};

const OpenBlas& openblas() {
  static const OpenBlas lib = [] {
    OpenBlas o;
    void* h = nullptr;
    for (const char* name : {"libopenblas.so.0", "libopenblas.so", "libopenblasp.so.0"})
      if ((h = dlopen(name, RTLD_NOW | RTLD_LOCAL)) != nullptr) break;
    if (h == nullptr) {
      o.reason = "libopenblas is not installed (apt-get install libopenblas-dev)";
      return o;
    }
    o.sgemm = reinterpret_cast<CblasSgemm>(dlsym(h, "cblas_sgemm"));
    o.set_threads = reinterpret_cast<SetThreads>(dlsym(h, "openblas_set_num_threads"));
    if (o.sgemm == nullptr) o.reason = "libopenblas has no cblas_sgemm";
    return o;
  }();
  return lib;
}

}  // namespace

Napi::Value OpenBlasSgemm(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    const Napi::Object a = args_object(info);
    const OpenBlas& lib = openblas();
    if (lib.sgemm == nullptr) return Napi::String::New(info.Env(), lib.reason);
    const int64_t m = i64(a, "m"), n = i64(a, "n"), k = i64(a, "k"), threads = i64(a, "threads");
    LR_CHECK("_openblasSgemm", m >= 1 && n >= 1 && k >= 1 && m < (1 << 30) && n < (1 << 30) && k < (1 << 30),
             "m, n, k must be in [1, 2^30)");
    const Span<float> x = f32(a, "a"), w = f32(a, "b"), c = f32(a, "c");
    expect_size("_openblasSgemm", "a", x.size, m * k);
    expect_size("_openblasSgemm", "b", w.size, n * k);
    expect_size("_openblasSgemm", "c", c.size, m * n);
    if (lib.set_threads && threads >= 1) lib.set_threads(static_cast<int>(threads));
    // C[m, n] = A[m, k] · B[n, k]ᵀ, row-major: the base product x·Wᵀ.
    lib.sgemm(101, 111, 112, static_cast<int>(m), static_cast<int>(n), static_cast<int>(k), 1.0f, x.data,
              static_cast<int>(k), w.data, static_cast<int>(k), 0.0f, c.data, static_cast<int>(n));
    return info.Env().Undefined();
  });
}

}  // namespace lowrank::addon
