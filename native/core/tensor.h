// A tensor as an op sees it: where its elements live, their dtype and how many there are. The
// addon (native/addon/marshal.h) makes one from each { data, dtype } argument, for either
// device; the kernels receive them inside the op structs of native/core/ops/.
#pragma once

#include <cstdint>

#include "dtype.h"

namespace lowrank {

enum class Device { kCpu, kCuda };

inline const char* device_name(Device d) { return d == Device::kCuda ? "cuda" : "cpu"; }

struct TensorRef {
  void* data = nullptr;
  DType dtype = DType::kFloat32;
  Device device = Device::kCpu;
  int64_t elements = 0;  // what its storage holds (a CUDA block: its bytes / the dtype's size)
  bool present = false;  // false for an absent optional tensor

  explicit operator bool() const { return present; }
  template <typename T>
  T* as() const {
    return static_cast<T*>(data);
  }
};

}  // namespace lowrank
