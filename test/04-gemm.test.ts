// The GEMM core every CPU op goes through, called directly:
//   C[m, n] = beta · C + bias + Σ_t alpha_t · op(A_t) · op(B_t)
// checked against a float64 triple loop written here.
import { describe, expect, it } from 'vitest';
import { native, type NativeGemmTerm } from '../lib/native.js';
import { dropoutFactors, errorOf, randomF32, relErr } from './helpers/reference.js';
import { supportedIsas } from './helpers/isa.js';

interface TermSpec {
  k: number;
  ta: boolean;
  tb: boolean;
  alpha: number;
  /** extra leading-dimension padding of the stored operands */
  padA?: number;
  padB?: number;
  dropout?: { p: number; seed: bigint };
}

interface Built {
  term: NativeGemmTerm;
  /** op(A)[i, p] and op(B)[p, j] as float64 readers, with the dropout factor applied */
  a: (i: number, p: number) => number;
  b: (p: number, j: number) => number;
}

let seedCounter = 1000;

function buildTerm(m: number, n: number, s: TermSpec): Built {
  // Stored A is m x k (k x m when ta); stored B is k x n (n x k when tb).
  const aRows = s.ta ? s.k : m,
    aCols = s.ta ? m : s.k;
  const bRows = s.tb ? n : s.k,
    bCols = s.tb ? s.k : n;
  const lda = aCols + (s.padA ?? 0),
    ldb = bCols + (s.padB ?? 0);
  const a = randomF32(aRows * lda, seedCounter++);
  const b = randomF32(bRows * ldb, seedCounter++);
  const mask = s.dropout ? dropoutFactors(s.dropout.seed, s.dropout.p, aRows * lda) : null;
  const term: NativeGemmTerm = { a, lda, ta: s.ta, b, ldb, tb: s.tb, k: s.k, alpha: s.alpha };
  if (s.dropout) term.aDropout = s.dropout;
  return {
    term,
    a: (i, p) => {
      const idx = s.ta ? p * lda + i : i * lda + p;
      return a[idx] * (mask ? mask[idx] : 1);
    },
    b: (p, j) => (s.tb ? b[j * ldb + p] : b[p * ldb + j]),
  };
}

function reference(
  m: number,
  n: number,
  terms: Built[],
  c0: Float32Array,
  ldc: number,
  beta: number,
  bias: Float32Array | null,
): Float64Array {
  const out = new Float64Array(m * n);
  for (let i = 0; i < m; i++)
    for (let j = 0; j < n; j++) {
      let acc = beta === 0 ? 0 : beta * c0[i * ldc + j];
      if (bias) acc += bias[j];
      for (const t of terms) {
        let dot = 0;
        for (let p = 0; p < t.term.k; p++) dot += t.a(i, p) * t.b(p, j);
        acc += t.term.alpha * dot;
      }
      out[i * n + j] = acc;
    }
  return out;
}

/** The m x n block of a C with leading dimension ldc. */
function block(c: Float32Array, m: number, n: number, ldc: number): Float32Array {
  const out = new Float32Array(m * n);
  for (let i = 0; i < m; i++) out.set(c.subarray(i * ldc, i * ldc + n), i * n);
  return out;
}

interface Case {
  m: number;
  n: number;
  terms: TermSpec[];
  beta?: number;
  bias?: boolean;
  padC?: number;
}

function run(c: Case, referencePath = false) {
  const { m, n } = c;
  const ldc = n + (c.padC ?? 0);
  const beta = c.beta ?? 0;
  const built = c.terms.map((t) => buildTerm(m, n, t));
  const bias = c.bias ? randomF32(n, seedCounter++) : null;
  // beta = 0 must overwrite C without reading it: poison it with NaN. beta != 0 reads a random C.
  const cInit = beta === 0 ? new Float32Array(m * ldc).fill(NaN) : randomF32(m * ldc, seedCounter++);
  // padding columns (j >= n) are poisoned and must stay as they were
  for (let i = 0; i < m; i++) for (let j = n; j < ldc; j++) cInit[i * ldc + j] = -12345.5;
  const cOut = cInit.slice();
  native()._gemm({ m, n, terms: built.map((b) => b.term), c: cOut, ldc, beta, bias, reference: referencePath });
  const want = reference(m, n, built, cInit, ldc, beta, bias);
  for (let i = 0; i < m; i++)
    for (let j = n; j < ldc; j++)
      if (cOut[i * ldc + j] !== -12345.5) expect.fail(`padding C[${i}, ${j}] was written: ${cOut[i * ldc + j]}`);
  return { got: block(cOut, m, n, ldc), want };
}

const transposes: Array<[boolean, boolean]> = [
  [false, false],
  [false, true],
  [true, false],
  [true, true],
];

// ~20 awkward (m, n, k) combinations out of {1, 7, 33, 100, 257}³; each runs with one of the
// four transpose combinations, cycling, so every combination meets several sizes.
const sizes: Array<[number, number, number]> = [
  [1, 1, 1],
  [1, 7, 33],
  [7, 1, 100],
  [7, 7, 7],
  [33, 1, 1],
  [1, 33, 257],
  [33, 33, 33],
  [33, 100, 7],
  [100, 33, 257],
  [100, 100, 1],
  [257, 7, 33],
  [7, 257, 100],
  [257, 33, 7],
  [33, 257, 257],
  [100, 7, 257],
  [257, 100, 33],
  [1, 257, 7],
  [257, 1, 257],
  [100, 257, 33],
  [257, 257, 100],
];

describe('native gemm against a float64 triple loop', () => {
  it.each(sizes.map(([m, n, k], i) => [m, n, k, ...transposes[i % 4]] as const))('m=%i n=%i k=%i ta=%s tb=%s', (m, n, k, ta, tb) => {
    const { got, want } = run({ m, n, terms: [{ k, ta, tb, alpha: 1 }] });
    expect(relErr(got, want)).toBeLessThan(1e-5);
  });

  it.each(transposes)('every transpose combination at 33 x 100 x 257 with padded leading dimensions (ta=%s tb=%s)', (ta, tb) => {
    const { got, want } = run({ m: 33, n: 100, terms: [{ k: 257, ta, tb, alpha: 0.75, padA: 3, padB: 5 }] });
    expect(relErr(got, want)).toBeLessThan(1e-5);
  });

  it('joins two terms with different k and alpha into one product', () => {
    const { got, want } = run({
      m: 100,
      n: 37,
      terms: [
        { k: 257, ta: false, tb: true, alpha: 1 },
        { k: 7, ta: false, tb: true, alpha: -2.5 },
      ],
    });
    expect(relErr(got, want)).toBeLessThan(1e-5);
  });

  it('joins three terms with mixed transposes, bias and beta 1', () => {
    const { got, want } = run({
      m: 45,
      n: 33,
      beta: 1,
      bias: true,
      terms: [
        { k: 100, ta: true, tb: false, alpha: 0.5 },
        { k: 1, ta: false, tb: false, alpha: 3 },
        { k: 33, ta: true, tb: true, alpha: -1 },
      ],
    });
    expect(relErr(got, want)).toBeLessThan(1e-5);
  });

  it('beta 0 overwrites a NaN-poisoned C without reading it', () => {
    const { got, want } = run({ m: 33, n: 45, beta: 0, terms: [{ k: 100, ta: false, tb: true, alpha: 1 }] });
    expect(got.every(Number.isFinite)).toBe(true);
    expect(relErr(got, want)).toBeLessThan(1e-5);
  });

  it('beta 1 accumulates into C', () => {
    const { got, want } = run({ m: 257, n: 33, beta: 1, terms: [{ k: 45, ta: false, tb: false, alpha: 1 }] });
    expect(relErr(got, want)).toBeLessThan(1e-5);
  });

  it('a fractional beta scales C', () => {
    const { got, want } = run({ m: 7, n: 100, beta: -0.5, terms: [{ k: 33, ta: true, tb: false, alpha: 1 }] });
    expect(relErr(got, want)).toBeLessThan(1e-5);
  });

  it('adds a bias to every row', () => {
    const { got, want } = run({ m: 100, n: 257, bias: true, terms: [{ k: 33, ta: false, tb: true, alpha: 1 }] });
    expect(relErr(got, want)).toBeLessThan(1e-5);
  });

  it('leaves the padding columns of C untouched when ldc > n', () => {
    for (const [m, n, k] of [
      [7, 33, 45],
      [257, 17, 7],
      [33, 257, 100],
    ]) {
      const { got, want } = run({ m, n, padC: 11, beta: 1, bias: true, terms: [{ k, ta: false, tb: true, alpha: 1 }] });
      expect(relErr(got, want)).toBeLessThan(1e-5);
    }
  });

  it('applies a dropout mask to op(A) keyed by the stored index row · lda + col', () => {
    for (const ta of [false, true]) {
      const { got, want } = run({
        m: 33,
        n: 45,
        terms: [{ k: 100, ta, tb: true, alpha: 1, padA: 3, dropout: { p: 0.25, seed: 99n } }],
      });
      expect(relErr(got, want)).toBeLessThan(1e-5);
    }
  });

  it('the reference path agrees with the float64 loop and with the fast path', () => {
    const c: Case = {
      m: 33,
      n: 100,
      beta: 1,
      bias: true,
      padC: 4,
      terms: [
        { k: 257, ta: true, tb: false, alpha: 1 },
        { k: 7, ta: false, tb: true, alpha: 0.5 },
      ],
    };
    seedCounter = 5000;
    const slow = run(c, true);
    seedCounter = 5000;
    const fast = run(c, false);
    expect(relErr(slow.got, slow.want)).toBeLessThan(1e-6);
    expect(relErr(fast.got, slow.got)).toBeLessThan(1e-5);
  });

  it('rejects operands smaller than their stated extents (RangeError naming the op)', () => {
    const a = randomF32(7 * 5, 1);
    const b = randomF32(5 * 3, 2);
    const c = new Float32Array(7 * 3);
    const call = (over: Partial<NativeGemmTerm>, m = 7, ldc = 3) =>
      native()._gemm({
        m,
        n: 3,
        terms: [{ a, lda: 5, ta: false, b, ldb: 3, tb: false, k: 5, alpha: 1, ...over }],
        c,
        ldc,
        beta: 0,
        bias: null,
        reference: false,
      });
    expect(errorOf(() => call({ k: 6 }))).toEqual({ cls: 'RangeError', message: 'gemm: a too small' });
    expect(errorOf(() => call({ ldb: 2 }))).toEqual({ cls: 'RangeError', message: 'gemm: b too small' });
    expect(errorOf(() => call({}, 8))).toEqual({ cls: 'RangeError', message: 'gemm: c too small' });
    expect(errorOf(() => call({}, 7, 2))).toEqual({ cls: 'RangeError', message: 'gemm: bad m, n or ldc' });
    expect(errorOf(() => call({ k: 0 }))).toEqual({ cls: 'RangeError', message: 'gemm: k must be positive' });
  });

  // A short inner dimension accumulated into C without a bias (merge, Delta-LoRA) runs on its own
  // tile geometry and threading: partial tiles on both edges, row blocks with a remainder,
  // padded C, one and two terms, on every micro-kernel set this CPU supports.
  it('rank-r updates (a short inner dimension, beta 1, no bias) at awkward sizes on every kernel set', () => {
    try {
      for (const isa of supportedIsas()) {
        expect(native()._setIsa(isa)).toBe(isa);
        for (const [m, n, k, padC] of [
          [1, 1, 1, 0],
          [7, 65, 7, 3],
          [257, 33, 16, 0],
          [130, 200, 33, 5],
          [13, 129, 127, 0],
          // joined depths 450 and 513: the last update deep enough for the update sweep, and
          // the first too deep for it
          [9, 70, 300, 2],
          [5, 130, 342, 0],
        ] as const) {
          const { got, want } = run({
            m,
            n,
            padC,
            beta: 1,
            terms: [
              { k, ta: false, tb: false, alpha: 0.5 },
              { k: Math.max(1, k >> 1), ta: false, tb: false, alpha: -0.25 },
            ],
          });
          expect(relErr(got, want), `${isa} m=${m} n=${n} k=${k}`).toBeLessThan(1e-5);
        }
      }
    } finally {
      native()._setIsa('');
    }
  });

  it('an inner dimension deeper than one block, with a remainder block of its own', () => {
    // 2048-deep blocks: 2300 = 2048 + 252 (a block of its own), 2100 = one block (the 52 join it).
    for (const [k, beta] of [
      [2300, 0],
      [2100, 1],
    ] as const) {
      const { got, want } = run({ m: 13, n: 37, beta, bias: true, terms: [{ k, ta: false, tb: true, alpha: 1 }] });
      expect(relErr(got, want), `k=${k}`).toBeLessThan(1e-5);
    }
  });

  // Each micro-kernel set the CPU supports (native().setIsa) must meet the same contract.
  const canSwitch = typeof (native() as { setIsa?: unknown }).setIsa === 'function';
  it.skipIf(!canSwitch)(
    `every micro-kernel set this CPU supports agrees with the float64 loop${canSwitch ? '' : ' (skipped: this build has no setIsa)'}`,
    (ctx) => {
      const tried: string[] = [];
      try {
        for (const isa of ['avx512', 'avx2', 'scalar'] as const) {
          try {
            expect(native()._setIsa(isa)).toBe(isa);
          } catch (e) {
            expect(e).toBeInstanceOf(RangeError); // not supported on this CPU
            console.log(`isa ${isa}: not supported here (${(e as Error).message})`);
            continue;
          }
          tried.push(isa);
          for (const [m, n, k, ta, tb] of [
            [7, 33, 257, false, true],
            [100, 17, 45, true, false],
            [1, 257, 7, true, true],
            [33, 100, 130, false, false],
          ] as const) {
            const { got, want } = run({
              m,
              n,
              beta: 1,
              bias: true,
              terms: [
                { k, ta, tb, alpha: 0.5, dropout: { p: 0.2, seed: 5n } },
                { k: 3, ta: false, tb: true, alpha: 2 },
              ],
            });
            expect(relErr(got, want), `${isa} m=${m} n=${n} k=${k}`).toBeLessThan(1e-5);
          }
        }
      } finally {
        native()._setIsa('');
      }
      if (tried.length === 0) ctx.skip();
      expect(tried).toContain('scalar');
    },
  );
});
