// Node-API boundary for backend discovery and settings, and the CUDA self-test hooks.
#include "backends.h"

#include "../cpu/gemm.h"
#include "../cpu/threadpool.h"
#include "../cuda/cuda.h"
#include "marshal.h"

namespace lowrank::addon {

Napi::Value Backends(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object cpu = Napi::Object::New(env);
  cpu.Set("isa", cpu::gemm_isa());
  cpu.Set("threads", cpu::threads());
  const cpu::CpuCaches& caches = cpu::cpu_caches();
  Napi::Object c = Napi::Object::New(env);
  c.Set("l1d", static_cast<double>(caches.l1d));
  c.Set("l2", static_cast<double>(caches.l2));
  c.Set("l3", static_cast<double>(caches.l3));
  c.Set("source", caches.source);
  cpu.Set("caches", c);
  int mr = 0, nr = 0;
  const cpu::GemmBlocking b = cpu::gemm_blocking(&mr, &nr);
  Napi::Object blocking = Napi::Object::New(env);
  blocking.Set("mr", mr);
  blocking.Set("nr", nr);
  blocking.Set("kc", static_cast<double>(b.kc));
  blocking.Set("mc", static_cast<double>(b.mc));
  blocking.Set("nc", static_cast<double>(b.nc));
  blocking.Set("rule", b.rule);
  cpu.Set("blocking", blocking);

  const cuda::Info ci = cuda::info();
  Napi::Object cuda = Napi::Object::New(env);
  cuda.Set("compiled", ci.compiled);
  cuda.Set("available", ci.available);
  if (!ci.available) cuda.Set("reason", ci.reason);
  cuda.Set("runtimeVersion", ci.runtime_version);
  cuda.Set("driverVersion", ci.driver_version);
  Napi::Array devices = Napi::Array::New(env, ci.devices.size());
  for (size_t i = 0; i < ci.devices.size(); ++i) {
    const cuda::DeviceInfo& d = ci.devices[i];
    Napi::Object o = Napi::Object::New(env);
    o.Set("index", static_cast<double>(i));
    o.Set("name", d.name);
    o.Set("computeCapability", std::to_string(d.major) + "." + std::to_string(d.minor));
    o.Set("memoryBytes", static_cast<double>(d.memory));
    o.Set("multiprocessors", d.multiprocessors);
    devices.Set(static_cast<uint32_t>(i), o);
  }
  cuda.Set("devices", devices);

  Napi::Object out = Napi::Object::New(env);
  out.Set("cpu", cpu);
  out.Set("cuda", cuda);
  return out;
}

Napi::Value SetThreads(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    if (info.Length() < 1 || !info[0].IsNumber()) throw lowrank::TypeError("setThreads expects a number");
    cpu::set_threads(info[0].As<Napi::Number>().Int32Value());
    return Napi::Number::New(info.Env(), cpu::threads());
  });
}

Napi::Value SetIsa(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    if (info.Length() < 1 || !info[0].IsString()) throw lowrank::TypeError("setIsa expects a string");
    const std::string name = info[0].As<Napi::String>().Utf8Value();
    if (!cpu::set_gemm_isa(name.c_str()))
      throw lowrank::RangeError(
          "Expected 'avx512', 'avx2', 'scalar' or '' (best) that this CPU supports for isa but received '" + name +
          "'");
    return Napi::String::New(info.Env(), cpu::gemm_isa());
  });
}

Napi::Value CudaDropoutMask(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    Napi::Object a = args_object(info);
    const MaskRequest m = mask_request(a, "cudaDropoutMask");
    cuda::dropout_mask_host(m.seed, m.p, m.offset, static_cast<int64_t>(m.out.size), m.out.data);
    return info.Env().Undefined();
  });
}

Napi::Value CudaLoraMergeHost(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    Napi::Object a = args_object(info);
    const cpu::LoraDims d = lora_dims(a, "cudaLoraMergeHost", false);
    auto W = f32(a, "W"), A = f32(a, "A"), B = f32(a, "B");
    expect_size("cudaLoraMergeHost", "W", W.size, d.out * d.in);
    expect_size("cudaLoraMergeHost", "A", A.size, d.r * d.in);
    expect_size("cudaLoraMergeHost", "B", B.size, d.out * d.r);
    cuda::lora_merge_host(d, W.data, A.data, B.data, static_cast<float>(f64(a, "scale")));
    return info.Env().Undefined();
  });
}

}  // namespace lowrank::addon
