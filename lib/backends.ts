// What this build and this machine offer, and the CPU thread count.
import { invalidRange, invalidType } from './errors.js';
import { native, type NativeBackends } from './native.js';

export type Backends = NativeBackends;

/**
 * { cpu: { isa, threads }, cuda: { compiled, available, reason?, devices, ... } }.
 * `cuda.compiled` says whether this binary has the CUDA backend; `available` whether a device
 * answered; `reason` why not.
 */
export function backends(): Backends {
  return native().backends();
}

/** Sets the CPU thread pool's size (0 = default: LOWRANK_THREADS, else every CPU this process may use). Returns the count in use. */
export function setThreads(n: number): number {
  if (typeof n !== 'number') throw invalidType('a non-negative integer', 'n', n);
  if (!Number.isSafeInteger(n) || n < 0 || n > 1024) throw invalidRange('an integer in [0, 1024]', 'n', n);
  return native().setThreads(n);
}
