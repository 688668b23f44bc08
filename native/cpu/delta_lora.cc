// Delta-LoRA's weight update: W += λs·B1 A1 − λs·B0 A0 as ONE GEMM with two terms over the
// joined inner dimension 2r and beta = 1, never two merges (which would read and write W twice).
//
// FLOPs: 4·out·in·r (2·out·in per step of the inner dimension, 2r steps). Fewest bytes: W read
// once and written once (8·out·in for float32, 4·out·in for bfloat16), A0, A1, B0, B1 read once.
// With r ≪ out, in the update is bound by W's traffic, like a merge.
#include "delta_lora.h"

#include <algorithm>
#include <vector>

#include "../core/dtype.h"
#include "../core/ops.h"
#include "threadpool.h"

namespace lowrank::cpu {
namespace {

constexpr int64_t kChunkRows = 64;  // rows of a bfloat16 W widened at a time (as lora_merge)

// The two terms for rows [i0, i0 + rows) of W: λs·B1[i0:] · A1 and −λs·B0[i0:] · A0.
struct Terms {
  GemmTerm t[2];
  Terms(const DeltaLoraDims& d, const float* A0, const float* B0, const float* A1, const float* B1, float alpha,
        int64_t i0)
      : t{{{B1 + i0 * d.r, d.r, false}, {A1, d.in, false}, d.r, alpha},
          {{B0 + i0 * d.r, d.r, false}, {A0, d.in, false}, d.r, -alpha}} {}
};

}  // namespace

void delta_lora_update(const DeltaLoraDims& d, const WeightMut& W, const float* A0, const float* B0, const float* A1,
                       const float* B1, float lambda, float scale) {
  const float alpha = lambda * scale;
  if (W.f32) {
    const Terms terms(d, A0, B0, A1, B1, alpha, 0);
    gemm({d.out, d.in, terms.t, 2, W.f32, d.in, 1.0f, nullptr});
    return;
  }
  // bfloat16: each chunk of rows is widened to float32, updated by the same two-term product
  // (run inline: a GEMM inside a pool task stays on its thread) and rounded back in place.
  parallel_for((d.out + kChunkRows - 1) / kChunkRows, [&](int64_t c) {
    const int64_t i0 = c * kChunkRows, rows = std::min(kChunkRows, d.out - i0);
    uint16_t* w = W.bf16 + i0 * d.in;
    thread_local std::vector<float> wide;
    wide.resize(static_cast<size_t>(rows * d.in));
    for (int64_t i = 0; i < rows * d.in; ++i) wide[i] = bf16_to_f32(w[i]);
    const Terms terms(d, A0, B0, A1, B1, alpha, i0);
    gemm({rows, d.in, terms.t, 2, wide.data(), d.in, 1.0f, nullptr});
    for (int64_t i = 0; i < rows * d.in; ++i) w[i] = f32_to_bf16(wide[i]);
  });
}

// The op entry point (native/core/ops/delta_lora.h).
void delta_lora_update(const ops::DeltaLoraUpdate& a) {
  delta_lora_update({a.out, a.in, a.r}, weight_mut_of(a.W), a.A0.as<const float>(), a.B0.as<const float>(),
                    a.A1.as<const float>(), a.B1.as<const float>(), a.lambda, a.scale);
}

}  // namespace lowrank::cpu
