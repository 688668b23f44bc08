// Node-API boundary for the machine probes the bench divides by.
#include "probe.h"

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

}  // namespace lowrank::addon
