// nn: a training loop's building blocks, each one native op on the tensors' device. Every op
// against a plain float64 reference on fresh random inputs at awkward sizes (1, 7, 33, 1000+),
// outputs poisoned with NaN first where the API takes `out`, and the error texts of the
// argument checks. With a CUDA device: the same on device tensors against the reference.
import { afterAll, describe, expect, it } from 'vitest';
import { backends, nn, tensor, Tensor, zeros } from '../lib/index.js';
import { errorOf, randomF32 } from './helpers/reference.js';

const cuda = backends().cuda;
const SIZES = [1, 7, 33, 1031];
const live: Tensor[] = [];
const keep = <T extends Tensor>(t: T): T => (live.push(t), t);
afterAll(() => live.forEach((t) => t.dispose()));

let seed = 2600;
/** A fresh float32 tensor of N(0, std²) values (never zeros) on `device`. */
const rnd = (shape: number[], device: 'cpu' | 'cuda' = 'cpu', std = 1) =>
  keep(tensor(randomF32(shape.reduce((a, b) => a * b, 1), seed++, std), shape, { device }));

if (!cuda.available) console.log(`test/26-nn: device tests skipped: CUDA unavailable: ${cuda.reason}`);
const DEVICES = (['cpu', 'cuda'] as const).filter((d) => d === 'cpu' || cuda.available);

describe.each(DEVICES)('nn.fill and nn.addInto on %s', (device) => {
  it.each(SIZES)('fill writes every element of every dtype, n = %i', (n) => {
    for (const dtype of ['float32', 'bfloat16', 'float16'] as const) {
      const t = keep(zeros([n], { dtype, device }));
      expect(nn.fill(t, -1.5)).toBe(t);
      expect(Array.from(t.toFloat32Array()).every((v) => v === -1.5), dtype).toBe(true);
      nn.fill(t, NaN);
      expect(Array.from(t.toFloat32Array()).every(Number.isNaN), dtype).toBe(true);
    }
    const i = keep(zeros([n], { dtype: 'int32', device }));
    nn.fill(i, -7);
    expect(Array.from(i.toInt32Array()).every((v) => v === -7)).toBe(true);
  });

  it.each(SIZES)('addInto adds src into dst in place, n = %i', (n) => {
    const dst = rnd([n], device), src = rnd([n], device);
    const d0 = dst.toFloat32Array(), s0 = src.toFloat32Array();
    expect(nn.addInto(dst, src)).toBe(dst);
    const got = dst.toFloat32Array();
    for (let k = 0; k < n; k++) expect(got[k]).toBe(Math.fround(d0[k] + s0[k]));
  });

  it('errors name the argument', () => {
    const a = rnd([3, 4], device), b = rnd([4, 3], device);
    expect(errorOf(() => nn.fill(zeros([2], { dtype: 'int32', device }), 1.5))).toEqual({
      cls: 'RangeError',
      message: 'Expected an integer in int32 range (t is int32) for value but received 1.5',
    });
    expect(errorOf(() => nn.fill(a, '1' as unknown as number))).toEqual({ cls: 'TypeError', message: 'Expected a number for value but received "1"' });
    expect(errorOf(() => nn.fill([1] as unknown as Tensor, 1))).toEqual({ cls: 'TypeError', message: 'Expected a Tensor for t but received [1]' });
    expect(errorOf(() => nn.addInto(a, b))).toEqual({ cls: 'RangeError', message: 'Expected a shape of [3, 4] (like dst) for src but received [4, 3]' });
    const i = keep(zeros([3, 4], { dtype: 'int32', device }));
    expect(errorOf(() => nn.addInto(a, i)).message).toBe(`Expected a float32 Tensor for src but received ${i.describe()} (dtype is int32)`);
    const h = keep(zeros([3, 4], { dtype: 'bfloat16', device }));
    expect(errorOf(() => nn.addInto(h, a)).message).toBe(`Expected a float32 Tensor for dst but received ${h.describe()} (dtype is bfloat16)`);
    const gone = rnd([3, 4], device);
    gone.dispose();
    expect(errorOf(() => nn.addInto(a, gone)).message).toMatch(/^Expected a live Tensor for src but received .* \(it was disposed\)$/);
  });
});

describe('nn on two devices', () => {
  // Stand-ins: tensors that claim CUDA over host arrays (the internal constructor), never run on.
  const fake = (n: number, dtype: 'float32' | 'int32' = 'float32') =>
    keep(new Tensor(dtype === 'int32' ? new Int32Array(n) : randomF32(n, seed++), [n], dtype, 'cuda'));

  it('mixed devices are a RangeError naming the second tensor; a CUDA tensor takes the device path', () => {
    const a = rnd([5]), b = fake(5);
    expect(errorOf(() => nn.addInto(a, b))).toEqual({ cls: 'RangeError', message: `Expected a tensor on cpu (like dst) for src but received ${b.describe()}` });
    expect(errorOf(() => nn.addInto(b, a))).toEqual({ cls: 'RangeError', message: `Expected a tensor on cuda (like dst) for src but received ${a.describe()}` });
    expect(errorOf(() => nn.fill(b, 0))).toEqual({ cls: 'RangeError', message: `Expected a tensor in CUDA memory for t but received ${b.describe()}` });
  });
});
