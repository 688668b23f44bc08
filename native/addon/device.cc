// The Node-API side of device memory: blocks from the caching allocator held by JavaScript as
// type-tagged Externals, and the copies and conversions between them and typed arrays.
#include "device.h"

#include <memory>
#include <sstream>
#include <string>

#include "../core/check.h"
#include "../core/dtype.h"
#include "../cuda/cuda.h"
#include "marshal.h"

namespace lowrank::addon {
namespace {

// Marks the Externals made by cudaAlloc, so that any other External is refused, not misread.
constexpr napi_type_tag kDeviceBlockTag = {0x6c6f7772616e6b00ULL, 0x637564612d626c6bULL};

void finalize(Napi::Env, DeviceBlock* b) {
  if (!b->freed) cuda::device_free(b->ptr);  // never throws
  delete b;
}

}  // namespace

std::string received(const Napi::Value& v) {
  if (v.IsUndefined()) return "undefined";
  if (v.IsNull()) return "null";
  if (v.IsBoolean()) return v.As<Napi::Boolean>().Value() ? "true" : "false";
  if (v.IsNumber()) {
    std::ostringstream s;
    s << v.As<Napi::Number>().DoubleValue();
    return s.str();
  }
  if (v.IsString()) return "a string";
  if (v.IsExternal()) return "an External that is not a CUDA block";
  if (v.IsTypedArray()) return "a typed array (host memory)";
  if (v.IsFunction()) return "a function";
  return "an object";
}

namespace {

// The block an External from cudaAlloc holds, or null when `v` is not one.
DeviceBlock* as_block(const Napi::Value& v) {
  if (!v.IsExternal()) return nullptr;
  auto ext = v.As<Napi::External<DeviceBlock>>();
  if (!ext.CheckTypeTag(&kDeviceBlockTag)) return nullptr;
  return ext.Data();
}

[[noreturn]] void not_a_tensor(const char* key, const std::string& what) {
  throw lowrank::TypeError(std::string("Expected a live CUDA tensor for ") + key + " but received " + what);
}

}  // namespace

DeviceBlock* live_block(const Napi::Value& v, const char* key) {
  DeviceBlock* b = as_block(v);
  if (b == nullptr) not_a_tensor(key, received(v));
  if (b->freed) not_a_tensor(key, "a freed CUDA block");
  return b;
}

namespace {

DeviceBlock* block_field(const Napi::Object& obj, const char* key) { return live_block(obj.Get(key), key); }

// A non-negative integer field (absent or undefined: `fallback`), as a byte count or offset.
size_t size_field(const Napi::Object& obj, const char* key, const char* op, bool has_default, size_t fallback = 0) {
  const Napi::Value v = obj.Get(key);
  if (has_default && v.IsUndefined()) return fallback;
  if (!v.IsNumber())
    throw lowrank::TypeError(std::string(op) + ": expected a number for " + key + " but received " + received(v));
  const double d = v.As<Napi::Number>().DoubleValue();
  // Below 2^53: the integers a double holds exactly.
  if (!(d >= 0 && d <= 9007199254740991.0) || d != static_cast<double>(static_cast<int64_t>(d))) {
    std::ostringstream s;
    s << op << ": expected a non-negative integer for " << key << " but received " << d;
    throw lowrank::RangeError(s.str());
  }
  return static_cast<size_t>(d);
}

// A typed array field: its first byte and its length in bytes.
struct HostBytes {
  uint8_t* data = nullptr;
  size_t bytes = 0;
};

HostBytes host_field(const Napi::Object& obj, const char* key, const char* op) {
  const Napi::Value v = obj.Get(key);
  if (!v.IsTypedArray())
    throw lowrank::TypeError(std::string(op) + ": expected a typed array for " + key + " but received " + received(v));
  const Napi::TypedArray ta = v.As<Napi::TypedArray>();
  Napi::ArrayBuffer buf = ta.ArrayBuffer();
  return {static_cast<uint8_t*>(buf.Data()) + ta.ByteOffset(), ta.ByteLength()};
}

// `bytes` at `offset` must lie inside the block.
void check_span(const char* op, const char* key, const DeviceBlock& b, size_t offset, size_t bytes) {
  if (offset > b.bytes || bytes > b.bytes - offset) {
    std::ostringstream s;
    s << op << ": " << bytes << " bytes at offset " << offset << " do not fit in " << key << " (a CUDA block of "
      << b.bytes << " bytes)";
    throw lowrank::RangeError(s.str());
  }
}

}  // namespace

void* device_field(const Napi::Object& obj, const char* key, size_t min_bytes, bool optional) {
  const Napi::Value v = obj.Get(key);
  if (optional && (v.IsNull() || v.IsUndefined())) return nullptr;
  DeviceBlock* b = block_field(obj, key);
  if (b->bytes < min_bytes) {
    std::ostringstream s;
    s << "Expected a CUDA tensor of at least " << min_bytes << " bytes for " << key << " but received one of "
      << b->bytes << " bytes";
    throw lowrank::RangeError(s.str());
  }
  return b->ptr;
}

Napi::Value CudaAlloc(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    const Napi::Object a = args_object(info);
    const size_t bytes = size_field(a, "bytes", "cudaAlloc", false);
    auto block = std::make_unique<DeviceBlock>();
    block->bytes = bytes;
    block->ptr = cuda::device_alloc(bytes);
    try {
      auto ext = Napi::External<DeviceBlock>::New(env, block.get(), finalize);
      block.release();  // the External owns it now
      ext.TypeTag(&kDeviceBlockTag);
      return ext;
    } catch (...) {
      if (block) cuda::device_free(block->ptr);
      throw;
    }
  });
}

Napi::Value CudaFree(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    const Napi::Object a = args_object(info);
    const Napi::Value v = a.Get("block");
    DeviceBlock* b = as_block(v);
    if (b == nullptr) not_a_tensor("block", received(v));
    if (!b->freed) {
      b->freed = true;
      cuda::device_free(b->ptr);
    }
    return env.Undefined();
  });
}

Napi::Value CudaUpload(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    const Napi::Object a = args_object(info);
    DeviceBlock* b = block_field(a, "block");
    const HostBytes src = host_field(a, "src", "cudaUpload");
    const size_t offset = size_field(a, "offset", "cudaUpload", true);
    check_span("cudaUpload", "block", *b, offset, src.bytes);
    cuda::upload(static_cast<uint8_t*>(b->ptr) + offset, src.data, src.bytes);
    return env.Undefined();
  });
}

Napi::Value CudaDownload(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    const Napi::Object a = args_object(info);
    DeviceBlock* b = block_field(a, "block");
    const HostBytes dst = host_field(a, "dst", "cudaDownload");
    const size_t offset = size_field(a, "offset", "cudaDownload", true);
    check_span("cudaDownload", "block", *b, offset, dst.bytes);
    const void* src = static_cast<const uint8_t*>(b->ptr) + offset;
    // `a` stays referenced and dst's memory held until the copy is done; the caller keeps the
    // block from being freed (and handed to another tensor) meanwhile.
    HostStores stores;
    stores.add(a.Get("dst").As<Napi::TypedArray>());
    return run(env, async_flag(info), a, std::move(stores), [src, dst] { cuda::download(dst.data, src, dst.bytes); });
  });
}

Napi::Value CudaCopy(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    const Napi::Object a = args_object(info);
    const size_t bytes = size_field(a, "bytes", "cudaCopy", false);
    void* dst = device_field(a, "dst", bytes);
    const void* src = device_field(a, "src", bytes);
    cuda::copy(dst, src, bytes);
    return env.Undefined();
  });
}

Napi::Value TestDeviceBlock(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    const Napi::Object a = args_object(info);
    auto block = std::make_unique<DeviceBlock>();
    block->bytes = size_field(a, "bytes", "_testDeviceBlock", false);
    block->test_only = true;
    auto ext = Napi::External<DeviceBlock>::New(env, block.release(), finalize);
    ext.TypeTag(&kDeviceBlockTag);
    return ext;
  });
}

Napi::Value CudaSynchronize(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    cuda::synchronize();
    return env.Undefined();
  });
}

Napi::Value CudaMemory(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const cuda::MemoryStats s = cuda::memory_stats();
  Napi::Object out = Napi::Object::New(env);
  out.Set("allocated", Napi::Number::New(env, static_cast<double>(s.allocated)));
  out.Set("cached", Napi::Number::New(env, static_cast<double>(s.cached)));
  out.Set("peak", Napi::Number::New(env, static_cast<double>(s.peak)));
  return out;
}

Napi::Value CudaEmptyCache(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    cuda::empty_cache();
    return env.Undefined();
  });
}

Napi::Value CudaSetTf32(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    if (info.Length() < 1 || !info[0].IsBoolean())
      throw lowrank::TypeError("Expected a boolean for allow but received " +
                               received(info.Length() < 1 ? env.Undefined() : info[0]));
    return Napi::Boolean::New(env, cuda::set_tf32(info[0].As<Napi::Boolean>().Value()));
  });
}

}  // namespace lowrank::addon
