// The counter-based generator: Philox4x32-10 known answers, the dropout mask's definition,
// and that lora.forward / lora.backward use exactly that mask.
import { describe, expect, it } from 'vitest';
import { backends, lora, tensor } from '../lib/index.js';
import { native } from '../lib/native.js';
import {
  dropoutFactors,
  dropoutKeep,
  dropoutMaskRef,
  dropoutScale,
  loraBackwardRef,
  loraForwardRef,
  philox4x32,
  philoxWord,
  randomF32,
  relErr,
} from './helpers/reference.js';

// Random123's kat_vectors, philox4x32 with 10 rounds: counter, key, expected output.
const KAT: Array<[number[], number[], number[]]> = [
  [
    [0, 0, 0, 0],
    [0, 0],
    [0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8],
  ],
  [
    [0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff],
    [0xffffffff, 0xffffffff],
    [0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd],
  ],
  [
    [0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344],
    [0xa4093822, 0x299f31d0],
    [0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1],
  ],
];

function nativePhilox(counter: number[], key: number[]): number[] {
  const out = new Uint32Array(4).fill(0xdeadbeef);
  native()._philox({ counter: Uint32Array.from(counter), key: Uint32Array.from(key), out });
  return Array.from(out);
}

function nativeMask(seed: bigint, p: number, offset: number, n: number): Uint8Array {
  const out = new Uint8Array(n).fill(7); // poison: every entry must be written 0 or 1
  native()._dropoutMask({ out, offset, p, seed });
  return out;
}

describe('Philox4x32-10', () => {
  it.each(KAT.map((k, i) => [i, ...k] as const))('known-answer vector %i (native)', (_i, ctr, key, want) => {
    expect(nativePhilox(ctr, key)).toEqual(want);
  });

  it.each(KAT.map((k, i) => [i, ...k] as const))('known-answer vector %i (the TypeScript reference)', (_i, ctr, key, want) => {
    expect(philox4x32(ctr, key)).toEqual(want);
  });

  it('native and reference agree on random counters and keys', () => {
    const words = new Uint32Array(randomF32(600, 1).buffer); // arbitrary bit patterns
    for (let i = 0; i + 6 <= words.length; i += 6) {
      const ctr = Array.from(words.subarray(i, i + 4));
      const key = Array.from(words.subarray(i + 4, i + 6));
      expect(nativePhilox(ctr, key)).toEqual(philox4x32(ctr, key));
    }
  });

  it('philoxWord indexes blocks by index >> 2 with a 64-bit counter and a 64-bit key', () => {
    const seed = 0x0123456789abcdefn;
    const key = [0x89abcdef, 0x01234567];
    const block = philox4x32([5, 0, 0, 0], key);
    for (let w = 0; w < 4; w++) expect(philoxWord(seed, 20 + w)).toBe(block[w]);
    // an index past 2^34 puts bits in the counter's high word
    const big = 4 * 2 ** 32 + 4 * 3 + 2;
    expect(philoxWord(seed, big)).toBe(nativePhilox([3, 1, 0, 0], key)[2]);
  });
});

describe('dropout masks', () => {
  const cases: Array<[bigint, number, number, number]> = [
    [1n, 0.25, 0, 1],
    [1n, 0.25, 0, 7],
    [2n, 0.1, 3, 33],
    [3n, 0.5, 5, 1000],
    [0xfedcba9876543210n, 0.9, 1, 257],
    [2n ** 64n - 1n, 0.3, 12345, 4099],
    [42n, 0.01, 2 ** 33 + 1, 50],
  ];

  it.each(cases)('seed %s, p %s, offset %s, length %s equals the reference', (seed, p, offset, n) => {
    const got = nativeMask(seed, p, offset, n);
    const want = dropoutMaskRef(seed, p, offset, n);
    expect(Array.from(got)).toEqual(Array.from(want));
    for (let i = 0; i < Math.min(n, 9); i++) expect(got[i]).toBe(dropoutKeep(seed, p, offset + i) ? 1 : 0);
  });

  it('an offset mask is the tail of the mask from 0', () => {
    const whole = nativeMask(9n, 0.4, 0, 200);
    for (const offset of [1, 2, 3, 5, 33])
      expect(Array.from(nativeMask(9n, 0.4, offset, 200 - offset))).toEqual(Array.from(whole.subarray(offset)));
  });

  it('p = 0 keeps everything', () => {
    expect(nativeMask(5n, 0, 0, 64).every((v) => v === 1)).toBe(true);
  });

  it('keeps a fraction 1 - p within sampling error', () => {
    const n = 200_000;
    for (const p of [0.1, 0.25, 0.5, 0.9]) {
      const m = nativeMask(123n, p, 0, n);
      let kept = 0;
      for (const v of m) kept += v;
      const sd = Math.sqrt(n * p * (1 - p));
      expect(Math.abs(kept - n * (1 - p))).toBeLessThan(5 * sd);
    }
  });

  it('the same seed gives the same mask; another seed another mask', () => {
    const a = nativeMask(77n, 0.5, 0, 4096);
    const b = nativeMask(77n, 0.5, 0, 4096);
    const c = nativeMask(78n, 0.5, 0, 4096);
    expect(Array.from(a)).toEqual(Array.from(b));
    let differ = 0;
    for (let i = 0; i < a.length; i++) if (a[i] !== c[i]) differ++;
    expect(differ).toBeGreaterThan(1500); // about half
  });
});

describe('lora.forward and lora.backward use the documented mask', () => {
  it('xa = D(x) with A = I is exactly x masked and scaled by float32(1 / (1 - p))', () => {
    const T = 33,
      I = 7,
      O = 5;
    const p = 0.3;
    const seed = 0xabcdef12345n;
    const xv = randomF32(T * I, 40);
    const eye = new Float32Array(I * I);
    for (let i = 0; i < I; i++) eye[i * I + i] = 1;
    const x = tensor(xv, [T, I]);
    const W = tensor(randomF32(O * I, 41), [O, I]);
    const A = tensor(eye, [I, I]);
    const B = tensor(randomF32(O * I, 42), [O, I]);
    const { y, saved } = lora.forward(x, W, A, B, { scale: 0.5, dropout: { p, seed } });
    const xa = saved.xa.toFloat32Array();
    const s = dropoutScale(p);
    let dropped = 0;
    for (let i = 0; i < T * I; i++) {
      const keep = dropoutKeep(seed, p, i);
      if (!keep) dropped++;
      expect(xa[i], `element ${i}`).toBe(keep ? Math.fround(xv[i] * s) : 0);
    }
    expect(dropped).toBeGreaterThan(20);
    expect(dropped).toBeLessThan(120);
    for (const t of [x, W, A, B, y]) t.dispose();
    saved.dispose();
  });

  it('forward and backward match the float64 reference computed with the reference mask', () => {
    const T = 33,
      I = 45,
      O = 37,
      R = 8;
    const p = 0.25;
    const seed = 987654321n;
    const scale = 1.75;
    const xv = randomF32(T * I, 50),
      Wv = randomF32(O * I, 51),
      Av = randomF32(R * I, 52),
      Bv = randomF32(O * R, 53);
    const dyv = randomF32(T * O, 54);
    const mask = dropoutFactors(seed, p, T * I);
    const x = tensor(xv, [T, I]),
      W = tensor(Wv, [O, I]),
      A = tensor(Av, [R, I]),
      B = tensor(Bv, [O, R]);
    const { y, saved } = lora.forward(x, W, A, B, { scale, dropout: { p, seed } });
    const ref = loraForwardRef(xv, Wv, null, Av, Bv, scale, mask, T, I, O, R);
    expect(relErr(saved.xa.toFloat32Array(), ref.xa)).toBeLessThan(1e-5);
    expect(relErr(y.toFloat32Array(), ref.y)).toBeLessThan(1e-5);
    // a different mask gives a clearly different xa: the check above can tell masks apart
    const other = loraForwardRef(xv, Wv, null, Av, Bv, scale, dropoutFactors(seed + 1n, p, T * I), T, I, O, R);
    expect(relErr(saved.xa.toFloat32Array(), other.xa)).toBeGreaterThan(0.1);

    const dy = tensor(dyv, [T, O]);
    const g = lora.backward(dy, saved);
    const gref = loraBackwardRef(dyv, xv, Wv, Av, Bv, scale, mask, T, I, O, R);
    expect(relErr(g.dx.toFloat32Array(), gref.dx)).toBeLessThan(1e-5);
    expect(relErr(g.dA!.toFloat32Array(), gref.dA)).toBeLessThan(1e-5);
    expect(relErr(g.dB.toFloat32Array(), gref.dB)).toBeLessThan(1e-5);
  });
});

describe('dropout without a seed', () => {
  it('forward draws a seed, keeps it, and backward regenerates the same mask from it', () => {
    const T = 7,
      I = 45,
      O = 37,
      R = 8;
    const xv = randomF32(T * I, 70),
      Wv = randomF32(O * I, 71),
      Av = randomF32(R * I, 72),
      Bv = randomF32(O * R, 73);
    const dyv = randomF32(T * O, 74);
    const x = tensor(xv, [T, I]),
      W = tensor(Wv, [O, I]),
      A = tensor(Av, [R, I]),
      B = tensor(Bv, [O, R]);
    const a = lora.forward(x, W, A, B, { scale: 1, dropout: { p: 0.5 } });
    const b = lora.forward(x, W, A, B, { scale: 1, dropout: { p: 0.5 } });
    expect(a.saved.seed).not.toBe(b.saved.seed); // fresh seeds (internal field)
    expect(relErr(a.saved.xa.toFloat32Array(), b.saved.xa.toFloat32Array())).toBeGreaterThan(0.05);
    const mask = dropoutFactors(a.saved.seed, 0.5, T * I);
    expect(relErr(a.saved.xa.toFloat32Array(), loraForwardRef(xv, Wv, null, Av, Bv, 1, mask, T, I, O, R).xa)).toBeLessThan(1e-5);
    const g = lora.backward(tensor(dyv, [T, O]), a.saved);
    const gref = loraBackwardRef(dyv, xv, Wv, Av, Bv, 1, mask, T, I, O, R);
    expect(relErr(g.dx.toFloat32Array(), gref.dx)).toBeLessThan(1e-5);
    expect(relErr(g.dA!.toFloat32Array(), gref.dA)).toBeLessThan(1e-5);
  });
});

describe('CUDA agrees with the CPU', () => {
  const cuda = backends().cuda;
  const reason = cuda.available ? '' : ` (skipped: CUDA unavailable: ${cuda.reason})`;

  it.skipIf(!cuda.available)(`cudaDropoutMask equals the CPU mask${reason}`, () => {
    for (const [seed, p, offset, n] of [
      [1n, 0.25, 0, 7],
      [2n, 0.1, 3, 1000],
      [3n, 0.5, 12345, 100_003],
    ] as const) {
      const got = new Uint8Array(n).fill(7);
      native()._cudaDropoutMask({ out: got, offset, p, seed });
      expect(Array.from(got)).toEqual(Array.from(nativeMask(seed, p, offset, n)));
    }
  });

  it.skipIf(!cuda.available)(`cudaLoraMergeHost equals the CPU merge${reason}`, () => {
    const O = 97,
      I = 130,
      R = 8;
    const W0 = randomF32(O * I, 60),
      A = randomF32(R * I, 61),
      B = randomF32(O * R, 62);
    const cpu = W0.slice();
    native().loraMerge({
      W: { data: cpu, dtype: 0 },
      A: { data: A, dtype: 0 },
      B: { data: B, dtype: 0 },
      out: O,
      in: I,
      r: R,
      scale: 0.5,
      safe: false,
    });
    const gpu = W0.slice();
    native()._cudaLoraMergeHost({ W: gpu, A, B, out: O, in: I, r: R, scale: 0.5 });
    expect(relErr(gpu, cpu)).toBeLessThan(1e-5);
  });
});
