// Every bad input, with its error class and its full message ("Expected <what> for <name> but
// received <value>"), and a property-based sweep of the argument boundary.
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { lora, memory, setThreads, Tensor, tensor, zeros, type DType } from '../lib/index.js';
import { errorOf, randomF32 } from './helpers/reference.js';

const T = 7,
  I = 45,
  O = 37,
  R = 8;
const x = tensor(randomF32(T * I, 1), [T, I]);
const W = tensor(randomF32(O * I, 2), [O, I]);
const A = tensor(randomF32(R * I, 3), [R, I]);
const B = tensor(randomF32(O * R, 4), [O, R]);
const bias = tensor(randomF32(O, 5), [O]);
const dy = tensor(randomF32(T * O, 6), [T, O]);
const r = (shape: number[], seed = 7) =>
  tensor(
    randomF32(
      shape.reduce((a, b) => a * b, 1),
      seed,
    ),
    shape,
  );

type Case = [label: string, call: () => unknown, cls: 'TypeError' | 'RangeError', message: string];

function check(cases: Case[]) {
  it.each(cases)('%s', (_label, call, cls, message) => {
    expect(errorOf(call)).toEqual({ cls, message });
  });
}

describe('lora.forward: shapes', () => {
  check([
    [
      "A's in differs from W's in",
      () => lora.forward(x, W, r([R, I - 1]), B, { scale: 1 }),
      'RangeError',
      'Expected shape [r, in] = [8, 45] for A but received [8, 44]',
    ],
    [
      "B's out differs from W's out",
      () => lora.forward(x, W, A, r([O - 1, R]), { scale: 1 }),
      'RangeError',
      'Expected shape [out, r] = [37, 8] for B but received [36, 8]',
    ],
    [
      "B's r differs from A's r",
      () => lora.forward(x, W, A, r([O, R - 1]), { scale: 1 }),
      'RangeError',
      'Expected shape [out, r] = [37, 8] for B but received [37, 7]',
    ],
    [
      "x's last dimension is not W's in",
      () => lora.forward(r([T, I + 1]), W, A, B, { scale: 1 }),
      'RangeError',
      "Expected a tensor [..., in] with in = 45 (W's columns) for x but received Tensor(float32, [7, 46], cpu)",
    ],
    [
      'x is a scalar',
      () => lora.forward(r([]), W, A, B, { scale: 1 }),
      'RangeError',
      "Expected a tensor [..., in] with in = 45 (W's columns) for x but received Tensor(float32, [], cpu)",
    ],
    [
      'x has no rows',
      () => lora.forward(zeros([0, I]), W, A, B, { scale: 1 }),
      'RangeError',
      'Expected at least one row for x but received Tensor(float32, [0, 45], cpu)',
    ],
    [
      'W is not 2-D',
      () => lora.forward(x, r([1, O, I]), A, B, { scale: 1 }),
      'RangeError',
      'Expected a 2-D weight [out, in] with out, in >= 1 for W but received Tensor(float32, [1, 37, 45], cpu)',
    ],
    [
      'A is 1-D',
      () => lora.forward(x, W, r([I]), B, { scale: 1 }),
      'RangeError',
      'Expected a 2-D adapter [r, in] with rank r >= 1 for A but received Tensor(float32, [45], cpu)',
    ],
    [
      'rank 0 (A of shape [0, in])',
      () => lora.forward(x, W, zeros([0, I]), zeros([O, 0]), { scale: 1 }),
      'RangeError',
      'Expected a 2-D adapter [r, in] with rank r >= 1 for A but received Tensor(float32, [0, 45], cpu)',
    ],
    [
      'bias has the wrong length',
      () => lora.forward(x, W, A, B, { scale: 1, bias: r([O + 1]) }),
      'RangeError',
      'Expected shape [out] = [37] for options.bias but received [38]',
    ],
    [
      'bias is 2-D',
      () => lora.forward(x, W, A, B, { scale: 1, bias: r([1, O]) }),
      'RangeError',
      'Expected shape [out] = [37] for options.bias but received [1, 37]',
    ],
    [
      'bias is not a tensor',
      () => lora.forward(x, W, A, B, { scale: 1, bias: [1, 2] as never }),
      'TypeError',
      'Expected a Tensor for options.bias but received [1, 2]',
    ],
    [
      'x is not a tensor',
      () => lora.forward(new Float32Array(T * I) as never, W, A, B, { scale: 1 }),
      'TypeError',
      'Expected a Tensor for x but received Float32Array(315)',
    ],
    ['W is null', () => lora.forward(x, null as never, A, B, { scale: 1 }), 'TypeError', 'Expected a Tensor for W but received null'],
  ]);
});

// A zero-sized W (out = 0 or in = 0) must either work (an empty or bias-only result) or be
// refused at the boundary in the house format naming W, not by the native invariant check.
describe('zero-sized weights', () => {
  function wellFormed(call: () => { y?: Tensor } | void, shape: string) {
    let result: { y?: Tensor } | void;
    try {
      result = call();
    } catch (e) {
      expect(e).toBeInstanceOf(RangeError);
      expect((e as Error).message).toMatch(new RegExp(`^Expected .+ for W but received Tensor\\(float32, \\[${shape}\\], cpu\\)`));
      return;
    }
    if (result && result.y) expect(result.y.size).toBe(result.y.shape.reduce((a, b) => a * b, 1));
  }
  it('forward with out = 0 or in = 0', () => {
    wellFormed(() => lora.forward(x, zeros([0, I]), A, zeros([0, R]), { scale: 1 }), '0, 45');
    wellFormed(() => lora.forward(zeros([T, 0]), zeros([O, 0]), zeros([R, 0]), B, { scale: 1 }), '37, 0');
  });
  it('merge with out = 0 or in = 0', () => {
    wellFormed(() => lora.merge(zeros([0, I]), A, zeros([0, R]), 1), '0, 45');
    wellFormed(() => lora.merge(zeros([O, 0]), zeros([R, 0]), B, 1), '37, 0');
  });
});

describe('lora.backward: shapes and saved state', () => {
  const { saved } = lora.forward(x, W, A, B, { scale: 1 });
  const lead = lora.forward(r([2, 3, I]), W, A, B, { scale: 1 }).saved;
  const gone = lora.forward(x, W, A, B, { scale: 1 }).saved;
  gone.dispose();
  check([
    [
      'dy has the wrong last dimension',
      () => lora.backward(r([T, O - 1]), saved),
      'RangeError',
      'Expected shape [x.shape[0], out] = [7, 37] for dy but received [7, 36]',
    ],
    [
      'dy has the wrong number of rows',
      () => lora.backward(r([T + 1, O]), saved),
      'RangeError',
      'Expected shape [x.shape[0], out] = [7, 37] for dy but received [8, 37]',
    ],
    [
      "dy flattens x's leading dimensions",
      () => lora.backward(r([6, O]), lead),
      'RangeError',
      'Expected shape [x.shape[0], x.shape[1], out] = [2, 3, 37] for dy but received [6, 37]',
    ],
    [
      'saved state was disposed',
      () => lora.backward(dy, gone),
      'TypeError',
      'Expected live saved state for saved but received LoraSaved(T=7, in=45, out=37, r=8, disposed) (it was disposed)',
    ],
    [
      'saved is a plain object',
      () => lora.backward(dy, { bytes: 0 } as never),
      'TypeError',
      'Expected the saved state from lora.forward for saved but received an object',
    ],
    ['dy is not a tensor', () => lora.backward(undefined as never, saved), 'TypeError', 'Expected a Tensor for dy but received undefined'],
  ]);

  it('x disposed between forward and backward names the saved input', () => {
    const x2 = r([T, I], 9);
    const s = lora.forward(x2, W, A, B, { scale: 1 }).saved;
    x2.dispose();
    expect(errorOf(() => lora.backward(dy, s))).toEqual({
      cls: 'TypeError',
      message: 'Expected a live Tensor for saved input x but received Tensor(float32, [7, 45], cpu, disposed) (it was disposed)',
    });
  });
});

describe('dtypes and devices', () => {
  const fakes: Tensor[] = [];
  /** A tensor that claims to live on CUDA (the internal constructor; no CUDA memory is involved). */
  function fakeCuda(shape: number[]): Tensor {
    const t = new Tensor(
      randomF32(
        shape.reduce((a, b) => a * b, 1),
        11,
      ),
      shape,
      'float32',
      'cuda',
    );
    fakes.push(t);
    return t;
  }
  afterAll(() => {
    const before = memory().cuda.tensors;
    for (const t of fakes) t.dispose();
    expect(memory().cuda.tensors).toBe(before - fakes.length);
  });

  check([
    [
      'a float16 W',
      () => lora.forward(x, W.astype('float16'), A, B, { scale: 1 }),
      'TypeError',
      'Expected a float32 or bfloat16 Tensor for W but received Tensor(float16, [37, 45], cpu) (dtype is float16)',
    ],
    [
      'a float16 x',
      () => lora.forward(x.astype('float16'), W, A, B, { scale: 1 }),
      'TypeError',
      'Expected a float32 Tensor for x but received Tensor(float16, [7, 45], cpu) (dtype is float16)',
    ],
    [
      'a bfloat16 B in merge',
      () => lora.merge(W, A, B.astype('bfloat16'), 1),
      'TypeError',
      'Expected a float32 Tensor for B but received Tensor(bfloat16, [37, 8], cpu) (dtype is bfloat16)',
    ],
    [
      'a bfloat16 dy',
      () => lora.backward(dy.astype('bfloat16'), lora.forward(x, W, A, B, { scale: 1 }).saved),
      'TypeError',
      'Expected a float32 Tensor for dy but received Tensor(bfloat16, [7, 37], cpu) (dtype is bfloat16)',
    ],
  ]);

  it('a CUDA W with CPU x, A, B is a RangeError naming W', () => {
    expect(errorOf(() => lora.forward(x, fakeCuda([O, I]), A, B, { scale: 1 }))).toEqual({
      cls: 'RangeError',
      message: 'Expected a tensor on cpu (like x) for W but received Tensor(float32, [37, 45], cuda)',
    });
  });

  it('a CUDA bias with CPU tensors is a RangeError naming options.bias', () => {
    expect(errorOf(() => lora.forward(x, W, A, B, { scale: 1, bias: fakeCuda([O]) }))).toEqual({
      cls: 'RangeError',
      message: 'Expected a tensor on cpu (like x) for options.bias but received Tensor(float32, [37], cuda)',
    });
  });

  it('a CUDA x with CPU weights is a RangeError naming W', () => {
    expect(errorOf(() => lora.forward(fakeCuda([T, I]), W, A, B, { scale: 1 }))).toEqual({
      cls: 'RangeError',
      message: 'Expected a tensor on cuda (like x) for W but received Tensor(float32, [37, 45], cpu)',
    });
  });

  it('merge with a CUDA W and CPU A is a RangeError naming A', () => {
    expect(errorOf(() => lora.merge(fakeCuda([O, I]), A, B, 1))).toEqual({
      cls: 'RangeError',
      message: 'Expected a tensor on cuda (like W) for A but received Tensor(float32, [8, 45], cpu)',
    });
  });

  // The API contract (README.md, API): "Mixing devices ... is an error, not a silent copy." backward must check dy's
  // device against the tensors forward saved.
  it('backward with a CUDA dy and CPU saved state is a RangeError naming dy', () => {
    const { saved } = lora.forward(x, W, A, B, { scale: 1 });
    let grads: ReturnType<typeof lora.backward> | undefined;
    let error: unknown;
    try {
      grads = lora.backward(fakeCuda([T, O]), saved);
    } catch (e) {
      error = e;
    }
    if (grads) {
      fakes.push(grads.dx, grads.dB, ...(grads.dA ? [grads.dA] : []));
      expect.fail(`backward accepted a cuda dy with cpu saved state and returned dx on ${grads.dx.device} (computed by the CPU kernel)`);
    }
    expect(error).toBeInstanceOf(RangeError);
    expect((error as Error).message).toMatch(
      /^Expected a tensor on cpu \(like .*\) for dy but received Tensor\(float32, \[7, 37\], cuda\)$/,
    );
  });
});

describe('tensor(), zeros() and Tensor methods', () => {
  check([
    [
      'data length is not the product of the shape (array)',
      () => tensor([1, 2, 3], [2, 2]),
      'RangeError',
      'Expected 4 elements (shape [2, 2]) for data but received [1, 2, 3] with 3 elements',
    ],
    [
      'data length is not the product of the shape (Float32Array)',
      () => tensor(new Float32Array(5).fill(1), [2, 3]),
      'RangeError',
      'Expected 6 elements (shape [2, 3]) for data but received Float32Array(5) with 5 elements',
    ],
    [
      'data length is not the product of the shape (bfloat16 bits)',
      () => tensor(new Uint16Array(7), [2, 3], { dtype: 'bfloat16' }),
      'RangeError',
      'Expected 6 elements (shape [2, 3]) for data but received Uint16Array(7) with 7 elements',
    ],
    [
      'a Float64Array',
      () => tensor(new Float64Array(6) as never, [2, 3]),
      'TypeError',
      'Expected a Float32Array or an array of numbers for data but received Float64Array(6)',
    ],
    [
      'an Int16Array',
      () => tensor(new Int16Array(6) as never, [2, 3]),
      'TypeError',
      'Expected a Float32Array or an array of numbers for data but received Int16Array(6)',
    ],
    [
      'an Int32Array for float32',
      () => tensor(new Int32Array(6), [2, 3], { dtype: 'float32' }),
      'TypeError',
      'Expected a Float32Array or an array of numbers for data but received Int32Array(6)',
    ],
    [
      'a Uint16Array for float32',
      () => tensor(new Uint16Array(6), [2, 3]),
      'TypeError',
      'Expected a Float32Array or an array of numbers for data but received Uint16Array(6)',
    ],
    [
      'a Float64Array for float16',
      () => tensor(new Float64Array(6) as never, [6], { dtype: 'float16' }),
      'TypeError',
      'Expected a Float32Array, a Uint16Array of float16 bits or an array of numbers for data but received Float64Array(6)',
    ],
    [
      'a string as data',
      () => tensor('abc' as never, [3]),
      'TypeError',
      'Expected a Float32Array or an array of numbers for data but received "abc"',
    ],
    ['a non-number in the data array', () => tensor([1, 'a'] as never, [2]), 'TypeError', 'Expected a number for data[1] but received "a"'],
    // forEach skips holes, so a sparse array must not slip through as NaN
    // eslint-disable-next-line no-sparse-arrays
    ['a hole in the data array', () => tensor([1, , 3] as never, [3]), 'TypeError', 'Expected a number for data[1] but received undefined'],
    [
      'a fractional shape entry',
      () => tensor([1, 2], [1.5] as never),
      'RangeError',
      'Expected a non-negative integer for shape[0] but received 1.5',
    ],
    ['a negative shape entry', () => tensor([1, 2], [2, -1]), 'RangeError', 'Expected a non-negative integer for shape[1] but received -1'],
    ['a NaN shape entry', () => tensor([1, 2], [NaN]), 'RangeError', 'Expected a non-negative integer for shape[0] but received NaN'],
    [
      'a shape that is not an array',
      () => tensor([1, 2], 2 as never),
      'TypeError',
      'Expected an array of non-negative integers for shape but received 2',
    ],
    [
      'a bad dtype string',
      () => tensor([1, 2], [2], { dtype: 'int8' as never }),
      'RangeError',
      `Expected 'float32', 'bfloat16', 'float16' or 'int32' for options.dtype but received "int8"`,
    ],
    [
      'a bad device string',
      () => tensor([1, 2], [2], { device: 'tpu' as never }),
      'RangeError',
      `Expected 'cpu' or 'cuda' for options.device but received "tpu"`,
    ],
    [
      'options that are not an object',
      () => tensor([1, 2], [2], 5 as never),
      'TypeError',
      'Expected an options object for options but received 5',
    ],
    ['zeros with a negative dimension', () => zeros([3, -2]), 'RangeError', 'Expected a non-negative integer for shape[1] but received -2'],
    [
      'reshape to another size',
      () => x.reshape([5, 5]),
      'RangeError',
      'Expected a shape of 315 elements for shape but received [5, 5] (25 elements)',
    ],
    [
      'astype to a bad dtype',
      () => x.astype('int' as never),
      'RangeError',
      `Expected 'float32', 'bfloat16', 'float16' or 'int32' for dtype but received "int"`,
    ],
    ['to a bad device', () => x.to('tpu' as never), 'RangeError', `Expected 'cpu' or 'cuda' for device but received "tpu"`],
  ]);

  it("device: 'cuda' on a machine without CUDA is a RangeError saying CUDA is unavailable", () => {
    const e = errorOf(() => tensor([1, 2], [2], { device: 'cuda' }));
    expect(e.cls).toBe('RangeError');
    expect(e.message).toMatch(/^Expected an available device for options\.device but received "cuda" \(CUDA is unavailable: .+\)$/);
    const z = errorOf(() => zeros([2], { device: 'cuda' }));
    expect(z.cls).toBe('RangeError');
    expect(z.message).toContain('CUDA is unavailable');
    const m = errorOf(() => x.to('cuda'));
    expect(m.cls).toBe('RangeError');
    expect(m.message).toMatch(/^Expected an available device for device but received "cuda" \(CUDA is unavailable: .+\)$/);
  });
});

describe('scales, dropout, seeds and flags', () => {
  const f = (opts: unknown) => () => lora.forward(x, W, A, B, opts as never);
  check([
    ['scale NaN', f({ scale: NaN }), 'RangeError', 'Expected a finite number for options.scale but received NaN'],
    ['scale Infinity', f({ scale: Infinity }), 'RangeError', 'Expected a finite number for options.scale but received Infinity'],
    ['scale -Infinity', f({ scale: -Infinity }), 'RangeError', 'Expected a finite number for options.scale but received -Infinity'],
    ['scale a string', f({ scale: '1' }), 'TypeError', 'Expected a finite number for options.scale but received "1"'],
    ['scale missing', f({}), 'TypeError', 'Expected a finite number for options.scale but received undefined'],
    ['no options at all', f(undefined), 'TypeError', 'Expected a finite number for options.scale but received undefined'],
    ['options a number', f(2), 'TypeError', 'Expected an options object for options but received 2'],
    [
      'dropout p = 1',
      f({ scale: 1, dropout: { p: 1, seed: 1 } }),
      'RangeError',
      'Expected a number in [0, 1) for options.dropout.p but received 1',
    ],
    [
      'dropout p = -0.1',
      f({ scale: 1, dropout: { p: -0.1, seed: 1 } }),
      'RangeError',
      'Expected a number in [0, 1) for options.dropout.p but received -0.1',
    ],
    [
      'dropout p = NaN',
      f({ scale: 1, dropout: { p: NaN, seed: 1 } }),
      'RangeError',
      'Expected a number in [0, 1) for options.dropout.p but received NaN',
    ],
    [
      'dropout p a string',
      f({ scale: 1, dropout: { p: '0.1', seed: 1 } }),
      'TypeError',
      'Expected a number in [0, 1) for options.dropout.p but received "0.1"',
    ],
    ['dropout a number', f({ scale: 1, dropout: 0.1 }), 'TypeError', 'Expected an object { p, seed } for options.dropout but received 0.1'],
    [
      'seed negative',
      f({ scale: 1, dropout: { p: 0.1, seed: -1 } }),
      'RangeError',
      'Expected a non-negative safe integer for options.dropout.seed but received -1',
    ],
    [
      'seed fractional',
      f({ scale: 1, dropout: { p: 0.1, seed: 1.5 } }),
      'RangeError',
      'Expected a non-negative safe integer for options.dropout.seed but received 1.5',
    ],
    [
      'seed beyond 2^53',
      f({ scale: 1, dropout: { p: 0.1, seed: 2 ** 60 } }),
      'RangeError',
      'Expected a non-negative safe integer for options.dropout.seed but received 1152921504606847000',
    ],
    [
      'seed a negative bigint',
      f({ scale: 1, dropout: { p: 0.1, seed: -1n } }),
      'RangeError',
      'Expected an integer in [0, 2^64) for options.dropout.seed but received -1n',
    ],
    [
      'seed 2^64',
      f({ scale: 1, dropout: { p: 0.1, seed: 1n << 64n } }),
      'RangeError',
      'Expected an integer in [0, 2^64) for options.dropout.seed but received 18446744073709551616n',
    ],
    [
      'seed a string',
      f({ scale: 1, dropout: { p: 0.1, seed: '1' } }),
      'TypeError',
      'Expected a non-negative integer or bigint for options.dropout.seed but received "1"',
    ],
    ['frozenA a string', f({ scale: 1, frozenA: 'yes' }), 'TypeError', 'Expected a boolean for options.frozenA but received "yes"'],
    [
      'merge scale a string',
      () => lora.merge(W.clone(), A, B, 'x' as never),
      'TypeError',
      'Expected a finite number for scale but received "x"',
    ],
    ['merge scale NaN', () => lora.merge(W.clone(), A, B, NaN), 'RangeError', 'Expected a finite number for scale but received NaN'],
    [
      'unmerge scale Infinity',
      () => lora.unmerge(W.clone(), A, B, Infinity),
      'RangeError',
      'Expected a finite number for scale but received Infinity',
    ],
    [
      'merge options a number',
      () => lora.merge(W.clone(), A, B, 1, 5 as never),
      'TypeError',
      'Expected an options object for options but received 5',
    ],
    [
      'merge safe not a boolean',
      () => lora.merge(W.clone(), A, B, 1, { safe: 1 as never }),
      'TypeError',
      'Expected a boolean for options.safe but received 1',
    ],
    [
      'merge with rank 0',
      () => lora.merge(W.clone(), zeros([0, I]), zeros([O, 0]), 1),
      'RangeError',
      'Expected a 2-D adapter [r, in] with rank r >= 1 for A but received Tensor(float32, [0, 45], cpu)',
    ],
    [
      'merge with mismatched B',
      () => lora.merge(W.clone(), A, r([O, R + 1]), 1),
      'RangeError',
      'Expected shape [out, r] = [37, 8] for B but received [37, 9]',
    ],
    ['setThreads(-1)', () => setThreads(-1), 'RangeError', 'Expected an integer in [0, 1024] for n but received -1'],
    ['setThreads(1.5)', () => setThreads(1.5), 'RangeError', 'Expected an integer in [0, 1024] for n but received 1.5'],
    ['setThreads("2")', () => setThreads('2' as never), 'TypeError', 'Expected a non-negative integer for n but received "2"'],
    [
      'lora.init with in = 0',
      () => lora.init({ inFeatures: 0, outFeatures: 1, rank: 1 }),
      'RangeError',
      'Expected a positive integer for options.inFeatures but received 0',
    ],
    [
      'lora.init with a bad method',
      () => lora.init({ inFeatures: 3, outFeatures: 1, rank: 1, method: 'xavier' as never }),
      'TypeError',
      `Expected 'kaiming' or 'gaussian' for options.method but received "xavier"`,
    ],
  ]);
});

describe('disposed tensors as arguments', () => {
  const dead = r([2, 3], 20);
  dead.dispose();
  const msg = (name: string) => `Expected a live Tensor for ${name} but received Tensor(float32, [2, 3], cpu, disposed) (it was disposed)`;
  const { saved } = lora.forward(x, W, A, B, { scale: 1 });
  check([
    ['x', () => lora.forward(dead, W, A, B, { scale: 1 }), 'TypeError', msg('x')],
    ['W', () => lora.forward(x, dead, A, B, { scale: 1 }), 'TypeError', msg('W')],
    ['A', () => lora.forward(x, W, dead, B, { scale: 1 }), 'TypeError', msg('A')],
    ['B', () => lora.forward(x, W, A, dead, { scale: 1 }), 'TypeError', msg('B')],
    ['bias', () => lora.forward(x, W, A, B, { scale: 1, bias: dead }), 'TypeError', msg('options.bias')],
    ['dy', () => lora.backward(dead, saved), 'TypeError', msg('dy')],
    ['merge W', () => lora.merge(dead, A, B, 1), 'TypeError', msg('W')],
    ['merge B', () => lora.merge(W.clone(), A, dead, 1), 'TypeError', msg('B')],
    ['unmerge A', () => lora.unmerge(W.clone(), dead, B, 1), 'TypeError', msg('A')],
  ]);
});

// The boundary under arbitrary values: every call either succeeds or throws a TypeError or a
// RangeError whose message starts with "Expected " — never another class, never a crash.
// FC_RUNS=5000 FC_SEED=n widen the sweep; the defaults keep it fast and reproducible.
describe('property: arbitrary arguments', () => {
  function outcome(call: () => unknown): void {
    let result: unknown;
    try {
      result = call();
    } catch (e) {
      if (!(e instanceof TypeError || e instanceof RangeError))
        throw new Error(`threw ${String(e)} (${(e as Error)?.constructor?.name})`, { cause: e });
      if (!e.message.startsWith('Expected '))
        throw new Error(`${e.constructor.name} message does not start with "Expected ": ${e.message}`, { cause: e });
      return;
    }
    if (result instanceof Tensor) result.dispose();
    const fwd = result as { y?: Tensor; saved?: { dispose(): void } } | undefined;
    fwd?.y?.dispose?.();
    fwd?.saved?.dispose?.();
  }

  const anything = fc.anything({ withBigInt: true, withTypedArray: true, withNullPrototype: true, withSparseArray: true, maxDepth: 2 });
  const dtype = fc.oneof(fc.constantFrom<DType>('float32', 'bfloat16', 'float16'), anything);
  const device = fc.oneof(fc.constant('cpu'), fc.constant('cuda'), anything);

  it('tensor(data, shape, options)', () => {
    const shape = fc.oneof(fc.array(fc.oneof(fc.integer({ min: -1, max: 4 }), fc.double()), { maxLength: 3 }), anything);
    const data = fc.oneof(
      fc.array(fc.oneof(fc.double(), anything), { maxLength: 12 }),
      fc.float32Array({ maxLength: 12 }),
      fc.array(fc.integer({ min: 0, max: 0xffff }), { maxLength: 12 }).map((v) => Uint16Array.from(v)),
      anything,
    );
    const options = fc.oneof(fc.record({ dtype, device }, { requiredKeys: [] }), anything);
    // half the draws are consistent data and shape, so successes are exercised too
    const consistent = fc
      .integer({ min: 0, max: 12 })
      .chain((n) =>
        fc.tuple(
          fc.oneof(fc.array(fc.double(), { minLength: n, maxLength: n }), fc.float32Array({ minLength: n, maxLength: n })),
          fc.constantFrom([n], [1, n], [n, 1]),
        ),
      );
    let successes = 0;
    fc.assert(
      fc.property(fc.oneof(consistent, fc.tuple(data, shape)), options, ([d, s], o) => {
        outcome(() => {
          const t = tensor(d as never, s as never, o as never);
          // a success must be a consistent tensor
          expect(t.size).toBe((s as number[]).reduce((a, b) => a * b, 1));
          expect(t.toFloat32Array().length).toBe(t.size);
          successes++;
          return t;
        });
      }),
      { numRuns: Number(process.env.FC_RUNS ?? 200), seed: Number(process.env.FC_SEED ?? 42) },
    );
    expect(successes).toBeGreaterThan(0);
  });

  it("lora.forward's options", () => {
    const opts = fc.oneof(
      anything,
      fc.record(
        {
          scale: fc.oneof(fc.double(), fc.float(), anything), // fc.float(): float32 values, which the ops take
          bias: fc.oneof(fc.constant(bias), fc.constant(B), fc.constant(x), anything),
          dropout: fc.oneof(
            fc.record(
              {
                p: fc.oneof(fc.double({ min: -0.5, max: 1.5 }), anything),
                seed: fc.oneof(fc.bigInt(), fc.integer(), fc.double(), anything),
              },
              { requiredKeys: [] },
            ),
            anything,
          ),
          frozenA: fc.oneof(fc.boolean(), anything),
        },
        { requiredKeys: [] },
      ),
    );
    let successes = 0;
    fc.assert(
      fc.property(opts, (o) => {
        outcome(() => {
          const res = lora.forward(x, W, A, B, o as never);
          successes++;
          return res;
        });
      }),
      { numRuns: Number(process.env.FC_RUNS ?? 200), seed: Number(process.env.FC_SEED ?? 43) },
    );
    expect(successes).toBeGreaterThan(0);
  });

  it("lora.merge's scale and options", () => {
    const target = W.clone();
    let successes = 0;
    fc.assert(
      fc.property(
        fc.oneof(fc.double(), anything),
        fc.oneof(fc.record({ safe: fc.oneof(fc.boolean(), anything) }, { requiredKeys: [] }), anything),
        (scale, o) => {
          outcome(() => {
            lora.merge(target, A, B, scale as never, o as never);
            successes++;
          });
        },
      ),
      { numRuns: Number(process.env.FC_RUNS ?? 200), seed: Number(process.env.FC_SEED ?? 44) },
    );
    expect(successes).toBeGreaterThan(0);
  });
});
