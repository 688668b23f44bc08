// Delta-LoRA (README.md, Delta-LoRA): W ← W + λ·s·(B₁A₁ − B₀A₀) in one fused pass, against float64
// arithmetic, on every CPU kernel path, for float32 and bfloat16 W; the async form; the
// paper's defaults and the dropout rule; every error message.
import { afterAll, describe, expect, expectTypeOf, it } from 'vitest';
import { deltaLora, lora, setThreads, Tensor, tensor, type DeltaLoraAdapter, type DeltaLoraUpdateOptions } from '../lib/index.js';
import { native } from '../lib/native.js';
import { bf16Value, errorOf, matmulNN, maxAbs, randomF32, sameBits } from './helpers/reference.js';
import { supportedIsas } from './helpers/isa.js';

const supported = supportedIsas();

afterAll(() => {
  native()._setIsa('');
  setThreads(0);
});

/** W + λ·s·(B1 A1 − B0 A0) in float64. */
function deltaRef(
  W: ArrayLike<number>,
  A0: Float32Array,
  B0: Float32Array,
  A1: Float32Array,
  B1: Float32Array,
  lambda: number,
  scale: number,
  O: number,
  I: number,
  R: number,
): Float64Array {
  const after = matmulNN(B1, A1, O, I, R);
  const before = matmulNN(B0, A0, O, I, R);
  const ls = lambda * scale;
  return Float64Array.from(W, (w, i) => w + ls * (after[i] - before[i]));
}

/** max|got − ref| / max|W| (the brief's measure: relative to the weight's scale). */
function errRelW(got: ArrayLike<number>, ref: ArrayLike<number>, W: ArrayLike<number>): number {
  let e = 0;
  for (let i = 0; i < ref.length; i++) {
    const d = Math.abs(got[i] - ref[i]);
    if (Number.isNaN(d)) return Infinity;
    e = Math.max(e, d);
  }
  return e / maxAbs(W);
}

/** `values` placed inside a larger buffer between NaN guards, so writes outside it show. */
function guarded(values: Float32Array, pad = 11): { view: Float32Array; big: Float32Array } {
  const big = new Float32Array(values.length + 2 * pad).fill(NaN);
  big.set(values, pad);
  return { view: big.subarray(pad, pad + values.length), big };
}

function guardsIntact(big: Float32Array, n: number, pad = 11): boolean {
  for (let i = 0; i < pad; i++) if (!Number.isNaN(big[i]) || !Number.isNaN(big[pad + n + i])) return false;
  return true;
}

interface Problem {
  O: number;
  I: number;
  R: number;
  Wv: Float32Array;
  A0: Float32Array;
  B0: Float32Array;
  A1: Float32Array;
  B1: Float32Array;
}

/** Fresh random W and adapters; after = before + an optimizer-sized step, or independent. */
function problem(O: number, I: number, R: number, seed: number, independent = true): Problem {
  const A0 = randomF32(R * I, seed + 1, 1 / Math.sqrt(I));
  const B0 = randomF32(O * R, seed + 2, 0.5);
  const stepA = randomF32(R * I, seed + 3, 0.05 / Math.sqrt(I));
  const stepB = randomF32(O * R, seed + 4, 0.05);
  return {
    O,
    I,
    R,
    Wv: randomF32(O * I, seed, 1),
    A0,
    B0,
    A1: independent ? randomF32(R * I, seed + 5, 1 / Math.sqrt(I)) : A0.map((v, i) => v + stepA[i]),
    B1: independent ? randomF32(O * R, seed + 6, 0.5) : B0.map((v, i) => v + stepB[i]),
  };
}

function adapters(p: Problem) {
  return {
    before: { A: tensor(p.A0, [p.R, p.I]), B: tensor(p.B0, [p.O, p.R]) },
    after: { A: tensor(p.A1, [p.R, p.I]), B: tensor(p.B1, [p.O, p.R]) },
  };
}

const shapes: Array<[number, number, number, boolean]> = [
  [37, 45, 1, true],
  [97, 130, 8, true],
  [33, 257, 64, true],
  [130, 7, 8, false],
  [1, 33, 64, false],
  [45, 1, 1, true],
  [200, 301, 16, false],
];

describe.each(supported)('deltaLora.update on the %s path', (isa) => {
  it.each(shapes)('out=%i in=%i r=%i independent=%s: float32 W equals the float64 update', (O, I, R, independent) => {
    expect(native()._setIsa(isa)).toBe(isa);
    const p = problem(O, I, R, O * 31 + I + R, independent);
    const lambda = 2,
      scale = 2 / R;
    const { view, big } = guarded(p.Wv);
    const W = tensor(view, [O, I]);
    const { before, after } = adapters(p);
    const copies = [p.A0, p.B0, p.A1, p.B1].map((v) => v.slice());
    const ref = deltaRef(p.Wv, p.A0, p.B0, p.A1, p.B1, lambda, scale, O, I, R);
    // the update really moves W (a no-op could not pass)
    expect(errRelW(p.Wv, ref, p.Wv)).toBeGreaterThan(1e-4);

    deltaLora.update(W, before, after, { lambda, scale });
    expect(errRelW(view, ref, p.Wv)).toBeLessThan(1e-6);
    expect(guardsIntact(big, O * I)).toBe(true);
    // A and B, before and after, are read, never written
    [p.A0, p.B0, p.A1, p.B1].forEach((v, i) => expect(sameBits(v, copies[i])).toBe(true));
  });

  it.each([
    [37, 45, 1],
    [97, 130, 8],
    [33, 257, 64],
  ] as const)('out=%i in=%i r=%i: bfloat16 W is the nearest bfloat16 of the exact update', (O, I, R) => {
    expect(native()._setIsa(isa)).toBe(isa);
    const p = problem(O, I, R, 900 + O + R, true);
    const Wexact = p.Wv.map(bf16Value); // values bfloat16 holds exactly
    const W = tensor(Wexact, [O, I]).astype('bfloat16');
    const { before, after } = adapters(p);
    const scale = 2 / R;
    deltaLora.update(W, before, after, { lambda: 2, scale });
    expect(W.dtype).toBe('bfloat16');
    const got = W.toFloat32Array();
    const exact = deltaRef(Wexact, p.A0, p.B0, p.A1, p.B1, 2, scale, O, I, R);
    // every element the bfloat16 nearest to the exact result, give or take one step where the
    // float32 intermediate rounds the other way (double rounding), in at most 1% of them
    let off = 0;
    let moved = 0;
    for (let i = 0; i < got.length; i++) {
      const nearest = bf16Value(exact[i]);
      if (got[i] !== Wexact[i]) moved++;
      if (got[i] !== nearest) {
        off++;
        expect(Math.abs(got[i] - nearest), `element ${i}`).toBeLessThanOrEqual(Math.abs(nearest) * 2 ** -7);
      }
    }
    expect(off).toBeLessThanOrEqual(Math.ceil(got.length * 0.01));
    expect(moved).toBeGreaterThan(got.length / 4);
  });
});

describe('deltaLora.update: semantics', () => {
  it('lambda defaults to 2 (DEFAULTS.lambda), bit for bit', () => {
    const p = problem(97, 130, 8, 41);
    const { before, after } = adapters(p);
    const W1 = tensor(p.Wv.slice(), [97, 130]);
    const W2 = tensor(p.Wv.slice(), [97, 130]);
    deltaLora.update(W1, before, after, { scale: 0.5 });
    deltaLora.update(W2, before, after, { lambda: 2, scale: 0.5 });
    expect(sameBits(W1.toFloat32Array(), W2.toFloat32Array())).toBe(true);
  });

  it('equals merging the new adapter at λs and unmerging the old one (up to rounding)', () => {
    const p = problem(97, 130, 8, 42, false);
    const { before, after } = adapters(p);
    const fused = tensor(p.Wv.slice(), [97, 130]);
    const twoPasses = tensor(p.Wv.slice(), [97, 130]);
    deltaLora.update(fused, before, after, { lambda: 3, scale: 0.25 });
    lora.merge(twoPasses, after.A, after.B, 0.75);
    lora.unmerge(twoPasses, before.A, before.B, 0.75);
    expect(errRelW(fused.toFloat32Array(), twoPasses.toFloat32Array(), p.Wv)).toBeLessThan(1e-6);
  });

  it('identical before and after move W by rounding at most; lambda 0 leaves it bit for bit', () => {
    const p = problem(33, 45, 8, 43);
    const { before, after } = adapters(p);
    const W = tensor(p.Wv.slice(), [33, 45]);
    // the two terms cancel inside one float32 accumulation: what is left is rounding noise
    deltaLora.update(W, before, before, { scale: 1.5 });
    expect(errRelW(W.toFloat32Array(), p.Wv, p.Wv)).toBeLessThan(1e-6);
    const W0 = W.toFloat32Array();
    deltaLora.update(W, before, after, { lambda: 0, scale: 1.5 });
    expect(sameBits(W.toFloat32Array(), W0)).toBe(true);
  });

  it('gives the same bits on 1 thread and on the default pool', () => {
    const p = problem(200, 301, 16, 44);
    const { before, after } = adapters(p);
    const one = tensor(p.Wv.slice(), [200, 301]);
    const many = tensor(p.Wv.slice(), [200, 301]);
    const bf1 = tensor(p.Wv, [200, 301]).astype('bfloat16');
    const bfn = bf1.clone();
    setThreads(1);
    deltaLora.update(one, before, after, { scale: 0.125 });
    deltaLora.update(bf1, before, after, { scale: 0.125 });
    setThreads(0);
    deltaLora.update(many, before, after, { scale: 0.125 });
    deltaLora.update(bfn, before, after, { scale: 0.125 });
    expect(sameBits(one.toFloat32Array(), many.toFloat32Array())).toBe(true);
    expect(Array.from(bf1.storage() as Uint16Array)).toEqual(Array.from(bfn.storage() as Uint16Array));
  });

  it('updateAsync equals update bit for bit (float32 and bfloat16 W)', async () => {
    const p = problem(130, 257, 64, 45);
    const { before, after } = adapters(p);
    for (const dtype of ['float32', 'bfloat16'] as const) {
      const Ws = tensor(p.Wv, [130, 257]).astype(dtype);
      const Wa = Ws.clone();
      deltaLora.update(Ws, before, after, { lambda: 2, scale: 0.25 });
      const pending = deltaLora.updateAsync(Wa, before, after, { lambda: 2, scale: 0.25 });
      expect(pending).toBeInstanceOf(Promise);
      await pending;
      expect(Array.from(new Uint32Array(Wa.toFloat32Array().buffer))).toEqual(Array.from(new Uint32Array(Ws.toFloat32Array().buffer)));
    }
  });
});

describe('deltaLora: the paper settings and the dropout rule', () => {
  it('DEFAULTS = { lambda: 2, startStep: 500 }, frozen', () => {
    expect(deltaLora.DEFAULTS).toEqual({ lambda: 2, startStep: 500 });
    expect(Object.isFrozen(deltaLora.DEFAULTS)).toBe(true);
  });

  it('checkDropout accepts p = 0, { p: 0 } and undefined', () => {
    expect(() => deltaLora.checkDropout(0)).not.toThrow();
    expect(() => deltaLora.checkDropout({ p: 0, seed: 3 })).not.toThrow();
    expect(() => deltaLora.checkDropout(undefined)).not.toThrow();
  });

  it.each([
    [0.1, 'RangeError', 'Expected dropout p = 0 for Delta-LoRA (the paper removes dropout) but received 0.1'],
    [{ p: 0.25, seed: 1 }, 'RangeError', 'Expected dropout p = 0 for Delta-LoRA (the paper removes dropout) but received 0.25'],
    [NaN, 'RangeError', 'Expected dropout p = 0 for Delta-LoRA (the paper removes dropout) but received NaN'],
    ['0', 'TypeError', 'Expected dropout p = 0 for Delta-LoRA (the paper removes dropout) but received "0"'],
  ] as const)('checkDropout(%o) throws', (p, cls, message) => {
    expect(errorOf(() => deltaLora.checkDropout(p))).toEqual({ cls, message });
  });
});

describe('deltaLora.update: errors (W untouched)', () => {
  const O = 37,
    I = 45,
    R = 8;
  const p = problem(O, I, R, 77);
  const W = tensor(p.Wv, [O, I]);
  const { before, after } = adapters(p);
  const r = (shape: number[], seed = 5) =>
    tensor(
      randomF32(
        shape.reduce((a, b) => a * b, 1),
        seed,
      ),
      shape,
    );
  const gone = r([R, I]);
  gone.dispose();
  const goneW = r([O, I]);
  goneW.dispose();
  const fake = new Tensor(randomF32(O * I, 9), [O, I], 'float32', 'cuda');
  afterAll(() => fake.dispose());
  const snapshot = p.Wv.slice();

  type Case = [label: string, call: () => unknown, cls: string, message: string];
  const cases: Case[] = [
    [
      "before.A's in differs from W's",
      () => deltaLora.update(W, { A: r([R, I - 1]), B: before.B }, after, { scale: 1 }),
      'RangeError',
      'Expected shape [r, in] = [8, 45] for before.A but received [8, 44]',
    ],
    [
      "before's rank differs from after's",
      () => deltaLora.update(W, { A: r([4, I]), B: r([O, 4]) }, after, { scale: 1 }),
      'RangeError',
      'Expected shape [r, in] = [8, 45] for before.A but received [4, 45]',
    ],
    [
      "before.B's r differs",
      () => deltaLora.update(W, { A: before.A, B: r([O, R - 1]) }, after, { scale: 1 }),
      'RangeError',
      'Expected shape [out, r] = [37, 8] for before.B but received [37, 7]',
    ],
    [
      "after.B's out differs from W's",
      () => deltaLora.update(W, before, { A: after.A, B: r([O + 1, R]) }, { scale: 1 }),
      'RangeError',
      'Expected shape [out, r] = [37, 8] for after.B but received [38, 8]',
    ],
    [
      "after.A's in differs from W's",
      () => deltaLora.update(W, before, { A: r([R, I + 2]), B: after.B }, { scale: 1 }),
      'RangeError',
      'Expected shape [r, in] = [8, 45] for after.A but received [8, 47]',
    ],
    [
      'after.A is 1-D',
      () => deltaLora.update(W, before, { A: r([I]), B: after.B }, { scale: 1 }),
      'RangeError',
      'Expected a 2-D adapter [r, in] with rank r >= 1 for after.A but received Tensor(float32, [45], cpu)',
    ],
    [
      'W is 3-D',
      () => deltaLora.update(r([1, O, I]), before, after, { scale: 1 }),
      'RangeError',
      'Expected a 2-D weight [out, in] with out, in >= 1 for W but received Tensor(float32, [1, 37, 45], cpu)',
    ],
    [
      'W is float16',
      () => deltaLora.update(W.astype('float16'), before, after, { scale: 1 }),
      'TypeError',
      'Expected a float32 or bfloat16 Tensor for W but received Tensor(float16, [37, 45], cpu) (dtype is float16)',
    ],
    [
      'before.A is bfloat16',
      () => deltaLora.update(W, { A: before.A.astype('bfloat16'), B: before.B }, after, { scale: 1 }),
      'TypeError',
      'Expected a float32 Tensor for before.A but received Tensor(bfloat16, [8, 45], cpu) (dtype is bfloat16)',
    ],
    [
      'before is null',
      () => deltaLora.update(W, null as never, after, { scale: 1 }),
      'TypeError',
      'Expected an object { A, B } for before but received null',
    ],
    [
      'after has no B',
      () => deltaLora.update(W, before, { A: after.A } as never, { scale: 1 }),
      'TypeError',
      'Expected a Tensor for after.B but received undefined',
    ],
    [
      'W is a Float32Array',
      () => deltaLora.update(p.Wv as never, before, after, { scale: 1 }),
      'TypeError',
      'Expected a Tensor for W but received Float32Array(1665)',
    ],
    [
      'lambda is NaN',
      () => deltaLora.update(W, before, after, { lambda: NaN, scale: 1 }),
      'RangeError',
      'Expected a finite number for options.lambda but received NaN',
    ],
    [
      'lambda is a string',
      () => deltaLora.update(W, before, after, { lambda: '2' as never, scale: 1 }),
      'TypeError',
      'Expected a finite number for options.lambda but received "2"',
    ],
    [
      'scale is missing',
      () => deltaLora.update(W, before, after, {} as never),
      'TypeError',
      'Expected a finite number for options.scale but received undefined',
    ],
    [
      'options are missing',
      () => deltaLora.update(W, before, after, undefined as never),
      'TypeError',
      'Expected a finite number for options.scale but received undefined',
    ],
    [
      'scale is Infinity',
      () => deltaLora.update(W, before, after, { scale: Infinity }),
      'RangeError',
      'Expected a finite number for options.scale but received Infinity',
    ],
    [
      'options is a number',
      () => deltaLora.update(W, before, after, 2 as never),
      'TypeError',
      'Expected an options object for options but received 2',
    ],
    [
      'after.A was disposed',
      () => deltaLora.update(W, before, { A: gone, B: after.B }, { scale: 1 }),
      'TypeError',
      'Expected a live Tensor for after.A but received Tensor(float32, [8, 45], cpu, disposed) (it was disposed)',
    ],
    [
      'W was disposed',
      () => deltaLora.update(goneW, before, after, { scale: 1 }),
      'TypeError',
      'Expected a live Tensor for W but received Tensor(float32, [37, 45], cpu, disposed) (it was disposed)',
    ],
    [
      'W on CUDA, adapters on the CPU',
      () => deltaLora.update(fake, before, after, { scale: 1 }),
      'RangeError',
      'Expected a tensor on cuda (like W) for before.A but received Tensor(float32, [8, 45], cpu)',
    ],
  ];

  it.each(cases)('%s', (_label, call, cls, message) => {
    expect(errorOf(call)).toEqual({ cls, message });
    expect(sameBits(p.Wv, snapshot)).toBe(true);
  });

  it('updateAsync rejects with the same class and message', async () => {
    let error: unknown;
    try {
      await deltaLora.updateAsync(W, { A: r([R, I - 1]), B: before.B }, after, { scale: 1 });
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(RangeError);
    expect((error as Error).message).toBe('Expected shape [r, in] = [8, 45] for before.A but received [8, 44]');
    expect(sameBits(p.Wv, snapshot)).toBe(true);
  });
});

describe('deltaLora: types', () => {
  it('the public signatures', () => {
    expectTypeOf(deltaLora.update).returns.toEqualTypeOf<void>();
    expectTypeOf(deltaLora.updateAsync).returns.toEqualTypeOf<Promise<void>>();
    expectTypeOf(deltaLora.update).parameter(1).toEqualTypeOf<DeltaLoraAdapter>();
    expectTypeOf(deltaLora.update).parameter(3).toEqualTypeOf<DeltaLoraUpdateOptions>();
    expectTypeOf<DeltaLoraAdapter['A']>().toEqualTypeOf<Tensor>();
    expectTypeOf<DeltaLoraUpdateOptions['scale']>().toEqualTypeOf<number>();
    expectTypeOf(deltaLora.DEFAULTS).toEqualTypeOf<Readonly<{ lambda: number; startStep: number }>>();
  });
});
