// Device memory as JavaScript holds it: each block from cudaAlloc is a Napi::External over a
// DeviceBlock, returned to the caching allocator by cudaFree or, failing that, by the
// External's finalizer. The op unpacker (marshal.cc) reads them with live_block().
#pragma once

#include <napi.h>

#include <cstddef>
#include <string>

#include "../core/dtype.h"

namespace lowrank::addon {

struct DeviceBlock {
  void* ptr = nullptr;
  size_t bytes = 0;
  bool freed = false;
  bool test_only = false;  // from _testDeviceBlock: no memory behind it, never run on
};

// A received value, briefly, for an error message ("an object", "7", "a typed array (host memory)", ...).
std::string received(const Napi::Value& v);

// The live block `v` holds; lowrank::TypeError "Expected a live CUDA tensor for <key> but
// received <value>" when it is not one or its block was freed.
DeviceBlock* live_block(const Napi::Value& v, const char* key);

// The device pointer held by field `key` of `obj` (an External from cudaAlloc). Throws
// lowrank::TypeError "Expected a live CUDA tensor for <key> but received <value>" when the
// field is not one or its block was freed, lowrank::RangeError when the block holds fewer
// than `min_bytes` bytes; returns nullptr when `optional` and the field is null or undefined.
void* device_field(const Napi::Object& obj, const char* key, size_t min_bytes, bool optional = false);

Napi::Value CudaAlloc(const Napi::CallbackInfo& info);        // ({bytes}) => External
Napi::Value CudaFree(const Napi::CallbackInfo& info);         // ({block}); idempotent
Napi::Value CudaUpload(const Napi::CallbackInfo& info);       // ({block, src: TypedArray, offset?})
Napi::Value CudaDownload(const Napi::CallbackInfo& info);     // ({block, dst: TypedArray, offset?}); waits
Napi::Value CudaCopy(const Napi::CallbackInfo& info);         // ({dst, src, bytes})
Napi::Value TestDeviceBlock(const Napi::CallbackInfo& info);  // ({bytes}): a tagged block with no memory, for tests
Napi::Value CudaSynchronize(const Napi::CallbackInfo& info);  // ()
Napi::Value CudaMemory(const Napi::CallbackInfo& info);       // () => {allocated, cached, peak}
Napi::Value CudaEmptyCache(const Napi::CallbackInfo& info);   // ()
Napi::Value CudaSetTf32(const Napi::CallbackInfo& info);      // (allow) => previous setting

}  // namespace lowrank::addon
