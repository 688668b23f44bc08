// The fused AdamW (README.md, Optimizers): parameter groups against an independent float64
// version of torch.optim.AdamW, over several steps with fresh gradients; the LoRA+ groups; the
// same bits on every thread count and instruction set, sync and async; every error message.
import { afterAll, describe, expect, expectTypeOf, it } from 'vitest';
import { memory, optim, setThreads, Tensor, tensor, type Param, type ParamGroup } from '../lib/index.js';
import { native } from '../lib/native.js';
import { errorOf, randomF32, relErr, sameBits } from './helpers/reference.js';

afterAll(() => {
  native()._setIsa('');
  setThreads(0);
});

// ---- float64 reference: torch.optim.AdamW's update, from its documented algorithm ---------

interface RefState {
  p: Float64Array;
  m: Float64Array;
  v: Float64Array;
  t: number;
}

interface Hyper {
  lr: number;
  betas: readonly [number, number];
  eps: number;
  weightDecay: number;
}

function refInit(p: Float32Array): RefState {
  return { p: Float64Array.from(p), m: new Float64Array(p.length), v: new Float64Array(p.length), t: 0 };
}

/** One AdamW step in float64: decoupled decay, moments, bias corrections, update. */
function refStep(s: RefState, g: ArrayLike<number>, h: Hyper): void {
  const [b1, b2] = h.betas;
  s.t += 1;
  const bc1 = 1 - b1 ** s.t;
  const bc2 = 1 - b2 ** s.t;
  for (let i = 0; i < s.p.length; i++) {
    s.p[i] *= 1 - h.lr * h.weightDecay;
    s.m[i] = b1 * s.m[i] + (1 - b1) * g[i];
    s.v[i] = b2 * s.v[i] + (1 - b2) * g[i] * g[i];
    const mhat = s.m[i] / bc1;
    const vhat = s.v[i] / bc2;
    s.p[i] -= (h.lr * mhat) / (Math.sqrt(vhat) + h.eps);
  }
}

// ---- helpers ----------------------------------------------------------------------------------

const PAD = 7;

/** A float32 tensor whose storage sits between NaN guards in a larger buffer. */
function guardedTensor(values: Float32Array, shape: number[]): { t: Tensor; big: Float32Array } {
  const big = new Float32Array(values.length + 2 * PAD).fill(NaN);
  big.set(values, PAD);
  return { t: tensor(big.subarray(PAD, PAD + values.length), shape), big };
}

function guardsIntact(big: Float32Array): boolean {
  const n = big.length - 2 * PAD;
  for (let i = 0; i < PAD; i++) if (!Number.isNaN(big[i]) || !Number.isNaN(big[PAD + n + i])) return false;
  return true;
}

const size = (shape: number[]) => shape.reduce((a, b) => a * b, 1);

interface Entry {
  param: Tensor;
  grad: Tensor;
  pBig: Float32Array;
  gBig: Float32Array;
  shape: number[];
}

function entry(shape: number[], seed: number, std = 1): Entry {
  const p = guardedTensor(randomF32(size(shape), seed, std), shape);
  const g = guardedTensor(randomF32(size(shape), seed + 1), shape);
  return { param: p.t, grad: g.t, pBig: p.big, gBig: g.big, shape };
}

/** Fresh random gradients into the grad tensors (what a backward pass would do). */
function fillGrads(entries: Entry[], seed: number, std = 1): void {
  entries.forEach((e, i) => (e.grad.storage() as Float32Array).set(randomF32(e.grad.size, seed * 101 + i, std)));
}

// ---- against the reference --------------------------------------------------------------------

describe('optim.AdamW against float64 torch.optim.AdamW', () => {
  it('two groups with different lr / weight decay, a group on the defaults, 5 steps with fresh gradients', () => {
    // awkward sizes, one above the kernel's chunk of 16384 elements (several tasks per tensor)
    const g0 = [entry([37, 8], 1), entry([130, 257], 3), entry([7], 5)];
    const g1 = [entry([8, 45], 7, 0.02), entry([1, 33], 9)];
    const g2 = [entry([97, 1], 11)];
    const h0: Hyper = { lr: 1e-2, betas: [0.9, 0.999], eps: 1e-8, weightDecay: 0.1 };
    const h1: Hyper = { lr: 3e-3, betas: [0.3, 0.95], eps: 1e-6, weightDecay: 0 }; // β1 < 0.5: torch's other lerp form
    const h2: Hyper = { lr: 1e-3, betas: [0.9, 0.999], eps: 1e-8, weightDecay: 1e-2 }; // torch's defaults
    const opt = new optim.AdamW([
      { params: g0.map(({ param, grad }) => ({ param, grad })), lr: h0.lr, weightDecay: h0.weightDecay },
      { params: g1.map(({ param, grad }) => ({ param, grad })), lr: h1.lr, betas: h1.betas, eps: h1.eps, weightDecay: h1.weightDecay },
      { params: g2.map(({ param, grad }) => ({ param, grad })) },
    ]);
    const groups: Array<[Entry[], Hyper]> = [
      [g0, h0],
      [g1, h1],
      [g2, h2],
    ];
    const refs = groups.map(([es]) => es.map((e) => refInit(e.param.storage() as Float32Array)));
    const initial = [...g0, ...g1, ...g2].map((e) => e.param.toFloat32Array());
    for (let step = 1; step <= 5; step++) {
      groups.forEach(([es], gi) => fillGrads(es, step * 10 + gi));
      const grads = groups.map(([es]) => es.map((e) => (e.grad.storage() as Float32Array).slice()));
      opt.step();
      expect(opt.stepCount).toBe(step);
      groups.forEach(([es, h], gi) =>
        es.forEach((e, i) => {
          refStep(refs[gi][i], grads[gi][i], h);
          const label = `group ${gi} tensor ${i} step ${step}`;
          expect(relErr(e.param.toFloat32Array(), refs[gi][i].p), label).toBeLessThan(1e-6);
          const state = opt.state(e.param)!;
          expect(state.step).toBe(step);
          expect(relErr(state.m.toFloat32Array(), refs[gi][i].m), `${label} m`).toBeLessThan(1e-6);
          expect(relErr(state.v.toFloat32Array(), refs[gi][i].v), `${label} v`).toBeLessThan(1e-6);
          // the grads are read, never written; nothing outside the tensors is touched
          expect(sameBits(e.grad.storage() as Float32Array, grads[gi][i]), label).toBe(true);
          expect(guardsIntact(e.pBig) && guardsIntact(e.gBig), label).toBe(true);
        }),
      );
    }
    // the update is not a no-op: every parameter moved
    [...g0, ...g1, ...g2].forEach((e, i) => expect(relErr(e.param.toFloat32Array(), initial[i])).toBeGreaterThan(1e-4));
  });

  it('a plain list of { param, grad } is one group on the defaults (or on the given defaults)', () => {
    const es = [entry([33, 7], 21), entry([5, 3], 23)];
    const h: Hyper = { lr: 5e-2, betas: [0.8, 0.99], eps: 1e-7, weightDecay: 0.05 };
    const opt = new optim.AdamW(
      es.map(({ param, grad }) => ({ param, grad, name: 'w' })),
      { lr: h.lr, betas: h.betas, eps: h.eps, weightDecay: h.weightDecay },
    );
    expect(opt.groups.length).toBe(1);
    expect(opt.groups[0].lr).toBe(h.lr);
    expect(opt.groups[0].betas).toEqual([0.8, 0.99]);
    const refs = es.map((e) => refInit(e.param.storage() as Float32Array));
    for (let step = 1; step <= 3; step++) {
      fillGrads(es, 40 + step);
      es.forEach((e, i) => refStep(refs[i], e.grad.storage(), h));
      opt.step();
    }
    es.forEach((e, i) => expect(relErr(e.param.toFloat32Array(), refs[i].p)).toBeLessThan(1e-6));
    const plain = new optim.AdamW([entry([4], 25)]);
    expect(plain.defaults).toEqual({ lr: 1e-3, betas: [0.9, 0.999], eps: 1e-8, weightDecay: 1e-2 });
    expect(plain.groups[0].weightDecay).toBe(1e-2);
  });

  it('a changed lr (a schedule) applies from the next step; an added group starts its own bias correction at 1', () => {
    const a = entry([45, 8], 31);
    const b = entry([8, 45], 33);
    const opt = new optim.AdamW([{ params: [{ param: a.param, grad: a.grad }], lr: 1e-2 }]);
    const ra = refInit(a.param.storage() as Float32Array);
    const rb = refInit(b.param.storage() as Float32Array);
    const ha: Hyper = { lr: 1e-2, betas: [0.9, 0.999], eps: 1e-8, weightDecay: 1e-2 };
    for (let step = 1; step <= 4; step++) {
      if (step === 2) opt.groups[0].lr = ha.lr = 4e-3;
      if (step === 3) {
        const added = opt.addParamGroup({ params: [{ param: b.param, grad: b.grad }], lr: 2e-2, weightDecay: 0 });
        expect(added.stepCount).toBe(0);
      }
      fillGrads([a, b], 60 + step);
      refStep(ra, a.grad.storage(), ha);
      if (step >= 3) refStep(rb, b.grad.storage(), { lr: 2e-2, betas: [0.9, 0.999], eps: 1e-8, weightDecay: 0 });
      opt.step();
    }
    expect(relErr(a.param.toFloat32Array(), ra.p)).toBeLessThan(1e-6);
    expect(relErr(b.param.toFloat32Array(), rb.p)).toBeLessThan(1e-6);
    expect(opt.groups.map((g) => g.stepCount)).toEqual([4, 2]);
    expect(opt.stepCount).toBe(4);
  });

  it('reads each grad at every step: a layer may hand it a fresh tensor', () => {
    const e = entry([13, 17], 71);
    const p: optim.Param = { param: e.param, grad: e.grad };
    const opt = new optim.AdamW([p], { lr: 1e-2 });
    const ref = refInit(e.param.storage() as Float32Array);
    const h: Hyper = { lr: 1e-2, betas: [0.9, 0.999], eps: 1e-8, weightDecay: 1e-2 };
    for (let step = 1; step <= 3; step++) {
      const g = randomF32(13 * 17, 80 + step);
      p.grad = tensor(g, [13, 17]);
      refStep(ref, g, h);
      opt.step();
    }
    expect(relErr(e.param.toFloat32Array(), ref.p)).toBeLessThan(1e-6);
  });
});

describe('optim.AdamW: the same bits everywhere', () => {
  function run(setup: () => void, async = false) {
    const es = [entry([130, 257], 101), entry([37, 8], 103), entry([3], 105)];
    const opt = new optim.AdamW([
      { params: es.slice(0, 2).map(({ param, grad }) => ({ param, grad })), lr: 1e-2, weightDecay: 0.1 },
      { params: es.slice(2).map(({ param, grad }) => ({ param, grad })), lr: 1e-3, betas: [0.2, 0.9] },
    ]);
    setup();
    return (async () => {
      for (let step = 1; step <= 3; step++) {
        fillGrads(es, 200 + step);
        if (async) await opt.stepAsync();
        else opt.step();
      }
      native()._setIsa('');
      setThreads(0);
      return es.map((e) => e.param.toFloat32Array());
    })();
  }

  it('1 thread, the default pool, the portable path and async all agree bit for bit', async () => {
    const base = await run(() => undefined);
    const one = await run(() => setThreads(1));
    const scalar = await run(() => expect(native()._setIsa('scalar')).toBe('scalar'));
    const async = await run(() => undefined, true);
    for (const other of [one, scalar, async]) base.forEach((b, i) => expect(sameBits(other[i], b)).toBe(true));
  });

  it('stepAsync leaves the event loop and refuses a second step until it settles', async () => {
    const e = entry([64, 64], 111);
    const opt = new optim.AdamW([{ param: e.param, grad: e.grad }]);
    const pending = opt.stepAsync();
    expect(pending).toBeInstanceOf(Promise);
    expect(errorOf(() => opt.step())).toEqual({
      cls: 'TypeError',
      message:
        'Expected no stepAsync() in flight for AdamW.step but received AdamW(1 groups, 1 tensors, step 0) (await the previous stepAsync() first)',
    });
    await pending;
    expect(opt.stepCount).toBe(1);
    opt.step();
    expect(opt.stepCount).toBe(2);
  });
});

describe('LoRA+ groups', () => {
  it('B gets ratio × lr, A and the others lr; options reach every group', () => {
    const A = [entry([8, 45], 301), entry([4, 33], 303)].map(({ param, grad }) => ({ param, grad }));
    const B = [entry([37, 8], 305), entry([21, 4], 307)].map(({ param, grad }) => ({ param, grad }));
    const others = [entry([37], 309)].map(({ param, grad }) => ({ param, grad }));
    const groups = optim.loraPlusGroups({ A, B, others }, { lr: 2e-4, weightDecay: 0.05 });
    expect(groups.map((g) => [g.name, g.lr, g.weightDecay, g.params.length])).toEqual([
      ['lora_A', 2e-4, 0.05, 2],
      ['lora_B', 2e-4 * 16, 0.05, 2],
      ['others', 2e-4, 0.05, 1],
    ]);
    expect(groups[0].params).toEqual(A);
    expect(groups[1].params).toEqual(B);
    const three = optim.loraPlusGroups({ A, B }, { lr: 1e-3, ratio: 3 });
    expect(three.map((g) => [g.name, g.lr, g.weightDecay])).toEqual([
      ['lora_A', 1e-3, undefined],
      ['lora_B', 3e-3, undefined],
    ]);
    const opt = new optim.AdamW(three);
    expect(opt.groups.map((g) => [g.name, g.lr, g.weightDecay])).toEqual([
      ['lora_A', 1e-3, 1e-2],
      ['lora_B', 3e-3, 1e-2],
    ]);
  });

  it.each([16, 3])('ratio %i: with weight decay 0 and equal gradients, B moves ratio × as far as A on the first step', (ratio) => {
    const shape = [16, 40];
    // small parameters, so float32 rounding of p + Δ keeps Δ to ~1e-7 of itself
    const a = entry(shape, 401, 1e-3);
    const b = entry(shape, 403, 1e-3);
    const g = randomF32(size(shape), 405);
    (a.grad.storage() as Float32Array).set(g);
    (b.grad.storage() as Float32Array).set(g);
    const a0 = a.param.toFloat32Array(),
      b0 = b.param.toFloat32Array();
    const opt = new optim.AdamW(
      optim.loraPlusGroups(
        { A: [{ param: a.param, grad: a.grad }], B: [{ param: b.param, grad: b.grad }] },
        { lr: 1e-3, ratio, weightDecay: 0 },
      ),
    );
    opt.step();
    const da = Float64Array.from(a.param.toFloat32Array(), (v, i) => v - a0[i]);
    const db = Float64Array.from(b.param.toFloat32Array(), (v, i) => v - b0[i]);
    expect(
      relErr(
        db,
        da.map((v) => v * ratio),
      ),
    ).toBeLessThan(1e-5);
    // first step: m̂ = g and v̂ = g², so A moves by lr·g/(|g| + eps) ≈ −lr·sign(g)
    expect(
      relErr(
        da,
        Float64Array.from(g, (x) => (-1e-3 * x) / (Math.abs(x) + 1e-8)),
      ),
    ).toBeLessThan(1e-5);
  });
});

describe('zeroGrad, state and dispose', () => {
  it('zeroGrad zeroes every grad, and nothing else', () => {
    const es = [entry([9, 9], 501), entry([130, 257], 503)];
    const opt = new optim.AdamW([
      { params: [{ param: es[0].param, grad: es[0].grad }] },
      { params: [{ param: es[1].param, grad: es[1].grad }] },
    ]);
    const before = es.map((e) => e.param.toFloat32Array());
    opt.zeroGrad();
    for (const e of es) {
      expect(e.grad.toFloat32Array().every((v) => v === 0 && !Object.is(v, -0))).toBe(true);
      expect(guardsIntact(e.gBig)).toBe(true);
    }
    es.forEach((e, i) => expect(sameBits(e.param.toFloat32Array(), before[i])).toBe(true));
  });

  it('state starts at zeros; dispose frees the state tensors and stops the optimizer', () => {
    const e = entry([12, 5], 511);
    const stranger = tensor(randomF32(3, 1), [3]);
    const live = memory().numTensors;
    const opt = new optim.AdamW([{ param: e.param, grad: e.grad }]);
    expect(memory().numTensors).toBe(live + 2);
    const s = opt.state(e.param)!;
    expect(s.m.shape).toEqual([12, 5]);
    expect(s.m.toFloat32Array().every((v) => v === 0)).toBe(true);
    expect(s.v.toFloat32Array().every((v) => v === 0)).toBe(true);
    expect(opt.state(stranger)).toBeUndefined();
    opt.dispose();
    opt.dispose();
    expect(memory().numTensors).toBe(live);
    expect(errorOf(() => opt.step())).toEqual({
      cls: 'TypeError',
      message: 'Expected a live optimizer for AdamW.step but received AdamW(1 groups, 1 tensors, step 0, disposed) (it was disposed)',
    });
  });
});

describe('optim: errors', () => {
  const e = entry([3, 4], 601);
  const f = entry([5], 603);
  const P = { param: e.param, grad: e.grad };
  const Q = { param: f.param, grad: f.grad };
  const gone = tensor(randomF32(12, 605), [3, 4]);
  gone.dispose();
  const fake = new Tensor(randomF32(12, 607), [3, 4], 'float32', 'cuda');
  afterAll(() => fake.dispose());
  const before = e.param.toFloat32Array();

  type Case = [label: string, call: () => unknown, cls: string, message: string];
  const cases: Case[] = [
    [
      'groups is not an array',
      () => new optim.AdamW(5 as never),
      'TypeError',
      'Expected an array of parameter groups or of { param, grad } for groups but received 5',
    ],
    [
      'groups is empty',
      () => new optim.AdamW([]),
      'RangeError',
      'Expected at least one parameter group or { param, grad } for groups but received []',
    ],
    [
      'lr is NaN',
      () => new optim.AdamW([{ params: [P], lr: NaN }]),
      'RangeError',
      'Expected a finite number >= 0 for groups[0].lr but received NaN',
    ],
    [
      'lr is negative',
      () => new optim.AdamW([{ params: [P] }, { params: [Q], lr: -1e-3 }]),
      'RangeError',
      'Expected a finite number >= 0 for groups[1].lr but received -0.001',
    ],
    [
      'lr is Infinity',
      () => new optim.AdamW([{ params: [P], lr: Infinity }]),
      'RangeError',
      'Expected a finite number >= 0 for groups[0].lr but received Infinity',
    ],
    [
      'lr is a string',
      () => new optim.AdamW([{ params: [P], lr: '1e-3' as never }]),
      'TypeError',
      'Expected a finite number >= 0 for groups[0].lr but received "1e-3"',
    ],
    [
      'beta2 is 1',
      () => new optim.AdamW([{ params: [P], betas: [0.9, 1] }]),
      'RangeError',
      'Expected a number in [0, 1) for groups[0].betas[1] but received 1',
    ],
    [
      'beta1 is negative',
      () => new optim.AdamW([{ params: [P], betas: [-0.1, 0.9] }]),
      'RangeError',
      'Expected a number in [0, 1) for groups[0].betas[0] but received -0.1',
    ],
    [
      'betas has one entry',
      () => new optim.AdamW([{ params: [P], betas: [0.9] as never }]),
      'TypeError',
      'Expected a pair [beta1, beta2] for groups[0].betas but received [0.9]',
    ],
    [
      'eps is negative',
      () => new optim.AdamW([{ params: [P], eps: -1e-8 }]),
      'RangeError',
      'Expected a finite number >= 0 for groups[0].eps but received -1e-8',
    ],
    [
      'weightDecay is NaN',
      () => new optim.AdamW([{ params: [P], weightDecay: NaN }]),
      'RangeError',
      'Expected a finite number >= 0 for groups[0].weightDecay but received NaN',
    ],
    [
      "torch's spelling weight_decay",
      () => new optim.AdamW([{ params: [P], weight_decay: 0.1 } as never]),
      'TypeError',
      'Expected a key among params, name, lr, betas, eps, weightDecay for groups[0] but received "weight_decay"',
    ],
    [
      'defaults.lr is NaN',
      () => new optim.AdamW([P], { lr: NaN }),
      'RangeError',
      'Expected a finite number >= 0 for defaults.lr but received NaN',
    ],
    [
      'defaults has an unknown key',
      () => new optim.AdamW([P], { momentum: 0.9 } as never),
      'TypeError',
      'Expected a key among lr, betas, eps, weightDecay for defaults but received "momentum"',
    ],
    [
      'params is not an array',
      () => new optim.AdamW([{ params: P as never }]),
      'TypeError',
      'Expected an array of { param, grad } for groups[0].params but received an object',
    ],
    [
      'a params entry is a bare tensor',
      () => new optim.AdamW([{ params: [P, e.param as never] }]),
      'TypeError',
      'Expected an object { param, grad } for groups[0].params[1] but received Tensor(float32, [3, 4], cpu)',
    ],
    [
      'param is bfloat16',
      () => new optim.AdamW([{ params: [{ param: e.param.astype('bfloat16'), grad: e.grad }] }]),
      'TypeError',
      'Expected a float32 Tensor for groups[0].params[0].param but received Tensor(bfloat16, [3, 4], cpu) (dtype is bfloat16)',
    ],
    [
      'grad is missing',
      () => new optim.AdamW([{ param: e.param } as never]),
      'TypeError',
      'Expected a Tensor for groups[0].grad but received undefined',
    ],
    [
      'grad has the wrong shape',
      () => new optim.AdamW([{ params: [Q, { param: e.param, grad: tensor(randomF32(12, 1), [4, 3]) }] }]),
      'RangeError',
      'Expected the shape of its param [3, 4] for groups[0].params[1].grad but received [4, 3]',
    ],
    [
      'grad is float16',
      () => new optim.AdamW([{ param: e.param, grad: e.grad.astype('float16') }]),
      'TypeError',
      'Expected a float32 Tensor for groups[0].grad but received Tensor(float16, [3, 4], cpu) (dtype is float16)',
    ],
    [
      'the same param twice',
      () => new optim.AdamW([{ params: [P] }, { params: [Q, P] }]),
      'RangeError',
      'Expected each parameter once, in one group for groups[1].params[1].param but received Tensor(float32, [3, 4], cpu) (it is also groups[0].params[0].param, or shares its memory)',
    ],
    [
      'a view of another param',
      () => new optim.AdamW([P, { param: e.param.reshape([12]), grad: tensor(randomF32(12, 2), [12]) }]),
      'RangeError',
      'Expected each parameter once, in one group for groups[1].param but received Tensor(float32, [12], cpu) (it is also groups[0].param, or shares its memory)',
    ],
    [
      'grad is its own param',
      () => new optim.AdamW([{ param: e.param, grad: e.param }]),
      'RangeError',
      'Expected a gradient apart from every parameter for groups[0].grad but received Tensor(float32, [3, 4], cpu) (it shares memory with groups[0].param)',
    ],
    [
      'param was disposed',
      () => new optim.AdamW([{ param: gone, grad: e.grad }]),
      'TypeError',
      'Expected a live Tensor for groups[0].param but received Tensor(float32, [3, 4], cpu, disposed) (it was disposed)',
    ],
    [
      'param on CUDA, grad on the CPU',
      () => new optim.AdamW([{ param: fake, grad: e.grad }]),
      'RangeError',
      'Expected a tensor on cuda (like its param) for groups[0].grad but received Tensor(float32, [3, 4], cpu)',
    ],
    [
      'loraPlusGroups without lr',
      () => optim.loraPlusGroups({ A: [P], B: [Q] }, {} as never),
      'TypeError',
      'Expected a finite number >= 0 for options.lr but received undefined',
    ],
    [
      'loraPlusGroups with ratio 0',
      () => optim.loraPlusGroups({ A: [P], B: [Q] }, { lr: 1e-3, ratio: 0 }),
      'RangeError',
      'Expected a finite number > 0 for options.ratio but received 0',
    ],
    [
      'loraPlusGroups with ratio NaN',
      () => optim.loraPlusGroups({ A: [P], B: [Q] }, { lr: 1e-3, ratio: NaN }),
      'RangeError',
      'Expected a finite number > 0 for options.ratio but received NaN',
    ],
    [
      'loraPlusGroups without B',
      () => optim.loraPlusGroups({ A: [P] } as never, { lr: 1e-3 }),
      'TypeError',
      'Expected an array of { param, grad } for params.B but received undefined',
    ],
    [
      'loraPlusGroups with bad betas',
      () => optim.loraPlusGroups({ A: [P], B: [Q] }, { lr: 1e-3, betas: [0.9, 1.5] }),
      'RangeError',
      'Expected a number in [0, 1) for options.betas[1] but received 1.5',
    ],
    [
      'loraPlusGroups with no options',
      () => optim.loraPlusGroups({ A: [P], B: [Q] }, undefined as never),
      'TypeError',
      'Expected an options object { lr, ratio?, ... } for options but received undefined',
    ],
  ];

  it.each(cases)('%s', (_label, call, cls, message) => {
    expect(errorOf(call)).toEqual({ cls, message });
    expect(sameBits(e.param.toFloat32Array(), before)).toBe(true);
  });

  it('a grad aliasing another param is refused even when the shapes agree', () => {
    const a = entry([2, 6], 611),
      b = entry([12], 613);
    expect(
      errorOf(
        () =>
          new optim.AdamW([
            { param: a.param, grad: a.grad },
            { param: b.param, grad: a.param.reshape([12]) },
          ]),
      ),
    ).toEqual({
      cls: 'RangeError',
      message:
        'Expected a gradient apart from every parameter for groups[1].grad but received Tensor(float32, [12], cpu) (it shares memory with groups[0].param)',
    });
  });

  it('a failing constructor leaks no state tensors', () => {
    const live = memory().numTensors;
    expect(() => new optim.AdamW([P, Q, { param: tensor(randomF32(4, 9), [4]), grad: tensor(randomF32(5, 9), [5]) }])).toThrow(RangeError);
    expect(memory().numTensors).toBe(live + 2); // the two tensors made in the call, none of AdamW's
    // a later group failing frees the state of the earlier, valid ones
    expect(() => new optim.AdamW([{ params: [P] }, { params: [Q] }, { params: [{ param: e.param, grad: Q.grad }] }])).toThrow(RangeError);
    expect(() => new optim.AdamW([{ params: [P, Q, P] }])).toThrow(RangeError);
    expect(memory().numTensors).toBe(live + 2);
  });

  it('at step(): a disposed param, or a grad replaced by a bad one, throws and changes nothing', () => {
    const a = entry([6, 7], 621),
      b = entry([6, 7], 623);
    const pb: optim.Param = { param: b.param, grad: b.grad };
    const opt = new optim.AdamW([{ param: a.param, grad: a.grad }, pb]);
    const a0 = a.param.toFloat32Array();
    pb.grad = tensor(randomF32(42, 5), [7, 6]);
    expect(errorOf(() => opt.step())).toEqual({
      cls: 'RangeError',
      message: 'Expected the shape of its param [6, 7] for groups[1].grad but received [7, 6]',
    });
    pb.grad = b.grad;
    b.param.dispose();
    expect(errorOf(() => opt.step())).toEqual({
      cls: 'TypeError',
      message: 'Expected a live Tensor for groups[1].param but received Tensor(float32, [6, 7], cpu, disposed) (it was disposed)',
    });
    expect(sameBits(a.param.toFloat32Array(), a0)).toBe(true);
    expect(opt.stepCount).toBe(0);
  });

  it('a group hyperparameter set to a bad value throws and keeps the old one', () => {
    const opt = new optim.AdamW([{ params: [P], lr: 1e-3 }]);
    expect(errorOf(() => (opt.groups[0].lr = NaN))).toEqual({
      cls: 'RangeError',
      message: 'Expected a finite number >= 0 for groups[0].lr but received NaN',
    });
    expect(errorOf(() => (opt.groups[0].betas = [1, 0.9]))).toEqual({
      cls: 'RangeError',
      message: 'Expected a number in [0, 1) for groups[0].betas[0] but received 1',
    });
    expect(opt.groups[0].lr).toBe(1e-3);
    expect(opt.groups[0].betas).toEqual([0.9, 0.999]);
    opt.dispose();
  });
});

describe('optim: types', () => {
  it('the public signatures', () => {
    expectTypeOf<optim.AdamW['step']>().returns.toEqualTypeOf<void>();
    expectTypeOf<optim.AdamW['stepAsync']>().returns.toEqualTypeOf<Promise<void>>();
    expectTypeOf<optim.AdamW['zeroGrad']>().returns.toEqualTypeOf<void>();
    expectTypeOf<optim.AdamW['stepCount']>().toEqualTypeOf<number>();
    expectTypeOf<optim.AdamW['groups']>().toEqualTypeOf<readonly optim.AdamWGroup[]>();
    expectTypeOf(optim.loraPlusGroups).returns.toEqualTypeOf<ParamGroup[]>();
    expectTypeOf<Param>().toEqualTypeOf<optim.Param>();
    expectTypeOf<Param['grad']>().toEqualTypeOf<Tensor>();
    expectTypeOf<ConstructorParameters<typeof optim.AdamW>[0]>().toEqualTypeOf<readonly ParamGroup[] | readonly Param[]>();
    expectTypeOf<optim.AdamWGroup['betas']>().toEqualTypeOf<readonly [number, number]>();
  });
});
