// A persistent pool of worker threads. parallel_for hands out task indices from a shared
// counter; the calling thread works too. Calls from several threads at once (async ops on
// libuv workers) are serialised; a parallel_for issued from inside a task runs inline.
#pragma once

#include <cstdint>
#include <functional>

namespace lowrank::cpu {

// Number of threads parallel_for uses (>= 1).
int threads();
// Sets the thread count; 0 restores the default (LOWRANK_THREADS, else the CPUs this
// process may run on).
void set_threads(int n);
// Runs fn(i) for every i in [0, n), spread over the pool. Each index runs exactly once;
// which thread runs it is not fixed, so fn must not depend on that.
void parallel_for(int64_t n, const std::function<void(int64_t)>& fn);

}  // namespace lowrank::cpu
