// Layer classes: LoraLinear ('lora', 'lora-fa', 'delta-lora'), VeraLinear and Linear, with an
// optimizer: forward equals the ops, backward accumulates into parameters()' grads, savedBytes
// keeps each method's memory promise, merge/unmerge, and Delta-LoRA's W update after a step.
import { afterEach, describe, expect, it, vi } from 'vitest';
import { Linear, linear, LoraLinear, lora, optim, tensor, vera, VeraLinear } from '../lib/index.js';
import { errorOf, matmulNN, randomF32, relErr } from './helpers/reference.js';

const T = 7,
  I = 45,
  O = 37,
  R = 8;

function inputs(seed: number) {
  return {
    x: tensor(randomF32(T * I, seed), [T, I]),
    W: tensor(randomF32(O * I, seed + 1, 0.1), [O, I]),
    bias: tensor(randomF32(O, seed + 2), [O]),
    dy: tensor(randomF32(T * O, seed + 3), [T, O]),
    A: tensor(randomF32(R * I, seed + 4, 0.1), [R, I]),
    B: tensor(randomF32(O * R, seed + 5), [O, R]),
  };
}

describe('LoraLinear', () => {
  it.each(['lora', 'lora-fa', 'delta-lora'] as const)('%s: forward equals lora.forward; backward accumulates grads', (variant) => {
    const { x, W, bias, dy, A, B } = inputs(1);
    const layer = new LoraLinear({ weight: W, bias, rank: R, alpha: 16, variant, A: A.clone(), B: B.clone() });
    expect(layer.scale).toBe(2);
    const y = layer.forward(x);
    const ref = lora.forward(x, W, A, B, { scale: 2, bias, frozenA: variant === 'lora-fa' });
    expect(relErr(y.toFloat32Array(), ref.y.toFloat32Array())).toBe(0);
    expect(layer.savedBytes).toBe(variant === 'lora-fa' ? T * R * 4 : T * (I + R) * 4);
    const dx = layer.backward(dy);
    const g = lora.backward(dy, ref.saved);
    expect(relErr(dx.toFloat32Array(), g.dx.toFloat32Array())).toBe(0);
    const params = layer.parameters();
    expect(params.map((p) => p.name)).toEqual(variant === 'lora-fa' ? ['lora_B'] : ['lora_A', 'lora_B']);
    const gradB = params[params.length - 1].grad.toFloat32Array();
    expect(relErr(gradB, g.dB.toFloat32Array())).toBe(0);
    // a second pass adds
    layer.forward(x);
    layer.backward(dy);
    expect(
      relErr(
        params[params.length - 1].grad.toFloat32Array(),
        g.dB.toFloat32Array().map((v) => 2 * v),
      ),
    ).toBeLessThan(1e-6);
    layer.zeroGrad();
    expect(params.every((p) => p.grad.toFloat32Array().every((v) => v === 0))).toBe(true);
    expect(errorOf(() => layer.backward(dy))).toEqual({
      cls: 'RangeError',
      message: 'Expected a training forward() before backward() for layer but received "no saved state"',
    });
  });

  it('merge() gives the same outputs without the adapter path; unmerge() restores W', () => {
    const { x, W, bias, A, B } = inputs(2);
    const W0 = W.toFloat32Array();
    const layer = new LoraLinear({ weight: W, bias, rank: R, alpha: 8, A, B });
    const before = layer.forward(x, { training: false }).toFloat32Array();
    layer.merge();
    expect(layer.merged).toBe(true);
    expect(relErr(layer.forward(x, { training: false }).toFloat32Array(), before)).toBeLessThan(1e-5);
    expect(errorOf(() => layer.forward(x))).toEqual({
      cls: 'RangeError',
      message: 'Expected an unmerged layer to train (call unmerge() first) for layer but received "merged"',
    });
    layer.unmerge();
    expect(relErr(W.toFloat32Array(), W0)).toBeLessThan(1e-6);
  });

  it('delta-lora moves W by λ·s·(B1A1 − B0A0) after each optimizer step past startStep', () => {
    const { x, W, bias, dy, A, B } = inputs(3);
    const layer = new LoraLinear({ weight: W, bias, rank: R, alpha: 8, variant: 'delta-lora', A, B, delta: { lambda: 2, startStep: 1 } });
    const opt = new optim.AdamW(layer.parameters(), { lr: 1e-2, weightDecay: 0 });
    const step = () => {
      const A0 = layer.A.toFloat32Array(),
        B0 = layer.B.toFloat32Array(),
        W0 = W.toFloat32Array();
      layer.forward(x);
      layer.backward(dy);
      opt.step();
      layer.afterOptimizerStep();
      opt.zeroGrad();
      return { A0, B0, W0 };
    };
    const first = step(); // step 1 <= startStep: W unchanged
    expect(W.toFloat32Array()).toEqual(first.W0);
    const { A0, B0, W0 } = step(); // step 2 > startStep: W moves
    const b1a1 = matmulNN(layer.B.toFloat32Array(), layer.A.toFloat32Array(), O, I, R);
    const b0a0 = matmulNN(B0, A0, O, I, R);
    const expected = W0.map((w, i) => w + 2 * layer.scale * (b1a1[i] - b0a0[i]));
    expect(relErr(W.toFloat32Array(), expected)).toBeLessThan(1e-6);
    expect(layer.stepCount).toBe(2);
  });

  it('delta-lora refuses dropout; projectGradB needs lora-fa', () => {
    const { W } = inputs(4);
    expect(errorOf(() => new LoraLinear({ weight: W, rank: 4, variant: 'delta-lora', dropout: 0.1 }))).toEqual({
      cls: 'RangeError',
      message: 'Expected dropout p = 0 for Delta-LoRA (the paper removes dropout) but received 0.1',
    });
    expect(errorOf(() => new LoraLinear({ weight: W, rank: 4, projectGradB: true }))).toEqual({
      cls: 'RangeError',
      message: "Expected false unless variant is 'lora-fa' for options.projectGradB but received true",
    });
    expect(errorOf(() => new LoraLinear({ weight: W, rank: 0 }))).toEqual({
      cls: 'RangeError',
      message: 'Expected a positive integer for options.rank but received 0',
    });
  });
});

describe('VeraLinear', () => {
  it('forward equals vera.forward, grads accumulate, savedBytes = T·r·4, merge keeps outputs', () => {
    const { x, W, bias, dy } = inputs(5);
    const proj = vera.projections({ rank: 16, maxIn: 64, maxOut: 64, seed: 9 });
    const layer = new VeraLinear({ weight: W, bias, projections: proj });
    // train λb away from zero so the adapter path matters
    (layer.lambdaB.storage() as Float32Array).set(randomF32(O, 50));
    const y = layer.forward(x);
    const ref = vera.forward(x, W, proj, layer.lambdaD, layer.lambdaB, { bias });
    expect(relErr(y.toFloat32Array(), ref.y.toFloat32Array())).toBe(0);
    expect(layer.savedBytes).toBe(T * 16 * 4);
    layer.backward(dy);
    const g = vera.backward(dy, ref.saved);
    const [pd, pb] = layer.parameters();
    expect(pd.name).toBe('vera_lambda_d');
    expect(relErr(pd.grad.toFloat32Array(), g.dLambdaD.toFloat32Array())).toBe(0);
    expect(relErr(pb.grad.toFloat32Array(), g.dLambdaB.toFloat32Array())).toBe(0);
    const before = layer.forward(x, { training: false }).toFloat32Array();
    layer.merge();
    expect(relErr(layer.forward(x, { training: false }).toFloat32Array(), before)).toBeLessThan(1e-5);
    layer.unmerge();
  });
});

describe('a merged layer', () => {
  afterEach(() => vi.restoreAllMocks());

  it.each(['lora', 'vera'] as const)(
    '%s: forward is linear.forward with the merged W, bit for bit, and never calls the adapter op',
    (method) => {
      const { x, W, bias, dy, A, B } = inputs(7);
      const layer =
        method === 'lora'
          ? new LoraLinear({ weight: W, bias, rank: R, alpha: 16, A, B })
          : new VeraLinear({ weight: W, bias, projections: vera.projections({ rank: 16, maxIn: 64, maxOut: 64, seed: 9 }) });
      if (layer instanceof VeraLinear) (layer.lambdaB.storage() as Float32Array).set(randomF32(O, 70));
      layer.merge();
      const adapterForward = method === 'lora' ? vi.spyOn(lora, 'forward') : vi.spyOn(vera, 'forward');
      const linearForward = vi.spyOn(linear, 'forward');
      const y = layer.forward(x, { training: false });
      expect(adapterForward).not.toHaveBeenCalled();
      expect(linearForward).toHaveBeenCalledTimes(1);
      vi.restoreAllMocks();
      const ref = linear.forward(x, W, { bias });
      expect(Buffer.from(y.toFloat32Array().buffer)).toEqual(Buffer.from(ref.y.toFloat32Array().buffer));
      // As before: a merged layer keeps nothing for backward and refuses to train.
      expect(layer.savedBytes).toBe(0);
      expect(errorOf(() => layer.backward(dy))).toEqual({
        cls: 'RangeError',
        message: 'Expected a training forward() before backward() for layer but received "no saved state"',
      });
      expect(errorOf(() => layer.forward(x))).toEqual({
        cls: 'RangeError',
        message: 'Expected an unmerged layer to train (call unmerge() first) for layer but received "merged"',
      });
      layer.unmerge();
      expect(layer.merged).toBe(false);
    },
  );
});

describe('training with an optimizer', () => {
  it('Linear and LoraLinear lower a regression loss under AdamW', () => {
    const { x, W } = inputs(6);
    const target = tensor(randomF32(T * O, 60), [T, O]);
    for (const make of [() => new Linear({ weight: W.clone() }), () => new LoraLinear({ weight: W.clone(), rank: 4, seed: 3 })]) {
      const layer = make();
      const opt = new optim.AdamW(layer.parameters(), { lr: 1e-2, weightDecay: 0 });
      const losses: number[] = [];
      for (let s = 0; s < 30; s++) {
        const y = layer.forward(x).toFloat32Array();
        const t = target.toFloat32Array();
        losses.push(y.reduce((acc, v, i) => acc + (v - t[i]) ** 2, 0) / y.length);
        layer.backward(
          tensor(
            y.map((v, i) => (2 * (v - t[i])) / y.length),
            [T, O],
          ),
        );
        opt.step();
        layer.afterOptimizerStep();
        opt.zeroGrad();
      }
      expect(losses[29]).toBeLessThan(0.9 * losses[0]);
    }
  });
});
