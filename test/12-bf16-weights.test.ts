// bfloat16 base weights: W stored in half the memory, widened to float32 as the products pack
// it, float32 accumulation. Checked on every CPU kernel path against float64 arithmetic on
// the exact bfloat16 values, and merge against rounding the float64 result to bfloat16.
import { afterAll, describe, expect, it } from 'vitest';
import { lora, tensor } from '../lib/index.js';
import { native } from '../lib/native.js';
import { bf16Value, dropoutFactors, loraBackwardRef, loraForwardRef, mergeRef, randomF32, relErr } from './helpers/reference.js';
import { supportedIsas } from './helpers/isa.js';

const supported = supportedIsas();

afterAll(() => {
  native()._setIsa('');
});

describe.each(supported)('bfloat16 W on the %s path', (isa) => {
  it.each([
    [1, 45, 37, 1, 0],
    [7, 130, 97, 8, 0.25],
    [33, 257, 45, 64, 0],
  ] as const)('T=%i in=%i out=%i r=%i p=%f: forward, backward and merge', (T, I, O, R, p) => {
    expect(native()._setIsa(isa)).toBe(isa);
    const xv = randomF32(T * I, 1),
      Av = randomF32(R * I, 3, 0.1),
      Bv = randomF32(O * R, 4),
      dyv = randomF32(T * O, 5);
    const Wexact = randomF32(O * I, 2, 0.1).map(bf16Value); // values bfloat16 holds exactly
    const W = tensor(Wexact, [O, I]).astype('bfloat16');
    expect(W.dtype).toBe('bfloat16');
    expect(W.nbytes).toBe(O * I * 2);
    const x = tensor(xv, [T, I]),
      A = tensor(Av, [R, I]),
      B = tensor(Bv, [O, R]),
      dy = tensor(dyv, [T, O]);
    const dropout = p > 0 ? { p, seed: 7n } : undefined;
    const mask = p > 0 ? dropoutFactors(7n, p, T * I) : null;

    const { y, saved } = lora.forward(x, W, A, B, { scale: 0.5, dropout });
    expect(relErr(y.toFloat32Array(), loraForwardRef(xv, Wexact, null, Av, Bv, 0.5, mask, T, I, O, R).y)).toBeLessThan(1e-5);
    const ref = loraBackwardRef(dyv, xv, Wexact, Av, Bv, 0.5, mask, T, I, O, R);
    const { dx, dA, dB } = lora.backward(dy, saved);
    expect(relErr(dx.toFloat32Array(), ref.dx)).toBeLessThan(1e-5);
    expect(relErr(dA!.toFloat32Array(), ref.dA)).toBeLessThan(1e-5);
    expect(relErr(dB.toFloat32Array(), ref.dB)).toBeLessThan(1e-5);

    // merge: every element the bfloat16 nearest to the exact sum, give or take one step where
    // the float32 intermediate rounds the other way (double rounding).
    lora.merge(W, A, B, 0.5);
    const merged = W.toFloat32Array();
    const exact = mergeRef(Wexact, Av, Bv, 0.5, O, I, R);
    let off = 0;
    for (let i = 0; i < merged.length; i++) {
      const nearest = bf16Value(exact[i]);
      if (merged[i] !== nearest) {
        off++;
        const step = Math.abs(nearest) * 2 ** -7;
        expect(Math.abs(merged[i] - nearest)).toBeLessThanOrEqual(step);
      }
    }
    expect(off).toBeLessThanOrEqual(Math.ceil(merged.length * 0.01));
  });

  it('safe merge of a bfloat16 W refuses a non-finite result and leaves W unchanged', () => {
    expect(native()._setIsa(isa)).toBe(isa);
    const W = tensor(randomF32(6 * 5, 9), [6, 5]).astype('bfloat16');
    const before = (W.storage() as Uint16Array).slice();
    const A = tensor(new Float32Array(5).fill(3e38), [1, 5]),
      B = tensor(new Float32Array(6).fill(10), [6, 1]);
    expect(() => lora.merge(W, A, B, 1, { safe: true })).toThrow(
      new RangeError('Expected a finite merged weight for W but received Infinity at W[0, 0]; W was left unchanged'),
    );
    expect(Array.from(W.storage() as Uint16Array)).toEqual(Array.from(before));
  });
});
