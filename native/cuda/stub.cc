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
void convert(const void*, DType, void*, DType, int64_t) { absent(); }
void synchronize() { absent(); }
bool set_tf32(bool) { return false; }

void fill(DevOut, float, int64_t) { absent(); }
void add_into(float*, const float*, int64_t) { absent(); }

void lora_forward(const cpu::LoraDims&, DevIn, DevIn, DevIn, const float*, const float*, float, const Dropout&, DevOut,
                  float*) {
  absent();
}
void lora_backward(const cpu::LoraDims&, DevIn, DevIn, DevIn, const float*, const float*, const float*, float,
                   const Dropout&, DevOut, float*, float*) {
  absent();
}
void lora_fa_project_grad(const cpu::LoraDims&, const float*, float, float*) { absent(); }
void lora_merge(const cpu::LoraDims&, DevOut, const float*, const float*, float) { absent(); }
int64_t lora_merge_safe(const cpu::LoraDims&, DevOut, const float*, const float*, float, float*) { absent(); }
void vera_forward(const cpu::VeraDims&, DevIn, DevIn, DevIn, const float*, const float*, const float*, const float*,
                  const Dropout&, DevOut, float*) {
  absent();
}
void vera_backward(const cpu::VeraDims&, DevIn, DevIn, const float*, const float*, const float*, const float*,
                   const float*, const Dropout&, DevOut, float*, float*) {
  absent();
}
void vera_merge(const cpu::VeraDims&, DevOut, const float*, const float*, const float*, const float*, float) {
  absent();
}
int64_t vera_merge_safe(const cpu::VeraDims&, DevOut, const float*, const float*, const float*, const float*, float,
                        float*) {
  absent();
}
void delta_lora_update(const cpu::DeltaLoraDims&, DevOut, const float*, const float*, const float*, const float*, float,
                       float) {
  absent();
}
void adamw_step(const cpu::AdamwTensor*, const cpu::AdamwHyper*, int64_t) { absent(); }
void linear_forward(const cpu::LinearDims&, DevIn, DevIn, DevIn, DevOut) { absent(); }
void linear_backward(const cpu::LinearDims&, DevIn, DevIn, DevIn, DevOut, float*, float*) { absent(); }

// Every op of the op list on both devices (native/core/ops.def).
#define LOWRANK_OP(js, name, Args) \
  void name(const ops::Args&) { absent(); }
#define LOWRANK_CPU_OP(js, name, Args)
#include "../core/ops.def"

void dropout_mask_host(uint64_t, double, int64_t, int64_t, uint8_t*) { absent(); }
void lora_merge_host(const cpu::LoraDims&, float*, const float*, const float*, float) { absent(); }

}  // namespace lowrank::cuda
