// int32 tensors (indices, token ids): built from an Int32Array (wrapped) or integers (copied),
// copied, viewed, moved, pooled and counted like the float dtypes, read back with toInt32Array()
// (and, exactly or not at all, as float32); every float op refuses them with the usual message.
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import {
  emptyPool,
  Linear,
  linear,
  lora,
  LoraLinear,
  memory,
  optim,
  poolInfo,
  rand,
  randn,
  setPoolBudget,
  tensor,
  vera,
  VeraLinear,
  zeros,
  type Tensor,
} from '../lib/index.js';
import { errorOf } from './helpers/reference.js';

afterAll(() => {
  setPoolBudget(1024 ** 3);
  emptyPool();
});

const INT32_MIN = -(2 ** 31);
const INT32_MAX = 2 ** 31 - 1;

describe('int32 tensors', () => {
  it('tensor(Int32Array, shape) is int32 and wraps the array without copying', () => {
    const data = Int32Array.from([1, -2, 3, INT32_MIN, INT32_MAX, 0]);
    const t = tensor(data, [2, 3]);
    expect(t.dtype).toBe('int32');
    expect(t.shape).toEqual([2, 3]);
    expect(t.nbytes).toBe(24);
    expect(t.storage()).toBe(data);
    data[0] = 42; // the caller's array is the storage
    expect(Array.from(t.toInt32Array())).toEqual([42, -2, 3, INT32_MIN, INT32_MAX, 0]);
    const explicit = tensor(data, [6], { dtype: 'int32' });
    expect(explicit.storage()).toBe(data);
    t.dispose();
    explicit.dispose();
    expect(data[0]).toBe(42); // a borrowed array is never pooled or cleared
  });

  it('tensor(numbers, shape, { dtype: int32 }) copies; a non-integer or a value outside int32 is a RangeError naming data[i]', () => {
    const values = [0, -0, 7, INT32_MIN, INT32_MAX];
    const t = tensor(values, [5], { dtype: 'int32' });
    expect(t.storage()).toBeInstanceOf(Int32Array);
    expect(Array.from(t.toInt32Array())).toEqual([0, 0, 7, INT32_MIN, INT32_MAX]);
    t.dispose();
    const range = 'an integer in [-2147483648, 2147483647]';
    expect(errorOf(() => tensor([1, 1.5], [2], { dtype: 'int32' }))).toEqual({
      cls: 'RangeError',
      message: `Expected ${range} for data[1] but received 1.5`,
    });
    expect(errorOf(() => tensor([2 ** 31], [1], { dtype: 'int32' }))).toEqual({
      cls: 'RangeError',
      message: `Expected ${range} for data[0] but received 2147483648`,
    });
    expect(errorOf(() => tensor([0, 0, INT32_MIN - 1], [3], { dtype: 'int32' }))).toEqual({
      cls: 'RangeError',
      message: `Expected ${range} for data[2] but received -2147483649`,
    });
    expect(errorOf(() => tensor([NaN], [1], { dtype: 'int32' }))).toEqual({
      cls: 'RangeError',
      message: `Expected ${range} for data[0] but received NaN`,
    });
    expect(errorOf(() => tensor([Infinity], [1], { dtype: 'int32' }))).toEqual({
      cls: 'RangeError',
      message: `Expected ${range} for data[0] but received Infinity`,
    });
    expect(errorOf(() => tensor([1, '2'] as never, [2], { dtype: 'int32' }))).toEqual({
      cls: 'TypeError',
      message: `Expected ${range} for data[1] but received "2"`,
    });
  });

  it('int32 data of the wrong kind or length is refused', () => {
    expect(errorOf(() => tensor(new Float32Array(2), [2], { dtype: 'int32' }))).toEqual({
      cls: 'TypeError',
      message: 'Expected an Int32Array or an array of integers for data but received Float32Array(2)',
    });
    expect(errorOf(() => tensor(new Uint16Array(2), [2], { dtype: 'int32' }))).toEqual({
      cls: 'TypeError',
      message: 'Expected an Int32Array or an array of integers for data but received Uint16Array(2)',
    });
    expect(errorOf(() => tensor(new Int32Array(5), [2, 3]))).toEqual({
      cls: 'RangeError',
      message: 'Expected 6 elements (shape [2, 3]) for data but received Int32Array(5) with 5 elements',
    });
    expect(errorOf(() => tensor([1, 2, 3], [2], { dtype: 'int32' }))).toEqual({
      cls: 'RangeError',
      message: 'Expected 2 elements (shape [2]) for data but received [1, 2, 3] with 3 elements',
    });
    expect(errorOf(() => tensor(new Int32Array(3), [3], { dtype: 'bfloat16' }))).toEqual({
      cls: 'TypeError',
      message: 'Expected a Float32Array, a Uint16Array of bfloat16 bits or an array of numbers for data but received Int32Array(3)',
    });
  });

  it('zeros, clone, reshape, to(cpu) and describe keep int32; clones and moves are copies', () => {
    const z = zeros([3, 4], { dtype: 'int32' });
    expect(z.dtype).toBe('int32');
    expect(z.storage()).toBeInstanceOf(Int32Array);
    expect(Array.from(z.toInt32Array())).toEqual(new Array(12).fill(0));
    expect(z.describe()).toBe('Tensor(int32, [3, 4], cpu)');
    const src = tensor(
      Int32Array.from({ length: 12 }, (_, i) => i * 1_000_003 - 7),
      [3, 4],
    );
    const c = src.clone(),
      r = src.reshape([2, 6]),
      m = src.to('cpu');
    for (const t of [c, r, m]) {
      expect(t.dtype).toBe('int32');
      expect(t.toInt32Array()).toEqual(src.toInt32Array());
    }
    expect(r.shape).toEqual([2, 6]);
    src.storage()[0] = 99; // the view shares storage; the copies do not
    expect(r.toInt32Array()[0]).toBe(99);
    expect(c.toInt32Array()[0]).toBe(-7);
    expect(m.toInt32Array()[0]).toBe(-7);
    const same = src.astype('int32'); // its own dtype: a clone
    expect(same.toInt32Array()).toEqual(src.toInt32Array());
    expect(same.storage()).not.toBe(src.storage());
    for (const t of [z, src, c, r, m, same]) t.dispose();
  });

  it('memory() counts 4 bytes per int32 element; dispose releases them and is idempotent', () => {
    const before = memory();
    const a = zeros([5, 7], { dtype: 'int32' });
    const b = tensor(new Int32Array(3), [3]);
    const v = a.reshape([35]); // a view counts no bytes
    const during = memory();
    expect(during.cpu.tensors - before.cpu.tensors).toBe(3);
    expect(during.cpu.bytes - before.cpu.bytes).toBe(35 * 4 + 3 * 4);
    a.dispose();
    a.dispose();
    b.dispose();
    v.dispose();
    expect(memory().cpu.bytes).toBe(before.cpu.bytes);
    expect(memory().cpu.tensors).toBe(before.cpu.tensors);
    expect(errorOf(() => a.toInt32Array())).toEqual({
      cls: 'TypeError',
      message: 'Expected a live Tensor for tensor but received Tensor(int32, [5, 7], cpu, disposed) (it was disposed)',
    });
  });

  it('the CPU pool hands a float32 buffer back as an Int32Array view, and an int32 buffer back as Float32Array', () => {
    emptyPool();
    const f = zeros([1024]); // 4096 bytes: pooled
    f.dispose();
    expect(poolInfo().bytes).toBe(4096);
    const poisoned = tensor(new Float32Array(1024).fill(-1), [1024]).clone();
    poisoned.dispose(); // a second 4096-byte buffer, full of -1.0 bits
    const i = zeros([32, 32], { dtype: 'int32' });
    expect(i.storage()).toBeInstanceOf(Int32Array);
    expect(i.toInt32Array().every((x) => x === 0)).toBe(true); // zeroed although reused
    const j = tensor(
      Int32Array.from({ length: 1024 }, (_, k) => k - 512),
      [1024],
    ).clone();
    expect(j.storage()).toBeInstanceOf(Int32Array);
    expect(poolInfo().bytes).toBe(0);
    j.dispose();
    expect(poolInfo().bytes).toBe(4096);
    const back = zeros([1024]);
    expect(back.storage()).toBeInstanceOf(Float32Array);
    expect(back.toFloat32Array().every((x) => x === 0)).toBe(true);
    i.dispose();
    back.dispose();
  });

  it('toFloat32Array() and data() convert int32 exactly within [-2^24, 2^24] and refuse the rest by element', async () => {
    const exact = tensor([0, -1, 2 ** 24, -(2 ** 24), 12345], [5], { dtype: 'int32' });
    expect(Array.from(exact.toFloat32Array())).toEqual([0, -1, 2 ** 24, -(2 ** 24), 12345]);
    expect(Array.from(await exact.data())).toEqual([0, -1, 2 ** 24, -(2 ** 24), 12345]);
    const big = tensor([1, 2, 2 ** 24 + 1], [3], { dtype: 'int32' });
    const refusal = {
      cls: 'RangeError',
      message:
        'Expected int32 values in [-16777216, 16777216] (exact in float32) for tensor[2] but received 16777217 (read int32 values with toInt32Array())',
    };
    expect(errorOf(() => big.toFloat32Array())).toEqual(refusal);
    await expect(big.data()).rejects.toThrow(refusal.message);
    expect(errorOf(() => tensor([INT32_MIN], [1], { dtype: 'int32' }).toFloat32Array()).message).toContain(
      'for tensor[0] but received -2147483648',
    );
    exact.dispose();
    big.dispose();
  });

  it('toInt32Array() refuses a float tensor; astype between int32 and a float dtype is a TypeError; randn/rand refuse int32', () => {
    const f = tensor([1, 2], [2]);
    expect(errorOf(() => f.toInt32Array())).toEqual({
      cls: 'TypeError',
      message:
        'Expected an int32 Tensor for tensor but received Tensor(float32, [2], cpu) (dtype is float32; read it with toFloat32Array())',
    });
    expect(errorOf(() => f.astype('int32'))).toEqual({
      cls: 'TypeError',
      message:
        "Expected 'float32', 'bfloat16' or 'float16' for dtype but received \"int32\" (a float32 tensor does not convert to int32; build an int32 tensor with tensor(values, shape, { dtype: 'int32' }))",
    });
    const i = tensor([1, 2], [2], { dtype: 'int32' });
    for (const to of ['float32', 'bfloat16', 'float16'] as const)
      expect(errorOf(() => i.astype(to))).toEqual({
        cls: 'TypeError',
        message: `Expected 'int32' for dtype but received "${to}" (an int32 tensor does not convert to a float dtype; read its values with toInt32Array() or toFloat32Array())`,
      });
    const random =
      "Expected 'float32', 'bfloat16' or 'float16' for options.dtype but received \"int32\" (random values are floating-point)";
    expect(errorOf(() => randn([2], { dtype: 'int32', seed: 1 }))).toEqual({ cls: 'RangeError', message: random });
    expect(errorOf(() => rand([2], { dtype: 'int32', seed: 1 }))).toEqual({ cls: 'RangeError', message: random });
    f.dispose();
    i.dispose();
  });
});

describe('float ops refuse int32 with the usual dtype message', () => {
  const i = (shape: number[]) => zeros(shape, { dtype: 'int32' });
  const f = (shape: number[]) => zeros(shape);
  const proj = vera.projections({ rank: 2, maxIn: 3, maxOut: 4, seed: 1 });
  const refuse = (what: string, name: string, t: string) => ({
    cls: 'TypeError',
    message: `Expected a ${what} Tensor for ${name} but received Tensor(int32, ${t}, cpu) (dtype is int32)`,
  });

  it('lora.forward x and A, lora.merge W', () => {
    expect(errorOf(() => lora.forward(i([2, 3]), f([4, 3]), f([2, 3]), f([4, 2]), { scale: 1 }))).toEqual(refuse('float32', 'x', '[2, 3]'));
    expect(errorOf(() => lora.forward(f([2, 3]), f([4, 3]), i([2, 3]), f([4, 2]), { scale: 1 }))).toEqual(refuse('float32', 'A', '[2, 3]'));
    expect(errorOf(() => lora.forward(f([2, 3]), i([4, 3]), f([2, 3]), f([4, 2]), { scale: 1 }))).toEqual(
      refuse('float32 or bfloat16', 'W', '[4, 3]'),
    );
    expect(errorOf(() => lora.merge(i([4, 3]), f([2, 3]), f([4, 2]), 1))).toEqual(refuse('float32 or bfloat16', 'W', '[4, 3]'));
  });

  it('vera.forward x and lambdaD', () => {
    expect(errorOf(() => vera.forward(i([2, 3]), f([4, 3]), proj, f([2]), f([4])))).toEqual(refuse('float32', 'x', '[2, 3]'));
    expect(errorOf(() => vera.forward(f([2, 3]), f([4, 3]), proj, i([2]), f([4])))).toEqual(refuse('float32', 'lambdaD', '[2]'));
  });

  it('linear.forward x and W', () => {
    expect(errorOf(() => linear.forward(i([2, 3]), f([4, 3])))).toEqual(refuse('float32', 'x', '[2, 3]'));
    expect(errorOf(() => linear.forward(f([2, 3]), i([4, 3])))).toEqual(refuse('float32 or bfloat16', 'W', '[4, 3]'));
  });

  it('layers refuse an int32 weight at construction', () => {
    const layerRefusal = {
      cls: 'TypeError',
      message: 'Expected a float32, bfloat16 or float16 Tensor for options.weight but received Tensor(int32, [4, 3], cpu) (dtype is int32)',
    };
    expect(errorOf(() => new LoraLinear({ weight: i([4, 3]), rank: 2 }))).toEqual(layerRefusal);
    expect(errorOf(() => new VeraLinear({ weight: i([4, 3]), projections: proj }))).toEqual(layerRefusal);
    expect(errorOf(() => new Linear({ weight: i([4, 3]) }))).toEqual(layerRefusal);
  });

  it('AdamW param and grad', () => {
    expect(errorOf(() => new optim.AdamW([{ param: i([3]), grad: f([3]) }]))).toEqual(refuse('float32', 'groups[0].param', '[3]'));
    expect(errorOf(() => new optim.AdamW([{ param: f([3]), grad: i([3]) }]))).toEqual(refuse('float32', 'groups[0].grad', '[3]'));
    const grad = { param: f([3]), grad: f([3]) };
    const opt = new optim.AdamW([grad]);
    grad.grad = i([3]); // a grad swapped in later is checked at step()
    expect(errorOf(() => opt.step())).toEqual(refuse('float32', 'groups[0].grad', '[3]'));
  });
});

describe('property: int32 round trips', () => {
  const extremes = fc.constantFrom(INT32_MIN, INT32_MAX, 0, -1, 1, INT32_MIN + 1, INT32_MAX - 1);
  const values = (n: number) =>
    fc
      .array(fc.oneof(fc.integer({ min: INT32_MIN, max: INT32_MAX }), extremes), { minLength: n, maxLength: n })
      .map((v) => Int32Array.from(v));
  const sized = fc.constantFrom(1, 7, 33, 4097).chain((n) => fc.tuple(fc.constant(n), values(n)));

  it('tensor(numbers, { dtype: int32 }) accepts exactly the integers in int32 range, else names the first other element', () => {
    const number = fc.oneof(
      fc.integer({ min: INT32_MIN, max: INT32_MAX }),
      extremes,
      fc.constantFrom(INT32_MAX + 1, INT32_MIN - 1, 0.5, -0, NaN, Infinity, -Infinity, 2 ** 53),
      fc.double(),
    );
    fc.assert(
      fc.property(fc.array(number, { maxLength: 12 }), (data) => {
        const bad = data.findIndex((v) => !Number.isInteger(v) || v < INT32_MIN || v > INT32_MAX);
        if (bad < 0) {
          const t = tensor(data, [data.length], { dtype: 'int32' });
          expect(Array.from(t.toInt32Array())).toEqual(data.map((v) => v + 0)); // -0 stores as 0
          t.dispose();
        } else {
          const e = errorOf(() => tensor(data, [data.length], { dtype: 'int32' }));
          expect(e.cls).toBe('RangeError');
          expect(e.message).toBe(`Expected an integer in [-2147483648, 2147483647] for data[${bad}] but received ${String(data[bad])}`);
        }
      }),
      { numRuns: Number(process.env.FC_RUNS ?? 200), seed: Number(process.env.FC_SEED ?? 42) },
    );
  });

  it('tensor -> clone / reshape / to(cpu) -> toInt32Array() is the input, at sizes 1, 7, 33 and 4097', () => {
    fc.assert(
      fc.property(sized, ([n, data]) => {
        const want = data.slice();
        const t = tensor(data, [n]);
        const made: Tensor[] = [t];
        try {
          const c = t.clone(),
            r = t.reshape([1, n, 1]),
            m = t.to('cpu'),
            cr = c.reshape([n]).clone();
          made.push(c, r, m, cr);
          for (const x of [t, c, r, m, cr]) {
            expect(x.dtype).toBe('int32');
            expect(x.toInt32Array()).toEqual(want);
          }
          const copied = tensor(Array.from(want), [n], { dtype: 'int32' });
          made.push(copied);
          expect(copied.toInt32Array()).toEqual(want);
        } finally {
          for (const x of made) x.dispose();
        }
      }),
      { numRuns: Number(process.env.FC_RUNS ?? 100), seed: Number(process.env.FC_SEED ?? 42) },
    );
  });
});
