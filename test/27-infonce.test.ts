// nn.infoNce: InfoNCE with in-batch and shared hard negatives (sentence-transformers'
// MultipleNegativesRankingLoss, and its symmetric form), forward and backward fused. Against a
// plain float64 reference written here (normalise, logits, log-softmax, mean) on fresh random
// inputs at awkward sizes, the gradients also against central differences of the float64 loss;
// the loss the same bits for any thread count, the async form the same bits as the sync one,
// and the error texts of the argument checks. With a CUDA device: the same on device tensors.
import { describe, expect, it } from 'vitest';
import { nn, Tensor, zeros } from '../lib/index.js';
import { expectSameForAnyThreadCount, tensorPool, testDevices } from './helpers/tensors.js';
import { errorOf, randomF32, relErr } from './helpers/reference.js';

const { keep, rnd, nextSeed } = tensorPool(2700);

const DEVICES = testDevices('test/27-infonce');

interface Config {
  scale: number;
  symmetric: boolean;
  normalize: boolean;
}

/** Rows of x [rows, d] divided by max(‖row‖, 1e-12) (or x itself), and those divisors. */
function normalizeRef(x: ArrayLike<number>, rows: number, d: number, normalize: boolean) {
  const xh = new Float64Array(rows * d),
    den = new Float64Array(rows).fill(1);
  for (let r = 0; r < rows; r++) {
    let s = 0;
    for (let k = 0; k < d; k++) s += x[r * d + k] ** 2;
    if (normalize) den[r] = Math.max(Math.sqrt(s), 1e-12);
    for (let k = 0; k < d; k++) xh[r * d + k] = x[r * d + k] / den[r];
  }
  return { xh, den };
}

/** Log-sum-exp of `count` values at(0..count-1), max-shifted. */
function lse(count: number, at: (k: number) => number): number {
  let m = -Infinity;
  for (let k = 0; k < count; k++) m = Math.max(m, at(k));
  let s = 0;
  for (let k = 0; k < count; k++) s += Math.exp(at(k) - m);
  return m + Math.log(s);
}

/** The float64 loss of q [n, d] against p [rows, d], and its analytic gradients. */
function infoNceRef(q: ArrayLike<number>, p: ArrayLike<number>, n: number, rows: number, d: number, c: Config) {
  const Q = normalizeRef(q, n, d, c.normalize),
    P = normalizeRef(p, rows, d, c.normalize);
  const S = new Float64Array(n * rows);
  for (let i = 0; i < n; i++)
    for (let j = 0; j < rows; j++) {
      let s = 0;
      for (let k = 0; k < d; k++) s += Q.xh[i * d + k] * P.xh[j * d + k];
      S[i * rows + j] = c.scale * s;
    }
  const w = (c.symmetric ? 0.5 : 1) / n;
  const G = new Float64Array(n * rows);
  let total = 0;
  for (let i = 0; i < n; i++) {
    const l = lse(rows, (j) => S[i * rows + j]);
    total += l - S[i * rows + i];
    for (let j = 0; j < rows; j++) G[i * rows + j] += w * (Math.exp(S[i * rows + j] - l) - (i === j ? 1 : 0));
  }
  if (c.symmetric)
    for (let j = 0; j < n; j++) {
      const l = lse(n, (i) => S[i * rows + j]);
      total += l - S[j * rows + j];
      for (let i = 0; i < n; i++) G[i * rows + j] += w * (Math.exp(S[i * rows + j] - l) - (i === j ? 1 : 0));
    }
  const back = (X: { xh: Float64Array; den: Float64Array }, dxh: Float64Array, count: number) => {
    const dx = new Float64Array(count * d);
    for (let r = 0; r < count; r++) {
      let dot = 0;
      if (c.normalize && X.den[r] > 1e-12) for (let k = 0; k < d; k++) dot += X.xh[r * d + k] * dxh[r * d + k];
      for (let k = 0; k < d; k++) dx[r * d + k] = (dxh[r * d + k] - X.xh[r * d + k] * dot) / X.den[r];
    }
    return dx;
  };
  const dqh = new Float64Array(n * d),
    dph = new Float64Array(rows * d);
  for (let i = 0; i < n; i++)
    for (let j = 0; j < rows; j++) {
      const g = c.scale * G[i * rows + j];
      for (let k = 0; k < d; k++) {
        dqh[i * d + k] += g * P.xh[j * d + k];
        dph[j * d + k] += g * Q.xh[i * d + k];
      }
    }
  return { loss: total * w, dq: back(Q, dqh, n), dp: back(P, dph, rows) };
}

/** Central differences of the float64 loss at `count` coordinates of x (q or p) against `grad`. */
function checkFiniteDifferences(x: Float64Array, grad: Float64Array, loss: () => number, count: number): void {
  let scale = 1;
  for (const g of grad) scale = Math.max(scale, Math.abs(g));
  for (let k = 0, at = 3 % x.length; k < Math.min(count, x.length); k++, at = (at * 7919 + 13) % x.length) {
    const v = x[at],
      h = 1e-6 * Math.max(1, Math.abs(v));
    x[at] = v + h;
    const up = loss();
    x[at] = v - h;
    const down = loss();
    x[at] = v;
    const fd = (up - down) / (2 * h);
    expect(Math.abs(fd - grad[at]), `coordinate ${at}: ${fd} vs ${grad[at]}`).toBeLessThanOrEqual(1e-5 * scale);
  }
}

describe.each(DEVICES)('nn.infoNce on %s', (device) => {
  const CASES: Array<[number, number, number, boolean, boolean]> = [];
  for (const n of [1, 7, 33])
    for (const m of [0, 3])
      for (const d of [1, 5, 64])
        for (const symmetric of [false, true]) for (const normalize of [true, false]) CASES.push([n, m, d, symmetric, normalize]);

  it.each(CASES)(
    'n = %i, m = %i, d = %i, symmetric %s, normalize %s: loss, dq and dp against float64 and central differences',
    (n, m, d, symmetric, normalize) => {
      const rows = n + m;
      // Without normalisation the logits are scale·q·p: small rows keep the softmax unsaturated.
      const std = normalize ? 1 : 0.3 / Math.sqrt(d);
      const q = rnd([n, d], device, std),
        p = rnd([rows, d], device, std);
      // The default scale (20) everywhere but one case per size, which passes its own.
      const explicit = !symmetric && !normalize;
      const scale = explicit ? 3.5 : 20;
      const cfg: Config = { scale, symmetric, normalize };
      const opts = explicit ? { scale, symmetric, normalize, grad: true } : { symmetric, normalize, grad: true };
      const qs = Float64Array.from(q.toFloat32Array()),
        ps = Float64Array.from(p.toFloat32Array());
      const ref = infoNceRef(qs, ps, n, rows, d, cfg);
      const r = nn.infoNce(q, p, opts);
      keep(r.loss);
      keep(r.dq!);
      keep(r.dp!);
      expect([r.loss.shape, r.loss.dtype, r.loss.device, r.dq!.shape, r.dq!.device, r.dp!.shape, r.dp!.device]).toEqual([
        [1],
        'float32',
        device,
        [n, d],
        device,
        [rows, d],
        device,
      ]);
      const got = r.loss.toFloat32Array()[0];
      expect(Math.abs(got - ref.loss), `${got} vs ${ref.loss}`).toBeLessThanOrEqual(1e-5 * Math.max(1e-3, Math.abs(ref.loss)));
      expect(relErr(r.dq!.toFloat32Array(), ref.dq)).toBeLessThan(1e-5);
      expect(relErr(r.dp!.toFloat32Array(), ref.dp)).toBeLessThan(1e-5);
      checkFiniteDifferences(qs, ref.dq, () => infoNceRef(qs, ps, n, rows, d, cfg).loss, 6);
      checkFiniteDifferences(ps, ref.dp, () => infoNceRef(qs, ps, n, rows, d, cfg).loss, 6);
      // Without grad: the same loss bits and no gradients.
      const only = nn.infoNce(q, p, { ...opts, grad: false });
      keep(only.loss);
      expect(Object.keys(only)).toEqual(['loss']);
      expect(only.loss.toFloat32Array()).toEqual(r.loss.toFloat32Array());
    },
  );

  it('the defaults are scale 20, not symmetric, normalized, no gradients', () => {
    const n = 9,
      rows = 12,
      d = 16;
    const q = rnd([n, d], device, 4),
      p = rnd([rows, d], device, 0.25);
    const ref = infoNceRef(q.toFloat32Array(), p.toFloat32Array(), n, rows, d, { scale: 20, symmetric: false, normalize: true });
    const r = nn.infoNce(q, p);
    keep(r.loss);
    expect(Object.keys(r)).toEqual(['loss']);
    expect(Math.abs(r.loss.toFloat32Array()[0] - ref.loss)).toBeLessThanOrEqual(1e-5 * Math.abs(ref.loss));
  });

  if (device === 'cpu')
    it('the loss and gradients are the same bits for any thread count', () => {
      const q = rnd([33, 64]),
        p = rnd([36, 64]);
      const once = () => {
        const r = nn.infoNce(q, p, { symmetric: true, grad: true });
        const out = [r.loss, r.dq!, r.dp!].map((t) => Array.from(t.toFloat32Array()));
        [r.loss, r.dq!, r.dp!].forEach((t) => t.dispose());
        return out;
      };
      expectSameForAnyThreadCount(once);
    });

  it('infoNceAsync gives the same bits off the event loop, and rejects what the sync form refuses', async () => {
    const q = rnd([33, 64], device),
      p = rnd([36, 64], device);
    const sync = nn.infoNce(q, p, { symmetric: true, grad: true });
    const pending = nn.infoNceAsync(q, p, { symmetric: true, grad: true });
    expect(pending).toBeInstanceOf(Promise);
    const r = await pending;
    for (const x of [sync.loss, sync.dq!, sync.dp!, r.loss, r.dq!, r.dp!]) keep(x);
    expect(r.loss.toFloat32Array()).toEqual(sync.loss.toFloat32Array());
    expect(r.dq!.toFloat32Array()).toEqual(sync.dq!.toFloat32Array());
    expect(r.dp!.toFloat32Array()).toEqual(sync.dp!.toFloat32Array());
    const short = rnd([32, 64], device);
    await expect(nn.infoNceAsync(q, short)).rejects.toThrow(
      `Expected a 2-D tensor [N + M, D] with N + M >= 33 and D = 64 (like q) for p but received ${short.describe()}`,
    );
  });

  it('errors: shapes, dtypes, a disposed tensor, bad options', () => {
    const q = rnd([4, 5], device),
      p = rnd([6, 5], device);
    const flat = rnd([20], device);
    expect(errorOf(() => nn.infoNce(flat, p))).toEqual({
      cls: 'RangeError',
      message: `Expected a 2-D tensor [N, D] with N, D >= 1 for q but received ${flat.describe()}`,
    });
    const few = rnd([3, 5], device),
      wide = rnd([6, 4], device);
    for (const bad of [few, wide, flat])
      expect(errorOf(() => nn.infoNce(q, bad))).toEqual({
        cls: 'RangeError',
        message: `Expected a 2-D tensor [N + M, D] with N + M >= 4 and D = 5 (like q) for p but received ${bad.describe()}`,
      });
    const qi = keep(zeros([4, 5], { dtype: 'int32', device })),
      ph = keep(zeros([6, 5], { dtype: 'float16', device }));
    expect(errorOf(() => nn.infoNce(qi, p))).toEqual({
      cls: 'TypeError',
      message: `Expected a float32 Tensor for q but received ${qi.describe()} (dtype is int32)`,
    });
    expect(errorOf(() => nn.infoNce(q, ph))).toEqual({
      cls: 'TypeError',
      message: `Expected a float32 Tensor for p but received ${ph.describe()} (dtype is float16)`,
    });
    expect(errorOf(() => nn.infoNce(q, 3 as unknown as Tensor))).toEqual({
      cls: 'TypeError',
      message: 'Expected a Tensor for p but received 3',
    });
    const gone = rnd([6, 5], device);
    gone.dispose();
    expect(errorOf(() => nn.infoNce(q, gone))).toEqual({
      cls: 'TypeError',
      message: `Expected a live Tensor for p but received ${gone.describe()} (it was disposed)`,
    });
    for (const scale of [NaN, Infinity, -Infinity, 1e39])
      expect(errorOf(() => nn.infoNce(q, p, { scale }))).toEqual({
        cls: 'RangeError',
        message: `Expected a finite number${scale === 1e39 ? ' within float32 range' : ''} for options.scale but received ${String(scale)}`,
      });
    expect(errorOf(() => nn.infoNce(q, p, { scale: '20' as unknown as number }))).toEqual({
      cls: 'TypeError',
      message: 'Expected a finite number for options.scale but received "20"',
    });
    for (const key of ['symmetric', 'normalize', 'grad'])
      expect(errorOf(() => nn.infoNce(q, p, { [key]: 1 }))).toEqual({
        cls: 'TypeError',
        message: `Expected a boolean for options.${key} but received 1`,
      });
    expect(errorOf(() => nn.infoNce(q, p, 3 as unknown as object))).toEqual({
      cls: 'TypeError',
      message: 'Expected an options object for options but received 3',
    });
  });
});

describe('nn.infoNce on two devices', () => {
  // A stand-in: a tensor that claims CUDA over a host array (the internal constructor), never run on.
  const fake = (shape: number[]) => keep(new Tensor(randomF32(shape[0] * shape[1], nextSeed()), shape, 'float32', 'cuda'));

  it('mixed devices are a RangeError naming the second tensor', () => {
    const q = rnd([4, 5]),
      p = fake([6, 5]);
    expect(errorOf(() => nn.infoNce(q, p))).toEqual({
      cls: 'RangeError',
      message: `Expected a tensor on cpu (like q) for p but received ${p.describe()}`,
    });
    const qc = fake([4, 5]),
      pc = rnd([6, 5]);
    expect(errorOf(() => nn.infoNce(qc, pc))).toEqual({
      cls: 'RangeError',
      message: `Expected a tensor on cuda (like q) for p but received ${pc.describe()}`,
    });
  });
});
