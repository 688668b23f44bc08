// Delta-LoRA's weight update on CUDA, the mirror of native/cpu/delta_lora.cc:
//   W ← W + λ·s·(B1 A1 − B0 A0)
// as ONE product over the joined inner dimension 2r, [λs·B1 | −λs·B0] · [A1 ; A0], added into
// W with beta = 1: W is read once and written once, in its own dtype (a bfloat16 W is updated
// in float32 in registers and rounded once).
//
// FLOPs: 4·out·in·r. Fewest bytes: W read and written once (2·out·in·size), A0, A1, B0, B1 once.
#include <cuda_runtime.h>

#include "../cpu/delta_lora.h"
#include "ops.cuh"

namespace lowrank::cuda {

void delta_lora_update(const cpu::DeltaLoraDims& d, DevOut W, const float* A0, const float* B0, const float* A1,
                       const float* B1, float lambda, float scale) {
  const float alpha = lambda * scale;
  const GemmTerm terms[2] = {
      {view(B1, d.r, false), view(A1, d.in, false), d.r, alpha},
      {view(B0, d.r, false), view(A0, d.in, false), d.r, -alpha},
  };
  product(d.out, d.in, terms, 2, W.data, W.dtype, d.in, 1.0f, compute_for(DType::kFloat32));
}

// The op entry point (native/core/ops/delta_lora.h).
void delta_lora_update(const ops::DeltaLoraUpdate& a) {
  delta_lora_update({a.out, a.in, a.r}, dev_out(a.W), a.A0.as<const float>(), a.B0.as<const float>(),
                    a.A1.as<const float>(), a.B1.as<const float>(), a.lambda, a.scale);
}

}  // namespace lowrank::cuda
