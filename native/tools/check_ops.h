// The checker's loop over the op list (check_ops.cc).
#pragma once

namespace lowrank::check {

// Every op of native/core/ops.def on random inputs from its visitor at awkward sizes: on the
// CPU, outputs fully written and results repeatable; with `cuda_usable`, every op on both
// devices on CUDA against the CPU. Records each check.
void op_table_checks(bool cuda_usable);

}  // namespace lowrank::check
