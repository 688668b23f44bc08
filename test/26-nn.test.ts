// nn: a training loop's building blocks, each one native op on the tensors' device. Every op
// against a plain float64 reference on fresh random inputs at awkward sizes (1, 7, 33, 1000+),
// outputs poisoned with NaN first where the API takes `out`, and the error texts of the
// argument checks; every backward also against central differences of the float64 forward,
// and the cross-entropy's mean the same bits for any thread count. With a CUDA device: the same
// on device tensors against the reference.
import { describe, expect, it } from 'vitest';
import { nn, tensor, Tensor, zeros } from '../lib/index.js';
import { expectSameForAnyThreadCount, tensorPool, testDevices } from './helpers/tensors.js';
import { ACTIVATION_REF, errorOf, randomF32, relErr } from './helpers/reference.js';

const SIZES = [1, 7, 33, 1031];
const { keep, rnd, nextSeed } = tensorPool(2600);

const DEVICES = testDevices('test/26-nn');

describe.each(DEVICES)('nn.fill and nn.addInto on %s', (device) => {
  it.each(SIZES)('fill writes every element of every dtype, n = %i', (n) => {
    for (const dtype of ['float32', 'bfloat16', 'float16'] as const) {
      const t = keep(zeros([n], { dtype, device }));
      expect(nn.fill(t, -1.5)).toBe(t);
      expect(
        Array.from(t.toFloat32Array()).every((v) => v === -1.5),
        dtype,
      ).toBe(true);
      nn.fill(t, NaN);
      expect(Array.from(t.toFloat32Array()).every(Number.isNaN), dtype).toBe(true);
    }
    const i = keep(zeros([n], { dtype: 'int32', device }));
    nn.fill(i, -7);
    expect(Array.from(i.toInt32Array()).every((v) => v === -7)).toBe(true);
  });

  it.each(SIZES)('addInto adds src into dst in place, n = %i', (n) => {
    const dst = rnd([n], device),
      src = rnd([n], device);
    const d0 = dst.toFloat32Array(),
      s0 = src.toFloat32Array();
    expect(nn.addInto(dst, src)).toBe(dst);
    const got = dst.toFloat32Array();
    for (let k = 0; k < n; k++) expect(got[k]).toBe(Math.fround(d0[k] + s0[k]));
  });

  it('errors name the argument', () => {
    const a = rnd([3, 4], device),
      b = rnd([4, 3], device);
    expect(errorOf(() => nn.fill(zeros([2], { dtype: 'int32', device }), 1.5))).toEqual({
      cls: 'RangeError',
      message: 'Expected an integer in int32 range (t is int32) for value but received 1.5',
    });
    expect(errorOf(() => nn.fill(a, '1' as unknown as number))).toEqual({
      cls: 'TypeError',
      message: 'Expected a number for value but received "1"',
    });
    expect(errorOf(() => nn.fill([1] as unknown as Tensor, 1))).toEqual({
      cls: 'TypeError',
      message: 'Expected a Tensor for t but received [1]',
    });
    expect(errorOf(() => nn.addInto(a, b))).toEqual({
      cls: 'RangeError',
      message: 'Expected a shape of [3, 4] (like dst) for src but received [4, 3]',
    });
    const i = keep(zeros([3, 4], { dtype: 'int32', device }));
    expect(errorOf(() => nn.addInto(a, i)).message).toBe(`Expected a float32 Tensor for src but received ${i.describe()} (dtype is int32)`);
    const h = keep(zeros([3, 4], { dtype: 'bfloat16', device }));
    expect(errorOf(() => nn.addInto(h, a)).message).toBe(
      `Expected a float32 Tensor for dst but received ${h.describe()} (dtype is bfloat16)`,
    );
    const gone = rnd([3, 4], device);
    gone.dispose();
    expect(errorOf(() => nn.addInto(a, gone)).message).toMatch(/^Expected a live Tensor for src but received .* \(it was disposed\)$/);
  });
});

// ---- float64 references ---------------------------------------------------------------------

const ACTIVATIONS = [
  ['relu', nn.relu, nn.reluBackward],
  ['gelu', nn.gelu, nn.geluBackward],
  ['tanh', nn.tanh, nn.tanhBackward],
] as const;

describe.each(DEVICES)('nn activations, add and scale on %s', (device) => {
  describe.each(ACTIVATIONS)('%s', (name, forward, backward) => {
    const { f, df } = ACTIVATION_REF[name];
    it.each(SIZES)('forward and backward against float64, and backward against central differences, n = %i', (n) => {
      const shape = n === 1031 ? [1031] : [n, 3];
      const x = rnd(shape, device, 2),
        dy = rnd(shape, device);
      const xs = x.toFloat32Array(),
        dys = dy.toFloat32Array();
      const y = keep(forward(x)),
        dx = keep(backward(dy, x));
      expect([y.shape, y.dtype, y.device, dx.shape, dx.device]).toEqual([shape, 'float32', device, shape, device]);
      expect(relErr(y.toFloat32Array(), Array.from(xs, f)), 'forward').toBeLessThan(1e-5);
      expect(
        relErr(
          dx.toFloat32Array(),
          Array.from(xs, (v, i) => dys[i] * df(v)),
        ),
        'backward',
      ).toBeLessThan(1e-5);
      // central differences of the float64 forward, away from relu's kink
      const h = 1e-4,
        got = dx.toFloat32Array(),
        ref: number[] = [],
        at: number[] = [];
      xs.forEach((v, i) => {
        if (Math.abs(v) < 1e-2) return;
        at.push(got[i]);
        ref.push((dys[i] * (f(v + h) - f(v - h))) / (2 * h));
      });
      expect(relErr(at, ref), 'central differences').toBeLessThan(1e-4);
      // the inputs are left alone
      expect(x.toFloat32Array()).toEqual(xs);
    });
  });

  it.each(SIZES)('add: a + alpha·b into a new tensor, into a poisoned out, and into a or b; n = %i', (n) => {
    const a = rnd([n], device),
      b = rnd([n], device);
    const as = a.toFloat32Array(),
      bs = b.toFloat32Array();
    const ref = (alpha: number) => Array.from(as, (v, i) => v + alpha * bs[i]);
    expect(relErr(keep(nn.add(a, b)).toFloat32Array(), ref(1))).toBeLessThan(1e-6);
    const out = nn.fill(keep(zeros([n], { device })), NaN);
    expect(nn.add(a, b, { alpha: -0.75, out })).toBe(out);
    expect(relErr(out.toFloat32Array(), ref(-0.75))).toBeLessThan(1e-6);
    const a2 = keep(a.clone()),
      b2 = keep(b.clone());
    expect(nn.add(a2, b, { alpha: 2.5, out: a2 })).toBe(a2);
    expect(relErr(a2.toFloat32Array(), ref(2.5))).toBeLessThan(1e-6);
    expect(nn.add(a, b2, { alpha: 3, out: b2 })).toBe(b2);
    expect(relErr(b2.toFloat32Array(), ref(3))).toBeLessThan(1e-6);
  });

  it.each(SIZES)('scale: alpha·x into a new tensor, a poisoned out and x itself; n = %i', (n) => {
    const x = rnd([n, 2], device),
      xs = x.toFloat32Array();
    expect(
      relErr(
        keep(nn.scale(x, -1.25)).toFloat32Array(),
        Array.from(xs, (v) => -1.25 * v),
      ),
    ).toBeLessThan(1e-7);
    const out = nn.fill(keep(zeros([n, 2], { device })), NaN);
    expect(nn.scale(x, 0.5, { out })).toBe(out);
    expect(
      relErr(
        out.toFloat32Array(),
        Array.from(xs, (v) => 0.5 * v),
      ),
    ).toBeLessThan(1e-7);
    const x2 = keep(x.clone());
    nn.scale(x2, 3, { out: x2 });
    expect(
      relErr(
        x2.toFloat32Array(),
        Array.from(xs, (v) => 3 * v),
      ),
    ).toBeLessThan(1e-7);
  });

  it('errors: wrong dtype, int32 where float32 is expected, shape mismatch, bad alpha and out', () => {
    const x = rnd([4, 3], device),
      h = keep(x.astype('bfloat16')),
      i = keep(zeros([4, 3], { dtype: 'int32', device }));
    expect(errorOf(() => nn.relu(h))).toEqual({
      cls: 'TypeError',
      message: `Expected a float32 Tensor for x but received ${h.describe()} (dtype is bfloat16)`,
    });
    expect(errorOf(() => nn.gelu(i))).toEqual({
      cls: 'TypeError',
      message: `Expected a float32 Tensor for x but received ${i.describe()} (dtype is int32)`,
    });
    expect(errorOf(() => nn.tanhBackward(i, x))).toEqual({
      cls: 'TypeError',
      message: `Expected a float32 Tensor for dy but received ${i.describe()} (dtype is int32)`,
    });
    expect(errorOf(() => nn.reluBackward(rnd([3, 4], device), x))).toEqual({
      cls: 'RangeError',
      message: 'Expected a shape of [4, 3] (like x) for dy but received [3, 4]',
    });
    expect(errorOf(() => nn.add(x, rnd([12], device)))).toEqual({
      cls: 'RangeError',
      message: 'Expected a shape of [4, 3] (like a) for b but received [12]',
    });
    expect(errorOf(() => nn.add(x, x, { out: rnd([4, 4], device) }))).toEqual({
      cls: 'RangeError',
      message: 'Expected a shape of [4, 3] (like a) for options.out but received [4, 4]',
    });
    expect(errorOf(() => nn.add(x, x, { out: i }))).toEqual({
      cls: 'TypeError',
      message: `Expected a float32 Tensor for options.out but received ${i.describe()} (dtype is int32)`,
    });
    expect(errorOf(() => nn.add(x, x, { alpha: NaN }))).toEqual({
      cls: 'RangeError',
      message: 'Expected a finite number for options.alpha but received NaN',
    });
    expect(errorOf(() => nn.scale(x, '2' as unknown as number))).toEqual({
      cls: 'TypeError',
      message: 'Expected a finite number for alpha but received "2"',
    });
    expect(errorOf(() => nn.scale(x, undefined as unknown as number))).toEqual({
      cls: 'TypeError',
      message: 'Expected a finite number for alpha but received undefined',
    });
    expect(errorOf(() => nn.scale(x, 2, 3 as unknown as { out?: Tensor }))).toEqual({
      cls: 'TypeError',
      message: 'Expected an options object for options but received 3',
    });
  });
});

// ---- softmax cross-entropy -------------------------------------------------------------------

/** The float64 mean loss and its gradient over the logits (rows max-shifted). */
function crossEntropyRef(z: ArrayLike<number>, labels: ArrayLike<number>, t: number, c: number): { loss: number; grad: Float64Array } {
  let total = 0;
  const grad = new Float64Array(t * c);
  for (let i = 0; i < t; i++) {
    let m = -Infinity;
    for (let j = 0; j < c; j++) m = Math.max(m, z[i * c + j]);
    let s = 0;
    for (let j = 0; j < c; j++) s += Math.exp(z[i * c + j] - m);
    const lse = m + Math.log(s);
    total += lse - z[i * c + labels[i]];
    for (let j = 0; j < c; j++) grad[i * c + j] = (Math.exp(z[i * c + j] - lse) - (j === labels[i] ? 1 : 0)) / t;
  }
  return { loss: total / t, grad };
}

describe.each(DEVICES)('nn.softmaxCrossEntropy on %s', (device) => {
  const SHAPES: Array<[number, number]> = [
    [1, 1],
    [1, 7],
    [7, 33],
    [33, 1031],
    [1031, 7],
  ];
  const labelsFor = (t: number, c: number, salt: number) =>
    keep(
      tensor(
        Int32Array.from({ length: t }, (_, i) => (i * 7919 + salt * 31 + 3) % c),
        [t],
        { device },
      ),
    );

  it.each(SHAPES)('T = %i, C = %i: loss and dlogits against float64, dlogits against central differences', (t, c) => {
    const z = rnd([t, c], device, 3),
      labels = labelsFor(t, c, t + c);
    const zs = z.toFloat32Array(),
      ls = labels.toInt32Array();
    const ref = crossEntropyRef(zs, ls, t, c);
    const { loss, dlogits } = nn.softmaxCrossEntropy(z, labels, { grad: true });
    keep(loss);
    keep(dlogits!);
    expect([loss.shape, loss.dtype, loss.device, dlogits!.shape, dlogits!.device]).toEqual([[1], 'float32', device, [t, c], device]);
    const got = loss.toFloat32Array()[0];
    expect(Math.abs(got - ref.loss), `${got} vs ${ref.loss}`).toBeLessThanOrEqual(1e-6 * Math.max(1, Math.abs(ref.loss)));
    const dz = dlogits!.toFloat32Array();
    expect(relErr(dz, ref.grad)).toBeLessThan(1e-5);
    // central differences of the float64 loss at a few coordinates
    const x = Float64Array.from(zs),
      h = 1e-4;
    for (let k = 0, at = 5 % (t * c); k < Math.min(8, t * c); k++, at = (at * 7919 + 13) % (t * c)) {
      const v = x[at];
      x[at] = v + h;
      const up = crossEntropyRef(x, ls, t, c).loss;
      x[at] = v - h;
      const down = crossEntropyRef(x, ls, t, c).loss;
      x[at] = v;
      expect(Math.abs((up - down) / (2 * h) - dz[at]), `dlogits[${at}]`).toBeLessThan(1e-6 + 1e-4 * Math.abs(dz[at]));
    }
    // without grad: the loss alone, the same value
    const only = nn.softmaxCrossEntropy(z, labels);
    keep(only.loss);
    expect(only.dlogits).toBeUndefined();
    expect(only.loss.toFloat32Array()[0]).toBe(got);
  });

  it('the mean is the same bits run to run and for any thread count', () => {
    const t = 1031,
      c = 33,
      z = rnd([t, c], device),
      labels = labelsFor(t, c, 1);
    const once = () => {
      const r = nn.softmaxCrossEntropy(z, labels, { grad: true });
      const v = [r.loss.toFloat32Array()[0], ...r.dlogits!.toFloat32Array()];
      r.loss.dispose();
      r.dlogits!.dispose();
      return v;
    };
    expectSameForAnyThreadCount(once);
  });

  it('softmaxCrossEntropyAsync gives the same bits off the event loop, and rejects what the sync form refuses', async () => {
    const t = 1031,
      c = 33,
      z = rnd([t, c], device),
      labels = labelsFor(t, c, 2);
    const sync = nn.softmaxCrossEntropy(z, labels, { grad: true });
    const pending = nn.softmaxCrossEntropyAsync(z, labels, { grad: true });
    expect(pending).toBeInstanceOf(Promise);
    const r = await pending;
    for (const x of [sync.loss, sync.dlogits!, r.loss, r.dlogits!]) keep(x);
    expect(r.loss.toFloat32Array()).toEqual(sync.loss.toFloat32Array());
    expect(r.dlogits!.toFloat32Array()).toEqual(sync.dlogits!.toFloat32Array());
    const f = rnd([t], device);
    await expect(nn.softmaxCrossEntropyAsync(z, f)).rejects.toThrow(
      `Expected an int32 Tensor for labels but received ${f.describe()} (dtype is float32)`,
    );
    if (device === 'cpu') {
      const bad = keep(tensor([0, 9], [2], { dtype: 'int32' }));
      const e: unknown = await nn.softmaxCrossEntropyAsync(rnd([2, 9]), bad).catch((x: unknown) => x);
      expect(e).toBeInstanceOf(RangeError);
      expect((e as Error).message).toBe('Expected an integer in [0, 9) for labels[1] but received 9');
    }
  });

  it('large logits do not overflow (the rows are max-shifted)', () => {
    const z = keep(tensor([1000, 990, -1000, 88, 89, 90], [2, 3], { device })),
      labels = keep(tensor([1, 2], [2], { dtype: 'int32', device }));
    const r = nn.softmaxCrossEntropy(z, labels, { grad: true });
    keep(r.loss);
    keep(r.dlogits!);
    const ref = crossEntropyRef([1000, 990, -1000, 88, 89, 90], [1, 2], 2, 3);
    expect(r.loss.toFloat32Array()[0]).toBeCloseTo(ref.loss, 4);
    expect(relErr(r.dlogits!.toFloat32Array(), ref.grad)).toBeLessThan(1e-5);
  });

  it('errors: labels not int32, logits int32 or not 2-D, a shape mismatch, bad options', () => {
    const z = rnd([4, 5], device),
      labels = keep(tensor([0, 1, 2, 3], [4], { dtype: 'int32', device }));
    const f = rnd([4], device),
      zi = keep(zeros([4, 5], { dtype: 'int32', device }));
    expect(errorOf(() => nn.softmaxCrossEntropy(z, f))).toEqual({
      cls: 'TypeError',
      message: `Expected an int32 Tensor for labels but received ${f.describe()} (dtype is float32)`,
    });
    expect(errorOf(() => nn.softmaxCrossEntropy(zi, labels))).toEqual({
      cls: 'TypeError',
      message: `Expected a float32 Tensor for logits but received ${zi.describe()} (dtype is int32)`,
    });
    const flat = rnd([20], device);
    expect(errorOf(() => nn.softmaxCrossEntropy(flat, labels))).toEqual({
      cls: 'RangeError',
      message: `Expected a 2-D tensor [T, C] with T, C >= 1 for logits but received ${flat.describe()}`,
    });
    const short = keep(tensor([0, 1, 2], [3], { dtype: 'int32', device }));
    expect(errorOf(() => nn.softmaxCrossEntropy(z, short))).toEqual({
      cls: 'RangeError',
      message: 'Expected shape [T] = [4] for labels but received [3]',
    });
    expect(errorOf(() => nn.softmaxCrossEntropy(z, labels, { grad: 1 as unknown as boolean }))).toEqual({
      cls: 'TypeError',
      message: 'Expected a boolean for options.grad but received 1',
    });
    expect(errorOf(() => nn.softmaxCrossEntropy(z, [0, 1, 2, 3] as unknown as Tensor))).toEqual({
      cls: 'TypeError',
      message: 'Expected a Tensor for labels but received [0, 1, 2, 3]',
    });
  });

  if (device === 'cpu') {
    it('a label out of [0, C) is a RangeError naming it, its value and C; nothing is returned', () => {
      const z = rnd([4, 5]);
      for (const [values, message] of [
        [[0, 1, 5, 3], 'Expected an integer in [0, 5) for labels[2] but received 5'],
        [[0, -1, 2, 3], 'Expected an integer in [0, 5) for labels[1] but received -1'],
      ] as const) {
        const labels = keep(tensor([...values], [4], { dtype: 'int32' }));
        expect(errorOf(() => nn.softmaxCrossEntropy(z, labels, { grad: true }))).toEqual({ cls: 'RangeError', message });
      }
    });
  } else {
    it('a label out of [0, C) makes the loss and that row of dlogits NaN (CUDA cannot cheaply throw)', () => {
      const z = rnd([4, 5], 'cuda'),
        labels = keep(tensor([0, 1, 5, 3], [4], { dtype: 'int32', device: 'cuda' }));
      const r = nn.softmaxCrossEntropy(z, labels, { grad: true });
      keep(r.loss);
      keep(r.dlogits!);
      expect(Number.isNaN(r.loss.toFloat32Array()[0])).toBe(true);
      const dz = r.dlogits!.toFloat32Array();
      expect(Array.from(dz.subarray(10, 15)).every(Number.isNaN)).toBe(true);
      expect(Array.from(dz.subarray(0, 10)).every(Number.isFinite)).toBe(true);
    });
  }
});

describe('nn on two devices', () => {
  // Stand-ins: tensors that claim CUDA over host arrays (the internal constructor), never run on.
  const fake = (n: number, dtype: 'float32' | 'int32' = 'float32') =>
    keep(new Tensor(dtype === 'int32' ? new Int32Array(n) : randomF32(n, nextSeed()), [n], dtype, 'cuda'));

  it('mixed devices are a RangeError naming the second tensor; a CUDA tensor takes the device path', () => {
    const a = rnd([5]),
      b = fake(5);
    expect(errorOf(() => nn.addInto(a, b))).toEqual({
      cls: 'RangeError',
      message: `Expected a tensor on cpu (like dst) for src but received ${b.describe()}`,
    });
    expect(errorOf(() => nn.addInto(b, a))).toEqual({
      cls: 'RangeError',
      message: `Expected a tensor on cuda (like dst) for src but received ${a.describe()}`,
    });
    expect(errorOf(() => nn.fill(b, 0))).toEqual({
      cls: 'RangeError',
      message: `Expected a tensor in CUDA memory for t but received ${b.describe()}`,
    });
    expect(errorOf(() => nn.reluBackward(b, a))).toEqual({
      cls: 'RangeError',
      message: `Expected a tensor on cuda (like dy) for x but received ${a.describe()}`,
    });
    expect(errorOf(() => nn.add(a, a, { out: b }))).toEqual({
      cls: 'RangeError',
      message: `Expected a tensor on cpu (like a) for options.out but received ${b.describe()}`,
    });
    expect(errorOf(() => nn.scale(b, 2, { out: a }))).toEqual({
      cls: 'RangeError',
      message: `Expected a tensor on cuda (like x) for options.out but received ${a.describe()}`,
    });
    const z = keep(tensor(randomF32(10, nextSeed()), [5, 2])),
      cudaLabels = fake(5, 'int32'),
      cpuLabels = keep(tensor([0, 1, 0, 1, 0], [5], { dtype: 'int32' }));
    expect(errorOf(() => nn.softmaxCrossEntropy(z, cudaLabels))).toEqual({
      cls: 'RangeError',
      message: `Expected a tensor on cpu (like logits) for labels but received ${cudaLabels.describe()}`,
    });
    const zc = keep(new Tensor(randomF32(10, nextSeed()), [5, 2], 'float32', 'cuda'));
    expect(errorOf(() => nn.softmaxCrossEntropy(zc, cpuLabels))).toEqual({
      cls: 'RangeError',
      message: `Expected a tensor on cuda (like logits) for labels but received ${cpuLabels.describe()}`,
    });
    expect(errorOf(() => nn.gelu(b))).toEqual({
      cls: 'RangeError',
      message: `Expected a tensor in CUDA memory for x but received ${b.describe()}`,
    });
  });
});
