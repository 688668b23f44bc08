// Every op's argument struct and the declarations of its entry functions, from the op list
// (ops.def): cpu::name(const ops::Args&) for every op, cuda::name(const ops::Args&) for those
// on both devices (native/cuda/cuda.h includes this; stub.cc defines them in a CPU-only build).
#pragma once

// The op families' headers (the argument structs), listed at the top of the op list.
#define LOWRANK_OP_HEADERS
#include "ops.def"

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
