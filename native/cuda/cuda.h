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
// and take device pointers. Activations and the base weight (x, W, bias, y, dy, dx) may be
// float32, bfloat16 or float16, described by a DevIn / DevOut; adapter parameters, their
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
#include "../cpu/adamw.h"       // AdamwTensor, AdamwHyper
#include "../cpu/delta_lora.h"  // DeltaLoraDims
#include "../cpu/linear.h"      // LinearDims
#include "../cpu/lora.h"        // LoraDims
#include "../cpu/vera.h"        // VeraDims

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
// dst[i] = convert(src[i]) for i < n between any two dtypes (round-to-nearest-even), on device.
void convert(const void* src, DType src_dtype, void* dst, DType dst_dtype, int64_t n);
// Waits for every queued op; throws the first asynchronous error.
void synchronize();

// Whether float32 products may use a single TF32 product (faster, about 1e-3 relative)
// instead of the split-precision default. Returns the previous setting.
bool set_tf32(bool allow);

// ---- ops (gemm.cu, lora.cu, vera.cu, delta_lora.cu, adamw.cu, linear.cu) ----------------
// Each op of native/core/ops.def is cuda::name(const ops::Args&) (declared in core/ops.h),
// wrapping the pointer-level functions below, which the checker calls directly too.

// A device tensor operand: a pointer and its dtype. A null pointer means "absent" where the
// op allows it (bias, x for LoRA-FA, dx when not wanted).
struct DevIn {
  const void* data = nullptr;
  DType dtype = DType::kFloat32;
};
struct DevOut {
  void* data = nullptr;
  DType dtype = DType::kFloat32;
};

// A tensor of an op struct as an operand (null when absent).
inline DevIn dev_in(const TensorRef& t) { return {t.data, t.dtype}; }
inline DevOut dev_out(const TensorRef& t) { return {t.data, t.dtype}; }

// dst[i] = value (rounded to dst's dtype) for i < n, on device (elementwise.cu).
void fill(DevOut dst, float value, int64_t n);
// dst[i] += src[i] for i < n, float32, on device: gradient accumulation (elementwise.cu).
void add_into(float* dst, const float* src, int64_t n);

// The same contracts as native/cpu/lora.h; A, B, xa, dA, dB are float32 device pointers.
void lora_forward(const cpu::LoraDims& d, DevIn x, DevIn W, DevIn bias, const float* A, const float* B, float scale,
                  const Dropout& drop, DevOut y, float* xa);
void lora_backward(const cpu::LoraDims& d, DevIn dy, DevIn x, DevIn W, const float* A, const float* B, const float* xa,
                   float scale, const Dropout& drop, DevOut dx, float* dA, float* dB);
void lora_fa_project_grad(const cpu::LoraDims& d, const float* A, float scale, float* dB);
void lora_merge(const cpu::LoraDims& d, DevOut W, const float* A, const float* B, float scale);
// Synchronizes (it must read the result). -1 on success, else the first non-finite index.
int64_t lora_merge_safe(const cpu::LoraDims& d, DevOut W, const float* A, const float* B, float scale,
                        float* bad_value);

// The same contracts as native/cpu/vera.h.
void vera_forward(const cpu::VeraDims& d, DevIn x, DevIn W, DevIn bias, const float* A, const float* B,
                  const float* lambda_d, const float* lambda_b, const Dropout& drop, DevOut y, float* u);
void vera_backward(const cpu::VeraDims& d, DevIn dy, DevIn W, const float* A, const float* B, const float* lambda_d,
                   const float* lambda_b, const float* u, const Dropout& drop, DevOut dx, float* d_lambda_d,
                   float* d_lambda_b);
void vera_merge(const cpu::VeraDims& d, DevOut W, const float* A, const float* B, const float* lambda_d,
                const float* lambda_b, float sign);
int64_t vera_merge_safe(const cpu::VeraDims& d, DevOut W, const float* A, const float* B, const float* lambda_d,
                        const float* lambda_b, float sign, float* bad_value);

// The same contract as native/cpu/delta_lora.h.
void delta_lora_update(const cpu::DeltaLoraDims& d, DevOut W, const float* A0, const float* B0, const float* A1,
                       const float* B1, float lambda, float scale);

// The same contract as native/cpu/adamw.h; the pointers in `tensors` are device pointers
// (float32), the arrays themselves live on the host.
void adamw_step(const cpu::AdamwTensor* tensors, const cpu::AdamwHyper* hyper, int64_t count);

// The same contracts as native/cpu/linear.h (dW, db float32; dx like x).
void linear_forward(const cpu::LinearDims& d, DevIn x, DevIn W, DevIn bias, DevOut y);
void linear_backward(const cpu::LinearDims& d, DevIn dy, DevIn x, DevIn W, DevOut dx, float* dW, float* db);

// ---- self-test hooks on host data (copy in, run, copy back, synchronize) -------------------

// out[i] = keep(offset + i) ? 1 : 0 for lowrank::Dropout::make(p, seed).
void dropout_mask_host(uint64_t seed, double p, int64_t offset, int64_t n, uint8_t* out);

// W += scale · B A, with W [out, in], A [r, in], B [out, r] (the mirror of cpu::lora_merge).
void lora_merge_host(const cpu::LoraDims& d, float* W, const float* A, const float* B, float scale);

}  // namespace lowrank::cuda
