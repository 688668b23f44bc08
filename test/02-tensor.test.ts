// Tensors: construction without copies, read-only metadata, dtype conversions (round to
// nearest even), seeded fills, dispose() and the memory() oracle.
import { describe, expect, it } from 'vitest';
import { memory, rand, randn, Tensor, tensor, zeros } from '../lib/index.js';
import { bf16Bits, bf16Value, f16Bits, f16Value, f32FromBits, mulberry32, philoxWord, randomF32, sameBits } from './helpers/reference.js';

/** Random float32 values with random sign, exponent in [eMin, eMax] and random mantissa. */
function randomWide(n: number, seed: number, eMin: number, eMax: number): Float32Array {
  const next = mulberry32(seed);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const e = eMin + Math.floor(next() * (eMax - eMin + 1));
    const mant = Math.floor(next() * 2 ** 23);
    const sign = next() < 0.5 ? -1 : 1;
    out[i] = sign * (1 + mant / 2 ** 23) * 2 ** e;
  }
  return out;
}

/** The float32 value of float16 bits, from the IEEE 754 binary16 definition. */
function f16Decode(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const m = h & 0x3ff;
  if (e === 0x1f) return m ? NaN : sign * Infinity;
  if (e === 0) return sign * m * 2 ** -24;
  return sign * (1 + m / 1024) * 2 ** (e - 15);
}

describe('tensor()', () => {
  it('wraps a Float32Array without copying it', () => {
    const data = randomF32(6, 1);
    const t = tensor(data, [2, 3]);
    expect(t.storage()).toBe(data);
    data[4] = 42.5;
    expect(t.toFloat32Array()[4]).toBe(42.5);
    const explicit = tensor(data, [3, 2], { dtype: 'float32', device: 'cpu' });
    expect(explicit.storage()).toBe(data);
    t.dispose();
    explicit.dispose();
  });

  it('wraps a subarray view (non-zero byteOffset) without copying it', () => {
    const backing = randomF32(40, 2);
    const view = backing.subarray(7, 7 + 33);
    const t = tensor(view, [33]);
    expect(t.storage()).toBe(view);
    expect(Array.from(t.toFloat32Array())).toEqual(Array.from(backing.slice(7, 40)));
    t.dispose();
  });

  it('toFloat32Array() returns a copy', () => {
    const data = randomF32(7, 3);
    const t = tensor(data, [7]);
    const copy = t.toFloat32Array();
    expect(copy).not.toBe(data);
    expect(sameBits(copy, data)).toBe(true);
    copy[0] = 1234;
    expect(data[0]).not.toBe(1234);
    t.dispose();
  });

  it('copies an array of numbers, rounding to float32', async () => {
    const values = [0.1, -2.5, 1e-3, 3, 7, 1 / 3];
    const t = tensor(values, [3, 2]);
    const out = t.toFloat32Array();
    expect(Array.from(out)).toEqual(values.map(Math.fround));
    values[0] = 99;
    expect(t.toFloat32Array()[0]).toBe(Math.fround(0.1));
    expect(Array.from(await t.data())).toEqual(Array.from(out));
    t.dispose();
  });

  it('has shape, dtype, device, size and nbytes', () => {
    const t = tensor(randomF32(33, 4), [3, 1, 11]);
    expect(t.shape).toEqual([3, 1, 11]);
    expect(t.dtype).toBe('float32');
    expect(t.device).toBe('cpu');
    expect(t.size).toBe(33);
    expect(t.nbytes).toBe(132);
    const h = tensor(randomF32(33, 4), [33], { dtype: 'float16' });
    expect(h.dtype).toBe('float16');
    expect(h.nbytes).toBe(66);
    expect(h.storage()).toBeInstanceOf(Uint16Array);
    const s = tensor([5], []);
    expect(s.shape).toEqual([]);
    expect(s.size).toBe(1);
    t.dispose();
    h.dispose();
    s.dispose();
  });

  it('keeps shape, dtype, device, size and nbytes read-only', () => {
    const shape = [2, 3];
    const t = tensor(randomF32(6, 5), shape);
    shape[0] = 3; // the caller's array is not the tensor's
    expect(t.shape).toEqual([2, 3]);
    expect(() => {
      // @ts-expect-error shape is read-only
      t.shape = [6];
    }).toThrow(TypeError);
    expect(() => {
      // @ts-expect-error dtype is read-only
      t.dtype = 'float16';
    }).toThrow(TypeError);
    expect(() => {
      // @ts-expect-error device is read-only
      t.device = 'cuda';
    }).toThrow(TypeError);
    expect(() => {
      // @ts-expect-error size is read-only
      t.size = 1;
    }).toThrow(TypeError);
    expect(() => {
      // @ts-expect-error nbytes is read-only
      t.nbytes = 1;
    }).toThrow(TypeError);
    expect(() => (t.shape as number[]).push(1)).toThrow(TypeError);
    expect(() => {
      (t.shape as number[])[0] = 6;
    }).toThrow(TypeError);
    expect(t.shape).toEqual([2, 3]);
    expect(t.dtype).toBe('float32');
    expect(t.device).toBe('cpu');
    expect(t.size).toBe(6);
    expect(t.nbytes).toBe(24);
    t.dispose();
  });
});

describe('bfloat16 and float16 conversions (round to nearest, ties to even)', () => {
  function convert(values: Float32Array, dtype: 'bfloat16' | 'float16'): { bits: Uint16Array; back: Float32Array } {
    const t = tensor(values, [values.length], { dtype });
    const bits = (t.storage() as Uint16Array).slice();
    const back = t.toFloat32Array();
    t.dispose();
    return { bits, back };
  }

  it('bfloat16 matches the reference on random float32 values over the whole range', () => {
    const values = randomWide(20000, 11, -149, 127);
    const { bits, back } = convert(values, 'bfloat16');
    for (let i = 0; i < values.length; i++) {
      const want = bf16Value(values[i]);
      if (back[i] !== want || bits[i] !== bf16Bits(want))
        expect.fail(`bf16(${values[i]}) gave ${back[i]} (bits ${bits[i].toString(16)}), want ${want}`);
    }
  });

  it('float16 matches the reference on random float32 values around its range', () => {
    const values = randomWide(20000, 12, -27, 17);
    const { bits, back } = convert(values, 'float16');
    for (let i = 0; i < values.length; i++) {
      const want = f16Value(values[i]);
      if (back[i] !== want || bits[i] !== f16Bits(want))
        expect.fail(`f16(${values[i]}) gave ${back[i]} (bits ${bits[i].toString(16)}), want ${want}`);
    }
  });

  it('rounds exact ties to even', () => {
    // bfloat16 keeps 7 fraction bits: 1 + 2^-8 is halfway between 1 and 1 + 2^-7.
    const bfTies = [1 + 2 ** -8, 1 + 3 * 2 ** -8, -(1 + 2 ** -8), 2 + 2 ** -7, 1 + 5 * 2 ** -8, 256 + 1];
    const bfWant = [1, 1 + 2 ** -6, -1, 2, 1 + 2 ** -6, 256];
    expect(Array.from(convert(Float32Array.from(bfTies), 'bfloat16').back)).toEqual(bfWant);
    // float16 keeps 10 fraction bits: 1 + 2^-11 is halfway between 1 and 1 + 2^-10.
    const hTies = [1 + 2 ** -11, 1 + 3 * 2 ** -11, 2048 + 1, 2048 + 3, -(1 + 2 ** -11), 3 * 2 ** -26, 5 * 2 ** -25];
    const hWant = [1, 1 + 2 ** -9, 2048, 2052, -1, 2 ** -24, 2 ** -23];
    expect(Array.from(convert(Float32Array.from(hTies), 'float16').back)).toEqual(hWant);
    // just above a tie rounds up
    expect(convert(Float32Array.of(1 + 2 ** -8 + 2 ** -20), 'bfloat16').back[0]).toBe(1 + 2 ** -7);
    expect(convert(Float32Array.of(1 + 2 ** -11 + 2 ** -20), 'float16').back[0]).toBe(1 + 2 ** -10);
  });

  it('handles specials for bfloat16', () => {
    const maxBf16 = f32FromBits(0x7f7f0000);
    const input = Float32Array.of(0, -0, Infinity, -Infinity, NaN, maxBf16, 3.4e38, -3.4e38, f32FromBits(0x7f7f7fff), 2 ** -133, 2 ** -149);
    const { bits, back } = convert(input, 'bfloat16');
    expect(bits[0]).toBe(0x0000);
    expect(bits[1]).toBe(0x8000);
    expect(bits[2]).toBe(0x7f80);
    expect(bits[3]).toBe(0xff80);
    expect(Number.isNaN(back[4])).toBe(true);
    expect(bits[4] & 0x7f80).toBe(0x7f80);
    expect(bits[4] & 0x7f).not.toBe(0);
    expect(back[5]).toBe(maxBf16);
    expect(back[6]).toBe(Infinity); // 3.4e38 is past max + half an ulp
    expect(back[7]).toBe(-Infinity);
    expect(back[8]).toBe(maxBf16); // just below the halfway point
    expect(back[9]).toBe(2 ** -133); // smallest bfloat16 subnormal is exact
    expect(back[10]).toBe(0); // 2^-149 rounds to 0
    expect(Object.is(back[1], -0)).toBe(true);
  });

  it('handles specials for float16', () => {
    const input = Float32Array.of(
      0,
      -0,
      Infinity,
      -Infinity,
      NaN,
      65504,
      65520,
      65519.996,
      -65520,
      2 ** -24,
      2 ** -25,
      3 * 2 ** -26,
      2 ** -14,
      2 ** -14 - 2 ** -24,
      1e-30,
    );
    const { bits, back } = convert(input, 'float16');
    expect(bits[0]).toBe(0x0000);
    expect(bits[1]).toBe(0x8000);
    expect(bits[2]).toBe(0x7c00);
    expect(bits[3]).toBe(0xfc00);
    expect(Number.isNaN(back[4])).toBe(true);
    expect(bits[4] & 0x7c00).toBe(0x7c00);
    expect(bits[4] & 0x3ff).not.toBe(0);
    expect(back[5]).toBe(65504);
    expect(bits[5]).toBe(0x7bff);
    expect(back[6]).toBe(Infinity); // 65520 is the tie between 65504 and 2^16: to even, overflow
    expect(back[7]).toBe(65504);
    expect(back[8]).toBe(-Infinity);
    expect(bits[9]).toBe(0x0001); // 2^-24: the smallest subnormal
    expect(back[9]).toBe(2 ** -24);
    expect(bits[10]).toBe(0x0000); // 2^-25: tie between 0 and 2^-24, to even
    expect(back[11]).toBe(2 ** -24); // 1.5 · 2^-24 rounds up
    expect(bits[12]).toBe(0x0400); // smallest normal
    expect(bits[13]).toBe(0x03ff); // largest subnormal
    expect(back[14]).toBe(0);
  });

  it('float16 keeps NaN payload bits and the sign of NaN', () => {
    const negNaN = f32FromBits(0xffc00001);
    const { bits, back } = convert(Float32Array.of(negNaN), 'float16');
    expect(Number.isNaN(back[0])).toBe(true);
    expect(bits[0] & 0x8000).toBe(0x8000);
  });

  it('every bfloat16 and float16 bit pattern converts to float32 exactly and back unchanged', () => {
    const all = new Uint16Array(65536).map((_, i) => i);
    for (const dtype of ['bfloat16', 'float16'] as const) {
      const t = tensor(all, [65536], { dtype });
      const f = t.toFloat32Array();
      const asF32 = t.astype('float32');
      expect(sameBits(asF32.toFloat32Array(), f)).toBe(true);
      const again = asF32.astype(dtype);
      const back = again.storage() as Uint16Array;
      for (let i = 0; i < 65536; i++) {
        const want = dtype === 'bfloat16' ? f32FromBits(i << 16) : f16Decode(i);
        if (Number.isNaN(want)) {
          if (!Number.isNaN(f[i]) || !Number.isNaN(dtype === 'bfloat16' ? f32FromBits(back[i] << 16) : f16Decode(back[i])))
            expect.fail(`${dtype} NaN pattern ${i.toString(16)} did not stay NaN`);
          continue;
        }
        if (!Object.is(f[i], want)) expect.fail(`${dtype} ${i.toString(16)} -> ${f[i]}, want ${want}`);
        if (back[i] !== i) expect.fail(`${dtype} ${i.toString(16)} -> ${f[i]} -> ${back[i].toString(16)}`);
      }
      t.dispose();
      asF32.dispose();
      again.dispose();
    }
  });

  it('astype converts and copies', () => {
    const values = randomF32(45, 13, 100);
    const t = tensor(values, [5, 9]);
    const h = t.astype('float16');
    expect(h.dtype).toBe('float16');
    expect(h.shape).toEqual([5, 9]);
    const back = h.astype('float32');
    expect(Array.from(back.toFloat32Array())).toEqual(Array.from(values, f16Value));
    const b = t.astype('bfloat16').astype('float16');
    expect(Array.from(b.toFloat32Array())).toEqual(Array.from(values, (v) => f16Value(bf16Value(v))));
    const same = t.astype('float32');
    expect(same.storage()).not.toBe(values);
    expect(sameBits(same.toFloat32Array(), values)).toBe(true);
    for (const x of [t, h, back, b, same]) x.dispose();
  });

  it('tensor() from a Float32Array with a 16-bit dtype converts; from a Uint16Array wraps the bits', () => {
    const values = randomF32(7, 14);
    const t = tensor(values, [7], { dtype: 'bfloat16' });
    expect(Array.from(t.toFloat32Array())).toEqual(Array.from(values, bf16Value));
    const bits = Uint16Array.from(values, (v) => bf16Bits(bf16Value(v)));
    const w = tensor(bits, [7], { dtype: 'bfloat16' });
    expect(w.storage()).toBe(bits);
    expect(Array.from(w.toFloat32Array())).toEqual(Array.from(t.toFloat32Array()));
    const a = tensor([1.5, 65520, 1e-8], [3], { dtype: 'float16' });
    expect(Array.from(a.toFloat32Array())).toEqual([1.5, Infinity, f16Value(1e-8)]);
    for (const x of [t, w, a]) x.dispose();
  });
});

describe('copies and views', () => {
  it("to('cpu') copies", () => {
    const values = randomF32(33, 20);
    const t = tensor(values, [3, 11]);
    const c = t.to('cpu');
    expect(c.storage()).not.toBe(values);
    expect(c.shape).toEqual([3, 11]);
    expect(c.device).toBe('cpu');
    expect(sameBits(c.toFloat32Array(), values)).toBe(true);
    values[0] = 77;
    expect(c.toFloat32Array()[0]).not.toBe(77);
    const h = t.astype('float16');
    const hc = h.to('cpu');
    expect(hc.dtype).toBe('float16');
    expect(hc.storage()).not.toBe(h.storage());
    for (const x of [t, c, h, hc]) x.dispose();
  });

  it('clone copies', () => {
    const values = randomF32(7, 21);
    const t = tensor(values, [7]);
    const c = t.clone();
    expect(c.storage()).not.toBe(values);
    expect(sameBits(c.toFloat32Array(), values)).toBe(true);
    t.dispose();
    c.dispose();
  });

  it('reshape views the same storage with a new shape', () => {
    const values = randomF32(42, 22);
    const t = tensor(values, [6, 7]);
    const r = t.reshape([2, 3, 7]);
    expect(r.shape).toEqual([2, 3, 7]);
    expect(r.storage()).toBe(values);
    values[41] = -8;
    expect(r.toFloat32Array()[41]).toBe(-8);
    expect(t.shape).toEqual([6, 7]);
    t.dispose();
    r.dispose();
  });

  it('zeros() makes zero tensors of every dtype', () => {
    for (const dtype of ['float32', 'bfloat16', 'float16'] as const) {
      const z = zeros([3, 7], { dtype });
      expect(z.shape).toEqual([3, 7]);
      expect(z.dtype).toBe(dtype);
      expect(z.toFloat32Array().every((v) => Object.is(v, 0))).toBe(true);
      z.dispose();
    }
    const empty = zeros([0, 5]);
    expect(empty.size).toBe(0);
    empty.dispose();
  });
});

describe('randn() and rand()', () => {
  it('same seed, same values; different seeds differ', () => {
    const a = randn([1001], { seed: 5 }).toFloat32Array();
    const b = randn([1001], { seed: 5 }).toFloat32Array();
    const c = randn([1001], { seed: 6 }).toFloat32Array();
    expect(sameBits(a, b)).toBe(true);
    let same = 0;
    for (let i = 0; i < a.length; i++) if (a[i] === c[i]) same++;
    expect(same).toBeLessThan(5);
    const big = randn([7], { seed: 2n ** 64n - 1n }).toFloat32Array();
    const big2 = randn([7], { seed: 2n ** 64n - 2n }).toFloat32Array();
    expect(sameBits(big, big2)).toBe(false);
    const u = rand([1001], { seed: 5 }).toFloat32Array();
    expect(sameBits(u, rand([1001], { seed: 5 }).toFloat32Array())).toBe(true);
    expect(sameBits(u, rand([1001], { seed: 7 }).toFloat32Array())).toBe(false);
  });

  it('a prefix does not depend on the length (a counter-based stream)', () => {
    const short = randn([7], { seed: 9 }).toFloat32Array();
    const long = randn([33], { seed: 9 }).toFloat32Array();
    expect(sameBits(short, long.subarray(0, 7))).toBe(true);
  });

  it('draws without a seed are random', () => {
    const a = randn([16]).toFloat32Array();
    const b = randn([16]).toFloat32Array();
    expect(sameBits(a, b)).toBe(false);
  });

  it('randn has mean 0 and std 1 within sampling error (100k samples), and honours mean/std', () => {
    const n = 100_000;
    for (const [mean, std] of [
      [0, 1],
      [3, 0.5],
    ]) {
      const v = randn([n], { seed: 123, mean, std }).toFloat32Array();
      let s = 0;
      let s2 = 0;
      for (const x of v) {
        s += x;
        s2 += x * x;
      }
      const m = s / n;
      const sd = Math.sqrt(s2 / n - m * m);
      expect(Math.abs(m - mean)).toBeLessThan((5 * std) / Math.sqrt(n));
      expect(Math.abs(sd - std)).toBeLessThan((5 * std) / Math.sqrt(2 * n));
    }
  });

  it('randn follows the documented Box-Muller over Philox words', () => {
    const seed = 77n;
    const v = randn([33], { seed }).toFloat32Array();
    for (let i = 0; i < 33; i++) {
      const pair = i & ~1;
      const u1 = (philoxWord(seed, pair) + 0.5) * 2 ** -32;
      const u2 = philoxWord(seed, pair + 1) * 2 ** -32;
      const radius = Math.sqrt(-2 * Math.log(u1));
      const z = i & 1 ? radius * Math.sin(2 * Math.PI * u2) : radius * Math.cos(2 * Math.PI * u2);
      expect(Math.abs(v[i] - z)).toBeLessThanOrEqual(2 ** -22 * Math.max(1, Math.abs(z)));
    }
  });

  it('rand is uniform in [low, high) with the right mean and variance', () => {
    const n = 100_000;
    const v = rand([n], { seed: 321, low: -2, high: 3 }).toFloat32Array();
    let s = 0;
    let s2 = 0;
    let lo = Infinity;
    let hi = -Infinity;
    for (const x of v) {
      s += x;
      s2 += x * x;
      lo = Math.min(lo, x);
      hi = Math.max(hi, x);
    }
    expect(lo).toBeGreaterThanOrEqual(-2);
    expect(hi).toBeLessThan(3);
    const m = s / n;
    const variance = s2 / n - m * m;
    expect(Math.abs(m - 0.5)).toBeLessThan((5 * Math.sqrt(25 / 12)) / Math.sqrt(n));
    expect(Math.abs(variance - 25 / 12)).toBeLessThan(0.05);
    const d = rand([7], { seed: 1 }).toFloat32Array();
    expect(d.every((x) => x >= 0 && x < 1)).toBe(true);
  });

  it('rand follows the documented mapping of Philox words: low + (high - low) · (word >> 8) · 2^-24', () => {
    const seed = 4242n;
    const v = rand([33], { seed, low: -0.25, high: 0.75 }).toFloat32Array();
    for (let i = 0; i < 33; i++) expect(v[i]).toBe(Math.fround(-0.25 + (philoxWord(seed, i) >>> 8) * 2 ** -24));
  });

  // Element 3729118 of seed 8 has (word >> 8) = 2^24 - 1, the largest u: 1 + (1 - 2^-24) is
  // not a float32 and rounds up to 2.
  it('rand never returns high, even when low + (high - low)·u rounds up in float32', () => {
    const seed = 8n;
    const index = 3729118;
    expect(philoxWord(seed, index) >>> 8).toBe(0xffffff);
    const t = rand([index + 1], { seed, low: 1, high: 2 });
    const v = t.toFloat32Array();
    expect(v[index - 1]).toBeLessThan(2);
    expect(v[index], 'rand([n], {low: 1, high: 2}) returned 2 = high (documented as [low, high))').toBeLessThan(2);
    t.dispose();
  });

  it('16-bit dtypes are the float32 draw converted', () => {
    const f = randn([45], { seed: 3 }).toFloat32Array();
    const h = randn([45], { seed: 3, dtype: 'float16' });
    expect(h.dtype).toBe('float16');
    expect(Array.from(h.toFloat32Array())).toEqual(Array.from(f, f16Value));
    const b = rand([45], { seed: 3, dtype: 'bfloat16' });
    const fu = rand([45], { seed: 3 }).toFloat32Array();
    expect(Array.from(b.toFloat32Array())).toEqual(Array.from(fu, bf16Value));
  });
});

describe('dispose() and memory()', () => {
  const DISPOSED = 'Expected a live Tensor for tensor but received Tensor(float32, [2, 3], cpu, disposed) (it was disposed)';

  it('is idempotent and makes every method throw a TypeError naming the disposed tensor', async () => {
    const t = tensor(randomF32(6, 30), [2, 3]);
    t.dispose();
    t.dispose();
    expect(t.disposed).toBe(true);
    expect(t.describe()).toBe('Tensor(float32, [2, 3], cpu, disposed)');
    expect(String(t)).toBe('Tensor(float32, [2, 3], cpu, disposed)');
    const calls: Array<[string, () => unknown]> = [
      ['toFloat32Array', () => t.toFloat32Array()],
      ['to', () => t.to('cpu')],
      ['astype', () => t.astype('float16')],
      ['clone', () => t.clone()],
      ['reshape', () => t.reshape([3, 2])],
      ['storage', () => t.storage()],
    ];
    for (const [name, call] of calls) {
      expect(call, name).toThrow(TypeError);
      expect(call, name).toThrow(DISPOSED);
    }
    await expect(t.data()).rejects.toThrow(TypeError);
    await expect(t.data()).rejects.toThrow(DISPOSED);
  });

  it('[Symbol.dispose] works with `using`', () => {
    const before = memory();
    let escaped: Tensor | undefined;
    {
      using t = tensor(randomF32(6, 31), [2, 3]);
      escaped = t;
      expect(memory().numTensors).toBe(before.numTensors + 1);
    }
    expect(escaped.disposed).toBe(true);
    expect(memory().numTensors).toBe(before.numTensors);
    expect(memory().numBytes).toBe(before.numBytes);
    const u = zeros([3]);
    u[Symbol.dispose]();
    expect(u.disposed).toBe(true);
  });

  it('memory() counts tensors and bytes up on create and down on dispose', () => {
    const before = memory();
    const a = tensor(randomF32(33, 32), [33]);
    const b = zeros([7, 9], { dtype: 'float16' });
    const c = randn([5], { seed: 1, dtype: 'bfloat16' }); // its float32 temporary is released
    const during = memory();
    expect(during.numTensors - before.numTensors).toBe(3);
    expect(during.numBytes - before.numBytes).toBe(33 * 4 + 63 * 2 + 5 * 2);
    expect(during.cpu.tensors - before.cpu.tensors).toBe(3);
    expect(during.cuda).toEqual(before.cuda);
    a.dispose();
    b.dispose();
    b.dispose(); // idempotent: counted once
    c.dispose();
    const after = memory();
    expect(after.numTensors).toBe(before.numTensors);
    expect(after.numBytes).toBe(before.numBytes);
    expect(after.cpu).toEqual(before.cpu);
  });
});
