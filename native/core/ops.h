// Every op's argument struct and the declarations of its entry functions, from the op list
// (ops.def): cpu::name(const ops::Args&) for every op, cuda::name(const ops::Args&) for those
// on both devices (native/cuda/cuda.h includes this; stub.cc defines them in a CPU-only build).
#pragma once

#include "ops/adamw.h"
#include "ops/delta_lora.h"
#include "ops/elementwise.h"
#include "ops/linear.h"
#include "ops/lora.h"
#include "ops/vera.h"

namespace lowrank::cpu {
#define LOWRANK_OP(js, name, Args) void name(const ops::Args& args);
#define LOWRANK_CPU_OP(js, name, Args) void name(const ops::Args& args);
#include "ops.def"
}  // namespace lowrank::cpu

namespace lowrank::cuda {
#define LOWRANK_OP(js, name, Args) void name(const ops::Args& args);
#define LOWRANK_CPU_OP(js, name, Args)
#include "ops.def"
}  // namespace lowrank::cuda
