// The portable micro-kernel: a 4 x 8 tile in plain C++ (the compiler vectorises what the
// baseline ISA allows). The fallback for CPUs without AVX2.
#include "kernels.h"

namespace lowrank::cpu::gemm_detail {
namespace {

constexpr int kMR = 4;
constexpr int kNR = 8;

void kernel(int64_t kc, const float* __restrict a, const float* __restrict b, float* __restrict c, int64_t ldc,
            int rows, int cols, const float* __restrict bias, bool accumulate) {
  float acc[kMR][kNR] = {};
  for (int64_t p = 0; p < kc; ++p) {
    const float* ap = a + p * kMR;
    const float* bp = b + p * kNR;
    for (int i = 0; i < kMR; ++i)
      for (int j = 0; j < kNR; ++j) acc[i][j] += ap[i] * bp[j];
  }
  for (int i = 0; i < rows; ++i) {
    float* cr = c + i * ldc;
    for (int j = 0; j < cols; ++j) {
      const float v = acc[i][j] + (bias ? bias[j] : 0.0f);
      cr[j] = accumulate ? cr[j] + v : v;
    }
  }
}

}  // namespace

const KernelSet kScalar = {"scalar", kMR, kNR, kernel, nullptr, nullptr, {}};

}  // namespace lowrank::cpu::gemm_detail
