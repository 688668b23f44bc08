// Internal to the CUDA backend: error checking that throws with the runtime's text, and an
// owning device buffer so every error path frees what it allocated.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <stdexcept>
#include <string>

namespace lowrank::cuda {

// Throws std::runtime_error("<what>: <CUDA error text>") when `err` is not cudaSuccess, after
// clearing the runtime's last-error slot so the failure does not resurface on a later call.
inline void check(cudaError_t err, const char* what) {
  if (err == cudaSuccess) return;
  (void)cudaGetLastError();
  throw std::runtime_error(std::string(what) + ": " + cudaGetErrorString(err));
}

// Throws std::runtime_error with info().reason when no usable device is present (device.cu).
void require_available();

// The backend stream (memory.cu): one non-blocking stream per process, created on first use
// after require_available(). Every kernel and copy of the backend is enqueued on it, which is
// what makes the caching allocator's reuse of freed blocks safe without events.
cudaStream_t stream();

// cudaMalloc'd memory, freed on destruction. Zero bytes allocates nothing (get() is null).
class DeviceBuffer {
 public:
  explicit DeviceBuffer(size_t bytes) {
    if (bytes > 0) check(cudaMalloc(&ptr_, bytes), "cudaMalloc");
  }
  ~DeviceBuffer() {
    if (ptr_) (void)cudaFree(ptr_);
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;

  template <typename T>
  T* as() const {
    return static_cast<T*>(ptr_);
  }

 private:
  void* ptr_ = nullptr;
};

}  // namespace lowrank::cuda
