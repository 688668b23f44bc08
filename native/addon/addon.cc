// The export table of lowrank.node. lib/native.ts is the typed description of these names.
// The ops come from the op list (native/core/ops.def), one export each, all through
// dispatch() (marshal.h); the rest are the runtime's plain functions.
#include <dlfcn.h>
#include <napi.h>

#include <mutex>

#include "backends.h"
#include "device.h"
#include "marshal.h"
#include "probe.h"
#include "tensor.h"

namespace lowrank::addon {
namespace {

#define LOWRANK_OP(js, name, Args)                                                    \
  Napi::Value js##_op(const Napi::CallbackInfo& info) {                               \
    return dispatch<ops::Args>(info, #js, &lowrank::cpu::name, &lowrank::cuda::name); \
  }
#define LOWRANK_CPU_OP(js, name, Args)                                   \
  Napi::Value js##_op(const Napi::CallbackInfo& info) {                  \
    return dispatch<ops::Args>(info, #js, &lowrank::cpu::name, nullptr); \
  }
#include "../core/ops.def"

// Keeps this library loaded for the life of the process. Node dlcloses an addon when the last
// environment that loaded it ends; when only a worker thread loaded lowrank and then ended, that
// unloaded the library with its statically linked CUDA runtime still holding threads and exit
// handlers, and the process crashed at exit. RTLD_NODELETE makes that dlclose a no-op.
void pin_library() {
  static std::once_flag once;
  std::call_once(once, [] {
    Dl_info self{};
    if (dladdr(reinterpret_cast<void*>(&pin_library), &self) != 0 && self.dli_fname != nullptr)
      (void)dlopen(self.dli_fname, RTLD_NOW | RTLD_NOLOAD | RTLD_NODELETE);
  });
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  pin_library();
  const auto set = [&](const char* name, Napi::Value (*fn)(const Napi::CallbackInfo&)) {
    exports.Set(name, Napi::Function::New(env, fn, name));
  };
#define LOWRANK_OP(js, name, Args) set(#js, js##_op);
#define LOWRANK_CPU_OP(js, name, Args) set(#js, js##_op);
#include "../core/ops.def"
  set("backends", Backends);
  set("setThreads", SetThreads);
  set("_setIsa", SetIsa);
  set("_philox", Philox);
  set("_dropoutMask", DropoutMask);
  set("_gemm", Gemm);
  set("probePeak", ProbePeak);
  set("probeBandwidth", ProbeBandwidth);
  set("_openblasSgemm", OpenBlasSgemm);
  set("_cudaDropoutMask", CudaDropoutMask);
  set("_cudaLoraMergeHost", CudaLoraMergeHost);
  set("cudaAlloc", CudaAlloc);
  set("cudaFree", CudaFree);
  set("cudaUpload", CudaUpload);
  set("cudaDownload", CudaDownload);
  set("cudaCopy", CudaCopy);
  set("cudaSynchronize", CudaSynchronize);
  set("cudaMemory", CudaMemory);
  set("cudaEmptyCache", CudaEmptyCache);
  set("cudaSetTf32", CudaSetTf32);
  set("_testDeviceBlock", TestDeviceBlock);
  return exports;
}

}  // namespace
}  // namespace lowrank::addon

namespace {
Napi::Object Init(Napi::Env env, Napi::Object exports) { return lowrank::addon::Init(env, exports); }
}  // namespace

NODE_API_MODULE(lowrank, Init)
