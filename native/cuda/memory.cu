// Device memory and copies: the backend stream, a caching allocator, host <-> device copies
// staged through pinned buffers, and dtype conversion on the device.
//
// Everything is ordered on one stream (stream()), so a block freed while a queued kernel still
// reads it can be handed out again at once: whatever the new owner enqueues runs after that
// kernel. Nothing here needs events for reuse; the staging buffers use events only because the
// host writes into them.
#include <cuda_runtime.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <map>
#include <mutex>
#include <stdexcept>
#include <string>
#include <unordered_map>

#include "../core/check.h"
#include "../core/dtype.h"
#include "common.cuh"
#include "cuda.h"
#include "ops.cuh"

namespace lowrank::cuda {
namespace {

// ---- availability and the stream ---------------------------------------------------------

// A device, once found, stays: only success is remembered, so every failure re-asks the
// runtime and reports its current reason. info() itself always asks afresh.
std::atomic<bool> g_available{false};

void ensure_available() {
  if (g_available.load(std::memory_order_acquire)) return;
  require_available();
  g_available.store(true, std::memory_order_release);
}

std::once_flag g_stream_once;
cudaStream_t g_stream = nullptr;

// ---- the caching allocator ---------------------------------------------------------------

// Requests up to kSmallLimit round up to kSmallRound, larger ones to kLargeRound, so blocks of
// nearby sizes land in the same free list. cudaMalloc aligns to at least 256 bytes.
constexpr size_t kSmallRound = 512;
constexpr size_t kSmallLimit = size_t{1} << 20;  // 1 MiB
constexpr size_t kLargeRound = size_t{2} << 20;  // 2 MiB

size_t round_size(size_t bytes) {
  const size_t unit = bytes <= kSmallLimit ? kSmallRound : kLargeRound;
  if (bytes == 0) return kSmallRound;  // a zero-byte tensor still gets a distinct block
  if (bytes > SIZE_MAX - unit)
    throw std::runtime_error("device_alloc: " + std::to_string(bytes) + " bytes is too large");
  return (bytes + unit - 1) / unit * unit;
}

// A cached block serves a request only when it wastes at most a quarter of the request, so a
// small tensor never pins down a large block.
bool fits(size_t block, size_t want) { return block >= want && block - want <= want / 4; }

struct Allocator {
  std::mutex mutex;
  std::multimap<size_t, void*> free_blocks;  // size -> block, best fit by lower_bound
  std::unordered_map<void*, size_t> in_use;  // block -> size
  MemoryStats stats;
};

// Never destroyed: the CUDA runtime may already be torn down when static destructors run.
Allocator& allocator() {
  static Allocator* a = new Allocator();
  return *a;
}

// Gives every cached block back to the driver; the caller holds the mutex.
void release_cached(Allocator& a) {
  if (a.free_blocks.empty()) return;
  // A cached block may still be read by a queued kernel (it was freed in stream order).
  check(cudaStreamSynchronize(stream()), "cudaStreamSynchronize (before releasing cached blocks)");
  cudaError_t first = cudaSuccess;
  for (auto it = a.free_blocks.begin(); it != a.free_blocks.end();) {
    const cudaError_t err = cudaFree(it->second);
    if (err != cudaSuccess && first == cudaSuccess) first = err;
    a.stats.cached -= it->first;
    it = a.free_blocks.erase(it);
  }
  check(first, "cudaFree (releasing cached blocks)");
}

// ---- pinned staging buffers for host <-> device copies -----------------------------------

// Two buffers used in turn: while the device copies one, the host fills or drains the other.
// events[i] marks the end of the last device copy that used buffer i; the host touches a
// buffer only after its event.
constexpr size_t kStageBytes = size_t{8} << 20;  // 8 MiB

struct Staging {
  std::mutex mutex;
  bool ready = false;
  bool pinned = false;  // false when page-locked memory could not be had: copies go direct
  void* buffers[2] = {nullptr, nullptr};
  cudaEvent_t events[2] = {nullptr, nullptr};
  int next = 0;
};

Staging& staging() {
  static Staging* s = new Staging();
  return *s;
}

// Sets up the buffers on first use; the caller holds the mutex.
void prepare(Staging& s) {
  if (s.ready) return;
  for (int i = 0; i < 2; ++i)
    check(cudaEventCreateWithFlags(&s.events[i], cudaEventDisableTiming), "cudaEventCreateWithFlags");
  s.pinned = true;
  for (int i = 0; i < 2 && s.pinned; ++i) {
    if (cudaMallocHost(&s.buffers[i], kStageBytes) != cudaSuccess) {
      (void)cudaGetLastError();
      s.pinned = false;
    }
  }
  if (!s.pinned) {
    for (void*& b : s.buffers) {
      if (b) (void)cudaFreeHost(b);
      b = nullptr;
    }
  }
  // Recorded once so that every later wait on an event has something to wait for.
  for (int i = 0; i < 2; ++i) check(cudaEventRecord(s.events[i], stream()), "cudaEventRecord");
  s.ready = true;
}

// ---- conversion ----------------------------------------------------------------------------

template <DType D>
struct Elem;
template <>
struct Elem<DType::kFloat32> {
  using T = float;
  static __device__ __forceinline__ float load(float v) { return v; }
  static __device__ __forceinline__ float store(float v) { return v; }
};
template <>
struct Elem<DType::kBFloat16> {
  using T = uint16_t;
  static __device__ __forceinline__ float load(uint16_t v) { return bf16_to_f32(v); }
  static __device__ __forceinline__ uint16_t store(float v) { return f32_to_bf16(v); }
};
template <>
struct Elem<DType::kFloat16> {
  using T = uint16_t;
  static __device__ __forceinline__ float load(uint16_t v) { return f16_to_f32(v); }
  static __device__ __forceinline__ uint16_t store(float v) { return f32_to_f16(v); }
};

// dst[i] = S -> float32 -> D of src[i], the same rounding as native/cpu/convert.cc (every
// bfloat16 and float16 value is exact in float32, so the detour through float32 rounds once).
// FLOPs: none to speak of. Fewest bytes: n · (size(S) + size(D)), each element read and
// written once; the grid-stride loop keeps loads and stores coalesced.
template <DType S, DType D>
__global__ void convert_kernel(const typename Elem<S>::T* __restrict__ src, typename Elem<D>::T* __restrict__ dst,
                               int64_t n) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride)
    dst[i] = Elem<D>::store(Elem<S>::load(src[i]));
}

template <DType S, DType D>
void launch_convert(const void* src, void* dst, int64_t n) {
  convert_kernel<S, D><<<blocks_for(n), kElementwiseThreads, 0, stream()>>>(
      static_cast<const typename Elem<S>::T*>(src), static_cast<typename Elem<D>::T*>(dst), n);
  check(cudaGetLastError(), "convert_kernel launch");
}

template <DType S>
void convert_from(const void* src, void* dst, DType dst_dtype, int64_t n) {
  switch (dst_dtype) {
    case DType::kFloat32: return launch_convert<S, DType::kFloat32>(src, dst, n);
    case DType::kBFloat16: return launch_convert<S, DType::kBFloat16>(src, dst, n);
    case DType::kFloat16: return launch_convert<S, DType::kFloat16>(src, dst, n);
    case DType::kInt32: break;  // refused by convert()
  }
}

bool valid(DType d) {
  return d == DType::kFloat32 || d == DType::kBFloat16 || d == DType::kFloat16 || d == DType::kInt32;
}

}  // namespace

cudaStream_t stream() {
  ensure_available();
  std::call_once(g_stream_once, [] {
    check(cudaStreamCreateWithFlags(&g_stream, cudaStreamNonBlocking), "cudaStreamCreateWithFlags");
  });
  return g_stream;
}

void* device_alloc(size_t bytes) {
  ensure_available();
  const size_t want = round_size(bytes);
  Allocator& a = allocator();
  std::lock_guard<std::mutex> lock(a.mutex);
  void* p = nullptr;
  size_t size = want;
  const auto hit = a.free_blocks.lower_bound(want);
  if (hit != a.free_blocks.end() && fits(hit->first, want)) {
    p = hit->second;
    size = hit->first;  // a reused block keeps its own (possibly larger) size
    a.stats.cached -= size;
    a.free_blocks.erase(hit);
  } else {
    cudaError_t err = cudaMalloc(&p, size);
    if (err == cudaErrorMemoryAllocation) {  // give the cache back and try once more
      (void)cudaGetLastError();
      release_cached(a);
      err = cudaMalloc(&p, size);
    }
    if (err != cudaSuccess) {
      (void)cudaGetLastError();
      throw std::runtime_error("device_alloc: could not allocate " + std::to_string(bytes) +
                               " bytes of device memory: " + cudaGetErrorString(err));
    }
  }
  try {
    a.in_use.emplace(p, size);
  } catch (...) {
    a.free_blocks.emplace(size, p);  // keep the block rather than leak it
    a.stats.cached += size;
    throw;
  }
  a.stats.allocated += size;
  a.stats.peak = std::max(a.stats.peak, a.stats.allocated);
  return p;
}

void device_free(void* p) {
  if (p == nullptr) return;
  // No device check: a block from device_alloc proves there is one, and this runs from
  // finalizers, where it must not throw.
  Allocator& a = allocator();
  std::lock_guard<std::mutex> lock(a.mutex);
  const auto it = a.in_use.find(p);
  if (it == a.in_use.end()) return;  // not ours, or freed already
  const size_t size = it->second;
  a.in_use.erase(it);
  a.stats.allocated -= size;
  try {
    a.free_blocks.emplace(size, p);
    a.stats.cached += size;
  } catch (...) {
    (void)cudaFree(p);  // out of host memory for the list: give the block back instead
    (void)cudaGetLastError();
  }
}

MemoryStats memory_stats() {
  try {
    Allocator& a = allocator();
    std::lock_guard<std::mutex> lock(a.mutex);
    return a.stats;
  } catch (...) {  // std::bad_alloc or std::system_error: report nothing rather than throw
    return {};
  }
}

void empty_cache() {
  Allocator& a = allocator();
  std::lock_guard<std::mutex> lock(a.mutex);
  // Nothing cached means nothing to give back, with or without a device (like the CPU-only
  // build's stub).
  if (a.free_blocks.empty()) return;
  ensure_available();
  release_cached(a);
}

void upload(void* dst, const void* host, size_t bytes) {
  ensure_available();
  if (bytes == 0) return;
  const cudaStream_t s = stream();
  Staging& st = staging();
  std::lock_guard<std::mutex> lock(st.mutex);
  prepare(st);
  if (!st.pinned) {
    // From pageable memory the runtime stages the copy itself and returns once `host` has
    // been read (the device side may still be in flight).
    check(cudaMemcpyAsync(dst, host, bytes, cudaMemcpyHostToDevice, s), "cudaMemcpyAsync (host to device)");
    return;
  }
  const auto* from = static_cast<const uint8_t*>(host);
  auto* to = static_cast<uint8_t*>(dst);
  for (size_t off = 0; off < bytes; off += kStageBytes) {
    const size_t n = std::min(kStageBytes, bytes - off);
    const int i = st.next;
    st.next ^= 1;
    check(cudaEventSynchronize(st.events[i]), "cudaEventSynchronize (staging buffer)");
    std::memcpy(st.buffers[i], from + off, n);
    check(cudaMemcpyAsync(to + off, st.buffers[i], n, cudaMemcpyHostToDevice, s), "cudaMemcpyAsync (host to device)");
    check(cudaEventRecord(st.events[i], s), "cudaEventRecord");
  }
}

void download(void* host, const void* src, size_t bytes) {
  ensure_available();
  const cudaStream_t s = stream();
  if (bytes == 0) {
    synchronize();
    return;
  }
  Staging& st = staging();
  std::lock_guard<std::mutex> lock(st.mutex);
  prepare(st);
  auto* to = static_cast<uint8_t*>(host);
  const auto* from = static_cast<const uint8_t*>(src);
  if (!st.pinned) {
    check(cudaMemcpyAsync(to, from, bytes, cudaMemcpyDeviceToHost, s), "cudaMemcpyAsync (device to host)");
    check(cudaStreamSynchronize(s), "cudaStreamSynchronize");
    return;
  }
  // Chunk k goes to buffer k % 2. Chunk k + 1 is enqueued before chunk k is drained, so the
  // device fills one buffer while the host empties the other. A buffer is refilled only after
  // the host drained it (this loop) and, on the device, after its previous copy (stream order).
  const size_t chunks = (bytes + kStageBytes - 1) / kStageBytes;
  auto enqueue = [&](size_t k) {
    const size_t off = k * kStageBytes;
    const size_t n = std::min(kStageBytes, bytes - off);
    const int i = static_cast<int>(k % 2);
    check(cudaMemcpyAsync(st.buffers[i], from + off, n, cudaMemcpyDeviceToHost, s), "cudaMemcpyAsync (device to host)");
    check(cudaEventRecord(st.events[i], s), "cudaEventRecord");
  };
  enqueue(0);
  for (size_t k = 0; k < chunks; ++k) {
    if (k + 1 < chunks) enqueue(k + 1);
    const int i = static_cast<int>(k % 2);
    // Reports any earlier asynchronous error too: every op before the copy has finished.
    check(cudaEventSynchronize(st.events[i]), "cudaEventSynchronize (device to host)");
    const size_t off = k * kStageBytes;
    std::memcpy(to + off, st.buffers[i], std::min(kStageBytes, bytes - off));
  }
  // Uploads pick buffers by `next`; both events are recorded after the last use here.
  st.next = 0;
}

void copy(void* dst, const void* src, size_t bytes) {
  ensure_available();
  if (bytes == 0) return;
  check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, stream()), "cudaMemcpyAsync (device to device)");
}

void synchronize() {
  ensure_available();
  check(cudaStreamSynchronize(stream()), "cudaStreamSynchronize");
}

// The op entry point (native/core/ops/elementwise.h): dst[i] = convert(src[i]) between any two
// dtypes (round-to-nearest-even), on device.
void convert(const ops::Convert& a) {
  const void* src = a.src.data;
  void* dst = a.dst.data;
  const DType src_dtype = a.src.dtype, dst_dtype = a.dst.dtype;
  const int64_t n = a.src.elements;
  if (n < 0) throw RangeError("convert: n must be >= 0 but is " + std::to_string(n));
  if (!valid(src_dtype) || !valid(dst_dtype))
    throw RangeError("convert: dtype codes must be 0 (float32), 1 (bfloat16), 2 (float16) or 3 (int32) but are " +
                     std::to_string(static_cast<int>(src_dtype)) + " and " +
                     std::to_string(static_cast<int>(dst_dtype)));
  ensure_available();
  if (n == 0) return;
  if (src_dtype == dst_dtype)
    return copy(dst, src, static_cast<size_t>(n) * static_cast<size_t>(dtype_size(src_dtype)));
  if (!dtype_is_float(src_dtype) || !dtype_is_float(dst_dtype))
    throw RangeError(std::string("convert: ") + dtype_name(src_dtype) + " does not convert to " +
                     dtype_name(dst_dtype));
  switch (src_dtype) {
    case DType::kFloat32: return convert_from<DType::kFloat32>(src, dst, dst_dtype, n);
    case DType::kBFloat16: return convert_from<DType::kBFloat16>(src, dst, dst_dtype, n);
    case DType::kFloat16: return convert_from<DType::kFloat16>(src, dst, dst_dtype, n);
    case DType::kInt32: break;  // refused above
  }
}

}  // namespace lowrank::cuda
