// What the CUDA runtime can see: device count and properties, runtime and driver versions.
// Linked against the static runtime, so this runs (and reports why not) on a machine with no
// driver or no device.
#include <cuda_runtime.h>

#include <stdexcept>
#include <string>
#include <utility>

#include "common.cuh"
#include "cuda.h"

namespace lowrank::cuda {

const bool kCompiled = true;
namespace {

// This binary carries sm_80 and sm_90 code (plus compute_90 PTX for newer devices), so an
// older device would fail every launch with "no kernel image is available".
constexpr int kMinMajor = 8;

std::string failure(const char* call, cudaError_t err) {
  (void)cudaGetLastError();  // clear the error so later calls start clean
  return std::string(call) + ": " + cudaGetErrorString(err);
}

}  // namespace

Info info() {
  Info out;
  out.compiled = true;
  try {
    if (cudaRuntimeGetVersion(&out.runtime_version) != cudaSuccess) out.runtime_version = 0;
    // Succeeds with 0 when no driver is installed.
    if (cudaDriverGetVersion(&out.driver_version) != cudaSuccess) {
      (void)cudaGetLastError();
      out.driver_version = 0;
    }
    int count = 0;
    const cudaError_t err = cudaGetDeviceCount(&count);
    if (err != cudaSuccess) {
      out.reason = failure("cudaGetDeviceCount", err);
      return out;
    }
    if (count <= 0) {
      out.reason = failure("cudaGetDeviceCount", cudaErrorNoDevice);
      return out;
    }
    for (int d = 0; d < count; ++d) {
      cudaDeviceProp prop;
      const cudaError_t perr = cudaGetDeviceProperties(&prop, d);
      if (perr != cudaSuccess) {
        out.reason = failure("cudaGetDeviceProperties", perr);
        out.devices.clear();
        return out;
      }
      DeviceInfo di;
      di.name = prop.name;
      di.major = prop.major;
      di.minor = prop.minor;
      di.memory = static_cast<uint64_t>(prop.totalGlobalMem);
      di.multiprocessors = prop.multiProcessorCount;
      out.devices.push_back(std::move(di));
    }
    // The kernels run on the current device (0 unless the caller changed it).
    int current = 0;
    const cudaError_t cerr = cudaGetDevice(&current);
    if (cerr != cudaSuccess) {
      out.reason = failure("cudaGetDevice", cerr);
      return out;
    }
    const DeviceInfo& dev = out.devices[static_cast<size_t>(current)];
    if (dev.major < kMinMajor) {
      out.reason = "device " + std::to_string(current) + " (" + dev.name + ") has compute capability " +
                   std::to_string(dev.major) + "." + std::to_string(dev.minor) +
                   "; this build of lowrank needs 8.0 or newer";
      return out;
    }
    out.available = true;
  } catch (const std::exception& e) {  // std::bad_alloc from the strings: never throw
    out.available = false;
    out.reason = e.what();
  }
  return out;
}

void require_available() {
  const Info i = info();
  if (!i.available) throw std::runtime_error("CUDA backend unavailable: " + i.reason);
}

}  // namespace lowrank::cuda
