// AdamW (native/cpu/adamw.cc, native/cuda/adamw.cu): one fused step over lists of float32
// tensors, each with the hyperparameters of its group.
#pragma once

#include <cstdint>
#include <vector>

#include "fields.h"

namespace lowrank::ops {

// A tensor's hyperparameters for this step. step is the 1-based number of the step being taken
// (torch's state["step"] after its increment).
struct AdamwHyper {
  double lr = 1e-3;
  double beta1 = 0.9, beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 1e-2;
  int64_t step = 1;
};

// params[i], m[i], v[i] updated in place from grads[i] (each like params[i]), with the
// hyperparameters of group[i]; lr, beta1, beta2, eps, weightDecay, step hold one entry per group.
// FLOPs ~16 per element. Fewest bytes: 28 per element (p, m, v read and written, g read).
struct AdamwStep {
  std::vector<TensorRef> params, grads, m, v;
  std::vector<double> group, lr, beta1, beta2, eps, weight_decay, step;
  std::vector<AdamwHyper> hyper;  // per tensor, made by validate()
  template <class V>
  void visit(V& vis) {
    vis.tensors("params", params, kF32, nullptr);
    vis.tensors("grads", grads, kF32, &params);
    vis.tensors("m", m, kF32, &params);
    vis.tensors("v", v, kF32, &params);
    vis.numbers("lr", lr, 1e-3), vis.numbers("beta1", beta1, 0.9), vis.numbers("beta2", beta2, 0.999);
    vis.numbers("eps", eps, 1e-8), vis.numbers("weightDecay", weight_decay, 1e-2), vis.numbers("step", step, 3);
    vis.indices("group", group, params.size(), lr.size());
  }
  void validate(const char* op) {
    const size_t count = params.size(), ngroups = lr.size();
    LR_CHECK_EQ(op, group.size(), count);
    for (const std::vector<double>* g : {&beta1, &beta2, &eps, &weight_decay, &step})
      LR_CHECK_EQ(op, g->size(), ngroups);
    std::vector<AdamwHyper> groups(ngroups);
    for (size_t g = 0; g < ngroups; ++g) {
      LR_CHECK(op, step[g] >= 1 && step[g] <= 9007199254740991.0 && step[g] == std::floor(step[g]),
               "step must be a positive integer");
      groups[g] = {lr[g], beta1[g], beta2[g], eps[g], weight_decay[g], static_cast<int64_t>(step[g])};
    }
    hyper.resize(count);
    for (size_t i = 0; i < count; ++i) {
      const double gi = group[i];
      LR_CHECK(op, gi >= 0 && gi < static_cast<double>(ngroups) && gi == std::floor(gi),
               "group[" + std::to_string(i) + "] is not the index of a group");
      hyper[i] = groups[static_cast<size_t>(gi)];
    }
  }
};

}  // namespace lowrank::ops
