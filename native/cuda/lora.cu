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
void lora_forward(const cpu::LoraDims& d, DevIn x, DevIn W, DevIn bias, const float* A, const float* B, float scale,
                  const Dropout& drop, DevOut y, float* xa) {
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
void lora_backward(const cpu::LoraDims& d, DevIn dy, DevIn x, DevIn W, const float* A, const float* B, const float* xa,
                   float scale, const Dropout& drop, DevOut dx, float* dA, float* dB) {
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
// LoRA-FA's projection. Only the r x r Gram matrix crosses to the host: A Aᵀ on the device,
// its Cholesky factor and inverse on the host (in double, cpu::lora_fa_projector), the r x r
// M = (A Aᵀ + 1e-8·I)⁻¹ / scale² back, and dB ← dB M on the device.
// FLOPs: 2·r²·in (A Aᵀ) + 2·out·r² (dB M) on the device, O(r³) on the host. Fewest bytes: A
// read once, dB read and written once, 2·r²·4 across the bus.
void lora_fa_project_grad(const cpu::LoraDims& d, const float* A, float scale, float* dB) {
  const int64_t r = d.r;
  const size_t rr = static_cast<size_t>(r * r) * sizeof(float);
  const Compute c = compute_for(DType::kFloat32);
  Scratch gram(rr), m(rr), next(static_cast<size_t>(d.out * r) * sizeof(float));
  const GemmTerm tg{view(A, d.in, false), view(A, d.in, true), d.in, 1.0f};
  product(r, r, &tg, 1, gram.get(), DType::kFloat32, r, 0.0f, c);
  std::vector<float> host(static_cast<size_t>(r * r));
  download(host.data(), gram.get(), rr);
  const std::vector<float> M = cpu::lora_fa_projector(host.data(), r, scale);
  upload(m.get(), M.data(), rr);
  const GemmTerm tm{view(dB, r, false), view(m.f32(), r, false), r, 1.0f};
  product(d.out, r, &tm, 1, next.get(), DType::kFloat32, r, 0.0f, c);
  copy(dB, next.get(), static_cast<size_t>(d.out * r) * sizeof(float));
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

// ---- the op entry points (native/core/ops/lora.h) ------------------------------------------

void lora_forward(const ops::LoraForward& a) {
  lora_forward({a.t, a.in, a.out, a.r}, dev_in(a.x), dev_in(a.W), dev_in(a.bias), a.A.as<const float>(),
               a.B.as<const float>(), a.scale, a.drop, dev_out(a.y), a.xa.as<float>());
}

void lora_backward(const ops::LoraBackward& a) {
  lora_backward({a.t, a.in, a.out, a.r}, dev_in(a.dy), dev_in(a.x), dev_in(a.W), a.A.as<const float>(),
                a.B.as<const float>(), a.xa.as<const float>(), a.scale, a.drop, dev_out(a.dx), a.dA.as<float>(),
                a.dB.as<float>());
}

void lora_fa_project_grad(const ops::LoraFaProjectGrad& a) {
  lora_fa_project_grad({1, a.in, a.out, a.r}, a.A.as<const float>(), a.scale, a.dB.as<float>());
}

void lora_merge(const ops::LoraMerge& a) {
  const cpu::LoraDims d{1, a.in, a.out, a.r};
  if (!a.safe) return lora_merge(d, dev_out(a.W), a.A.as<const float>(), a.B.as<const float>(), a.scale);
  float value = 0.0f;
  const int64_t bad = lora_merge_safe(d, dev_out(a.W), a.A.as<const float>(), a.B.as<const float>(), a.scale, &value);
  if (bad >= 0) ops::merge_not_finite(bad, value, a.in);
}

}  // namespace lowrank::cuda
