// LoRA (README.md, LoRA): forward, backward, LoRA-FA's frozenA, merge/unmerge and init,
// against the float64 reference and against finite differences.
import { describe, expect, it } from 'vitest';
import { lora, tensor, zeros, type Tensor } from '../lib/index.js';
import {
  centralDifferenceErrors,
  dropoutFactors,
  errorOf,
  loraBackwardRef,
  loraForwardRef,
  mergeRef,
  randomF32,
  relErr,
  sameBits,
} from './helpers/reference.js';

interface Problem {
  T: number;
  I: number;
  O: number;
  R: number;
  xv: Float32Array;
  Wv: Float32Array;
  Av: Float32Array;
  Bv: Float32Array;
  bv: Float32Array | null;
  dyv: Float32Array;
}

function problem(T: number, I: number, O: number, R: number, seed: number, withBias: boolean): Problem {
  return {
    T,
    I,
    O,
    R,
    xv: randomF32(T * I, seed),
    Wv: randomF32(O * I, seed + 1, 1 / Math.sqrt(I)),
    Av: randomF32(R * I, seed + 2, 1 / Math.sqrt(I)),
    Bv: randomF32(O * R, seed + 3),
    bv: withBias ? randomF32(O, seed + 4) : null,
    dyv: randomF32(T * O, seed + 5),
  };
}

function tensors(p: Problem) {
  return {
    x: tensor(p.xv, [p.T, p.I]),
    W: tensor(p.Wv, [p.O, p.I]),
    A: tensor(p.Av, [p.R, p.I]),
    B: tensor(p.Bv, [p.O, p.R]),
    bias: p.bv ? tensor(p.bv, [p.O]) : undefined,
    dy: tensor(p.dyv, [p.T, p.O]),
  };
}

function disposeAll(...ts: Array<Tensor | undefined>) {
  for (const t of ts) t?.dispose();
}

const shapes: Array<[number, number]> = [
  [45, 37],
  [130, 97],
];
const grid: Array<[number, number, number, number, boolean, boolean]> = [];
let variant = 0;
for (const T of [1, 7, 33, 256])
  for (const [I, O] of shapes)
    for (const R of [1, 8, 64]) {
      // cycle bias / dropout so every T, shape and rank meets each combination at least once
      const v = variant++;
      grid.push([T, I, O, R, v % 2 === 1, Math.floor(v / 2) % 2 === 1]);
    }

describe('lora.forward / lora.backward against the float64 reference', () => {
  it.each(grid)('T=%i in=%i out=%i r=%i bias=%s dropout=%s', (T, I, O, R, withBias, withDropout) => {
    const p = problem(T, I, O, R, T * 1000 + I + R, withBias);
    const scale = 2 / R;
    const drop = withDropout ? { p: 0.25, seed: BigInt(T * 7 + R) } : undefined;
    const mask = drop ? dropoutFactors(drop.seed, drop.p, T * I) : null;
    const { x, W, A, B, bias, dy } = tensors(p);
    const copies = [p.xv, p.Wv, p.Av, p.Bv].map((v) => v.slice());

    const { y, saved } = lora.forward(x, W, A, B, { scale, bias, dropout: drop });
    expect(y.shape).toEqual([T, O]);
    expect(saved.xa.shape).toEqual([T, R]);
    const ref = loraForwardRef(p.xv, p.Wv, p.bv, p.Av, p.Bv, scale, mask, T, I, O, R);
    expect(relErr(y.toFloat32Array(), ref.y)).toBeLessThan(1e-5);
    expect(relErr(saved.xa.toFloat32Array(), ref.xa)).toBeLessThan(1e-5);
    expect(saved.bytes).toBe(T * (I + R) * 4);

    const g = lora.backward(dy, saved);
    expect(g.dx.shape).toEqual([T, I]);
    expect(g.dA!.shape).toEqual([R, I]);
    expect(g.dB.shape).toEqual([O, R]);
    const gref = loraBackwardRef(p.dyv, p.xv, p.Wv, p.Av, p.Bv, scale, mask, T, I, O, R);
    expect(relErr(g.dx.toFloat32Array(), gref.dx)).toBeLessThan(1e-5);
    expect(relErr(g.dA!.toFloat32Array(), gref.dA)).toBeLessThan(1e-5);
    expect(relErr(g.dB.toFloat32Array(), gref.dB)).toBeLessThan(1e-5);

    // the inputs are read, never written
    [p.xv, p.Wv, p.Av, p.Bv].forEach((v, i) => expect(sameBits(v, copies[i])).toBe(true));
    disposeAll(x, W, A, B, bias, dy, y, g.dx, g.dA, g.dB);
    saved.dispose();
  });

  it('keeps leading dimensions: x [2, 3, in] gives y [2, 3, out] and dx [2, 3, in]', () => {
    const p = problem(6, 45, 37, 8, 77, true);
    const x = tensor(p.xv, [2, 3, 45]);
    const { W, A, B, bias } = tensors(p);
    const { y, saved } = lora.forward(x, W, A, B, { scale: 0.5, bias, dropout: { p: 0.1, seed: 5n } });
    expect(y.shape).toEqual([2, 3, 37]);
    const mask = dropoutFactors(5n, 0.1, 6 * 45);
    const ref = loraForwardRef(p.xv, p.Wv, p.bv, p.Av, p.Bv, 0.5, mask, 6, 45, 37, 8);
    expect(relErr(y.toFloat32Array(), ref.y)).toBeLessThan(1e-5);
    const dy = tensor(p.dyv, [2, 3, 37]);
    const g = lora.backward(dy, saved);
    expect(g.dx.shape).toEqual([2, 3, 45]);
    const gref = loraBackwardRef(p.dyv, p.xv, p.Wv, p.Av, p.Bv, 0.5, mask, 6, 45, 37, 8);
    expect(relErr(g.dx.toFloat32Array(), gref.dx)).toBeLessThan(1e-5);
    expect(relErr(g.dA!.toFloat32Array(), gref.dA)).toBeLessThan(1e-5);
    expect(relErr(g.dB.toFloat32Array(), gref.dB)).toBeLessThan(1e-5);
    // a 1-D x is one token
    const x1 = tensor(p.xv.slice(0, 45), [45]);
    const one = lora.forward(x1, W, A, B, { scale: 0.5, bias });
    expect(one.y.shape).toEqual([37]);
    const ref1 = loraForwardRef(p.xv.slice(0, 45), p.Wv, p.bv, p.Av, p.Bv, 0.5, null, 1, 45, 37, 8);
    expect(relErr(one.y.toFloat32Array(), ref1.y)).toBeLessThan(1e-5);
  });

  it('reads inputs that are views into larger buffers (non-zero byteOffset)', () => {
    const p = problem(7, 45, 37, 8, 91, true);
    const pad = (v: Float32Array, seed: number) => {
      const big = randomF32(v.length + 13, seed);
      big.set(v, 5);
      return big.subarray(5, 5 + v.length);
    };
    const x = tensor(pad(p.xv, 1), [7, 45]);
    const W = tensor(pad(p.Wv, 2), [37, 45]);
    const A = tensor(pad(p.Av, 3), [8, 45]);
    const B = tensor(pad(p.Bv, 4), [37, 8]);
    const bias = tensor(pad(p.bv!, 5), [37]);
    const { y, saved } = lora.forward(x, W, A, B, { scale: 0.25, bias });
    const ref = loraForwardRef(p.xv, p.Wv, p.bv, p.Av, p.Bv, 0.25, null, 7, 45, 37, 8);
    expect(relErr(y.toFloat32Array(), ref.y)).toBeLessThan(1e-5);
    const g = lora.backward(tensor(pad(p.dyv, 6), [7, 37]), saved);
    const gref = loraBackwardRef(p.dyv, p.xv, p.Wv, p.Av, p.Bv, 0.25, null, 7, 45, 37, 8);
    expect(relErr(g.dx.toFloat32Array(), gref.dx)).toBeLessThan(1e-5);
    expect(relErr(g.dA!.toFloat32Array(), gref.dA)).toBeLessThan(1e-5);
    expect(relErr(g.dB.toFloat32Array(), gref.dB)).toBeLessThan(1e-5);
  });

  it('scale 0 gives the base layer exactly', () => {
    const p = problem(7, 45, 37, 8, 93, true);
    const { x, W, A, B, bias } = tensors(p);
    const a = lora.forward(x, W, A, B, { scale: 0, bias }).y.toFloat32Array();
    const base = lora.forward(x, W, A, zeros([37, 8]), { scale: 1, bias }).y.toFloat32Array();
    expect(sameBits(a, base)).toBe(true);
  });
});

describe('LoRA-FA (frozenA)', () => {
  it.each([
    [7, 45, 37, 8, false],
    [33, 130, 97, 1, true],
    [256, 45, 37, 64, true],
  ] as const)('T=%i in=%i out=%i r=%i dropout=%s: no dA, saved keeps only xa, dx and dB right', (T, I, O, R, withDropout) => {
    const p = problem(T, I, O, R, 300 + T, true);
    const scale = 1.5;
    const drop = withDropout ? { p: 0.25, seed: 31337n } : undefined;
    const mask = drop ? dropoutFactors(drop.seed, drop.p, T * I) : null;
    const { x, W, A, B, bias, dy } = tensors(p);
    const { y, saved } = lora.forward(x, W, A, B, { scale, bias, dropout: drop, frozenA: true });
    expect(saved.frozenA).toBe(true);
    expect(saved.bytes).toBe(T * R * 4);
    const ref = loraForwardRef(p.xv, p.Wv, p.bv, p.Av, p.Bv, scale, mask, T, I, O, R);
    expect(relErr(y.toFloat32Array(), ref.y)).toBeLessThan(1e-5);
    // saved never holds x: disposing x before backward is fine
    x.dispose();
    const g = lora.backward(dy, saved);
    expect(g.dA).toBeUndefined();
    expect('dA' in g).toBe(false);
    const gref = loraBackwardRef(p.dyv, p.xv, p.Wv, p.Av, p.Bv, scale, mask, T, I, O, R);
    expect(relErr(g.dx.toFloat32Array(), gref.dx)).toBeLessThan(1e-5);
    expect(relErr(g.dB.toFloat32Array(), gref.dB)).toBeLessThan(1e-5);
  });

  it('plain LoRA keeps x and xa: saved.bytes = T·(in + r)·4', () => {
    const p = problem(33, 130, 97, 8, 400, false);
    const { x, W, A, B } = tensors(p);
    const { saved } = lora.forward(x, W, A, B, { scale: 1 });
    expect(saved.frozenA).toBe(false);
    expect(saved.bytes).toBe(33 * (130 + 8) * 4);
  });
});

// L = Σ dy ⊙ y is linear in each of x, A and B separately (the dropout mask is fixed by its
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
    [5, 130, 97, 64, false, true],
  ] as const)('T=%i in=%i out=%i r=%i bias=%s dropout=%s: dx, dA, dB match central differences', (T, I, O, R, withBias, withDropout) => {
    const p = problem(T, I, O, R, 500 + T + R, withBias);
    const scale = 0.8;
    const drop = withDropout ? { p: 0.25, seed: 2024n } : undefined;
    const { x, W, A, B, bias, dy } = tensors(p);
    const opts = { scale, bias, dropout: drop };
    const f = () => {
      const { y, saved } = lora.forward(x, W, A, B, opts);
      const l = loss(y.toFloat32Array(), p.dyv);
      y.dispose();
      saved.dispose();
      return l;
    };
    const { saved } = lora.forward(x, W, A, B, opts);
    const g = lora.backward(dy, saved);
    const grads: Array<[string, Float32Array, Float32Array]> = [
      ['x', p.xv, g.dx.toFloat32Array()],
      ['A', p.Av, g.dA!.toFloat32Array()],
      ['B', p.Bv, g.dB.toFloat32Array()],
    ];
    // the tensors wrap these arrays: a change to them shows through
    expect(centralDifferenceErrors(f, grads)).toEqual([]);
  });
});

describe('merge and unmerge', () => {
  it.each([
    [37, 45, 8],
    [97, 130, 1],
    [33, 7, 64],
  ] as const)('out=%i in=%i r=%i: merged forward equals the adapter forward; unmerge restores W', (O, I, R) => {
    const p = problem(33, I, O, R, 600 + R, true);
    const scale = 1.25;
    const { x, W, A, B, bias } = tensors(p);
    const unmerged = lora.forward(x, W, A, B, { scale, bias }).y.toFloat32Array();
    const W0 = p.Wv.slice();
    lora.merge(W, A, B, scale);
    expect(relErr(p.Wv, mergeRef(W0, p.Av, p.Bv, scale, O, I, R))).toBeLessThan(1e-5);
    const merged = lora.forward(x, W, A, zeros([O, R]), { scale, bias }).y.toFloat32Array();
    expect(relErr(merged, unmerged)).toBeLessThan(1e-5);
    lora.unmerge(W, A, B, scale);
    expect(relErr(p.Wv, W0)).toBeLessThan(1e-6);
  });

  it('safe merge with a finite result equals the plain merge bit for bit', () => {
    const p = problem(1, 130, 97, 8, 700, false);
    const { W, A, B } = tensors(p);
    const W0 = p.Wv.slice();
    const W2 = tensor(p.Wv.slice(), [97, 130]);
    lora.merge(W, A, B, 0.5);
    lora.merge(W2, A, B, 0.5, { safe: true });
    expect(sameBits(W2.toFloat32Array(), W.toFloat32Array())).toBe(true);
    lora.unmerge(W2, A, B, 0.5, { safe: true });
    expect(relErr(W2.toFloat32Array(), W0)).toBeLessThan(1e-6);
  });

  it('safe merge that would overflow throws a RangeError and leaves W bit-for-bit unchanged', () => {
    const p = problem(1, 45, 37, 8, 710, false);
    p.Av[3 * 45 + 5] = 3e38; // row 3 of A, column 5
    p.Bv.forEach((v, i) => (p.Bv[i] = v * 1000));
    const { W, A, B } = tensors(p);
    const before = p.Wv.slice();
    const e = errorOf(() => lora.merge(W, A, B, 1, { safe: true }));
    expect(e.cls).toBe('RangeError');
    expect(e.message.startsWith('Expected a finite merged weight for W but received')).toBe(true);
    expect(e.message).toBe('Expected a finite merged weight for W but received -Infinity at W[0, 5]; W was left unchanged');
    expect(sameBits(p.Wv, before)).toBe(true);
    // the unsafe merge does write the non-finite values (that is what safe is for)
    lora.merge(W, A, B, 1);
    expect(Number.isFinite(p.Wv[5])).toBe(false);
  });
});

describe('lora.init', () => {
  it('kaiming: A ~ U(±1/√in), B = 0', () => {
    const I = 130,
      O = 97,
      R = 64;
    const { A, B } = lora.init({ inFeatures: I, outFeatures: O, rank: R, seed: 1 });
    expect(A.shape).toEqual([R, I]);
    expect(B.shape).toEqual([O, R]);
    const a = A.toFloat32Array();
    const bound = Math.fround(1 / Math.sqrt(I));
    expect(a.every((v) => Math.abs(v) <= bound)).toBe(true);
    let s = 0;
    let s2 = 0;
    for (const v of a) {
      s += v;
      s2 += v * v;
    }
    const n = a.length;
    const sd = Math.sqrt(s2 / n - (s / n) ** 2);
    expect(Math.abs(s / n)).toBeLessThan((5 * bound) / Math.sqrt(3 * n));
    expect(Math.abs(sd - bound / Math.sqrt(3))).toBeLessThan(0.05 * bound);
    expect(B.toFloat32Array().every((v) => v === 0)).toBe(true);
    const again = lora.init({ inFeatures: I, outFeatures: O, rank: R, seed: 1 });
    expect(sameBits(again.A.toFloat32Array(), a)).toBe(true);
  });

  it('gaussian: A ~ N(0, sigma = 1/r) as PEFT draws it, B = 0', () => {
    const I = 1000,
      O = 7,
      R = 16;
    const { A, B } = lora.init({ inFeatures: I, outFeatures: O, rank: R, method: 'gaussian', seed: 2 });
    const a = A.toFloat32Array();
    let s = 0;
    let s2 = 0;
    for (const v of a) {
      s += v;
      s2 += v * v;
    }
    const n = a.length;
    const want = 1 / R; // PEFT: nn.init.normal_(lora_A, std=1 / r)
    const sd = Math.sqrt(s2 / n - (s / n) ** 2);
    expect(Math.abs(s / n)).toBeLessThan((5 * want) / Math.sqrt(n));
    expect(Math.abs(sd - want)).toBeLessThan((5 * want) / Math.sqrt(2 * n));
    expect(B.shape).toEqual([O, R]);
    expect(B.toFloat32Array().every((v) => v === 0)).toBe(true);
  });
});
