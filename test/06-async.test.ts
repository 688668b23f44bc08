// The async forms: bit-identical to the sync ones, off the event loop, and failing with the
// same error classes as the sync forms.
import { describe, expect, it } from 'vitest';
import { lora, tensor } from '../lib/index.js';
import { randomF32, sameBits } from './helpers/reference.js';

function setup(T: number, I: number, O: number, R: number, seed: number) {
  return {
    x: tensor(randomF32(T * I, seed), [T, I]),
    W: tensor(randomF32(O * I, seed + 1, 0.1), [O, I]),
    A: tensor(randomF32(R * I, seed + 2, 0.1), [R, I]),
    B: tensor(randomF32(O * R, seed + 3), [O, R]),
    bias: tensor(randomF32(O, seed + 4), [O]),
    dy: tensor(randomF32(T * O, seed + 5), [T, O]),
  };
}

describe('async forms equal the sync forms bit for bit', () => {
  it.each([
    [33, 130, 97, 8, true, false],
    [257, 45, 37, 64, false, true],
    [7, 45, 37, 1, true, true],
  ] as const)('T=%i in=%i out=%i r=%i dropout=%s frozenA=%s', async (T, I, O, R, withDropout, frozenA) => {
    const { x, W, A, B, bias, dy } = setup(T, I, O, R, T + R);
    const opts = { scale: 0.5, bias, dropout: withDropout ? { p: 0.25, seed: 12n } : undefined, frozenA };
    const s = lora.forward(x, W, A, B, opts);
    const a = await lora.forwardAsync(x, W, A, B, opts);
    expect(a.y.shape).toEqual(s.y.shape);
    expect(sameBits(a.y.toFloat32Array(), s.y.toFloat32Array())).toBe(true);
    expect(sameBits(a.saved.xa.toFloat32Array(), s.saved.xa.toFloat32Array())).toBe(true);
    expect(a.saved.bytes).toBe(s.saved.bytes);
    const gs = lora.backward(dy, s.saved);
    const ga = await lora.backwardAsync(dy, a.saved);
    expect(sameBits(ga.dx.toFloat32Array(), gs.dx.toFloat32Array())).toBe(true);
    expect(sameBits(ga.dB.toFloat32Array(), gs.dB.toFloat32Array())).toBe(true);
    if (frozenA) {
      expect(ga.dA).toBeUndefined();
    } else {
      expect(sameBits(ga.dA!.toFloat32Array(), gs.dA!.toFloat32Array())).toBe(true);
    }
  });

  it('mergeAsync / unmergeAsync equal merge / unmerge', async () => {
    const { W, A, B } = setup(1, 130, 97, 8, 40);
    const W2 = W.clone();
    lora.merge(W, A, B, 0.75);
    await lora.mergeAsync(W2, A, B, 0.75);
    expect(sameBits(W2.toFloat32Array(), W.toFloat32Array())).toBe(true);
    await lora.mergeAsync(W2, A, B, 0.75, { safe: true });
    lora.merge(W, A, B, 0.75, { safe: true });
    expect(sameBits(W2.toFloat32Array(), W.toFloat32Array())).toBe(true);
    lora.unmerge(W, A, B, 0.75);
    await lora.unmergeAsync(W2, A, B, 0.75);
    expect(sameBits(W2.toFloat32Array(), W.toFloat32Array())).toBe(true);
  });

  it('several async ops in flight at once each give the sync result', async () => {
    const p1 = setup(100, 130, 97, 8, 50);
    const p2 = setup(33, 45, 37, 64, 60);
    const o1 = { scale: 0.5, dropout: { p: 0.1, seed: 1n } };
    const o2 = { scale: 2, bias: p2.bias };
    const [a1, a2, a3] = await Promise.all([
      lora.forwardAsync(p1.x, p1.W, p1.A, p1.B, o1),
      lora.forwardAsync(p2.x, p2.W, p2.A, p2.B, o2),
      lora.forwardAsync(p1.x, p1.W, p1.A, p1.B, o1),
    ]);
    const s1 = lora.forward(p1.x, p1.W, p1.A, p1.B, o1);
    const s2 = lora.forward(p2.x, p2.W, p2.A, p2.B, o2);
    expect(sameBits(a1.y.toFloat32Array(), s1.y.toFloat32Array())).toBe(true);
    expect(sameBits(a3.y.toFloat32Array(), s1.y.toFloat32Array())).toBe(true);
    expect(sameBits(a2.y.toFloat32Array(), s2.y.toFloat32Array())).toBe(true);
  });
});

describe('the event loop stays free', () => {
  it('timers keep firing while forwardAsync runs (>= 0.5 s of work)', async () => {
    const I = 1024,
      O = 1024,
      R = 16;
    // a tile of random values repeated: never zeros, cheap to make at any size
    const tile = randomF32(64 * I, 70);
    const fill = (n: number) => {
      const out = new Float32Array(n);
      for (let i = 0; i < n; i += tile.length) out.set(tile.subarray(0, Math.min(tile.length, n - i)), i);
      return out;
    };
    const W = tensor(randomF32(O * I, 71, 0.03), [O, I]);
    const A = tensor(randomF32(R * I, 72, 0.03), [R, I]);
    const B = tensor(randomF32(O * R, 73), [O, R]);
    // calibrate on a moderate shape; aim at ~0.7 s, at most ~1 GB for x and y
    const T0 = 1024;
    const x0 = tensor(fill(T0 * I), [T0, I]);
    lora.forward(x0, W, A, B, { scale: 1 }); // warm up
    const t0 = performance.now();
    lora.forward(x0, W, A, B, { scale: 1 });
    const perRow = (performance.now() - t0) / T0;
    const bytesPerRow = (I + O + R) * 4;
    const maxT = Math.floor(1e9 / bytesPerRow);
    let T = Math.max(T0, Math.min(Math.ceil(700 / perRow), maxT));

    // Run the op with a 10 ms interval counting ticks. If the machine got faster than the
    // calibration said (another test file finished, say), grow T and run again.
    async function attempt(rows: number) {
      const x = tensor(fill(rows * I), [rows, I]);
      let ticks = 0;
      const timer = setInterval(() => ticks++, 10);
      const start = performance.now();
      const pending = lora.forwardAsync(x, W, A, B, { scale: 1 });
      const callMs = performance.now() - start;
      const { y } = await pending;
      const elapsed = performance.now() - start;
      clearInterval(timer);
      return { x, y, elapsed, ticks, callMs };
    }
    let run = await attempt(T);
    for (let tries = 0; run.elapsed < 500 && T < maxT && tries < 3; tries++) {
      run.x.dispose();
      run.y.dispose();
      T = Math.min(maxT, Math.ceil((T * 700) / run.elapsed));
      run = await attempt(T);
    }
    const { x, y, elapsed, ticks, callMs } = run;
    console.log(
      `event-loop test: T = ${T}, op ${elapsed.toFixed(0)} ms (call returned after ${callMs.toFixed(0)} ms), ${ticks} ticks of 10 ms`,
    );
    expect(y.shape).toEqual([T, O]);
    // the call returns a promise at once; the work happens after
    expect(callMs, `forwardAsync took ${callMs.toFixed(0)} ms to return`).toBeLessThan(elapsed / 3);
    expect(elapsed, `T = ${T}: the op took ${elapsed.toFixed(0)} ms, too short for the test to mean anything`).toBeGreaterThanOrEqual(500);
    expect(ticks, `only ${ticks} timer ticks in ${elapsed.toFixed(0)} ms`).toBeGreaterThanOrEqual(10);
    // spot-check a row against the sync form
    const row = tensor((x.storage() as Float32Array).slice(0, I), [1, I]);
    const ys = lora.forward(row, W, A, B, { scale: 1 }).y.toFloat32Array();
    expect(sameBits((y.storage() as Float32Array).slice(0, O), ys)).toBe(true);
    x.dispose();
    y.dispose();
  });
});

describe('async failures', () => {
  function overflowing() {
    const W = tensor(randomF32(37 * 45, 80), [37, 45]);
    const Av = randomF32(8 * 45, 81);
    Av[2 * 45 + 44] = 3e38;
    const A = tensor(Av, [8, 45]);
    const B = tensor(randomF32(37 * 8, 82, 1000), [37, 8]);
    return { W, A, B };
  }

  it('a safe mergeAsync that would overflow rejects with a RangeError and leaves W unchanged', async () => {
    const { W, A, B } = overflowing();
    const before = W.toFloat32Array();
    const err = await lora.mergeAsync(W, A, B, 1, { safe: true }).then(
      () => null,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(RangeError);
    expect((err as Error).message).toBe('Expected a finite merged weight for W but received -Infinity at W[0, 44]; W was left unchanged');
    expect(sameBits(W.toFloat32Array(), before)).toBe(true);
  });

  // "Errors travel as strings and are rethrown in JS with the JS stack."
  it("a native rejection carries a JavaScript stack naming the caller's function", async () => {
    const { W, A, B } = overflowing();
    const err = (await lora.mergeAsync(W, A, B, 1, { safe: true }).catch((e: unknown) => e)) as Error;
    expect(err).toBeInstanceOf(RangeError);
    expect(err.stack, `stack was: ${JSON.stringify(err.stack)}`).toMatch(/mergeAsync/);
  });

  it('argument errors reject (not throw synchronously) with the sync form’s class and message', async () => {
    const { W, A, B } = overflowing();
    const x = tensor(randomF32(7 * 45, 83), [7, 45]);
    let p: Promise<unknown> | undefined;
    expect(() => {
      p = lora.forwardAsync(x, W, A, B, { scale: NaN });
    }).not.toThrow();
    await expect(p).rejects.toThrow(new RangeError('Expected a finite number for options.scale but received NaN'));
    await expect(p).rejects.toBeInstanceOf(RangeError);
    await expect(lora.mergeAsync(W, A, B, '1' as unknown as number)).rejects.toBeInstanceOf(TypeError);
    await expect(lora.mergeAsync(W, A, B, '1' as unknown as number)).rejects.toThrow('Expected a finite number for scale but received "1"');
  });
});
