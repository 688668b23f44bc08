// LoRA on CUDA, mirroring native/cpu/lora.cc function for function. Every product goes
// through gemm() on tensor cores, in the base weight's compute type.
#include <cuda_runtime.h>

#include <cstdint>
#include <vector>

#include "../core/check.h"
#include "../cpu/lora.h"
#include "ops.cuh"

namespace lowrank::cuda {

// Forward. FLOPs: 2·T·out·in (base) + 2·T·in·r + 2·T·out·r. Fewest bytes: x, W, A, B read
// once; y and xa written once.
void lora_forward(const cpu::LoraDims& d, DevIn x, DevIn W, DevIn bias, const float* A, const float* B,
                  float scale, const Dropout& drop, DevOut y, float* xa) {
  const Compute c = compute_for(W.dtype);
  // xa = D(x) Aᵀ: [T, in] · [in, r], narrow tiles, x read once
  const GemmTerm txa{view(x, d.in, false, drop), view(A, d.in, true), d.in, 1.0f};
  product(d.t, d.r, &txa, 1, xa, DType::kFloat32, d.r, 0.0f, c);
  // y = [x | xa] · [W | scale·B]ᵀ + bias, written once
  const GemmTerm joined[2] = {
      {view(x, d.in, false), view(W, d.in, true), d.in, 1.0f},
      {view(xa, d.r, false), view(B, d.r, true), d.r, scale},
  };
  product(d.t, d.out, joined, 2, y.data, y.dtype, d.out, 0.0f, c, bias);
}

// Backward. FLOPs: 2·T·out·in (dx base) + 2·T·r·(2·out + 2·in). Fewest bytes: dy, x, W, A, B,
// xa read once; dx, dA, dB written once.
void lora_backward(const cpu::LoraDims& d, DevIn dy, DevIn x, DevIn W, const float* A, const float* B,
                   const float* xa, float scale, const Dropout& drop, DevOut dx, float* dA, float* dB) {
  const Compute c = compute_for(W.dtype);
  // dB = scale · dyᵀ xa: [out, T] · [T, r]
  const GemmTerm tdb{view(dy, d.out, true), view(xa, d.r, false), d.t, scale};
  product(d.out, d.r, &tdb, 1, dB, DType::kFloat32, d.r, 0.0f, c);
  // g = scale · dy B: [T, out] · [out, r]
  Scratch g(static_cast<size_t>(d.t * d.r) * sizeof(float));
  const GemmTerm tg{view(dy, d.out, false), view(B, d.r, false), d.out, scale};
  product(d.t, d.r, &tg, 1, g.get(), DType::kFloat32, d.r, 0.0f, c);
  if (dA) {
    // dA = gᵀ D(x): [r, T] · [T, in]
    const GemmTerm tda{view(g.f32(), d.r, true), view(x, d.in, false, drop), d.t, 1.0f};
    product(d.r, d.in, &tda, 1, dA, DType::kFloat32, d.in, 0.0f, c);
  }
  if (dx.data) input_grad(d.t, d.in, d.out, d.r, dy, W, g.f32(), A, d.in, drop, dx);
}

// The r x r system is tiny: A and dB come to the host, the CPU's projection (Cholesky in
// double) runs there, and dB goes back. Synchronizes.
void lora_fa_project_grad(const cpu::LoraDims& d, const float* A, float scale, float* dB) {
  std::vector<float> a(static_cast<size_t>(d.r * d.in)), db(static_cast<size_t>(d.out * d.r));
  download(a.data(), A, a.size() * sizeof(float));
  download(db.data(), dB, db.size() * sizeof(float));
  cpu::lora_fa_project_grad(d, a.data(), scale, db.data());
  upload(dB, db.data(), db.size() * sizeof(float));
}

// Merge. FLOPs: 2·out·in·r. Fewest bytes: W read and written once, A and B read once.
void lora_merge(const cpu::LoraDims& d, DevOut W, const float* A, const float* B, float scale) {
  add_product(d.out, d.in, d.r, B, d.r, A, d.in, scale, W);
}

int64_t lora_merge_safe(const cpu::LoraDims& d, DevOut W, const float* A, const float* B, float scale,
                        float* bad_value) {
  return add_product_safe(d.out, d.in, d.r, B, d.r, A, d.in, scale, W, bad_value);
}

void lora_merge_host(const cpu::LoraDims& d, float* W, const float* A, const float* B, float scale) {
  LR_CHECK("lora_merge_host", d.out >= 0 && d.in >= 0 && d.r >= 0, "out, in and r must be >= 0");
  require_available();
  if (d.out == 0 || d.in == 0) return;
  const size_t nW = static_cast<size_t>(d.out * d.in) * sizeof(float);
  const size_t nA = static_cast<size_t>(d.r * d.in) * sizeof(float);
  const size_t nB = static_cast<size_t>(d.out * d.r) * sizeof(float);
  Scratch dW(nW), dA(nA), dB(nB);
  upload(dW.get(), W, nW);
  upload(dA.get(), A, nA);
  upload(dB.get(), B, nB);
  lora_merge(d, DevOut{dW.get(), DType::kFloat32}, dA.f32(), dB.f32(), scale);
  download(W, dW.get(), nW);
}

}  // namespace lowrank::cuda
