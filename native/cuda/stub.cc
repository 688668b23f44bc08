// The CUDA backend of a CPU-only build (binding.gyp, or cmake with LOWRANK_CUDA=OFF): reports
// itself absent with the reason, and its hooks throw.
#include <stdexcept>

#include "cuda.h"

namespace lowrank::cuda {

Info info() {
  Info i;
  i.reason =
      "this build of lowrank has no CUDA backend (nvcc was not found at install time, or "
      "LOWRANK_CUDA=0)";
  return i;
}

void dropout_mask_host(uint64_t, double, int64_t, int64_t, uint8_t*) {
  throw std::runtime_error("CUDA backend not compiled in");
}

void lora_merge_host(const cpu::LoraDims&, float*, const float*, const float*, float) {
  throw std::runtime_error("CUDA backend not compiled in");
}

}  // namespace lowrank::cuda
