// The CUDA backend as the rest of the addon sees it: plain C++, no CUDA headers, so the
// addon compiles the same against the real backend (device.cu, dropout.cu, lora.cu) and
// against stub.cc in a CPU-only build.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "../cpu/lora.h"  // for lowrank::cpu::LoraDims

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

// Self-test hooks that run the CUDA kernels on host data (copy in, launch, copy back,
// synchronize). They throw std::runtime_error with the CUDA error text on any CUDA failure,
// or when !info().available.

// out[i] = keep(offset + i) ? 1 : 0 for lowrank::Dropout::make(p, seed).
void dropout_mask_host(uint64_t seed, double p, int64_t offset, int64_t n, uint8_t* out);

// W += scale · B A, with W [out, in], A [r, in], B [out, r] (the mirror of cpu::lora_merge).
void lora_merge_host(const cpu::LoraDims& d, float* W, const float* A, const float* B, float scale);

}  // namespace lowrank::cuda
