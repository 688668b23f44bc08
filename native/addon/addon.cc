// The export table of lowrank.node. lib/native.ts is the typed description of these names.
#include <napi.h>

#include "backends.h"
#include "cuda_ops.h"
#include "delta_lora.h"
#include "device.h"
#include "linear.h"
#include "lora.h"
#include "optim.h"
#include "probe.h"
#include "tensor.h"
#include "vera.h"

namespace {

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  using namespace lowrank::addon;
  exports.Set("backends", Napi::Function::New(env, Backends, "backends"));
  exports.Set("setThreads", Napi::Function::New(env, SetThreads, "setThreads"));
  exports.Set("setIsa", Napi::Function::New(env, SetIsa, "setIsa"));
  exports.Set("convert", Napi::Function::New(env, Convert, "convert"));
  exports.Set("fillRandom", Napi::Function::New(env, FillRandom, "fillRandom"));
  exports.Set("philox", Napi::Function::New(env, Philox, "philox"));
  exports.Set("dropoutMask", Napi::Function::New(env, DropoutMask, "dropoutMask"));
  exports.Set("gemm", Napi::Function::New(env, Gemm, "gemm"));
  exports.Set("loraForward", Napi::Function::New(env, LoraForward, "loraForward"));
  exports.Set("loraBackward", Napi::Function::New(env, LoraBackward, "loraBackward"));
  exports.Set("loraMerge", Napi::Function::New(env, LoraMerge, "loraMerge"));
  exports.Set("deltaLoraUpdate", Napi::Function::New(env, DeltaLoraUpdate, "deltaLoraUpdate"));
  exports.Set("adamwStep", Napi::Function::New(env, AdamwStep, "adamwStep"));
  exports.Set("loraFaProjectGrad", Napi::Function::New(env, LoraFaProjectGrad, "loraFaProjectGrad"));
  exports.Set("linearForward", Napi::Function::New(env, LinearForward, "linearForward"));
  exports.Set("linearBackward", Napi::Function::New(env, LinearBackward, "linearBackward"));
  exports.Set("veraProjections", Napi::Function::New(env, VeraProjections, "veraProjections"));
  exports.Set("veraForward", Napi::Function::New(env, VeraForward, "veraForward"));
  exports.Set("veraBackward", Napi::Function::New(env, VeraBackward, "veraBackward"));
  exports.Set("veraMerge", Napi::Function::New(env, VeraMerge, "veraMerge"));
  exports.Set("probePeak", Napi::Function::New(env, ProbePeak, "probePeak"));
  exports.Set("probeBandwidth", Napi::Function::New(env, ProbeBandwidth, "probeBandwidth"));
  exports.Set("cudaDropoutMask", Napi::Function::New(env, CudaDropoutMask, "cudaDropoutMask"));
  exports.Set("cudaLoraMergeHost", Napi::Function::New(env, CudaLoraMergeHost, "cudaLoraMergeHost"));
  exports.Set("cudaAlloc", Napi::Function::New(env, CudaAlloc, "cudaAlloc"));
  exports.Set("cudaFree", Napi::Function::New(env, CudaFree, "cudaFree"));
  exports.Set("cudaUpload", Napi::Function::New(env, CudaUpload, "cudaUpload"));
  exports.Set("cudaDownload", Napi::Function::New(env, CudaDownload, "cudaDownload"));
  exports.Set("cudaCopy", Napi::Function::New(env, CudaCopy, "cudaCopy"));
  exports.Set("cudaConvert", Napi::Function::New(env, CudaConvert, "cudaConvert"));
  exports.Set("cudaFill", Napi::Function::New(env, CudaFill, "cudaFill"));
  exports.Set("cudaAddInto", Napi::Function::New(env, CudaAddInto, "cudaAddInto"));
  exports.Set("cudaSynchronize", Napi::Function::New(env, CudaSynchronize, "cudaSynchronize"));
  exports.Set("cudaMemory", Napi::Function::New(env, CudaMemory, "cudaMemory"));
  exports.Set("cudaEmptyCache", Napi::Function::New(env, CudaEmptyCache, "cudaEmptyCache"));
  exports.Set("cudaSetTf32", Napi::Function::New(env, CudaSetTf32, "cudaSetTf32"));
  exports.Set("cudaLoraForward", Napi::Function::New(env, CudaLoraForward, "cudaLoraForward"));
  exports.Set("cudaLoraBackward", Napi::Function::New(env, CudaLoraBackward, "cudaLoraBackward"));
  exports.Set("cudaLoraFaProjectGrad", Napi::Function::New(env, CudaLoraFaProjectGrad, "cudaLoraFaProjectGrad"));
  exports.Set("cudaLoraMerge", Napi::Function::New(env, CudaLoraMerge, "cudaLoraMerge"));
  exports.Set("cudaVeraForward", Napi::Function::New(env, CudaVeraForward, "cudaVeraForward"));
  exports.Set("cudaVeraBackward", Napi::Function::New(env, CudaVeraBackward, "cudaVeraBackward"));
  exports.Set("cudaVeraMerge", Napi::Function::New(env, CudaVeraMerge, "cudaVeraMerge"));
  exports.Set("cudaDeltaLoraUpdate", Napi::Function::New(env, CudaDeltaLoraUpdate, "cudaDeltaLoraUpdate"));
  exports.Set("cudaAdamwStep", Napi::Function::New(env, CudaAdamwStep, "cudaAdamwStep"));
  exports.Set("cudaLinearForward", Napi::Function::New(env, CudaLinearForward, "cudaLinearForward"));
  exports.Set("cudaLinearBackward", Napi::Function::New(env, CudaLinearBackward, "cudaLinearBackward"));
  return exports;
}

}  // namespace

NODE_API_MODULE(lowrank, Init)
