// Property-based hostile use (fast-check): every public op and the layer constructors, driven
// with random shapes (1 to 9), dtypes, aliasing (an input that is the written tensor or a view
// of it, or overlaps it), disposal (before the call, and during an async op) and scalar values
// (ordinary, NaN, ±Infinity, beyond float32, wrong types). Each case either throws a TypeError
// or RangeError, or returns results equal to a float64 reference computed from the inputs'
// values as they were before the call. A crash ends the test process, so it fails the run.
// FC_RUNS scales every property's run count (default 1: 10,900 cases in all); FC_SEED fixes the seed.
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import {
  deltaLora,
  embed,
  Linear,
  linear,
  LoraLinear,
  lora,
  nn,
  optim,
  rand,
  randn,
  search,
  tensor,
  Tensor,
  vera,
  VeraLinear,
  zeros,
} from '../lib/index.js';
import {
  ACTIVATION_REF,
  bf16Value,
  loraBackwardRef,
  loraForwardRef,
  matmulNN,
  matmulNT,
  mergeRef,
  randomF32,
  relErr,
} from './helpers/reference.js';

const SCALE_RUNS = Number(process.env.FC_RUNS ?? 1);
const SEED = Number(process.env.FC_SEED ?? 3401);
let cases = 0;
const counts: Record<string, { ran: number; refused: number }> = {};
afterAll(() => {
  const total = Object.values(counts).reduce((s, c) => s + c.ran + c.refused, 0);
  console.log(
    `test/34-property: ${total} generated cases (${Object.entries(counts)
      .map(([k, c]) => `${k} ${c.ran} ran / ${c.refused} refused`)
      .join('; ')})`,
  );
});

// ---- what a case may be made of ------------------------------------------------------------

/** How a tensor argument is made: a good one, or one of the ways to get it wrong. */
type Role = 'ok' | 'borrowed' | 'disposed' | 'bf16' | 'int32' | 'shape' | 'alias';
const role = (weights: Partial<Record<Role, number>> = {}) =>
  fc.oneof(
    ...(Object.entries({ ok: 10, borrowed: 3, disposed: 1, bf16: 1, int32: 1, shape: 1, alias: 1, ...weights }) as [Role, number][])
      .filter(([, w]) => w > 0)
      .map(([r, weight]) => ({ arbitrary: fc.constant(r), weight })),
  );

/** A scalar: an ordinary float32 value most of the time, else a value every op must refuse. */
const BAD_SCALARS: unknown[] = [NaN, Infinity, -Infinity, 1e39, -1e300, Number.MAX_VALUE, '1', null, true, [1], {}];
const scalar = fc.oneof(
  // ordinary values; below 1e-6 in magnitude, 0 (subnormal float32 scales lose digits by design)
  { arbitrary: fc.double({ min: -4, max: 4, noNaN: true }).map((v) => (Math.abs(v) < 1e-6 ? 0 : v)), weight: 8 },
  { arbitrary: fc.constantFrom(...BAD_SCALARS), weight: 2 },
);
const goodScalar = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v) && Math.abs(v) <= 4;
/** A scalar as the ops take it: float32 (a tiny double is 0 there). */
const f32 = (v: unknown) => Math.fround(v as number);

const dim = fc.integer({ min: 1, max: 9 });
let seed = 34_000;

interface Made {
  t: Tensor;
  /** The values as the op should see them (bfloat16-rounded for a bfloat16 tensor), or null when it must be refused. */
  values: Float32Array | null;
  /** A view of the tensor given to make() (an op that writes that one must refuse this). */
  aliased?: boolean;
}

/** A tensor of `shape` made as `r` says; `alias` (when given) is the tensor an 'alias' role views. */
function make(r: Role, shape: number[], alias?: Tensor): Made {
  const n = shape.reduce((a, b) => a * b, 1);
  const v = randomF32(n, seed++, 0.7);
  switch (r) {
    case 'ok':
      return { t: tensor(v, shape).clone(), values: v };
    case 'borrowed': // the tensor wraps v itself: the values are a copy, as they were before the op
      return { t: tensor(v, shape), values: v.slice() };
    case 'disposed': {
      const t = tensor(v, shape).clone();
      t.dispose();
      return { t, values: null };
    }
    case 'bf16': {
      const t = tensor(v, shape, { dtype: 'bfloat16' });
      return { t, values: t.toFloat32Array() };
    }
    case 'int32':
      return { t: zeros(shape, { dtype: 'int32' }), values: null };
    case 'shape': // flat and one element longer: no op's shape check can take it where `shape` is due
      return { t: tensor(randomF32(n + 1, seed++), [n + 1]), values: null };
    case 'alias': {
      if (!alias || alias.disposed || alias.size !== n) return make('shape', shape);
      return { t: alias.reshape(shape), values: alias.dtype === 'float32' ? alias.toFloat32Array() : null, aliased: true };
    }
  }
}

/**
 * Runs a case: it must throw a TypeError or RangeError, or return a result `verify` accepts.
 * `mustRefuse`: the inputs include one no op may take, so returning is itself a failure.
 */
async function outcome(name: string, mustRefuse: boolean, run: () => unknown, verify: (result: unknown) => void): Promise<void> {
  cases++;
  const c = (counts[name] ??= { ran: 0, refused: 0 });
  let result: unknown;
  try {
    result = await run();
  } catch (e) {
    if (!(e instanceof TypeError || e instanceof RangeError))
      throw new Error(`${name}: ${String(e)} is not a TypeError or RangeError`, { cause: e });
    if (process.env.FC_REFUSALS === name) console.log(`${name} refused: ${e.message}`);
    c.refused++;
    return;
  }
  if (mustRefuse) throw new Error(`${name}: returned although an input must be refused`);
  verify(result);
  c.ran++;
}

/**
 * got against the float64 reference: max|got − ref| within tol of max|ref|, or, given `bound`
 * (the reference computed on the inputs' absolute values: the size of the terms summed), of
 * max(bound), which a sum with cancellation needs (its rounding follows the terms, not the result).
 */
function close(got: ArrayLike<number>, ref: ArrayLike<number>, tol: number, what: string, bound?: ArrayLike<number>): void {
  let e = relErr(got, ref);
  if (bound) {
    let diff = 0,
      size = 0;
    for (let i = 0; i < ref.length; i++) {
      diff = Math.max(diff, Math.abs(got[i] - ref[i]));
      size = Math.max(size, Math.abs(bound[i]));
    }
    e = Number.isNaN(diff) ? Infinity : size === 0 ? diff : diff / size;
  }
  if (!(e <= tol)) throw new Error(`${what}: relative error ${e} against the float64 reference (tolerance ${tol})`);
}
const abs = (v: ArrayLike<number>) => Float64Array.from(v, Math.abs);

const runs = (n: number) => ({ numRuns: Math.max(1, Math.round(n * SCALE_RUNS)), seed: SEED, endOnFailure: true });
const dispose = (...ts: (Tensor | undefined | null)[]) => ts.forEach((t) => t?.dispose());

// ---- LoRA ------------------------------------------------------------------------------------

describe('property: LoRA forward, backward, merge', () => {
  it('lora.forward / forwardAsync', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.record({ T: dim, I: dim, O: dim, R: dim, x: role(), W: role(), A: role(), B: role({ alias: 2 }), bias: fc.option(role()) }),
        scalar,
        fc.boolean(),
        fc.integer({ min: -1, max: 4 }),
        async (d, scale, isAsync, disposeDuring) => {
          const W = make(d.W === 'bf16' ? 'bf16' : d.W, [d.O, d.I]);
          const x = make(d.x === 'bf16' ? 'ok' : d.x, [d.T, d.I]);
          const A = make(d.A === 'bf16' ? 'ok' : d.A, [d.R, d.I], x.t);
          const B = make(d.B === 'bf16' ? 'ok' : d.B, [d.O, d.R], W.t);
          const bias = d.bias === null ? null : make(d.bias === 'bf16' ? 'ok' : d.bias, [d.O]);
          const inputs = [x, W, A, B, bias];
          const bad = inputs.some((m) => m !== null && m.values === null) || !goodScalar(scale);
          await outcome(
            'lora.forward',
            bad,
            async () => {
              const opts = { scale: scale as number, bias: bias?.t };
              if (!isAsync) return lora.forward(x.t, W.t, A.t, B.t, opts);
              const p = lora.forwardAsync(x.t, W.t, A.t, B.t, opts);
              if (disposeDuring >= 0) inputs[disposeDuring]?.t.dispose(); // held until it settles
              return await p;
            },
            (r) => {
              const { y, saved } = r as lora.LoraForwardResult;
              const ref = loraForwardRef(
                x.values!,
                W.values!,
                bias?.values ?? null,
                A.values!,
                B.values!,
                scale as number,
                null,
                d.T,
                d.I,
                d.O,
                d.R,
              );
              const bound = loraForwardRef(
                abs(x.values!),
                abs(W.values!),
                bias ? abs(bias.values!) : null,
                abs(A.values!),
                abs(B.values!),
                Math.abs(f32(scale)),
                null,
                d.T,
                d.I,
                d.O,
                d.R,
              );
              close(y.toFloat32Array(), ref.y, 2e-5, 'y', bound.y);
              dispose(y);
              saved.dispose();
            },
          );
          dispose(...inputs.map((m) => m?.t));
        },
      ),
      runs(1500),
    );
  });

  it('lora.backward / backwardAsync', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.record({
          T: dim,
          I: dim,
          O: dim,
          R: dim,
          dy: role({ bf16: 0 }),
          frozenA: fc.boolean(),
          project: fc.boolean(),
          drop: fc.boolean(),
        }),
        fc.double({ min: -3, max: 3, noNaN: true }).map((v) => (Math.abs(v) < 1e-6 ? 0 : v)),
        fc.boolean(),
        async (d, scale, isAsync) => {
          const x = make('ok', [d.T, d.I]),
            W = make('ok', [d.O, d.I]),
            A = make('ok', [d.R, d.I]),
            B = make('ok', [d.O, d.R]);
          const { y, saved } = lora.forward(x.t, W.t, A.t, B.t, { scale, frozenA: d.frozenA });
          const dy = make(d.dy, [d.T, d.O], y);
          if (d.drop) saved.dispose();
          const bad = dy.values === null || d.drop || (d.project && !d.frozenA);
          await outcome(
            'lora.backward',
            bad,
            () =>
              isAsync
                ? lora.backwardAsync(dy.t, saved, { projectGradB: d.project })
                : lora.backward(dy.t, saved, { projectGradB: d.project }),
            (r) => {
              const g = r as lora.LoraGrads;
              const ref = loraBackwardRef(dy.values!, x.values!, W.values!, A.values!, B.values!, f32(scale), null, d.T, d.I, d.O, d.R);
              const b = loraBackwardRef(
                abs(dy.values!),
                abs(x.values!),
                abs(W.values!),
                abs(A.values!),
                abs(B.values!),
                Math.abs(f32(scale)),
                null,
                d.T,
                d.I,
                d.O,
                d.R,
              );
              close(g.dx.toFloat32Array(), ref.dx, 2e-5, 'dx', b.dx);
              if (!d.frozenA) close(g.dA!.toFloat32Array(), ref.dA, 2e-5, 'dA', b.dA);
              else if (g.dA !== undefined) throw new Error('dA with frozenA');
              if (!d.project) close(g.dB.toFloat32Array(), ref.dB, 2e-5, 'dB', b.dB);
              else if (!g.dB.toFloat32Array().every(Number.isFinite)) throw new Error('projected dB not finite');
              dispose(g.dx, g.dA, g.dB);
            },
          );
          saved.dispose();
          dispose(x.t, W.t, A.t, B.t, y, dy.t);
        },
      ),
      runs(900),
    );
  });

  it('lora.merge / unmerge (+Async): in place, aliasing refused', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.record({ I: dim, O: dim, R: dim, W: role(), A: role({ alias: 3 }), B: role({ alias: 3 }) }),
        scalar,
        fc.constantFrom('merge', 'unmerge', 'mergeAsync', 'unmergeAsync'),
        fc.boolean(),
        async (d, scale, which, safe) => {
          const W = make(d.W, [d.O, d.I]);
          const A = make(d.A, [d.R, d.I], W.t);
          const B = make(d.B, [d.O, d.R], W.t);
          const before = W.values;
          const bad = [W, A, B].some((m) => m.values === null || m.aliased) || !goodScalar(scale);
          await outcome(
            `lora.${which}`,
            bad,
            () => lora[which](W.t, A.t, B.t, scale as number, { safe }),
            () => {
              const s = which.startsWith('un') ? -f32(scale) : f32(scale);
              const ref = mergeRef(before!, A.values!, B.values!, s, d.O, d.I, d.R);
              const bound = mergeRef(abs(before!), abs(A.values!), abs(B.values!), Math.abs(s), d.O, d.I, d.R);
              close(W.t.toFloat32Array(), ref, W.t.dtype === 'bfloat16' ? 1e-2 : 2e-6, 'W', bound);
            },
          );
          dispose(W.t, A.t, B.t);
        },
      ),
      runs(1500),
    );
  });

  it('deltaLora.update: W += λ·s·(B₁A₁ − B₀A₀), aliasing refused', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.record({
          I: dim,
          O: dim,
          R: dim,
          W: role(),
          A0: role({ alias: 2 }),
          B0: role(),
          A1: role({ alias: 2 }),
          B1: role({ alias: 2 }),
        }),
        scalar,
        fc.oneof(fc.constant(undefined), scalar),
        fc.boolean(),
        async (d, scale, lambda, isAsync) => {
          const W = make(d.W, [d.O, d.I]);
          const A0 = make(d.A0, [d.R, d.I], W.t),
            B0 = make(d.B0, [d.O, d.R]),
            A1 = make(d.A1, [d.R, d.I], W.t),
            B1 = make(d.B1, [d.O, d.R], W.t);
          const before = W.values;
          const lam = lambda === undefined ? 2 : lambda;
          const bad = [W, A0, B0, A1, B1].some((m) => m.values === null || m.aliased) || !goodScalar(scale) || !goodScalar(lam);
          await outcome(
            'deltaLora.update',
            bad,
            () => {
              const opts = { scale: scale as number, ...(lambda === undefined ? {} : { lambda: lambda as number }) };
              return isAsync
                ? deltaLora.updateAsync(W.t, { A: A0.t, B: B0.t }, { A: A1.t, B: B1.t }, opts)
                : deltaLora.update(W.t, { A: A0.t, B: B0.t }, { A: A1.t, B: B1.t }, opts);
            },
            () => {
              const s = f32(lam) * f32(scale);
              const b1a1 = matmulNN(B1.values!, A1.values!, d.O, d.I, d.R),
                b0a0 = matmulNN(B0.values!, A0.values!, d.O, d.I, d.R);
              const ref = before!.map((w, i) => w + s * (b1a1[i] - b0a0[i]));
              const m1 = matmulNN(abs(B1.values!), abs(A1.values!), d.O, d.I, d.R),
                m0 = matmulNN(abs(B0.values!), abs(A0.values!), d.O, d.I, d.R);
              const bound = Array.from(before!, (w, i) => Math.abs(w) + Math.abs(s) * (m1[i] + m0[i]));
              close(W.t.toFloat32Array(), ref, W.t.dtype === 'bfloat16' ? 1e-2 : 2e-6, 'W', bound);
            },
          );
          dispose(W.t, A0.t, B0.t, A1.t, B1.t);
        },
      ),
      runs(800),
    );
  });
});

// ---- VeRA and the plain linear layer ----------------------------------------------------------

describe('property: VeRA and linear', () => {
  it('vera.forward and vera.merge against (λb ⊙ B)(λd ⊙ A) on the projections slices', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.record({ T: dim, I: dim, O: dim, R: dim, extraIn: fc.integer({ min: 0, max: 3 }), extraOut: fc.integer({ min: 0, max: 3 }) }),
        fc.record({ W: role(), ld: role({ alias: 0, bf16: 0 }), lb: role({ alias: 0, bf16: 0 }), projA: fc.constantFrom('proj', 'W') }),
        fc.constantFrom('forward', 'merge', 'unmerge'),
        async (d, roles, which) => {
          const proj = vera.projections({ rank: d.R, maxIn: d.I + d.extraIn, maxOut: d.O + d.extraOut, seed: seed++ });
          const W = make(roles.W, [d.O, d.I]);
          const ld = make(roles.ld, [d.R]),
            lb = make(roles.lb, [d.O]);
          const A =
            roles.projA === 'W' && d.R === d.O && d.extraIn === 0 && W.values !== null && !W.t.disposed ? W.t.reshape([d.R, d.I]) : proj.A;
          const pair = { A, B: proj.B };
          const Av = A.toFloat32Array(), // proj.A's values, or W's when it is a view of W
            Bv = proj.B.toFloat32Array();
          const x = make('ok', [d.T, d.I]);
          const maxIn = d.I + d.extraIn;
          /** (λb ⊙ B[:out]) (λd ⊙ A[:, :in]) [out, in]; with `absolute`, of the absolute values (the terms' size). */
          const delta = (absolute: boolean) => {
            const m = absolute ? Math.abs : (v: number) => v;
            const a = new Float64Array(d.R * d.I);
            for (let r = 0; r < d.R; r++) for (let i = 0; i < d.I; i++) a[r * d.I + i] = m(Av[r * maxIn + i]) * m(ld.values![r]);
            const b = new Float64Array(d.O * d.R);
            for (let o = 0; o < d.O; o++) for (let r = 0; r < d.R; r++) b[o * d.R + r] = m(Bv[o * d.R + r]) * m(lb.values![o]);
            return matmulNN(b, a, d.O, d.I, d.R);
          };
          const bad = [W, ld, lb].some((m) => m.values === null) || (A !== proj.A && which !== 'forward');
          const before = W.values;
          await outcome(
            `vera.${which}`,
            bad,
            () => (which === 'forward' ? vera.forward(x.t, W.t, pair, ld.t, lb.t) : vera[which](W.t, pair, ld.t, lb.t)),
            (r) => {
              const ba = delta(false),
                baAbs = delta(true);
              if (which === 'forward') {
                const { y, saved } = r as { y: Tensor; saved: { dispose(): void } };
                const base = matmulNT(x.values!, before!, d.T, d.O, d.I),
                  ad = matmulNT(x.values!, ba, d.T, d.O, d.I);
                const bBase = matmulNT(abs(x.values!), abs(before!), d.T, d.O, d.I),
                  bAd = matmulNT(abs(x.values!), baAbs, d.T, d.O, d.I);
                close(
                  y.toFloat32Array(),
                  base.map((v, i) => v + ad[i]),
                  2e-5,
                  'y',
                  bBase.map((v, i) => v + bAd[i]),
                );
                y.dispose();
                saved.dispose();
              } else {
                const s = which === 'merge' ? 1 : -1;
                const bound = Array.from(before!, (w, i) => Math.abs(w) + baAbs[i]);
                close(
                  W.t.toFloat32Array(),
                  before!.map((w, i) => w + s * ba[i]),
                  W.t.dtype === 'bfloat16' ? 1e-2 : 2e-6,
                  'W',
                  bound,
                );
              }
            },
          );
          dispose(W.t, ld.t, lb.t, x.t, proj.A, proj.B);
        },
      ),
      runs(900),
    );
  });

  it('linear.forward / backward', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.record({ T: dim, I: dim, O: dim, x: role(), W: role(), bias: fc.option(role({ bf16: 0 })), dy: role({ bf16: 0 }) }),
        fc.boolean(),
        async (d, isAsync) => {
          const x = make(d.x === 'bf16' ? 'ok' : d.x, [d.T, d.I]);
          const W = make(d.W === 'bf16' || d.W === 'alias' ? 'ok' : d.W, [d.O, d.I]);
          const bias = d.bias === null ? null : make(d.bias, [d.O]);
          const bad = [x, W, bias].some((m) => m !== null && m.values === null);
          let fwd: { y: Tensor; saved: linear.LinearSaved } | undefined;
          await outcome(
            'linear.forward',
            bad,
            () => (isAsync ? linear.forwardAsync(x.t, W.t, { bias: bias?.t }) : linear.forward(x.t, W.t, { bias: bias?.t })),
            (r) => {
              fwd = r as typeof fwd;
              const ref = matmulNT(x.values!, W.values!, d.T, d.O, d.I).map((v, i) => v + (bias ? bias.values![i % d.O] : 0));
              const bound = matmulNT(abs(x.values!), abs(W.values!), d.T, d.O, d.I).map(
                (v, i) => v + (bias ? Math.abs(bias.values![i % d.O]) : 0),
              );
              close(fwd!.y.toFloat32Array(), ref, 2e-5, 'y', bound);
            },
          );
          if (fwd) {
            const dy = make(d.dy, [d.T, d.O], fwd.y);
            await outcome(
              'linear.backward',
              dy.values === null,
              () => (isAsync ? linear.backwardAsync(dy.t, fwd!.saved) : linear.backward(dy.t, fwd!.saved)),
              (r) => {
                const g = r as { dx: Tensor; dW: Tensor; db?: Tensor };
                close(
                  g.dx.toFloat32Array(),
                  matmulNN(dy.values!, W.values!, d.T, d.I, d.O),
                  2e-5,
                  'dx',
                  matmulNN(abs(dy.values!), abs(W.values!), d.T, d.I, d.O),
                );
                const dW = new Float64Array(d.O * d.I),
                  dWAbs = new Float64Array(d.O * d.I);
                for (let t = 0; t < d.T; t++)
                  for (let o = 0; o < d.O; o++)
                    for (let i = 0; i < d.I; i++) {
                      const term = dy.values![t * d.O + o] * x.values![t * d.I + i];
                      dW[o * d.I + i] += term;
                      dWAbs[o * d.I + i] += Math.abs(term);
                    }
                close(g.dW.toFloat32Array(), dW, 2e-5, 'dW', dWAbs);
                dispose(g.dx, g.dW, g.db);
              },
            );
            dispose(fwd.y, dy.t);
          }
          dispose(x.t, W.t, bias?.t);
        },
      ),
      runs(800),
    );
  });
});

// ---- element-wise ops, losses, search, the optimizer, tensors ---------------------------------

describe('property: element-wise ops', () => {
  it('relu/gelu/tanh and their gradients; add, scale and addInto with out aliasing exactly, partly or not at all', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.record({
          n: fc.integer({ min: 1, max: 40 }),
          a: role({ alias: 0, bf16: 0, shape: 0 }),
          b: role({ alias: 0, bf16: 0, shape: 0 }),
        }),
        fc.constantFrom('relu', 'gelu', 'tanh', 'reluBackward', 'geluBackward', 'tanhBackward', 'add', 'scale', 'addInto'),
        fc.constantFrom('none', 'a', 'b', 'partial', 'fresh'),
        scalar,
        async (d, op, out, alpha) => {
          const a = make(d.a, [d.n]),
            b = make(d.b, [d.n]);
          const unary = op === 'relu' || op === 'gelu' || op === 'tanh' || op === 'scale';
          // 'partial': a lies over shared[0, n) and the tensor written over shared[1, n + 1) (overlapping, not equal)
          const shared = new Float32Array(d.n + 1).map((_, i) => Math.sin(i + seed++));
          const partial = out === 'partial' && (op === 'add' || op === 'scale' || op === 'addInto');
          const aT = partial ? tensor(shared.subarray(0, d.n), [d.n]) : a.t;
          const av = partial ? shared.slice(0, d.n) : a.values;
          const shifted = tensor(shared.subarray(1), [d.n]);
          const shiftedBefore = shared.slice(1);
          const fresh = zeros([d.n]);
          const target = { none: undefined, a: aT, b: op === 'add' ? b.t : aT, partial: shifted, fresh }[out];
          const src = op === 'addInto' && (out === 'a' || partial) ? aT : b.t; // addInto(a, a): exact aliasing, 2a
          const srcv = op === 'addInto' && (out === 'a' || partial) ? av : b.values;
          const bad =
            av === null || (!unary && srcv === null) || ((op === 'add' || op === 'scale') && !goodScalar(alpha)) || (partial && d.n > 1);
          await outcome(
            `nn.${op}`,
            bad,
            () => {
              switch (op) {
                case 'relu':
                case 'gelu':
                case 'tanh':
                  return nn[op](aT);
                case 'reluBackward':
                case 'geluBackward':
                case 'tanhBackward':
                  return nn[op](b.t, aT);
                case 'add':
                  return nn.add(aT, b.t, { alpha: alpha as number, out: target });
                case 'scale':
                  return nn.scale(aT, alpha as number, { out: target });
                case 'addInto':
                  return nn.addInto(partial ? shifted : aT, src);
              }
            },
            (r) => {
              const y = (r as Tensor).toFloat32Array();
              const A = av!,
                B = srcv!;
              let ref: number[];
              if (op in ACTIVATION_REF) ref = Array.from(A, ACTIVATION_REF[op as keyof typeof ACTIVATION_REF].f);
              else if (op.endsWith('Backward'))
                ref = Array.from(A, (v, i) => B[i] * ACTIVATION_REF[op.replace('Backward', '') as keyof typeof ACTIVATION_REF].df(v));
              else if (op === 'add') ref = Array.from(A, (v, i) => v + f32(alpha) * B[i]);
              else if (op === 'scale') ref = Array.from(A, (v) => f32(alpha) * v);
              else ref = Array.from(partial ? shiftedBefore : A, (v, i) => v + B[i]); // addInto: dst's values before, plus src
              close(y, ref, 1e-5, op);
              if (r !== aT && r !== b.t && r !== target) (r as Tensor).dispose();
            },
          );
          dispose(a.t, b.t, aT, shifted, fresh);
        },
      ),
      runs(1600),
    );
  });
});

describe('property: losses and search', () => {
  it('softmaxCrossEntropy with labels in and out of range', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.record({ T: dim, C: dim, z: role({ alias: 0, bf16: 0, int32: 1 }) }),
        fc.array(fc.integer({ min: -2, max: 11 }), { minLength: 1, maxLength: 9 }),
        fc.boolean(),
        async (d, labelPool, isAsync) => {
          const z = make(d.z, [d.T, d.C]);
          const labels = Array.from({ length: d.T }, (_, i) => labelPool[i % labelPool.length]);
          const lt = tensor(Int32Array.from(labels), [d.T]);
          const bad = z.values === null || labels.some((l) => l < 0 || l >= d.C);
          await outcome(
            'nn.softmaxCrossEntropy',
            bad,
            () => (isAsync ? nn.softmaxCrossEntropyAsync(z.t, lt, { grad: true }) : nn.softmaxCrossEntropy(z.t, lt, { grad: true })),
            (r) => {
              const { loss, dlogits } = r as { loss: Tensor; dlogits: Tensor };
              let total = 0;
              const g = new Float64Array(d.T * d.C);
              for (let t = 0; t < d.T; t++) {
                const row = Array.from(z.values!.subarray(t * d.C, (t + 1) * d.C));
                const m = Math.max(...row);
                const lse = m + Math.log(row.reduce((s, v) => s + Math.exp(v - m), 0));
                total += lse - row[labels[t]];
                row.forEach((v, c) => (g[t * d.C + c] = (Math.exp(v - lse) - (c === labels[t] ? 1 : 0)) / d.T));
              }
              close(loss.toFloat32Array(), [total / d.T], 1e-5, 'loss');
              close(dlogits.toFloat32Array(), g, 1e-5, 'dlogits');
              dispose(loss, dlogits);
            },
          );
          dispose(z.t, lt);
        },
      ),
      runs(600),
    );
  });

  it('infoNce (normalize off: analytic gradients; on: the loss)', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.record({ N: dim, M: fc.integer({ min: 0, max: 3 }), D: dim, q: role({ alias: 0, bf16: 0 }), p: role({ alias: 0, bf16: 0 }) }),
        fc.record({ symmetric: fc.boolean(), normalize: fc.boolean() }),
        scalar,
        async (d, o, scale) => {
          const q = make(d.q, [d.N, d.D]),
            p = make(d.p, [d.N + d.M, d.D]);
          const bad = q.values === null || p.values === null || !goodScalar(scale);
          await outcome(
            'nn.infoNce',
            bad,
            () => nn.infoNce(q.t, p.t, { scale: scale as number, symmetric: o.symmetric, normalize: o.normalize, grad: true }),
            (r) => {
              const { loss, dq, dp } = r as { loss: Tensor; dq: Tensor; dp: Tensor };
              const unit = (v: Float32Array, rows: number) =>
                Array.from({ length: rows }, (_, i) => {
                  const row = Array.from(v.subarray(i * d.D, (i + 1) * d.D));
                  const norm = o.normalize ? Math.max(Math.hypot(...row), 1e-12) : 1;
                  return row.map((x) => x / norm);
                });
              const Q = unit(q.values!, d.N),
                P = unit(p.values!, d.N + d.M);
              const s = f32(scale);
              const S = Q.map((qr) => P.map((pr) => s * qr.reduce((acc, x, k) => acc + x * pr[k], 0)));
              const dS = S.map((row) => row.map(() => 0));
              const ce = (vals: number[], target: number, w: number, put: (j: number, g: number) => void) => {
                const m = Math.max(...vals);
                const lse = m + Math.log(vals.reduce((acc, v) => acc + Math.exp(v - m), 0));
                vals.forEach((v, j) => put(j, w * (Math.exp(v - lse) - (j === target ? 1 : 0))));
                return lse - vals[target];
              };
              const w = o.symmetric ? 0.5 / d.N : 1 / d.N;
              let total = 0;
              for (let i = 0; i < d.N; i++) total += ce(S[i], i, w, (j, g) => (dS[i][j] += g));
              if (o.symmetric)
                for (let j = 0; j < d.N; j++)
                  total += ce(
                    S.map((row) => row[j]),
                    j,
                    w,
                    (i, g) => (dS[i][j] += g),
                  );
              close(loss.toFloat32Array(), [total * (o.symmetric ? 0.5 / d.N : 1 / d.N)], 2e-5, 'loss');
              if (!o.normalize) {
                const gq = Q.flatMap((_, i) =>
                  Array.from({ length: d.D }, (_, k) => s * P.reduce((acc, pr, j) => acc + dS[i][j] * pr[k], 0)),
                );
                const gp = P.flatMap((_, j) =>
                  Array.from({ length: d.D }, (_, k) => s * Q.reduce((acc, qr, i) => acc + dS[i][j] * qr[k], 0)),
                );
                close(dq.toFloat32Array(), gq, 2e-5, 'dq');
                close(dp.toFloat32Array(), gp, 2e-5, 'dp');
              } else if (![...dq.toFloat32Array(), ...dp.toFloat32Array()].every(Number.isFinite)) throw new Error('gradients not finite');
              dispose(loss, dq, dp);
            },
          );
          dispose(q.t, p.t);
        },
      ),
      runs(600),
    );
  });

  it('search.topk against a full sort (ties to the lower column)', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.record({ rows: dim, cols: dim, k: fc.integer({ min: 0, max: 11 }), s: role({ alias: 0, bf16: 1 }) }),
        fc.boolean(),
        fc.boolean(),
        async (d, ties, isAsync) => {
          const s = make(d.s, [d.rows, d.cols]);
          if (ties && s.values && !s.t.disposed && s.t.dtype === 'float32') {
            const v = s.t.toFloat32Array().map((x) => Math.round(x * 2) / 2);
            s.t.dispose();
            s.t = tensor(v, [d.rows, d.cols]);
            s.values = v;
          }
          const bad = s.values === null || s.t.dtype !== 'float32' || d.k < 1 || d.k > d.cols;
          await outcome(
            'search.topk',
            bad,
            () => (isAsync ? search.topkAsync(s.t, d.k) : search.topk(s.t, d.k)),
            (r) => {
              const { indices, values } = r as { indices: Tensor; values: Tensor };
              const got = indices.toInt32Array();
              const vals = values.toFloat32Array();
              for (let i = 0; i < d.rows; i++) {
                const order = Array.from({ length: d.cols }, (_, j) => j).sort(
                  (a, b) => s.values![i * d.cols + b] - s.values![i * d.cols + a] || a - b,
                );
                for (let j = 0; j < d.k; j++) {
                  if (got[i * d.k + j] !== order[j]) throw new Error(`row ${i}: index ${got[i * d.k + j]} where the sort has ${order[j]}`);
                  if (vals[i * d.k + j] !== s.values![i * d.cols + order[j]]) throw new Error('a value is not the score');
                }
              }
              dispose(indices, values);
            },
          );
          dispose(s.t);
        },
      ),
      runs(600),
    );
  });
});

describe('property: the rest of the ops', () => {
  it('vera.backward: dx, dλd, dλb against the float64 chain rule', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.record({ T: dim, I: dim, O: dim, R: dim, dy: role({ bf16: 0 }), drop: fc.boolean() }),
        fc.boolean(),
        async (d, isAsync) => {
          const proj = vera.projections({ rank: d.R, maxIn: d.I, maxOut: d.O, seed: seed++ });
          const x = make('ok', [d.T, d.I]),
            W = make('ok', [d.O, d.I]),
            ld = make('ok', [d.R]),
            lb = make('ok', [d.O]);
          const { y, saved } = vera.forward(x.t, W.t, proj, ld.t, lb.t);
          const dy = make(d.dy, [d.T, d.O], y);
          if (d.drop) saved.dispose();
          await outcome(
            'vera.backward',
            dy.values === null || d.drop,
            () => (isAsync ? vera.backwardAsync(dy.t, saved) : vera.backward(dy.t, saved)),
            (r) => {
              const g = r as vera.VeraGrads;
              const A = proj.A.toFloat32Array(),
                B = proj.B.toFloat32Array();
              /** dx, dλd, dλb by the chain rule; with `absolute`, on the inputs' absolute values (the terms' size). */
              const grads = (absolute: boolean) => {
                const m = (v: ArrayLike<number>) => (absolute ? abs(v) : Float64Array.from(v));
                const [xv, Wv, Av, Bv, ldv, lbv, dyv] = [x.values!, W.values!, A, B, ld.values!, lb.values!, dy.values!].map(m);
                const h = matmulNT(xv, Av, d.T, d.R, d.I); // x Aᵀ [T, r]
                const u = h.map((v, k) => v * ldv[k % d.R]);
                const z = matmulNT(u, Bv, d.T, d.O, d.R); // u Bᵀ [T, out]
                const dz = dyv.map((v, k) => v * lbv[k % d.O]);
                const dlb = new Float64Array(d.O),
                  dld = new Float64Array(d.R);
                for (let k = 0; k < d.T * d.O; k++) dlb[k % d.O] += dyv[k] * z[k];
                const du = matmulNN(dz, Bv, d.T, d.R, d.O);
                for (let k = 0; k < d.T * d.R; k++) dld[k % d.R] += du[k] * h[k];
                const dh = du.map((v, k) => v * ldv[k % d.R]);
                const dxBase = matmulNN(dyv, Wv, d.T, d.I, d.O),
                  dxAd = matmulNN(dh, Av, d.T, d.I, d.R);
                return { dx: dxBase.map((v, k) => v + dxAd[k]), dld, dlb };
              };
              const ref = grads(false),
                bound = grads(true);
              close(g.dx.toFloat32Array(), ref.dx, 2e-5, 'dx', bound.dx);
              close(g.dLambdaD.toFloat32Array(), ref.dld, 2e-5, 'dLambdaD', bound.dld);
              close(g.dLambdaB.toFloat32Array(), ref.dlb, 2e-5, 'dLambdaB', bound.dlb);
              dispose(g.dx, g.dLambdaD, g.dLambdaB);
            },
          );
          saved.dispose();
          dispose(x.t, W.t, ld.t, lb.t, y, dy.t, proj.A, proj.B);
        },
      ),
      runs(600),
    );
  });

  it('nn.fill: every element the value rounded to the dtype; int32 takes integers in range only', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.record({
          n: fc.integer({ min: 1, max: 40 }),
          dtype: fc.constantFrom('float32', 'bfloat16', 'int32'),
          t: role({ alias: 0, bf16: 0, int32: 0, shape: 0 }),
        }),
        fc.oneof(
          fc.double(),
          fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 }),
          fc.constantFrom(NaN, Infinity, -Infinity, 2 ** 31, 0.5, '1', null),
        ),
        async (d, value) => {
          const t = d.t === 'disposed' ? make('disposed', [d.n]).t : zeros([d.n], { dtype: d.dtype });
          const intOk = typeof value === 'number' && Number.isInteger(value) && value >= -(2 ** 31) && value < 2 ** 31;
          const bad =
            d.t === 'disposed' ||
            typeof value !== 'number' ||
            (d.dtype === 'int32' && !intOk) ||
            (d.dtype !== 'int32' && Number.isFinite(value) && Math.abs(value) > 3.4028234663852886e38);
          await outcome(
            'nn.fill',
            bad,
            () => nn.fill(t, value as number),
            () => {
              const v = value as number;
              const want = d.dtype === 'int32' ? Math.trunc(v) + 0 : d.dtype === 'float32' ? Math.fround(v) : bf16Value(Math.fround(v)); // + 0: int32 has no -0
              const got = d.dtype === 'int32' ? Array.from(t.toInt32Array()) : Array.from(t.toFloat32Array());
              if (!got.every((g) => Object.is(g, want) || (Number.isNaN(g) && Number.isNaN(want))))
                throw new Error(`fill ${v}: got ${got[0]}, want ${want}`);
            },
          );
          t.dispose();
        },
      ),
      runs(600),
    );
  });

  it('embed.search / searchSync against a float64 brute force', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.record({
          n: dim,
          N: fc.integer({ min: 1, max: 20 }),
          D: dim,
          k: fc.integer({ min: 0, max: 22 }),
          batchRows: fc.option(fc.integer({ min: 0, max: 10 })),
        }),
        fc.record({ q: role({ alias: 0, bf16: 1 }), docs: role({ alias: 0, bf16: 1 }) }),
        fc.boolean(),
        async (d, roles, isAsync) => {
          const q = make(roles.q, [d.n, d.D]),
            docs = make(roles.docs, [d.N, d.D]);
          const bad =
            q.values === null ||
            docs.values === null ||
            q.t.dtype !== 'float32' ||
            docs.t.dtype !== 'float32' ||
            d.k < 1 ||
            d.k > d.N ||
            d.batchRows === 0;
          const opts = { k: d.k, ...(d.batchRows === null ? {} : { batchRows: d.batchRows }) };
          await outcome(
            'embed.search',
            bad,
            () => (isAsync ? embed.search(q.t, docs.t, opts) : embed.searchSync(q.t, docs.t, opts)),
            (r) => {
              const res = r as { indices: Int32Array; scores: Float32Array };
              const s = matmulNT(q.values!, docs.values!, d.n, d.N, d.D);
              for (let i = 0; i < d.n; i++) {
                const row = Array.from(s.subarray(i * d.N, (i + 1) * d.N));
                const order = row.map((_, j) => j).sort((a, b) => row[b] - row[a] || a - b);
                for (let j = 0; j < d.k; j++) {
                  const got = res.indices[i * d.k + j];
                  // the same document, or one whose float64 score ties within float32 rounding
                  if (got !== order[j] && Math.abs(row[got] - row[order[j]]) > 1e-5 * (1 + Math.abs(row[order[j]])))
                    throw new Error(`query ${i}, rank ${j}: ${got}, not ${order[j]}`);
                  if (Math.abs(res.scores[i * d.k + j] - row[got]) > 1e-5 * (1 + Math.abs(row[got])))
                    throw new Error('a score is not the dot product');
                }
              }
            },
          );
          dispose(q.t, docs.t);
        },
      ),
      runs(600),
    );
  });

  it('tensor, zeros, randn, rand with random data, shapes and options', async () => {
    const shape = fc.oneof(
      { arbitrary: fc.array(fc.integer({ min: 0, max: 6 }), { maxLength: 3 }), weight: 8 },
      { arbitrary: fc.constantFrom([-1], [1.5], ['2'], null, 3), weight: 1 },
    );
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom('tensor', 'zeros', 'randn', 'rand'),
        shape,
        fc.record(
          {
            dtype: fc.oneof(fc.constantFrom('float32', 'bfloat16', 'float16', 'int32'), fc.constantFrom('float64', 1)),
            seed: fc.oneof(fc.integer({ min: 0, max: 1000 }), fc.constantFrom(-1, 1.5, '1')),
            low: fc.double({ min: -3, max: 3, noNaN: true }),
            high: fc.double({ min: -3, max: 3, noNaN: true }),
            std: fc.oneof(fc.double({ min: 0, max: 3, noNaN: true }), fc.constantFrom(NaN, 1e39)),
          },
          { requiredKeys: [] },
        ),
        fc.constantFrom('f32', 'array', 'i32', 'u16', 'short'),
        async (fn, sh, o, kind) => {
          const valid = Array.isArray(sh) && (sh as unknown[]).every((x) => typeof x === 'number' && Number.isInteger(x) && x >= 0);
          const n = valid ? (sh as number[]).reduce((a, b) => a * b, 1) : 3;
          const v = randomF32(n, seed++);
          const data = {
            f32: v,
            array: Array.from(v),
            i32: Int32Array.from(v, (x) => Math.round(x * 10)),
            u16: new Uint16Array(n).fill(0x3f80),
            short: v.subarray(0, Math.max(0, n - 1)),
          }[kind];
          const dtypeOk = o.dtype === undefined || ['float32', 'bfloat16', 'float16', 'int32'].includes(o.dtype as string);
          await outcome(
            fn,
            !valid || !dtypeOk,
            () => {
              if (fn === 'tensor') return tensor(data, sh as number[], { dtype: o.dtype as 'float32' });
              if (fn === 'zeros') return zeros(sh as number[], { dtype: o.dtype as 'float32' });
              if (fn === 'randn') return randn(sh as number[], { seed: o.seed as number, std: o.std, dtype: o.dtype as 'float32' });
              return rand(sh as number[], { seed: o.seed as number, low: o.low, high: o.high, dtype: o.dtype as 'float32' });
            },
            (r) => {
              const t = r as Tensor;
              if (t.size !== n || t.shape.length !== (sh as number[]).length) throw new Error('wrong shape');
              const values = t.dtype === 'int32' ? Array.from(t.toInt32Array()) : Array.from(t.toFloat32Array());
              if (fn === 'zeros' && values.some((x) => x !== 0)) throw new Error('zeros not zero');
              if (fn === 'rand' && t.dtype === 'float32' && values.some((x) => !(x >= (o.low ?? 0) && x < (o.high ?? 1))))
                throw new Error('rand out of range');
              if (fn === 'tensor' && kind === 'f32' && t.dtype === 'float32' && values.some((x, i) => x !== v[i]))
                throw new Error('tensor values');
              if (fn === 'tensor' && kind === 'short' && n > 0) throw new Error('a short array accepted');
              if ((fn === 'randn' || fn === 'rand') && t.dtype === 'int32') throw new Error('random int32 accepted');
              if (!values.every(Number.isFinite)) throw new Error('not finite');
              t.dispose();
            },
          );
        },
      ),
      runs(1000),
    );
  });

  it('lora.init, vera.init, vera.projections and the Linear layer with random options', async () => {
    const maybe = <T>(a: fc.Arbitrary<T>) =>
      fc.oneof({ arbitrary: a, weight: 4 }, { arbitrary: fc.constantFrom(0, -1, 1.5, '2', null, 2 ** 40), weight: 1 });
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom('lora.init', 'vera.init', 'vera.projections', 'Linear'),
        fc.record({ a: maybe(dim), b: maybe(dim), c: maybe(dim) }),
        fc.record({
          method: fc.constantFrom(undefined, 'kaiming', 'gaussian', 'xavier'),
          dInitial: fc.constantFrom(undefined, 0.1, 1e39, NaN),
          W: role({ bf16: 1 }),
          bias: fc.option(role({ alias: 2 })),
        }),
        async (fn, d, o) => {
          const dims = [d.a, d.b, d.c];
          const used = fn === 'vera.init' ? dims.slice(0, 2) : dims;
          const dimsOk = used.every((x) => typeof x === 'number' && Number.isSafeInteger(x) && x >= 1 && x <= 9);
          if (fn === 'Linear') {
            const W = make(o.W, [dimsOk ? (d.a as number) : 3, dimsOk ? (d.b as number) : 2]);
            const bias = o.bias === null ? null : make(o.bias, [W.t.shape[0] ?? 1], W.t);
            await outcome(
              'Linear',
              W.values === null || W.t.dtype !== 'float32' || (bias !== null && (bias.values === null || bias.aliased === true)),
              () => new Linear({ weight: W.t, ...(bias ? { bias: bias.t } : {}) }),
              (r) => {
                const layer = r as Linear;
                const x = make('ok', [2, W.t.shape[1]]);
                const y = layer.forward(x.t, { training: false });
                const ref = matmulNT(x.values!, W.values!, 2, W.t.shape[0], W.t.shape[1]).map(
                  (v, k) => v + (bias ? bias.values![k % W.t.shape[0]] : 0),
                );
                close(y.toFloat32Array(), ref, 2e-5, 'Linear y');
                dispose(y, x.t);
                layer.dispose();
              },
            );
            dispose(W.t, bias?.t);
            return;
          }
          await outcome(
            fn,
            !dimsOk ||
              (fn === 'lora.init' && o.method === 'xavier') ||
              (fn === 'vera.init' && o.dInitial !== undefined && !Number.isFinite(o.dInitial)) ||
              (fn === 'vera.init' && o.dInitial === 1e39),
            () => {
              if (fn === 'lora.init')
                return lora.init({
                  inFeatures: d.a as number,
                  outFeatures: d.b as number,
                  rank: d.c as number,
                  method: o.method as 'kaiming',
                  seed: 1,
                });
              if (fn === 'vera.init') return vera.init({ outFeatures: d.a as number, rank: d.b as number, dInitial: o.dInitial });
              return vera.projections({ rank: d.a as number, maxIn: d.b as number, maxOut: d.c as number, seed: 2 });
            },
            (r) => {
              if (fn === 'lora.init') {
                const { A, B } = r as { A: Tensor; B: Tensor };
                const bound = 1 / Math.sqrt(d.a as number);
                if (A.shape.join() !== `${d.c},${d.a}` || B.shape.join() !== `${d.b},${d.c}`) throw new Error('init shapes');
                if (B.toFloat32Array().some((x) => x !== 0)) throw new Error('B not zero');
                if (o.method !== 'gaussian' && A.toFloat32Array().some((x) => !(Math.abs(x) <= bound)))
                  throw new Error('kaiming A out of bounds');
                dispose(A, B);
              } else if (fn === 'vera.init') {
                const { lambdaD, lambdaB } = r as { lambdaD: Tensor; lambdaB: Tensor };
                if (lambdaD.toFloat32Array().some((x) => x !== Math.fround(o.dInitial ?? 0.1))) throw new Error('lambdaD');
                if (lambdaB.toFloat32Array().some((x) => x !== 0)) throw new Error('lambdaB');
                dispose(lambdaD, lambdaB);
              } else {
                const p = r as { A: Tensor; B: Tensor };
                if (p.A.shape.join() !== `${d.a},${d.b}` || p.B.shape.join() !== `${d.c},${d.a}`) throw new Error('projection shapes');
                if (![...p.A.toFloat32Array(), ...p.B.toFloat32Array()].every(Number.isFinite)) throw new Error('projections not finite');
                dispose(p.A, p.B);
              }
            },
          );
        },
      ),
      runs(1000),
    );
  });
});

describe('property: AdamW, tensors, layer constructors', () => {
  it('optim.AdamW: one step against the formula; a grad aliasing a param refused', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.record({ n: fc.integer({ min: 1, max: 33 }), p: role({ alias: 0, bf16: 0, shape: 0 }), g: role({ alias: 2, bf16: 0 }) }),
        fc.record({ lr: scalar, weightDecay: fc.double({ min: 0, max: 0.5, noNaN: true }) }),
        fc.boolean(),
        async (d, h, isAsync) => {
          const p = make(d.p, [d.n]);
          const g = make(d.g, [d.n], p.t);
          const lrOk = typeof h.lr === 'number' && h.lr >= 0 && h.lr <= 4;
          const lrBad = !(typeof h.lr === 'number' && h.lr >= 0 && h.lr <= 3.4028234663852886e38);
          const bad = p.values === null || g.values === null || !!g.aliased || lrBad;
          await outcome(
            'optim.AdamW',
            bad,
            async () => {
              const opt = new optim.AdamW([{ params: [{ param: p.t, grad: g.t }], lr: h.lr as number, weightDecay: h.weightDecay }]);
              try {
                if (isAsync) await opt.stepAsync();
                else opt.step();
              } finally {
                opt.dispose();
              }
            },
            () => {
              if (!lrOk) return; // accepted, but beyond what a float64 comparison of one step can say
              const lr = h.lr as number;
              const ref = Array.from(p.values!, (w, i) => {
                const gi = g.values![i];
                const m = 0.1 * gi,
                  v = 0.001 * gi * gi;
                const mh = m / (1 - 0.9),
                  vh = v / (1 - 0.999);
                return w * (1 - lr * h.weightDecay) - (lr * mh) / (Math.sqrt(vh) + 1e-8);
              });
              close(p.t.toFloat32Array(), ref, 1e-5, 'param');
            },
          );
          dispose(p.t, g.t);
        },
      ),
      runs(600),
    );
  });

  it('tensors: reshape, clone, astype, dispose in any order never hand out stale or foreign values', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 1, max: 64 }),
        fc.array(fc.constantFrom('reshape', 'clone', 'astype', 'disposeBase', 'disposeView', 'alloc', 'read'), {
          minLength: 1,
          maxLength: 12,
        }),
        async (n, steps) => {
          const v = randomF32(n, seed++);
          const base = tensor(v, [n]).clone();
          const views: Tensor[] = [];
          const others: { t: Tensor; v: Float32Array }[] = [];
          for (const s of steps) {
            const reads = s === 'reshape' || s === 'clone' || s === 'astype' || s === 'read';
            await outcome(
              `tensor.${s}`,
              reads && base.disposed,
              () => {
                if (s === 'reshape') views.push(base.reshape([1, n]));
                else if (s === 'clone') others.push({ t: base.clone(), v });
                else if (s === 'astype') others.push({ t: base.astype('float32'), v });
                else if (s === 'disposeBase') base.dispose();
                else if (s === 'disposeView') views.pop()?.dispose();
                else if (s === 'alloc') {
                  const w = randomF32(n, seed++);
                  others.push({ t: tensor(w, [n]).clone(), v: w });
                } else for (const t of [base, ...views]) return Array.from(t.toFloat32Array());
              },
              (r) => {
                if (Array.isArray(r) && r.some((x, i) => x !== v[i])) throw new Error('stale values');
              },
            );
          }
          for (const o of others)
            if (Array.from(o.t.toFloat32Array()).some((x, i) => x !== o.v[i])) throw new Error('a tensor changed under its owner');
          for (const t of views) expect(t.disposed).toBe(base.disposed);
          dispose(base, ...views, ...others.map((o) => o.t));
        },
      ),
      runs(500),
    );
  });

  it('LoraLinear / VeraLinear constructors with random options; a layer that builds computes the reference', async () => {
    const anything = fc.oneof(
      fc.constant(undefined),
      fc.constant(null),
      fc.string({ maxLength: 3 }),
      fc.integer(),
      fc.boolean(),
      fc.double(),
    );
    await fc.assert(
      fc.asyncProperty(
        fc.record({
          I: dim,
          O: dim,
          R: dim,
          W: role(),
          AB: fc.constantFrom('none', 'both', 'A only', 'aliased'),
          kind: fc.constantFrom('lora', 'vera'),
        }),
        fc.record(
          {
            alpha: fc.oneof({ arbitrary: scalar, weight: 4 }, { arbitrary: anything, weight: 1 }),
            seed: fc.oneof(
              { arbitrary: fc.integer({ min: 0, max: 2 ** 40 }), weight: 2 },
              { arbitrary: fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }), weight: 2 },
              { arbitrary: anything, weight: 1 },
            ),
            dropout: fc.oneof(
              { arbitrary: fc.constantFrom(0, 0.1, 0.5), weight: 4 },
              { arbitrary: fc.double({ min: -0.2, max: 1.2, noNaN: true }), weight: 1 },
              { arbitrary: anything, weight: 1 },
            ),
            variant: fc.oneof(
              { arbitrary: fc.constantFrom('lora', 'lora-fa', 'delta-lora'), weight: 4 },
              { arbitrary: anything, weight: 1 },
            ),
            init: fc.oneof({ arbitrary: fc.constantFrom('kaiming', 'gaussian'), weight: 4 }, { arbitrary: anything, weight: 1 }),
            rslora: fc.oneof({ arbitrary: fc.boolean(), weight: 4 }, { arbitrary: anything, weight: 1 }),
          },
          { requiredKeys: [] },
        ),
        async (d, o) => {
          const W = make(d.W, [d.O, d.I]);
          const x = make('ok', [3, d.I]);
          const A =
            d.AB === 'aliased' && d.R === d.O && W.values !== null && !W.t.disposed
              ? W.t.reshape([d.R, d.I])
              : tensor(randomF32(d.R * d.I, seed++), [d.R, d.I]);
          const B = tensor(randomF32(d.O * d.R, seed++), [d.O, d.R]);
          const proj = vera.projections({ rank: d.R, maxIn: d.I, maxOut: d.O, seed: 7 });
          const given = d.AB === 'none' ? {} : d.AB === 'A only' ? { A } : { A, B };
          await outcome(
            d.kind === 'lora' ? 'LoraLinear' : 'VeraLinear',
            (W.values === null && d.W !== 'bf16') ||
              (d.kind === 'lora' && (d.AB === 'A only' || (d.AB === 'aliased' && d.R === d.O && W.values !== null))),
            () =>
              d.kind === 'lora'
                ? new LoraLinear({ weight: W.t, rank: d.R, ...o, ...given } as never)
                : new VeraLinear({ weight: W.t, projections: proj, dropout: o.dropout, seed: o.seed } as never),
            (r) => {
              const layer = r as LoraLinear | VeraLinear;
              const y = layer.forward(x.t, { training: false }).toFloat32Array();
              const Wv = W.t.toFloat32Array();
              let ref: Float64Array;
              if (layer instanceof LoraLinear) {
                ref = loraForwardRef(
                  x.values!,
                  Wv,
                  null,
                  layer.A.toFloat32Array(),
                  layer.B.toFloat32Array(),
                  layer.scale,
                  null,
                  3,
                  d.I,
                  d.O,
                  d.R,
                ).y;
              } else {
                const ld = layer.lambdaD.toFloat32Array(),
                  lb = layer.lambdaB.toFloat32Array(),
                  Av = proj.A.toFloat32Array(),
                  Bv = proj.B.toFloat32Array();
                const a = Array.from(Av, (v, k) => v * ld[Math.floor(k / d.I)]);
                const b = Array.from(Bv, (v, k) => v * lb[Math.floor(k / d.R)]);
                const ba = matmulNN(b, a, d.O, d.I, d.R);
                const base = matmulNT(x.values!, Wv, 3, d.O, d.I),
                  ad = matmulNT(x.values!, ba, 3, d.O, d.I);
                ref = base.map((v, k) => v + ad[k]);
              }
              close(y, ref, 2e-5, 'layer y');
              layer.dispose();
            },
          );
          dispose(W.t, x.t, A, B, proj.A, proj.B);
        },
      ),
      runs(1200),
    );
  });

  it('ran at least 10,000 generated cases in all (with FC_RUNS=1)', () => {
    if (SCALE_RUNS >= 1) expect(Object.values(counts).reduce((s, c) => s + c.ran + c.refused, 0)).toBeGreaterThanOrEqual(10_000);
    expect(cases).toBeGreaterThan(0);
  });
});
