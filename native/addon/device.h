// Device memory as JavaScript holds it: each block from cudaAlloc is a Napi::External over a
// DeviceBlock, returned to the caching allocator by cudaFree or, failing that, by the
// External's finalizer. The CUDA op entry points read device pointers with device_field().
#pragma once

#include <napi.h>

#include <cstddef>

#include "../core/dtype.h"

namespace lowrank::addon {

struct DeviceBlock {
  void* ptr = nullptr;
  size_t bytes = 0;
  bool freed = false;
};

// The device pointer held by field `key` of `obj` (an External from cudaAlloc). Throws
// lowrank::TypeError "Expected a live CUDA tensor for <key> but received <value>" when the
// field is not one or its block was freed, lowrank::RangeError when the block holds fewer
// than `min_bytes` bytes; returns nullptr when `optional` and the field is null or undefined.
void* device_field(const Napi::Object& obj, const char* key, size_t min_bytes, bool optional = false);

// The dtype code in field `key` (0 float32, 1 bfloat16, 2 float16); a RangeError naming `op`
// and the field for anything else.
DType dtype_field(const Napi::Object& obj, const char* key, const char* op);

Napi::Value CudaAlloc(const Napi::CallbackInfo& info);        // ({bytes}) => External
Napi::Value CudaFree(const Napi::CallbackInfo& info);         // ({block}); idempotent
Napi::Value CudaUpload(const Napi::CallbackInfo& info);       // ({block, src: TypedArray, offset?})
Napi::Value CudaDownload(const Napi::CallbackInfo& info);     // ({block, dst: TypedArray, offset?}); waits
Napi::Value CudaCopy(const Napi::CallbackInfo& info);         // ({dst, src, bytes})
Napi::Value CudaConvert(const Napi::CallbackInfo& info);      // ({src, srcDtype, dst, dstDtype, n})
Napi::Value CudaFill(const Napi::CallbackInfo& info);         // ({block, dtype, value, n})
Napi::Value CudaAddInto(const Napi::CallbackInfo& info);      // ({dst, src, n}): float32 dst += src
Napi::Value CudaSynchronize(const Napi::CallbackInfo& info);  // ()
Napi::Value CudaMemory(const Napi::CallbackInfo& info);       // () => {allocated, cached, peak}
Napi::Value CudaEmptyCache(const Napi::CallbackInfo& info);   // ()
Napi::Value CudaSetTf32(const Napi::CallbackInfo& info);      // (allow) => previous setting

}  // namespace lowrank::addon
