// VeRA (README.md, VeRA): shared seeded projections, forward/backward against a float64
// reference written here from the formulas in README.md, finite differences, slicing of the shared
// projections, merge/unmerge (float32 and bfloat16 W), async forms and every error message.
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, expectTypeOf, it } from 'vitest';
import {
  lora,
  setThreads,
  Tensor,
  tensor,
  vera,
  zeros,
  type VeraGrads,
  type VeraProjectionPair,
  type VeraProjections,
} from '../lib/index.js';
import { native } from '../lib/native.js';
import { supportedIsas } from './helpers/isa.js';
import {
  centralDifferenceErrors,
  bf16Value,
  dropoutFactors,
  errorOf,
  f32FromBits,
  maxAbs,
  philoxWord,
  randomF32,
  relErr,
  sameBits,
} from './helpers/reference.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

// ---- float64 reference (README.md, VeRA) ---------------------------------------------

type Num = ArrayLike<number>;

interface Layer {
  T: number;
  I: number;
  O: number;
  R: number;
  /** Columns of the shared A (its row stride); the layer uses A[:, :I] and B[:O, :]. */
  maxIn: number;
}

/** u = D(x) Aᵀ; y = x Wᵀ + b + λb ⊙ ((u ⊙ λd) Bᵀ), A and B read as slices of the shared pair. */
function veraForwardRef(L: Layer, x: Num, W: Num, bias: Num | null, Av: Num, Bv: Num, ld: Num, lb: Num, mask: Num | null) {
  const { T, I, O, R, maxIn } = L;
  const u = new Float64Array(T * R);
  for (let t = 0; t < T; t++)
    for (let j = 0; j < R; j++) {
      let s = 0;
      for (let i = 0; i < I; i++) s += x[t * I + i] * (mask ? mask[t * I + i] : 1) * Av[j * maxIn + i];
      u[t * R + j] = s;
    }
  const y = new Float64Array(T * O);
  for (let t = 0; t < T; t++)
    for (let o = 0; o < O; o++) {
      let base = bias ? bias[o] : 0;
      for (let i = 0; i < I; i++) base += x[t * I + i] * W[o * I + i];
      let ad = 0;
      for (let j = 0; j < R; j++) ad += u[t * R + j] * ld[j] * Bv[o * R + j];
      y[t * O + o] = base + lb[o] * ad;
    }
  return { y, u };
}

/** M = dyᵀ(u ⊙ λd); dλb[o] = Σ_j B[o,j] M[o,j]; h = dy (λb ⊙ B); dλd = Σ_t h ⊙ u; dx = dy W + D((h ⊙ λd) A). */
function veraBackwardRef(L: Layer, dy: Num, x: Num, W: Num, Av: Num, Bv: Num, ld: Num, lb: Num, mask: Num | null) {
  const { T, I, O, R, maxIn } = L;
  const { u } = veraForwardRef(L, x, W, null, Av, Bv, ld, lb, mask);
  const dLb = new Float64Array(O);
  for (let o = 0; o < O; o++)
    for (let j = 0; j < R; j++) {
      let m = 0;
      for (let t = 0; t < T; t++) m += dy[t * O + o] * u[t * R + j] * ld[j];
      dLb[o] += Bv[o * R + j] * m;
    }
  const h = new Float64Array(T * R);
  for (let t = 0; t < T; t++)
    for (let j = 0; j < R; j++) {
      let s = 0;
      for (let o = 0; o < O; o++) s += dy[t * O + o] * lb[o] * Bv[o * R + j];
      h[t * R + j] = s;
    }
  const dLd = new Float64Array(R);
  for (let t = 0; t < T; t++) for (let j = 0; j < R; j++) dLd[j] += h[t * R + j] * u[t * R + j];
  const dx = new Float64Array(T * I);
  for (let t = 0; t < T; t++)
    for (let i = 0; i < I; i++) {
      let base = 0;
      for (let o = 0; o < O; o++) base += dy[t * O + o] * W[o * I + i];
      let ad = 0;
      for (let j = 0; j < R; j++) ad += h[t * R + j] * ld[j] * Av[j * maxIn + i];
      dx[t * I + i] = base + (mask ? mask[t * I + i] : 1) * ad;
    }
  return { dx, dLd, dLb };
}

/** W + sign · (λb ⊙ B)(λd ⊙ A) in float64. */
function veraMergeRef(L: Layer, W: Num, Av: Num, Bv: Num, ld: Num, lb: Num, sign = 1): Float64Array {
  const { I, O, R, maxIn } = L;
  const out = new Float64Array(O * I);
  for (let o = 0; o < O; o++)
    for (let i = 0; i < I; i++) {
      let s = 0;
      for (let j = 0; j < R; j++) s += lb[o] * Bv[o * R + j] * ld[j] * Av[j * maxIn + i];
      out[o * I + i] = W[o * I + i] + sign * s;
    }
  return out;
}

/** The documented projection value of word index `index` of stream `seed`, bound b: fround(-b + 2b·u), u = (word >> 8)·2⁻²⁴, below b. */
function projectionValue(seed: bigint, index: number, fanIn: number): number {
  const hi = Math.fround(Math.sqrt(6 / fanIn));
  const lo = -hi;
  const u = (philoxWord(seed, index) >>> 8) * 2 ** -24;
  const v = Math.fround(lo + (hi - lo) * u);
  if (v < hi) return v;
  const bits = new Uint32Array(new Float32Array([hi]).buffer)[0];
  return f32FromBits(bits - 1); // nextafter(hi, lo) for a positive hi
}

// ---- inputs -------------------------------------------------------------------------------

interface Problem {
  L: Layer;
  proj: vera.VeraProjections;
  Av: Float32Array;
  Bv: Float32Array;
  xv: Float32Array;
  Wv: Float32Array;
  bv: Float32Array | null;
  ldv: Float32Array;
  lbv: Float32Array;
  dyv: Float32Array;
}

/** A layer (O, I) over projections a little larger than it, so every test reads slices. */
function problem(T: number, I: number, O: number, R: number, seed: number, withBias: boolean, pad = [11, 5]): Problem {
  const maxIn = I + pad[0],
    maxOut = O + pad[1];
  const proj = vera.projections({ rank: R, maxIn, maxOut, seed: BigInt(seed) });
  return {
    L: { T, I, O, R, maxIn },
    proj,
    Av: proj.A.toFloat32Array(),
    Bv: proj.B.toFloat32Array(),
    xv: randomF32(T * I, seed),
    Wv: randomF32(O * I, seed + 1, 1 / Math.sqrt(I)),
    bv: withBias ? randomF32(O, seed + 2) : null,
    ldv: randomF32(R, seed + 3),
    lbv: randomF32(O, seed + 4),
    dyv: randomF32(T * O, seed + 5),
  };
}

function tensors(p: Problem) {
  const { T, I, O, R } = p.L;
  return {
    x: tensor(p.xv, [T, I]),
    W: tensor(p.Wv, [O, I]),
    bias: p.bv ? tensor(p.bv, [O]) : undefined,
    lambdaD: tensor(p.ldv, [R]),
    lambdaB: tensor(p.lbv, [O]),
    dy: tensor(p.dyv, [T, O]),
  };
}

function disposeAll(...ts: Array<{ dispose(): void } | undefined>) {
  for (const t of ts) t?.dispose();
}

const grid: Array<[number, number, number, number, boolean, boolean]> = [];
let variant = 0;
for (const T of [1, 7, 33])
  for (const [I, O] of [
    [45, 37],
    [97, 130],
  ])
    for (const R of [1, 8, 64]) {
      // cycle bias / dropout so every T, shape and rank meets each combination at least once
      const v = variant++;
      grid.push([T, I, O, R, v % 2 === 1, Math.floor(v / 2) % 2 === 1]);
    }

describe('vera.forward / vera.backward against the float64 reference', () => {
  it.each(grid)('T=%i in=%i out=%i r=%i bias=%s dropout=%s', (T, I, O, R, withBias, withDropout) => {
    const p = problem(T, I, O, R, T * 1000 + I + R, withBias);
    const drop = withDropout ? { p: 0.25, seed: BigInt(T * 7 + R) } : undefined;
    const mask = drop ? dropoutFactors(drop.seed, drop.p, T * I) : null;
    const { x, W, bias, lambdaD, lambdaB, dy } = tensors(p);
    const copies = [p.xv, p.Wv, p.Av, p.Bv, p.ldv, p.lbv].map((v) => v.slice());

    const { y, saved } = vera.forward(x, W, p.proj, lambdaD, lambdaB, { bias, dropout: drop });
    expect(y.shape).toEqual([T, O]);
    expect(saved.u.shape).toEqual([T, R]);
    expect(saved.bytes).toBe(T * R * 4);
    const ref = veraForwardRef(p.L, p.xv, p.Wv, p.bv, p.Av, p.Bv, p.ldv, p.lbv, mask);
    expect(relErr(y.toFloat32Array(), ref.y)).toBeLessThan(1e-5);
    expect(relErr(saved.u.toFloat32Array(), ref.u)).toBeLessThan(1e-5);

    const g = vera.backward(dy, saved);
    expect(g.dx.shape).toEqual([T, I]);
    expect(g.dLambdaD.shape).toEqual([R]);
    expect(g.dLambdaB.shape).toEqual([O]);
    const gref = veraBackwardRef(p.L, p.dyv, p.xv, p.Wv, p.Av, p.Bv, p.ldv, p.lbv, mask);
    expect(relErr(g.dx.toFloat32Array(), gref.dx)).toBeLessThan(1e-5);
    expect(relErr(g.dLambdaD.toFloat32Array(), gref.dLd)).toBeLessThan(1e-5);
    expect(relErr(g.dLambdaB.toFloat32Array(), gref.dLb)).toBeLessThan(1e-5);

    // the inputs are read, never written
    [p.xv, p.Wv, p.Av, p.Bv, p.ldv, p.lbv].forEach((v, i) => expect(sameBits(v, copies[i])).toBe(true));
    disposeAll(x, W, bias, lambdaD, lambdaB, dy, y, g.dx, g.dLambdaD, g.dLambdaB, saved, p.proj);
  });

  it('saved keeps only u (T·r·4 bytes): x may be disposed before backward', () => {
    const p = problem(33, 97, 130, 8, 4242, true);
    const drop = { p: 0.3, seed: 99n };
    const mask = dropoutFactors(drop.seed, drop.p, 33 * 97);
    const { x, W, bias, lambdaD, lambdaB, dy } = tensors(p);
    const { saved } = vera.forward(x, W, p.proj, lambdaD, lambdaB, { bias, dropout: drop });
    expect(saved.bytes).toBe(33 * 8 * 4);
    expect(Object.values(saved).some((v) => v === x)).toBe(false);
    x.dispose();
    const g = vera.backward(dy, saved);
    const gref = veraBackwardRef(p.L, p.dyv, p.xv, p.Wv, p.Av, p.Bv, p.ldv, p.lbv, mask);
    expect(relErr(g.dx.toFloat32Array(), gref.dx)).toBeLessThan(1e-5);
    expect(relErr(g.dLambdaD.toFloat32Array(), gref.dLd)).toBeLessThan(1e-5);
    expect(relErr(g.dLambdaB.toFloat32Array(), gref.dLb)).toBeLessThan(1e-5);
    expect(saved.describe()).toBe('VeraSaved(T=33, in=97, out=130, r=8)');
  });

  it('keeps leading dimensions: x [2, 3, in] gives y [2, 3, out] and dx [2, 3, in]', () => {
    const p = problem(6, 45, 37, 8, 77, true);
    const x = tensor(p.xv, [2, 3, 45]);
    const { W, bias, lambdaD, lambdaB } = tensors(p);
    const { y, saved } = vera.forward(x, W, p.proj, lambdaD, lambdaB, { bias });
    expect(y.shape).toEqual([2, 3, 37]);
    expect(relErr(y.toFloat32Array(), veraForwardRef(p.L, p.xv, p.Wv, p.bv, p.Av, p.Bv, p.ldv, p.lbv, null).y)).toBeLessThan(1e-5);
    const g = vera.backward(tensor(p.dyv, [2, 3, 37]), saved);
    expect(g.dx.shape).toEqual([2, 3, 45]);
    const gref = veraBackwardRef(p.L, p.dyv, p.xv, p.Wv, p.Av, p.Bv, p.ldv, p.lbv, null);
    expect(relErr(g.dx.toFloat32Array(), gref.dx)).toBeLessThan(1e-5);
  });

  it('λb = 0 (the init) gives the base layer exactly, and its gradients are still right', () => {
    const p = problem(7, 45, 37, 8, 93, true);
    const { x, W, bias, dy } = tensors(p);
    const { lambdaD, lambdaB } = vera.init({ outFeatures: 37, rank: 8 });
    const a = vera.forward(x, W, p.proj, lambdaD, lambdaB, { bias });
    const base = lora.forward(x, W, zeros([8, 45]), zeros([37, 8]), { scale: 1, bias }).y.toFloat32Array();
    expect(sameBits(a.y.toFloat32Array(), base)).toBe(true);
    const g = vera.backward(dy, a.saved);
    const gref = veraBackwardRef(p.L, p.dyv, p.xv, p.Wv, p.Av, p.Bv, lambdaD.toFloat32Array(), new Float32Array(37), null);
    expect(maxAbs(g.dLambdaB.toFloat32Array())).toBeGreaterThan(0);
    expect(g.dLambdaD.toFloat32Array().every((v) => v === 0)).toBe(true); // h = dy (0 ⊙ B) = 0
    expect(relErr(g.dLambdaB.toFloat32Array(), gref.dLb)).toBeLessThan(1e-5);
    expect(relErr(g.dx.toFloat32Array(), gref.dx)).toBeLessThan(1e-5);
  });
});

describe('kernel paths and threads', () => {
  const supported = supportedIsas();
  afterAll(() => {
    native()._setIsa('');
    setThreads(0);
  });

  it.each(supported)('the %s path matches the reference, with and without dropout', (isa) => {
    expect(native()._setIsa(isa)).toBe(isa);
    for (const withDropout of [false, true]) {
      const p = problem(33, 97, 130, 8, 808, true);
      const drop = withDropout ? { p: 0.2, seed: 5n } : undefined;
      const mask = drop ? dropoutFactors(drop.seed, drop.p, 33 * 97) : null;
      const { x, W, bias, lambdaD, lambdaB, dy } = tensors(p);
      const { y, saved } = vera.forward(x, W, p.proj, lambdaD, lambdaB, { bias, dropout: drop });
      expect(relErr(y.toFloat32Array(), veraForwardRef(p.L, p.xv, p.Wv, p.bv, p.Av, p.Bv, p.ldv, p.lbv, mask).y)).toBeLessThan(1e-5);
      const g = vera.backward(dy, saved);
      const gref = veraBackwardRef(p.L, p.dyv, p.xv, p.Wv, p.Av, p.Bv, p.ldv, p.lbv, mask);
      expect(relErr(g.dx.toFloat32Array(), gref.dx)).toBeLessThan(1e-5);
      expect(relErr(g.dLambdaD.toFloat32Array(), gref.dLd)).toBeLessThan(1e-5);
      expect(relErr(g.dLambdaB.toFloat32Array(), gref.dLb)).toBeLessThan(1e-5);
    }
    native()._setIsa('');
  });

  it('results do not depend on the thread count (projections, forward, backward, merge)', () => {
    const run = () => {
      const p = problem(70, 97, 130, 16, 909, true, [300, 200]);
      const { x, W, bias, lambdaD, lambdaB, dy } = tensors(p);
      const { y, saved } = vera.forward(x, W, p.proj, lambdaD, lambdaB, { bias, dropout: { p: 0.1, seed: 3n } });
      const g = vera.backward(dy, saved);
      vera.merge(W, p.proj, lambdaD, lambdaB);
      return [
        p.Av,
        p.Bv,
        y.toFloat32Array(),
        g.dx.toFloat32Array(),
        g.dLambdaD.toFloat32Array(),
        g.dLambdaB.toFloat32Array(),
        W.toFloat32Array(),
      ];
    };
    setThreads(1);
    const one = run();
    setThreads(0);
    const many = run();
    one.forEach((v, i) => expect(sameBits(v, many[i]), `output ${i}`).toBe(true));
  });
});

// L = Σ dy ⊙ y is linear in each of x, λd and λb separately (the dropout mask is fixed by its
// seed), so a central difference with a large step is exact up to float32 rounding.
describe('finite differences', () => {
  function loss(y: Float32Array, dy: Float32Array): number {
    let s = 0;
    for (let i = 0; i < y.length; i++) s += y[i] * dy[i];
    return s;
  }

  it.each([
    [7, 45, 37, 8, true, true],
    [33, 45, 37, 1, false, false],
    [5, 97, 130, 64, false, true],
  ] as const)(
    'T=%i in=%i out=%i r=%i bias=%s dropout=%s: dx, dLambdaD, dLambdaB match central differences',
    (T, I, O, R, withBias, withDropout) => {
      const p = problem(T, I, O, R, 500 + T + R, withBias);
      const drop = withDropout ? { p: 0.25, seed: 2024n } : undefined;
      const { x, W, bias, lambdaD, lambdaB, dy } = tensors(p);
      const opts = { bias, dropout: drop };
      const f = () => {
        const { y, saved } = vera.forward(x, W, p.proj, lambdaD, lambdaB, opts);
        const l = loss(y.toFloat32Array(), p.dyv);
        y.dispose();
        saved.dispose();
        return l;
      };
      const { saved } = vera.forward(x, W, p.proj, lambdaD, lambdaB, opts);
      const g = vera.backward(dy, saved);
      const grads: Array<[string, Float32Array, Float32Array]> = [
        ['x', p.xv, g.dx.toFloat32Array()],
        ['lambdaD', p.ldv, g.dLambdaD.toFloat32Array()],
        ['lambdaB', p.lbv, g.dLambdaB.toFloat32Array()],
      ];
      // the tensors wrap these arrays: a change to them shows through
      expect(centralDifferenceErrors(f, grads)).toEqual([]);
    },
  );
});

describe('shared projections: layers read top-left slices', () => {
  it('two layers of different sizes share one pair; each equals the reference built from copied slices', () => {
    const R = 8,
      maxIn = 130,
      maxOut = 97;
    const proj = vera.projections({ rank: R, maxIn, maxOut, seed: 12345n });
    const Av = proj.A.toFloat32Array(),
      Bv = proj.B.toFloat32Array();
    for (const [T, I, O, seed] of [
      [7, 45, 37, 1],
      [33, 130, 60, 2],
      [5, 97, 97, 3],
    ] as const) {
      const xv = randomF32(T * I, seed),
        Wv = randomF32(O * I, seed + 1, 0.1),
        ldv = randomF32(R, seed + 2),
        lbv = randomF32(O, seed + 3);
      const dyv = randomF32(T * O, seed + 4);
      // contiguous copies of A[:, :I] and B[:O, :]
      const As = new Float32Array(R * I);
      for (let j = 0; j < R; j++) As.set(Av.subarray(j * maxIn, j * maxIn + I), j * I);
      const Bs = Bv.slice(0, O * R);
      const L: Layer = { T, I, O, R, maxIn: I };
      const x = tensor(xv, [T, I]),
        W = tensor(Wv, [O, I]),
        lambdaD = tensor(ldv, [R]),
        lambdaB = tensor(lbv, [O]);
      const { y, saved } = vera.forward(x, W, proj, lambdaD, lambdaB);
      expect(relErr(y.toFloat32Array(), veraForwardRef(L, xv, Wv, null, As, Bs, ldv, lbv, null).y)).toBeLessThan(1e-5);
      // the same layer through LoRA with A' = λd ⊙ A_slice (rows), B' = λb ⊙ B_slice (rows), scale 1
      const Al = As.map((v, k) => v * ldv[Math.floor(k / I)]);
      const Bl = Bs.map((v, k) => v * lbv[Math.floor(k / R)]);
      const viaLora = lora.forward(x, W, tensor(Al, [R, I]), tensor(Bl, [O, R]), { scale: 1 }).y.toFloat32Array();
      expect(relErr(y.toFloat32Array(), viaLora)).toBeLessThan(1e-5);
      const g = vera.backward(tensor(dyv, [T, O]), saved);
      const gref = veraBackwardRef(L, dyv, xv, Wv, As, Bs, ldv, lbv, null);
      expect(relErr(g.dx.toFloat32Array(), gref.dx)).toBeLessThan(1e-5);
      expect(relErr(g.dLambdaD.toFloat32Array(), gref.dLd)).toBeLessThan(1e-5);
      expect(relErr(g.dLambdaB.toFloat32Array(), gref.dLb)).toBeLessThan(1e-5);
      // merge uses the same slices
      const W0 = Wv.slice();
      vera.merge(W, proj, lambdaD, lambdaB);
      expect(relErr(Wv, veraMergeRef(L, W0, As, Bs, ldv, lbv))).toBeLessThan(1e-5);
    }
  });

  it('a layer exactly the size of the projections uses all of them', () => {
    const p = problem(7, 45, 37, 8, 31, false, [0, 0]);
    const { x, W, lambdaD, lambdaB } = tensors(p);
    const { y } = vera.forward(x, W, p.proj, lambdaD, lambdaB);
    expect(relErr(y.toFloat32Array(), veraForwardRef(p.L, p.xv, p.Wv, null, p.Av, p.Bv, p.ldv, p.lbv, null).y)).toBeLessThan(1e-5);
  });
});

describe('vera.projections', () => {
  it('is the documented Philox stream: A element i uses word i, B element i word r·maxIn + i', () => {
    const R = 4,
      maxIn = 33,
      maxOut = 21,
      seed = 0x1234_5678_9abc_def0n;
    const proj = vera.projections({ rank: R, maxIn, maxOut, seed });
    expect(proj.A.shape).toEqual([R, maxIn]);
    expect(proj.B.shape).toEqual([maxOut, R]);
    expect(proj.seed).toBe(seed);
    expect([proj.rank, proj.maxIn, proj.maxOut]).toEqual([R, maxIn, maxOut]);
    const a = proj.A.toFloat32Array(),
      b = proj.B.toFloat32Array();
    const wantA = Float32Array.from({ length: a.length }, (_, i) => projectionValue(seed, i, maxIn));
    const wantB = Float32Array.from({ length: b.length }, (_, i) => projectionValue(seed, R * maxIn + i, R));
    expect(sameBits(a, wantA)).toBe(true);
    expect(sameBits(b, wantB)).toBe(true);
  });

  it('same seed: identical bits across calls; different seeds differ; a number seed equals its bigint', () => {
    const o = { rank: 16, maxIn: 300, maxOut: 200 };
    const p1 = vera.projections({ ...o, seed: 7 });
    const p2 = vera.projections({ ...o, seed: 7n });
    const p3 = vera.projections({ ...o, seed: 8 });
    expect(p1.seed).toBe(7n);
    expect(sameBits(p1.A.toFloat32Array(), p2.A.toFloat32Array())).toBe(true);
    expect(sameBits(p1.B.toFloat32Array(), p2.B.toFloat32Array())).toBe(true);
    expect(sameBits(p1.A.toFloat32Array(), p3.A.toFloat32Array())).toBe(false);
    expect(sameBits(p1.B.toFloat32Array(), p3.B.toFloat32Array())).toBe(false);
    // A omitted seed is drawn at random and recorded, so the pair can be recreated from it
    const p4 = vera.projections(o);
    expect(typeof p4.seed).toBe('bigint');
    const again = vera.projections({ ...o, seed: p4.seed });
    expect(sameBits(again.A.toFloat32Array(), p4.A.toFloat32Array())).toBe(true);
    expect(p1.describe()).toBe('VeraProjections(rank=16, maxIn=300, maxOut=200, seed=7)');
    p1.dispose();
    p1.dispose(); // idempotent
    expect(p1.A.disposed && p1.B.disposed).toBe(true);
  });

  it('same seed: identical bits in another process', () => {
    const o = { rank: 8, maxIn: 513, maxOut: 257, seed: 2n ** 63n + 11n };
    const proj = vera.projections(o);
    const hash = (a: Float32Array, b: Float32Array) =>
      createHash('sha256')
        .update(new Uint8Array(a.buffer, a.byteOffset, a.byteLength))
        .update(new Uint8Array(b.buffer, b.byteOffset, b.byteLength))
        .digest('hex');
    const script = `
      const path = require('node:path');
      const explicit = process.env.LOWRANK_NATIVE;
      const n = explicit ? require(path.resolve(explicit)) : require('node-gyp-build')(${JSON.stringify(root)});
      const A = new Float32Array(${o.rank * o.maxIn}), B = new Float32Array(${o.maxOut * o.rank});
      n.veraProjections({ A: { data: A, dtype: 0 }, B: { data: B, dtype: 0 }, r: ${o.rank}, maxIn: ${o.maxIn}, maxOut: ${o.maxOut}, seed: ${o.seed}n });
      const h = require('node:crypto').createHash('sha256');
      h.update(new Uint8Array(A.buffer)); h.update(new Uint8Array(B.buffer));
      console.log(h.digest('hex'));`;
    const r = spawnSync(process.execPath, ['-e', script], { cwd: root, env: { ...process.env, LOWRANK_THREADS: '1' }, encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout.trim()).toBe(hash(proj.A.toFloat32Array(), proj.B.toFloat32Array()));
  });

  it('kaiming-uniform: within ±√(6/fan_in), mean 0 and variance bound²/3 within sampling error', () => {
    const R = 64,
      maxIn = 2048,
      maxOut = 2048;
    const proj = vera.projections({ rank: R, maxIn, maxOut, seed: 99 });
    for (const [name, v, fanIn] of [
      ['A', proj.A.toFloat32Array(), maxIn],
      ['B', proj.B.toFloat32Array(), R],
    ] as const) {
      const n = v.length;
      expect(n).toBeGreaterThanOrEqual(100_000);
      const bound = Math.fround(Math.sqrt(6 / fanIn));
      let s = 0,
        s2 = 0,
        lo = Infinity,
        hi = -Infinity;
      for (const x of v) {
        s += x;
        s2 += x * x;
        lo = Math.min(lo, x);
        hi = Math.max(hi, x);
      }
      expect(lo, name).toBeGreaterThanOrEqual(-bound);
      expect(hi, name).toBeLessThan(bound);
      expect(hi, name).toBeGreaterThan(0.999 * bound);
      expect(lo, name).toBeLessThan(-0.999 * bound);
      const mean = s / n;
      const variance = s2 / n - mean * mean;
      // sd of the mean: b/√(3n); sd of the sample variance: √(4/45)·b²/√n
      expect(Math.abs(mean), name).toBeLessThan((5 * bound) / Math.sqrt(3 * n));
      expect(Math.abs(variance - (bound * bound) / 3), name).toBeLessThan((5 * Math.sqrt(4 / 45) * bound * bound) / Math.sqrt(n));
    }
  });
});

describe('vera.init', () => {
  it("PEFT's init: λd = d_initial (default 0.1), λb = 0", () => {
    const { lambdaD, lambdaB } = vera.init({ outFeatures: 37, rank: 8 });
    expect(lambdaD.shape).toEqual([8]);
    expect(lambdaB.shape).toEqual([37]);
    expect(lambdaD.toFloat32Array().every((v) => v === Math.fround(0.1))).toBe(true);
    expect(lambdaB.toFloat32Array().every((v) => v === 0)).toBe(true);
    const custom = vera.init({ outFeatures: 5, rank: 3, dInitial: -2.5 });
    expect(Array.from(custom.lambdaD.toFloat32Array())).toEqual([-2.5, -2.5, -2.5]);
  });
});

describe('merge and unmerge', () => {
  it.each([
    [37, 45, 8],
    [130, 97, 1],
    [33, 7, 64],
  ] as const)('out=%i in=%i r=%i: merged forward equals the adapter forward; unmerge restores W', (O, I, R) => {
    const p = problem(33, I, O, R, 600 + R, true);
    const { x, W, bias, lambdaD, lambdaB } = tensors(p);
    const unmerged = vera.forward(x, W, p.proj, lambdaD, lambdaB, { bias }).y.toFloat32Array();
    const W0 = p.Wv.slice();
    vera.merge(W, p.proj, lambdaD, lambdaB);
    expect(relErr(p.Wv, veraMergeRef(p.L, W0, p.Av, p.Bv, p.ldv, p.lbv))).toBeLessThan(1e-5);
    // a plain forward through the merged W (λb = 0 switches the adapter off)
    const merged = vera.forward(x, W, p.proj, lambdaD, zeros([O]), { bias }).y.toFloat32Array();
    expect(relErr(merged, unmerged)).toBeLessThan(1e-5);
    vera.unmerge(W, p.proj, lambdaD, lambdaB);
    expect(relErr(p.Wv, W0)).toBeLessThan(1e-6);
  });

  it('safe merge with a finite result equals the plain merge bit for bit', () => {
    const p = problem(1, 97, 130, 8, 700, false);
    const { W, lambdaD, lambdaB } = tensors(p);
    const W2 = tensor(p.Wv.slice(), [130, 97]);
    vera.merge(W, p.proj, lambdaD, lambdaB);
    vera.merge(W2, p.proj, lambdaD, lambdaB, { safe: true });
    expect(sameBits(W2.toFloat32Array(), W.toFloat32Array())).toBe(true);
  });

  it('safe merge that would overflow throws a RangeError and leaves W bit-for-bit unchanged', () => {
    // any float32 pair works as projections: all ones, so row 2 of the update is 8 · 3e38
    const proj = { A: tensor(new Float32Array(8 * 50).fill(1), [8, 50]), B: tensor(new Float32Array(40 * 8).fill(1), [40, 8]) };
    const Wv = randomF32(37 * 45, 711);
    const W = tensor(Wv, [37, 45]);
    const lbv = new Float32Array(37);
    lbv[2] = 3e38;
    const lambdaD = tensor(new Float32Array(8).fill(1), [8]),
      lambdaB = tensor(lbv, [37]);
    const before = Wv.slice();
    expect(errorOf(() => vera.merge(W, proj, lambdaD, lambdaB, { safe: true }))).toEqual({
      cls: 'RangeError',
      message: 'Expected a finite merged weight for W but received Infinity at W[2, 0]; W was left unchanged',
    });
    expect(sameBits(Wv, before)).toBe(true);
    const Wb = tensor(Wv, [37, 45]).astype('bfloat16');
    const bitsBefore = (Wb.storage() as Uint16Array).slice();
    expect(errorOf(() => vera.unmerge(Wb, proj, lambdaD, lambdaB, { safe: true }))).toEqual({
      cls: 'RangeError',
      message: 'Expected a finite merged weight for W but received -Infinity at W[2, 0]; W was left unchanged',
    });
    expect((Wb.storage() as Uint16Array).every((v, i) => v === bitsBefore[i])).toBe(true);
    // the unsafe merge does write the non-finite values (that is what safe is for)
    vera.merge(W, proj, lambdaD, lambdaB);
    expect(Number.isFinite(Wv[2 * 45])).toBe(false);
  });

  it('a bfloat16 W: forward and backward on its exact values, merge rounds to the nearest bfloat16', () => {
    const T = 7,
      I = 97,
      O = 130,
      R = 8;
    const p = problem(T, I, O, R, 720, true);
    const Wexact = p.Wv.map(bf16Value);
    const W = tensor(Wexact, [O, I]).astype('bfloat16');
    const { x, bias, lambdaD, lambdaB, dy } = tensors(p);
    const drop = { p: 0.25, seed: 4n };
    const mask = dropoutFactors(4n, 0.25, T * I);
    const { y, saved } = vera.forward(x, W, p.proj, lambdaD, lambdaB, { bias, dropout: drop });
    expect(relErr(y.toFloat32Array(), veraForwardRef(p.L, p.xv, Wexact, p.bv, p.Av, p.Bv, p.ldv, p.lbv, mask).y)).toBeLessThan(1e-5);
    const g = vera.backward(dy, saved);
    const gref = veraBackwardRef(p.L, p.dyv, p.xv, Wexact, p.Av, p.Bv, p.ldv, p.lbv, mask);
    expect(relErr(g.dx.toFloat32Array(), gref.dx)).toBeLessThan(1e-5);
    expect(relErr(g.dLambdaD.toFloat32Array(), gref.dLd)).toBeLessThan(1e-5);
    expect(relErr(g.dLambdaB.toFloat32Array(), gref.dLb)).toBeLessThan(1e-5);

    vera.merge(W, p.proj, lambdaD, lambdaB);
    const merged = W.toFloat32Array();
    const exact = veraMergeRef(p.L, Wexact, p.Av, p.Bv, p.ldv, p.lbv);
    for (let i = 0; i < merged.length; i++) {
      const nearest = bf16Value(exact[i]);
      // one step either way where the float32 intermediate rounds the other way (double rounding)
      if (merged[i] !== nearest) expect(Math.abs(merged[i] - nearest)).toBeLessThanOrEqual(Math.abs(nearest) * 2 ** -7);
    }
    vera.unmerge(W, p.proj, lambdaD, lambdaB);
    expect(relErr(W.toFloat32Array(), Wexact)).toBeLessThan(1e-2);
  });
});

describe('async forms equal the sync forms bit for bit', () => {
  it('projections, forward, backward, merge and unmerge', async () => {
    const o = { rank: 8, maxIn: 140, maxOut: 135, seed: 5 };
    const ps = vera.projections(o);
    const pa = await vera.projectionsAsync(o);
    expect(sameBits(pa.A.toFloat32Array(), ps.A.toFloat32Array())).toBe(true);
    expect(sameBits(pa.B.toFloat32Array(), ps.B.toFloat32Array())).toBe(true);

    const p = problem(33, 97, 130, 8, 800, true);
    const { x, W, bias, lambdaD, lambdaB, dy } = tensors(p);
    const opts = { bias, dropout: { p: 0.2, seed: 17n } };
    const s = vera.forward(x, W, p.proj, lambdaD, lambdaB, opts);
    const a = await vera.forwardAsync(x, W, p.proj, lambdaD, lambdaB, opts);
    expect(sameBits(a.y.toFloat32Array(), s.y.toFloat32Array())).toBe(true);
    expect(sameBits(a.saved.u.toFloat32Array(), s.saved.u.toFloat32Array())).toBe(true);
    const gs = vera.backward(dy, s.saved);
    const ga = await vera.backwardAsync(dy, a.saved);
    for (const k of ['dx', 'dLambdaD', 'dLambdaB'] as const) expect(sameBits(ga[k].toFloat32Array(), gs[k].toFloat32Array()), k).toBe(true);

    const W2 = tensor(p.Wv.slice(), [130, 97]);
    vera.merge(W, p.proj, lambdaD, lambdaB);
    await vera.mergeAsync(W2, p.proj, lambdaD, lambdaB);
    expect(sameBits(W2.toFloat32Array(), W.toFloat32Array())).toBe(true);
    vera.unmerge(W, p.proj, lambdaD, lambdaB);
    await vera.unmergeAsync(W2, p.proj, lambdaD, lambdaB, { safe: true });
    expect(sameBits(W2.toFloat32Array(), W.toFloat32Array())).toBe(true);
  });

  it('async validation errors reject with the same class and message', async () => {
    const p = problem(7, 45, 37, 8, 810, false);
    const { x, W, lambdaD } = tensors(p);
    await expect(vera.forwardAsync(x, W, p.proj, lambdaD, zeros([36]))).rejects.toThrow(
      new RangeError('Expected shape [out] = [37] for lambdaB but received [36]'),
    );
    await expect(vera.projectionsAsync({ rank: 0, maxIn: 1, maxOut: 1 })).rejects.toBeInstanceOf(RangeError);
  });
});

describe('outputs are fully written (poisoned with NaN first)', () => {
  it('projections, forward and backward overwrite every output element', () => {
    const T = 7,
      I = 45,
      O = 37,
      R = 8,
      maxIn = 50,
      maxOut = 40;
    const n = native();
    const poison = (k: number) => new Float32Array(k).fill(NaN);
    const f32 = (data: Float32Array) => ({ data, dtype: 0 });
    const A = poison(R * maxIn),
      B = poison(maxOut * R);
    n.veraProjections({ A: f32(A), B: f32(B), r: R, maxIn, maxOut, seed: 3n });
    const proj = vera.projections({ rank: R, maxIn, maxOut, seed: 3n });
    expect(sameBits(A, proj.A.toFloat32Array())).toBe(true);
    expect(sameBits(B, proj.B.toFloat32Array())).toBe(true);
    const x = randomF32(T * I, 1),
      W = randomF32(O * I, 2),
      ld = randomF32(R, 3),
      lb = randomF32(O, 4),
      dy = randomF32(T * O, 5);
    const dims = { t: T, in: I, out: O, r: R, maxIn, maxOut };
    for (const p of [0, 0.3]) {
      const y = poison(T * O),
        u = poison(T * R);
      n.veraForward({
        ...dims,
        x: f32(x),
        W: f32(W),
        bias: null,
        A: f32(A),
        B: f32(B),
        lambdaD: f32(ld),
        lambdaB: f32(lb),
        y: f32(y),
        u: f32(u),
        p,
        seed: 9n,
      });
      const api = vera.forward(tensor(x, [T, I]), tensor(W, [O, I]), proj, tensor(ld, [R]), tensor(lb, [O]), { dropout: { p, seed: 9n } });
      expect(sameBits(y, api.y.toFloat32Array())).toBe(true);
      expect(sameBits(u, api.saved.u.toFloat32Array())).toBe(true);
      const dx = poison(T * I),
        dLambdaD = poison(R),
        dLambdaB = poison(O);
      n.veraBackward({
        ...dims,
        dy: f32(dy),
        W: f32(W),
        A: f32(A),
        B: f32(B),
        lambdaD: f32(ld),
        lambdaB: f32(lb),
        u: f32(u),
        dx: f32(dx),
        dLambdaD: f32(dLambdaD),
        dLambdaB: f32(dLambdaB),
        p,
        seed: 9n,
      });
      const g = vera.backward(tensor(dy, [T, O]), api.saved);
      expect(sameBits(dx, g.dx.toFloat32Array())).toBe(true);
      expect(sameBits(dLambdaD, g.dLambdaD.toFloat32Array())).toBe(true);
      expect(sameBits(dLambdaB, g.dLambdaB.toFloat32Array())).toBe(true);
      // dx is optional at the native boundary; the λ gradients are the same without it
      const dLd2 = poison(R),
        dLb2 = poison(O);
      n.veraBackward({
        ...dims,
        dy: f32(dy),
        W: f32(W),
        A: f32(A),
        B: f32(B),
        lambdaD: f32(ld),
        lambdaB: f32(lb),
        u: f32(u),
        dx: null,
        dLambdaD: f32(dLd2),
        dLambdaB: f32(dLb2),
        p,
        seed: 9n,
      });
      expect(sameBits(dLd2, dLambdaD) && sameBits(dLb2, dLambdaB)).toBe(true);
    }
  });

  it('the native boundary refuses a layer larger than its projections (a broken caller)', () => {
    const f = (k: number) => ({ data: new Float32Array(k), dtype: 0 });
    expect(() =>
      native().veraMerge({
        W: f(6 * 5),
        A: f(2 * 4),
        B: f(6 * 2),
        lambdaD: f(2),
        lambdaB: f(6),
        out: 6,
        in: 5,
        r: 2,
        maxIn: 4,
        maxOut: 6,
        sign: 1,
        safe: false,
      }),
    ).toThrow(new RangeError("veraMerge: the layer's in exceeds the projections' maxIn"));
  });
});

// ---- errors -------------------------------------------------------------------------------

describe('errors: class and message', () => {
  const T = 7,
    I = 45,
    O = 37,
    R = 8;
  const proj = vera.projections({ rank: R, maxIn: 56, maxOut: 42, seed: 1 });
  const x = tensor(randomF32(T * I, 1), [T, I]);
  const W = tensor(randomF32(O * I, 2), [O, I]);
  const lambdaD = tensor(randomF32(R, 3), [R]);
  const lambdaB = tensor(randomF32(O, 4), [O]);
  const dy = tensor(randomF32(T * O, 5), [T, O]);
  const r = (shape: number[], seed = 7) =>
    tensor(
      randomF32(
        shape.reduce((a, b) => a * b, 1),
        seed,
      ),
      shape,
    );
  const dead = r([2, 3], 20);
  dead.dispose();
  const gone = vera.projections({ rank: R, maxIn: 56, maxOut: 42, seed: 2 });
  gone.dispose();
  const { saved } = vera.forward(x, W, proj, lambdaD, lambdaB);
  const lead = vera.forward(r([2, 3, I]), W, proj, lambdaD, lambdaB).saved;
  const disposedSaved = vera.forward(x, W, proj, lambdaD, lambdaB).saved;
  disposedSaved.dispose();
  const fakes: Tensor[] = [];
  /** A tensor that claims to live on CUDA (the internal constructor; no CUDA memory is involved). */
  const fakeCuda = (shape: number[]) => {
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
  };
  afterAll(() => fakes.forEach((t) => t.dispose()));
  const live = (name: string) => `Expected a live Tensor for ${name} but received Tensor(float32, [2, 3], cpu, disposed) (it was disposed)`;
  const fit = "Expected a weight [out, in] with out <= 42 and in <= 56 (the projections' maxOut and maxIn) for W but received";

  type Case = [label: string, call: () => unknown, cls: 'TypeError' | 'RangeError', message: string];
  const cases: Case[] = [
    // shapes
    [
      'W wider than the projections (in > maxIn)',
      () => vera.forward(r([T, 57]), r([O, 57]), proj, lambdaD, lambdaB),
      'RangeError',
      `${fit} Tensor(float32, [37, 57], cpu)`,
    ],
    [
      'W taller than the projections (out > maxOut)',
      () => vera.forward(x, r([43, I]), proj, lambdaD, r([43])),
      'RangeError',
      `${fit} Tensor(float32, [43, 45], cpu)`,
    ],
    [
      'merge: W larger than the projections',
      () => vera.merge(r([O, 60]), proj, lambdaD, lambdaB),
      'RangeError',
      `${fit} Tensor(float32, [37, 60], cpu)`,
    ],
    [
      'lambdaD of the wrong length',
      () => vera.forward(x, W, proj, r([R - 1]), lambdaB),
      'RangeError',
      'Expected shape [r] = [8] for lambdaD but received [7]',
    ],
    [
      'lambdaD 2-D',
      () => vera.forward(x, W, proj, r([1, R]), lambdaB),
      'RangeError',
      'Expected shape [r] = [8] for lambdaD but received [1, 8]',
    ],
    [
      'lambdaB of the wrong length',
      () => vera.forward(x, W, proj, lambdaD, r([O + 1])),
      'RangeError',
      'Expected shape [out] = [37] for lambdaB but received [38]',
    ],
    [
      'merge: lambdaB of the wrong length',
      () => vera.merge(W.clone(), proj, lambdaD, r([O - 1])),
      'RangeError',
      'Expected shape [out] = [37] for lambdaB but received [36]',
    ],
    [
      "x's last dimension is not W's in",
      () => vera.forward(r([T, I + 1]), W, proj, lambdaD, lambdaB),
      'RangeError',
      "Expected a tensor [..., in] with in = 45 (W's columns) for x but received Tensor(float32, [7, 46], cpu)",
    ],
    [
      'x has no rows',
      () => vera.forward(zeros([0, I]), W, proj, lambdaD, lambdaB),
      'RangeError',
      'Expected at least one row for x but received Tensor(float32, [0, 45], cpu)',
    ],
    [
      'W is not 2-D',
      () => vera.forward(x, r([1, O, I]), proj, lambdaD, lambdaB),
      'RangeError',
      'Expected a 2-D weight [out, in] with out, in >= 1 for W but received Tensor(float32, [1, 37, 45], cpu)',
    ],
    [
      'proj.A is 1-D',
      () => vera.forward(x, W, { A: r([56]), B: proj.B }, lambdaD, lambdaB),
      'RangeError',
      'Expected a 2-D projection [r, maxIn] with r, maxIn >= 1 for proj.A but received Tensor(float32, [56], cpu)',
    ],
    [
      "proj.B's r differs from proj.A's",
      () => vera.forward(x, W, { A: proj.A, B: r([42, R + 1]) }, lambdaD, lambdaB),
      'RangeError',
      "Expected a 2-D projection [maxOut, r] with r = 8 (proj.A's rows) and maxOut >= 1 for proj.B but received Tensor(float32, [42, 9], cpu)",
    ],
    [
      'bias of the wrong length',
      () => vera.forward(x, W, proj, lambdaD, lambdaB, { bias: r([O + 1]) }),
      'RangeError',
      'Expected shape [out] = [37] for options.bias but received [38]',
    ],
    [
      'dy has the wrong last dimension',
      () => vera.backward(r([T, O - 1]), saved),
      'RangeError',
      'Expected shape [x.shape[0], out] = [7, 37] for dy but received [7, 36]',
    ],
    [
      "dy flattens x's leading dimensions",
      () => vera.backward(r([6, O]), lead),
      'RangeError',
      'Expected shape [x.shape[0], x.shape[1], out] = [2, 3, 37] for dy but received [6, 37]',
    ],
    // kinds and dtypes
    [
      'proj is null',
      () => vera.forward(x, W, null as never, lambdaD, lambdaB),
      'TypeError',
      'Expected projections { A, B } (from vera.projections) for proj but received null',
    ],
    [
      'proj.A is not a tensor',
      () => vera.forward(x, W, { A: [1, 2], B: proj.B } as never, lambdaD, lambdaB),
      'TypeError',
      'Expected a Tensor for proj.A but received [1, 2]',
    ],
    [
      'proj.B missing',
      () => vera.merge(W.clone(), { A: proj.A } as never, lambdaD, lambdaB),
      'TypeError',
      'Expected a Tensor for proj.B but received undefined',
    ],
    [
      'lambdaD not a tensor',
      () => vera.forward(x, W, proj, new Float32Array(R) as never, lambdaB),
      'TypeError',
      'Expected a Tensor for lambdaD but received Float32Array(8)',
    ],
    [
      'a bfloat16 lambdaB',
      () => vera.forward(x, W, proj, lambdaD, lambdaB.astype('bfloat16')),
      'TypeError',
      'Expected a float32 Tensor for lambdaB but received Tensor(bfloat16, [37], cpu) (dtype is bfloat16)',
    ],
    [
      'a bfloat16 proj.A',
      () => vera.forward(x, W, { A: proj.A.astype('bfloat16'), B: proj.B }, lambdaD, lambdaB),
      'TypeError',
      'Expected a float32 Tensor for proj.A but received Tensor(bfloat16, [8, 56], cpu) (dtype is bfloat16)',
    ],
    [
      'a float16 W',
      () => vera.forward(x, W.astype('float16'), proj, lambdaD, lambdaB),
      'TypeError',
      'Expected a float32 or bfloat16 Tensor for W but received Tensor(float16, [37, 45], cpu) (dtype is float16)',
    ],
    [
      'a float16 x',
      () => vera.forward(x.astype('float16'), W, proj, lambdaD, lambdaB),
      'TypeError',
      'Expected a float32 Tensor for x but received Tensor(float16, [7, 45], cpu) (dtype is float16)',
    ],
    [
      'saved is a plain object',
      () => vera.backward(dy, { bytes: 0 } as never),
      'TypeError',
      'Expected the saved state from vera.forward for saved but received an object',
    ],
    [
      'saved from lora.forward',
      () => vera.backward(dy, lora.forward(x, W, zeros([R, I]), zeros([O, R]), { scale: 1 }).saved as never),
      'TypeError',
      'Expected the saved state from vera.forward for saved but received LoraSaved(T=7, in=45, out=37, r=8)',
    ],
    // disposed
    ['x disposed', () => vera.forward(dead, W, proj, lambdaD, lambdaB), 'TypeError', live('x')],
    ['W disposed', () => vera.forward(x, dead, proj, lambdaD, lambdaB), 'TypeError', live('W')],
    ['lambdaD disposed', () => vera.forward(x, W, proj, dead, lambdaB), 'TypeError', live('lambdaD')],
    ['lambdaB disposed (merge)', () => vera.merge(W.clone(), proj, lambdaD, dead), 'TypeError', live('lambdaB')],
    ['bias disposed', () => vera.forward(x, W, proj, lambdaD, lambdaB, { bias: dead }), 'TypeError', live('options.bias')],
    ['dy disposed', () => vera.backward(dead, saved), 'TypeError', live('dy')],
    [
      'projections disposed',
      () => vera.forward(x, W, gone, lambdaD, lambdaB),
      'TypeError',
      'Expected a live Tensor for proj.A but received Tensor(float32, [8, 56], cpu, disposed) (it was disposed)',
    ],
    [
      'saved state disposed',
      () => vera.backward(dy, disposedSaved),
      'TypeError',
      'Expected live saved state for saved but received VeraSaved(T=7, in=45, out=37, r=8, disposed) (it was disposed)',
    ],
    // devices
    [
      'a CUDA lambdaB with CPU tensors',
      () => vera.forward(x, W, proj, lambdaD, fakeCuda([O])),
      'RangeError',
      'Expected a tensor on cpu (like x) for lambdaB but received Tensor(float32, [37], cuda)',
    ],
    [
      'merge: a CUDA W with CPU projections',
      () => vera.merge(fakeCuda([O, I]), proj, lambdaD, lambdaB),
      'RangeError',
      'Expected a tensor on cuda (like W) for proj.A but received Tensor(float32, [8, 56], cpu)',
    ],
    [
      'backward: a CUDA dy with CPU saved state',
      () => vera.backward(fakeCuda([T, O]), saved),
      'RangeError',
      'Expected a tensor on cpu (like the saved state) for dy but received Tensor(float32, [7, 37], cuda)',
    ],
    // options and values
    [
      'dropout p = 1',
      () => vera.forward(x, W, proj, lambdaD, lambdaB, { dropout: { p: 1, seed: 1 } }),
      'RangeError',
      'Expected a number in [0, 1) for options.dropout.p but received 1',
    ],
    [
      'dropout p = NaN',
      () => vera.forward(x, W, proj, lambdaD, lambdaB, { dropout: { p: NaN, seed: 1 } }),
      'RangeError',
      'Expected a number in [0, 1) for options.dropout.p but received NaN',
    ],
    [
      'dropout p = -0.1',
      () => vera.forward(x, W, proj, lambdaD, lambdaB, { dropout: { p: -0.1 } }),
      'RangeError',
      'Expected a number in [0, 1) for options.dropout.p but received -0.1',
    ],
    [
      'options a number',
      () => vera.forward(x, W, proj, lambdaD, lambdaB, 3 as never),
      'TypeError',
      'Expected an options object for options but received 3',
    ],
    [
      'merge safe not a boolean',
      () => vera.merge(W.clone(), proj, lambdaD, lambdaB, { safe: 'yes' as never }),
      'TypeError',
      'Expected a boolean for options.safe but received "yes"',
    ],
    [
      'projections: rank 0',
      () => vera.projections({ rank: 0, maxIn: 4, maxOut: 4 }),
      'RangeError',
      'Expected a positive integer for options.rank but received 0',
    ],
    [
      'projections: maxIn fractional',
      () => vera.projections({ rank: 2, maxIn: 4.5, maxOut: 4 }),
      'TypeError',
      'Expected a positive integer for options.maxIn but received 4.5',
    ],
    [
      'projections: maxOut missing',
      () => vera.projections({ rank: 2, maxIn: 4 } as never),
      'TypeError',
      'Expected a positive integer for options.maxOut but received undefined',
    ],
    [
      'projections: negative seed',
      () => vera.projections({ rank: 2, maxIn: 4, maxOut: 4, seed: -1 }),
      'RangeError',
      'Expected a non-negative safe integer for options.seed but received -1',
    ],
    [
      'projections: seed 2^64',
      () => vera.projections({ rank: 2, maxIn: 4, maxOut: 4, seed: 1n << 64n }),
      'RangeError',
      'Expected an integer in [0, 2^64) for options.seed but received 18446744073709551616n',
    ],
    [
      'projections: no options',
      () => vera.projections(undefined as never),
      'TypeError',
      'Expected a positive integer for options.rank but received undefined',
    ],
    [
      'init: dInitial NaN',
      () => vera.init({ outFeatures: 4, rank: 2, dInitial: NaN }),
      'RangeError',
      'Expected a finite number for options.dInitial but received NaN',
    ],
    [
      'init: dInitial Infinity',
      () => vera.init({ outFeatures: 4, rank: 2, dInitial: Infinity }),
      'RangeError',
      'Expected a finite number for options.dInitial but received Infinity',
    ],
    [
      'init: dInitial beyond float32',
      () => vera.init({ outFeatures: 4, rank: 2, dInitial: 1e39 }),
      'RangeError',
      'Expected a finite number within float32 range for options.dInitial but received 1e+39',
    ],
    [
      'init: dInitial a string',
      () => vera.init({ outFeatures: 4, rank: 2, dInitial: '0.1' as never }),
      'TypeError',
      'Expected a finite number for options.dInitial but received "0.1"',
    ],
    [
      'init: outFeatures 0',
      () => vera.init({ outFeatures: 0, rank: 2 }),
      'RangeError',
      'Expected a positive integer for options.outFeatures but received 0',
    ],
  ];
  it.each(cases)('%s', (_label, call, cls, message) => {
    expect(errorOf(call)).toEqual({ cls, message });
  });
});

describe('types of the public API', () => {
  it('vera.* signatures', () => {
    expectTypeOf(vera.projections).returns.toEqualTypeOf<VeraProjections>();
    expectTypeOf<VeraProjections>().toMatchTypeOf<VeraProjectionPair>();
    expectTypeOf<VeraProjections['seed']>().toEqualTypeOf<bigint>();
    expectTypeOf(vera.init).returns.toEqualTypeOf<{ lambdaD: Tensor; lambdaB: Tensor }>();
    expectTypeOf(vera.forward).parameter(2).toEqualTypeOf<VeraProjectionPair>();
    expectTypeOf(vera.forward).returns.toHaveProperty('saved');
    expectTypeOf(vera.backward).returns.toEqualTypeOf<VeraGrads>();
    expectTypeOf(vera.backwardAsync).returns.toEqualTypeOf<Promise<VeraGrads>>();
    expectTypeOf(vera.merge).returns.toBeVoid();
    expectTypeOf(vera.mergeAsync).returns.toEqualTypeOf<Promise<void>>();
  });
});
