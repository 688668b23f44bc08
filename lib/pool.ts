// A caching allocator for CPU tensor storage: the buffer of a disposed tensor is kept (up to a
// byte budget) and handed to the next tensor of the same byte size, so a training loop that
// disposes what it no longer needs allocates, zero-fills and page-faults nothing after its
// first step.
import { invalidRange, invalidType } from './errors.js';
import { type DType, dtypeBytes, hostArray, hostView } from './dtype.js';

/** A CPU tensor's storage (lib/tensor.ts Storage). */
type Storage = Float32Array | Uint16Array | Int32Array;

/** Buffers below this size are cheaper to allocate than to track. */
const MIN_POOLED_BYTES = 4096;

const free = new Map<number, ArrayBuffer[]>();
let pooledBytes = 0;
let budget = (() => {
  const env = Number(process.env.LOWRANK_POOL_BYTES);
  return Number.isFinite(env) && env >= 0 ? env : 1024 ** 3;
})();

/** A pooled buffer as `dtype`'s host array class (buffers are pooled by byte size, not dtype). */
function wrap(buffer: ArrayBuffer, dtype: DType): Storage {
  return hostView(dtype, buffer);
}

function fresh(dtype: DType, n: number): Storage {
  return hostArray(dtype, n);
}

/** Storage for n elements; its contents are arbitrary unless `zeroed`. */
export function allocate(dtype: DType, n: number, zeroed: boolean): Storage {
  const bytes = n * dtypeBytes(dtype);
  const list = free.get(bytes);
  const buffer = list?.pop();
  if (buffer === undefined) return fresh(dtype, n);
  pooledBytes -= bytes;
  const storage = wrap(buffer, dtype);
  if (zeroed) storage.fill(0);
  return storage;
}

/** Takes back a buffer that no tensor uses any more. */
export function recycle(storage: Storage): void {
  const buffer = storage.buffer;
  const bytes = buffer.byteLength;
  if (!(buffer instanceof ArrayBuffer) || bytes < MIN_POOLED_BYTES || storage.byteOffset !== 0 || storage.byteLength !== bytes) return;
  if (pooledBytes + bytes > budget) return;
  let list = free.get(bytes);
  if (!list) free.set(bytes, (list = []));
  list.push(buffer);
  pooledBytes += bytes;
}

export interface PoolInfo {
  /** Bytes held for reuse (not counted as live tensor bytes). */
  bytes: number;
  /** The most bytes the pool keeps. */
  budget: number;
}

export function poolInfo(): PoolInfo {
  return { bytes: pooledBytes, budget };
}

/**
 * Sets the pool's byte budget (0 turns pooling off) and drops what is over it.
 * Also LOWRANK_POOL_BYTES at start-up; the default is 1 GiB.
 */
export function setPoolBudget(bytes: number): void {
  if (typeof bytes !== 'number') throw invalidType('a number of bytes', 'bytes', bytes);
  if (!(bytes >= 0) || !Number.isSafeInteger(bytes)) throw invalidRange('a non-negative integer', 'bytes', bytes);
  budget = bytes;
  if (pooledBytes > budget) emptyPool();
}

/** Releases every pooled buffer to the garbage collector. */
export function emptyPool(): void {
  free.clear();
  pooledBytes = 0;
}
