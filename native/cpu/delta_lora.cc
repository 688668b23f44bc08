// Delta-LoRA's weight update: W += λs·B1 A1 − λs·B0 A0 as ONE GEMM with two terms over the
// joined inner dimension 2r and beta = 1, never two merges (which would read and write W twice).
//
// FLOPs: 4·out·in·r (2·out·in per step of the inner dimension, 2r steps). Fewest bytes: W read
// once and written once (8·out·in for float32, 4·out·in for bfloat16), A0, A1, B0, B1 read once.
// With r ≪ out, in the update is bound by W's traffic, like a merge.
// README.md, Delta-LoRA: after an optimizer step moves the adapter from (A0, B0) to (A1, B1),
// the frozen weight moves too. Shapes, row-major:
//   W [out, in] (float32 or bfloat16), A0, A1 [r, in], B0, B1 [out, r].
#include <algorithm>
#include <vector>

#include "../core/dtype.h"
#include "../core/ops.h"
#include "gemm.h"
#include "threadpool.h"

namespace lowrank::cpu {
namespace {

constexpr int64_t kChunkRows = 64;  // rows of a bfloat16 W widened at a time (as lora_merge)

// The two terms for rows [i0, i0 + rows) of W: λs·B1[i0:] · A1 and −λs·B0[i0:] · A0.
struct Terms {
  GemmTerm t[2];
  Terms(const ops::DeltaLoraUpdate& d, float alpha, int64_t i0)
      : t{{{d.B1.as<const float>() + i0 * d.r, d.r, false}, {d.A1.as<const float>(), d.in, false}, d.r, alpha},
          {{d.B0.as<const float>() + i0 * d.r, d.r, false}, {d.A0.as<const float>(), d.in, false}, d.r, -alpha}} {}
};

}  // namespace

// The op entry point (native/core/ops/delta_lora.h): W += lambda · scale · (B1 A1 − B0 A0), in
// place. A bfloat16 W is updated in float32 by chunks of rows and rounded to the nearest
// bfloat16 (ties to even), like lora_merge.
void delta_lora_update(const ops::DeltaLoraUpdate& d) {
  const WeightMut W = weight_mut_of(d.W);
  const float alpha = d.lambda * d.scale;
  if (W.f32) {
    const Terms terms(d, alpha, 0);
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
    const Terms terms(d, alpha, i0);
    gemm({rows, d.in, terms.t, 2, wide.data(), d.in, 1.0f, nullptr});
    for (int64_t i = 0; i < rows * d.in; ++i) w[i] = f32_to_bf16(wide[i]);
  });
}

}  // namespace lowrank::cpu
