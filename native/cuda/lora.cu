// LoRA on CUDA, mirroring native/cpu/lora.cc function for function. Every product goes
// through gemm() on tensor cores, in the base weight's compute type.
#include <cuda_runtime.h>

#include <cstdint>
#include <vector>

#include "../core/check.h"
#include "../cpu/lora.h"
#include "ops.cuh"

namespace lowrank::cuda {

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
  add_product(d.out, d.in, d.r, dB.f32(), d.r, dA.f32(), d.in, scale, DevOut{dW.get(), DType::kFloat32});
  download(W, dW.get(), nW);
}

// ---- the op entry points (native/core/ops/lora.h) ------------------------------------------

// Forward. FLOPs: 2·T·out·in (base) + 2·T·in·r + 2·T·out·r. Fewest bytes: x, W, A, B read
// once; y and xa written once.
void lora_forward(const ops::LoraForward& a) {
  const DevIn x = dev_in(a.x), W = dev_in(a.W);
  const float *A = a.A.as<const float>(), *B = a.B.as<const float>();
  float* xa = a.xa.as<float>();
  const Compute c = compute_for(W.dtype);
  // xa = D(x) Aᵀ: [T, in] · [in, r], narrow tiles, x read once
  const GemmTerm txa{view(x, a.in, false, a.drop), view(A, a.in, true), a.in, 1.0f};
  product(a.t, a.r, &txa, 1, xa, DType::kFloat32, a.r, 0.0f, c);
  // y = [x | xa] · [W | scale·B]ᵀ + bias, written once
  const GemmTerm joined[2] = {
      {view(x, a.in, false), view(W, a.in, true), a.in, 1.0f},
      {view(xa, a.r, false), view(B, a.r, true), a.r, a.scale},
  };
  product(a.t, a.out, joined, 2, a.y.data, a.y.dtype, a.out, 0.0f, c, dev_in(a.bias));
}

// Backward. FLOPs: 2·T·out·in (dx base) + 2·T·r·(2·out + 2·in). Fewest bytes: dy, x, W, A, B,
// xa read once; dx, dA, dB written once.
void lora_backward(const ops::LoraBackward& a) {
  const int64_t t = a.t, in = a.in, out = a.out, r = a.r;
  const DevIn dy = dev_in(a.dy), x = dev_in(a.x), W = dev_in(a.W);
  const float *A = a.A.as<const float>(), *B = a.B.as<const float>(), *xa = a.xa.as<const float>();
  float *dA = a.dA.as<float>(), *dB = a.dB.as<float>();
  const Compute c = compute_for(W.dtype);
  // dB = scale · dyᵀ xa: [out, T] · [T, r]
  const GemmTerm tdb{view(dy, out, true), view(xa, r, false), t, a.scale};
  product(out, r, &tdb, 1, dB, DType::kFloat32, r, 0.0f, c);
  // g = scale · dy B: [T, out] · [out, r]
  Scratch g(static_cast<size_t>(t * r) * sizeof(float));
  const GemmTerm tg{view(dy, out, false), view(B, r, false), out, a.scale};
  product(t, r, &tg, 1, g.get(), DType::kFloat32, r, 0.0f, c);
  if (dA) {
    // dA = gᵀ D(x): [r, T] · [T, in]
    const GemmTerm tda{view(g.f32(), r, true), view(x, in, false, a.drop), t, 1.0f};
    product(r, in, &tda, 1, dA, DType::kFloat32, in, 0.0f, c);
  }
  if (a.dx.data) input_grad(t, in, out, r, dy, W, g.f32(), A, in, a.drop, dev_out(a.dx));
}

// LoRA-FA's projection. Only the r x r Gram matrix crosses to the host: A Aᵀ on the device,
// its LU factor and inverse on the host (in double, cpu::lora_fa_projector), the r x r
// M = (A Aᵀ + 1e-8·I)⁻¹ / scale² back, and dB ← dB M on the device. Synchronizes.
// FLOPs: 2·r²·in (A Aᵀ) + 2·out·r² (dB M) on the device, O(r³) on the host. Fewest bytes: A
// read once, dB read and written once, 2·r²·4 across the bus.
void lora_fa_project_grad(const ops::LoraFaProjectGrad& a) {
  const int64_t r = a.r;
  const float* A = a.A.as<const float>();
  float* dB = a.dB.as<float>();
  const size_t rr = static_cast<size_t>(r * r) * sizeof(float);
  const Compute c = compute_for(DType::kFloat32);
  Scratch gram(rr), m(rr), next(static_cast<size_t>(a.out * r) * sizeof(float));
  const GemmTerm tg{view(A, a.in, false), view(A, a.in, true), a.in, 1.0f};
  product(r, r, &tg, 1, gram.get(), DType::kFloat32, r, 0.0f, c);
  std::vector<float> host(static_cast<size_t>(r * r));
  download(host.data(), gram.get(), rr);
  const std::vector<float> M = cpu::lora_fa_projector(host.data(), r, a.scale);
  upload(m.get(), M.data(), rr);
  const GemmTerm tm{view(dB, r, false), view(m.f32(), r, false), r, 1.0f};
  product(a.out, r, &tm, 1, next.get(), DType::kFloat32, r, 0.0f, c);
  copy(dB, next.get(), static_cast<size_t>(a.out * r) * sizeof(float));
}

// Merge. FLOPs: 2·out·in·r. Fewest bytes: W read and written once, A and B read once. The safe
// merge synchronizes (it must read the result).
void lora_merge(const ops::LoraMerge& a) {
  const float *A = a.A.as<const float>(), *B = a.B.as<const float>();
  if (!a.safe) return add_product(a.out, a.in, a.r, B, a.r, A, a.in, a.scale, dev_out(a.W));
  float value = 0.0f;
  const int64_t bad = add_product_safe(a.out, a.in, a.r, B, a.r, A, a.in, a.scale, dev_out(a.W), &value);
  if (bad >= 0) ops::merge_not_finite(bad, value, a.in);
}

}  // namespace lowrank::cuda
