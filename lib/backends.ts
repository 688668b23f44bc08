// What this build and this machine offer, and the CPU thread count.
import { invalidRange, invalidType } from './errors.js';
import { native, type NativeBackends } from './native.js';
import { cudaFoundYet } from './tensor.js';

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

/**
 * Waits until every operation queued on CUDA is done (ops on CUDA tensors return as soon as
 * they are queued; data() and toFloat32Array() wait by themselves). Throws the first
 * asynchronous device error. Does nothing when the CUDA backend is not compiled in or has no
 * device: nothing can be queued there.
 */
export function synchronize(): void {
  // Work reaches CUDA only through CUDA tensors, and making one found the device first.
  if (cudaFoundYet()) native().cudaSynchronize();
}

/**
 * Whether float32 products on CUDA may use one TF32 tensor-core product (faster, about 1e-3
 * relative) instead of the default split-precision product (three TF32 products, about float32
 * accuracy). Returns the previous setting. bfloat16 / float16 products are unaffected.
 */
export function setTf32(allow: boolean): boolean {
  if (typeof allow !== 'boolean') throw invalidType('a boolean', 'allow', allow);
  return native().cudaSetTf32(allow);
}
