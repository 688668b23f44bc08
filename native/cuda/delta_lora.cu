// Delta-LoRA's weight update on CUDA, the mirror of native/cpu/delta_lora.cc:
//   W ← W + λ·s·(B1 A1 − B0 A0)
// as ONE product over the joined inner dimension 2r, [λs·B1 | −λs·B0] · [A1 ; A0], added into
// W with beta = 1: W is read once and written once, in its own dtype (a bfloat16 W is updated
// in float32 in registers and rounded once).
//
// FLOPs: 4·out·in·r. Fewest bytes: W read and written once (2·out·in·size), A0, A1, B0, B1 once.
#include <cuda_runtime.h>

#include "ops.cuh"

namespace lowrank::cuda {

// The op entry point (native/core/ops/delta_lora.h).
void delta_lora_update(const ops::DeltaLoraUpdate& a) {
  const float alpha = a.lambda * a.scale;
  const GemmTerm terms[2] = {
      {view(a.B1.as<const float>(), a.r, false), view(a.A1.as<const float>(), a.in, false), a.r, alpha},
      {view(a.B0.as<const float>(), a.r, false), view(a.A0.as<const float>(), a.in, false), a.r, -alpha},
  };
  product(a.out, a.in, terms, 2, a.W.data, a.W.dtype, a.in, 1.0f, compute_for(DType::kFloat32));
}

}  // namespace lowrank::cuda
