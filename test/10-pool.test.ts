// The CPU caching allocator: disposed storage is reused, never while async work reads it, and
// never when it belongs to the caller or to another tensor.
import { afterAll, describe, expect, it } from 'vitest';
import { emptyPool, lora, memory, poolInfo, randn, setPoolBudget, tensor, zeros } from '../lib/index.js';
import { randomF32, sameBits } from './helpers/reference.js';

afterAll(() => {
  setPoolBudget(1024 ** 3);
  emptyPool();
});

describe('caching allocator', () => {
  it('a disposed buffer is pooled and handed to the next tensor of that byte size', () => {
    emptyPool();
    const a = randn([64, 33], { seed: 1 });
    const bytes = a.nbytes;
    a.dispose();
    expect(poolInfo().bytes).toBe(bytes);
    expect(memory().cpu.pooledBytes).toBe(bytes);
    const b = randn([33, 64], { seed: 2 }); // same bytes, other shape
    expect(poolInfo().bytes).toBe(0);
    b.dispose();
  });

  it('zeros() from a recycled buffer is all zeros', () => {
    emptyPool();
    const poisoned = tensor(new Float32Array(4096).fill(Number.NaN), [4096]).clone();
    poisoned.dispose();
    expect(poolInfo().bytes).toBe(4096 * 4);
    const z = zeros([64, 64]);
    expect(poolInfo().bytes).toBe(0);
    expect(z.toFloat32Array().every((v) => v === 0)).toBe(true);
    z.dispose();
  });

  it("the caller's array (zero-copy) and views are never pooled", () => {
    emptyPool();
    const mine = randomF32(8192, 3);
    const copy = mine.slice();
    const t = tensor(mine, [8192]);
    const view = t.reshape([64, 128]);
    view.dispose();
    t.dispose();
    expect(poolInfo().bytes).toBe(0);
    const other = randn([8192], { seed: 4 }); // would reuse a pooled buffer of this size
    expect(sameBits(mine, copy)).toBe(true);
    other.dispose();
  });

  it('a buffer disposed while an async op reads it is recycled only after the op settles', async () => {
    emptyPool();
    const T = 96,
      I = 130,
      O = 97,
      R = 8;
    const x = tensor(randomF32(T * I, 5), [T, I]).clone(); // pooled storage
    const W = tensor(randomF32(O * I, 6, 0.1), [O, I]);
    const A = tensor(randomF32(R * I, 7, 0.1), [R, I]);
    const B = tensor(randomF32(O * R, 8), [O, R]);
    const expected = lora.forward(x, W, A, B, { scale: 0.5 }).y.toFloat32Array();
    const pending = lora.forwardAsync(x, W, A, B, { scale: 0.5 });
    x.dispose();
    expect(poolInfo().bytes).toBe(0); // held, not pooled
    const intruder = zeros([T, I]); // would take x's buffer and zero it if it were pooled
    const { y } = await pending;
    expect(sameBits(y.toFloat32Array(), expected)).toBe(true);
    expect(poolInfo().bytes).toBe(T * I * 4); // recycled once the op settled
    intruder.dispose();
  });

  it('setPoolBudget refuses what is not a byte count', () => {
    expect(() => setPoolBudget(-1)).toThrow(new RangeError('Expected a non-negative integer for bytes but received -1'));
    expect(() => setPoolBudget('1' as never)).toThrow(new TypeError('Expected a number of bytes for bytes but received "1"'));
  });

  it('a zero budget turns pooling off', () => {
    emptyPool();
    setPoolBudget(0);
    randn([4096], { seed: 9 }).dispose();
    expect(poolInfo()).toEqual({ bytes: 0, budget: 0 });
    setPoolBudget(1024 ** 3);
  });
});
