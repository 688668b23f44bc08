// The CUDA backend of a CPU-only build (binding.gyp, or cmake with LOWRANK_CUDA=OFF): reports
// itself absent with the reason; every other entry point throws.
#include <stdexcept>

#include "cuda.h"

namespace lowrank::cuda {
namespace {

[[noreturn]] void absent() { throw std::runtime_error("CUDA backend not compiled in"); }

}  // namespace

const bool kCompiled = false;

Info info() {
  Info i;
  i.reason =
      "this build of lowrank has no CUDA backend (nvcc was not found at install time, or "
      "LOWRANK_CUDA=0)";
  return i;
}

void* device_alloc(size_t) { absent(); }
void device_free(void*) {}
MemoryStats memory_stats() { return {}; }
void empty_cache() {}
void upload(void*, const void*, size_t) { absent(); }
void download(void*, const void*, size_t) { absent(); }
void copy(void*, const void*, size_t) { absent(); }
void synchronize() { absent(); }
bool set_tf32(bool) { return false; }

// Every op of the op list on both devices (native/core/ops.def).
#define LOWRANK_OP(js, name, Args) \
  void name(const ops::Args&) { absent(); }
#define LOWRANK_CPU_OP(js, name, Args)
#include "../core/ops.def"

void dropout_mask_host(uint64_t, double, int64_t, int64_t, uint8_t*) { absent(); }
void lora_merge_host(const cpu::LoraDims&, float*, const float*, const float*, float) { absent(); }

}  // namespace lowrank::cuda
