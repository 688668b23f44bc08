// Results do not depend on the thread count: every element of every product is reduced in the
// same order whichever thread computes it (native/cpu/gemm.h).
import { afterAll, describe, expect, it } from 'vitest';
import { backends, lora, setThreads, tensor } from '../lib/index.js';
import { randomF32, sameBits } from './helpers/reference.js';

function runAll(T: number, I: number, O: number, R: number, withDropout: boolean) {
  const x = tensor(randomF32(T * I, T + I), [T, I]);
  const W = tensor(randomF32(O * I, O + 1, 0.1), [O, I]);
  const A = tensor(randomF32(R * I, R + 2, 0.1), [R, I]);
  const B = tensor(randomF32(O * R, R + 3), [O, R]);
  const bias = tensor(randomF32(O, 4), [O]);
  const dy = tensor(randomF32(T * O, 5), [T, O]);
  const { y, saved } = lora.forward(x, W, A, B, { scale: 0.5, bias, dropout: withDropout ? { p: 0.25, seed: 3n } : undefined });
  const g = lora.backward(dy, saved);
  const Wm = W.clone();
  lora.merge(Wm, A, B, 0.5);
  return [y, saved.xa, g.dx, g.dA!, g.dB, Wm].map((t) => t.toFloat32Array());
}

describe('thread count', () => {
  afterAll(() => {
    setThreads(0);
  });

  it('setThreads returns the count in use and 0 restores the default', () => {
    const initial = backends().cpu.threads;
    expect(setThreads(1)).toBe(1);
    expect(backends().cpu.threads).toBe(1);
    expect(setThreads(3)).toBe(3);
    expect(backends().cpu.threads).toBe(3);
    const restored = setThreads(0);
    expect(restored).toBeGreaterThanOrEqual(1);
    expect(backends().cpu.threads).toBe(restored);
    expect(restored).toBe(initial);
  });

  it.each([
    [257, 130, 97, 8, true],
    [33, 45, 257, 64, false],
    [1000, 45, 37, 1, true],
  ] as const)(
    'T=%i in=%i out=%i r=%i dropout=%s: 1, 2 and 3 threads give bit-identical forward, backward and merge',
    (T, I, O, R, withDropout) => {
      setThreads(1);
      const one = runAll(T, I, O, R, withDropout);
      setThreads(2);
      const two = runAll(T, I, O, R, withDropout);
      setThreads(3);
      const three = runAll(T, I, O, R, withDropout);
      const names = ['y', 'xa', 'dx', 'dA', 'dB', 'merged W'];
      one.forEach((v, i) => {
        expect(sameBits(two[i], v), `${names[i]} with 2 threads`).toBe(true);
        expect(sameBits(three[i], v), `${names[i]} with 3 threads`).toBe(true);
      });
    },
  );
});

describe('changing the thread count while async work runs', () => {
  afterAll(() => {
    setThreads(0);
  });

  it('setThreads during forwardAsync neither crashes nor changes the result', async () => {
    const T = 4096,
      I = 512,
      O = 512,
      R = 16;
    const x = tensor(randomF32(T * I, 90), [T, I]);
    const W = tensor(randomF32(O * I, 91, 0.05), [O, I]);
    const A = tensor(randomF32(R * I, 92, 0.05), [R, I]);
    const B = tensor(randomF32(O * R, 93), [O, R]);
    const opts = { scale: 0.5, dropout: { p: 0.1, seed: 4n } };
    const want = lora.forward(x, W, A, B, opts).y.toFloat32Array();
    const pending = lora.forwardAsync(x, W, A, B, opts);
    const counts: number[] = [];
    for (const n of [1, 2, 3, 1, 2]) {
      counts.push(setThreads(n));
      await new Promise((resolve) => setTimeout(resolve, 2));
    }
    const { y } = await pending;
    expect(counts).toEqual([1, 2, 3, 1, 2]);
    expect(sameBits(y.toFloat32Array(), want)).toBe(true);
  });
});
