// What the op test files share: tensors kept until the file ends, fresh random tensors from a
// seed sequence, the devices to run on (CUDA only with a device, the skip said once), and the
// "same bits for any thread count" check.
import { afterAll, expect } from 'vitest';
import { backends, setThreads, tensor, Tensor } from '../../lib/index.js';
import { randomF32 } from './reference.js';

export type TestDevice = 'cpu' | 'cuda';

/**
 * keep(t) returns t and disposes it after the calling test file; rnd(shape) is a kept N(0, std²)
 * tensor (never zeros); nextSeed() is the next seed of the sequence rnd draws from.
 */
export function tensorPool(firstSeed: number): {
  keep: <T extends Tensor>(t: T) => T;
  rnd: (shape: number[], device?: TestDevice, std?: number) => Tensor;
  nextSeed: () => number;
} {
  const live: Tensor[] = [];
  afterAll(() => live.forEach((t) => t.dispose()));
  const keep = <T extends Tensor>(t: T): T => (live.push(t), t);
  let seed = firstSeed;
  const nextSeed = () => seed++;
  const rnd = (shape: number[], device: TestDevice = 'cpu', std = 1) =>
    keep(
      tensor(
        randomF32(
          shape.reduce((a, b) => a * b, 1),
          nextSeed(),
          std,
        ),
        shape,
        { device },
      ),
    );
  return { keep, rnd, nextSeed };
}

/** ['cpu'] plus 'cuda' where a device answered; otherwise prints once why the device tests of `file` are skipped. */
export function testDevices(file: string): readonly TestDevice[] {
  const cuda = backends().cuda;
  if (!cuda.available) console.log(`${file}: device tests skipped: CUDA unavailable: ${cuda.reason}`);
  return cuda.available ? ['cpu', 'cuda'] : ['cpu'];
}

/** once() gives equal results with one thread and with at least two; the pool's size is restored. */
export function expectSameForAnyThreadCount(once: () => unknown): void {
  const first = once();
  const threads = backends().cpu.threads;
  try {
    setThreads(1);
    expect(once()).toEqual(first);
    setThreads(Math.max(2, threads));
    expect(once()).toEqual(first);
  } finally {
    setThreads(threads);
  }
}
