// The CUDA backend as the rest of the addon sees it: plain C++, no CUDA headers, so the
// addon compiles the same against the real backend (native/cuda/*.cu) and against stub.cc in
// a CPU-only build.
//
// Execution model: one backend stream per process. Every op below is enqueued on it and
// returns without waiting for the device (stream-ordered, like PyTorch's default stream);
// download() and synchronize() wait. Memory freed with device_free() goes back to a caching
// allocator and is reused by later allocations in stream order, so freeing a buffer that a
// queued kernel still reads is safe.
//
// The op functions mirror native/cpu by file and function name (lora.cu ↔ cpu/lora.cc, ...)
// and take the same argument structs. Activations and the base weight (x, W, bias, y, dy, dx)
// may be float32, bfloat16 or float16; adapter parameters, their
// gradients and the small saved tensors (A, B, xa, u, λ) are float32. Products run on tensor
// cores: bfloat16 / float16 operands with mma.sync, float32 operands as three TF32 products
// (split precision, about float32 accuracy) unless set_tf32(true) allows one plain TF32
// product. Accumulation is float32 everywhere.
//
// Errors: std::runtime_error with the CUDA runtime's text; lowrank::RangeError for bad
// arguments (negative sizes, unsupported dtypes). Every function except info() and the
// memory statistics requires an available device (it throws otherwise).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "../core/dtype.h"
#include "../core/ops.h"  // the op entry points cuda::name(const ops::Args&)
#include "../core/philox.h"
#include "../cpu/lora.h"  // LoraDims

namespace lowrank::cuda {

struct DeviceInfo {
  std::string name;
  int major = 0, minor = 0;
  uint64_t memory = 0;  // bytes of global memory
  int multiprocessors = 0;
};

struct Info {
  bool compiled = false;    // CUDA backend compiled into this binary
  bool available = false;   // a usable device was found at run time
  std::string reason;       // why not available (the runtime's error text); empty when available
  int runtime_version = 0;  // cudaRuntimeGetVersion, 0 when not compiled
  int driver_version = 0;   // cudaDriverGetVersion (0 when no driver)
  std::vector<DeviceInfo> devices;
};

// Never throws; queries the runtime afresh on every call.
Info info();

// Whether this binary has the CUDA backend (false for stub.cc).
extern const bool kCompiled;

// ---- device memory and copies (memory.cu) ------------------------------------------------

// Device memory of at least `bytes` bytes (256-byte aligned) from the caching allocator. Throws
// std::runtime_error naming the size on out-of-memory (after emptying the cache and retrying).
void* device_alloc(size_t bytes);
// Returns a block from device_alloc to the cache; null is a no-op.
void device_free(void* p);

struct MemoryStats {
  uint64_t allocated = 0;  // bytes in blocks handed out and not yet freed
  uint64_t cached = 0;     // bytes held by the cache for reuse
  uint64_t peak = 0;       // the largest `allocated` so far
};
MemoryStats memory_stats();  // never throws; zeros when nothing was ever allocated
// Gives cached blocks back to the driver (after a synchronize).
void empty_cache();

// Host to device: returns once `host` may be reused (it is staged through pinned buffers).
void upload(void* dst, const void* host, size_t bytes);
// Device to host: waits for every op queued before it, then copies; returns when `host` holds
// the bytes.
void download(void* host, const void* src, size_t bytes);
// Device to device, stream-ordered.
void copy(void* dst, const void* src, size_t bytes);
// Waits for every queued op; throws the first asynchronous error.
void synchronize();

// Whether float32 products may use a single TF32 product (faster, about 1e-3 relative)
// instead of the split-precision default. Returns the previous setting.
bool set_tf32(bool allow);

// ---- ops (lora.cu, vera.cu, delta_lora.cu, adamw.cu, linear.cu, elementwise.cu, ...) ----------
// Each op of native/core/ops.def is cuda::name(const ops::Args&), declared in core/ops.h; its
// tensors are device tensors (TensorRef with device kCuda), the arrays of AdamwStep on the host.

// ---- self-test hooks on host data (copy in, run, copy back, synchronize) -------------------

// out[i] = keep(offset + i) ? 1 : 0 for lowrank::Dropout::make(p, seed).
void dropout_mask_host(uint64_t seed, double p, int64_t offset, int64_t n, uint8_t* out);

// W += scale · B A, with W [out, in], A [r, in], B [out, r] (the mirror of cpu::lora_merge).
void lora_merge_host(const cpu::LoraDims& d, float* W, const float* A, const float* B, float scale);

}  // namespace lowrank::cuda
