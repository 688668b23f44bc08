// The plain linear layer (full fine-tuning), LoRA-FA's gradient projection and rsLoRA scaling.
import { describe, expect, it } from 'vitest';
import { linear, lora, tensor } from '../lib/index.js';
import { Tensor } from '../lib/tensor.js';
import { errorOf, loraBackwardRef, matmulNN, matmulNT, matmulTN, randomF32, relErr } from './helpers/reference.js';

describe('linear', () => {
  it.each([
    [1, 45, 37, true],
    [7, 130, 97, false],
    [33, 257, 45, true],
  ] as const)('T=%i in=%i out=%i bias=%s: forward and backward match float64', (T, I, O, withBias) => {
    const xv = randomF32(T * I, 1),
      Wv = randomF32(O * I, 2, 0.1),
      bv = randomF32(O, 3),
      dyv = randomF32(T * O, 4);
    const x = tensor(xv, [T, I]),
      W = tensor(Wv, [O, I]),
      bias = withBias ? tensor(bv, [O]) : undefined,
      dy = tensor(dyv, [T, O]);
    const { y, saved } = linear.forward(x, W, { bias });
    const base = matmulNT(xv, Wv, T, O, I);
    const yRef = base.map((v, i) => v + (withBias ? bv[i % O] : 0));
    expect(relErr(y.toFloat32Array(), yRef)).toBeLessThan(1e-5);
    expect(saved.bytes).toBe(T * I * 4);
    const g = linear.backward(dy, saved);
    expect(relErr(g.dx.toFloat32Array(), matmulNN(dyv, Wv, T, I, O))).toBeLessThan(1e-5);
    expect(relErr(g.dW.toFloat32Array(), matmulTN(dyv, xv, O, I, T))).toBeLessThan(1e-5);
    if (withBias) {
      const dbRef = new Float64Array(O);
      for (let t = 0; t < T; t++) for (let o = 0; o < O; o++) dbRef[o] += dyv[t * O + o];
      expect(relErr(g.db!.toFloat32Array(), dbRef)).toBeLessThan(1e-5);
    } else {
      expect(g.db).toBeUndefined();
    }
  });

  it('dW agrees with central differences of L = sum(dy * y) (linear in W: exact up to rounding)', () => {
    const T = 7,
      I = 13,
      O = 9;
    const xv = randomF32(T * I, 5),
      Wv = randomF32(O * I, 6),
      dyv = randomF32(T * O, 7);
    const loss = (w: Float32Array) => {
      const y = linear.forward(tensor(xv, [T, I]), tensor(w, [O, I])).y.toFloat32Array();
      return y.reduce((s, v, i) => s + v * dyv[i], 0);
    };
    const { saved } = linear.forward(tensor(xv, [T, I]), tensor(Wv, [O, I]));
    const dW = linear.backward(tensor(dyv, [T, O]), saved).dW.toFloat32Array();
    for (const idx of [0, 17, 50, O * I - 1]) {
      const h = 0.5;
      const plus = Wv.slice(),
        minus = Wv.slice();
      plus[idx] += h;
      minus[idx] -= h;
      const fd = (loss(plus) - loss(minus)) / (2 * h);
      expect(Math.abs(fd - dW[idx])).toBeLessThan(1e-3 * Math.max(1, Math.abs(dW[idx])));
    }
  });

  it('refuses mismatched shapes and a bfloat16 W to train', () => {
    const x = tensor(randomF32(14, 1), [2, 7]);
    expect(errorOf(() => linear.forward(x, tensor(randomF32(24, 2), [3, 8])))).toEqual({
      cls: 'RangeError',
      message: "Expected a tensor [..., in] with in = 8 (W's columns) for x but received Tensor(float32, [2, 7], cpu)",
    });
    const cudaDy = new Tensor(new Float32Array(6), [2, 3], 'float32', 'cuda'); // a stand-in: only its device is read
    expect(errorOf(() => linear.backward(cudaDy, linear.forward(x, tensor(randomF32(21, 4), [3, 7])).saved))).toEqual({
      cls: 'RangeError',
      message: 'Expected a tensor on cpu (like the saved state) for dy but received Tensor(float32, [2, 3], cuda)',
    });
    cudaDy.dispose();
    const W16 = tensor(randomF32(21, 3), [3, 7]).astype('bfloat16');
    const { y, saved } = linear.forward(x, W16);
    expect(errorOf(() => linear.backward(y, saved))).toEqual({
      cls: 'RangeError',
      message: 'Expected a float32 W to train (a bfloat16 W is frozen storage) for saved.W but received Tensor(bfloat16, [3, 7], cpu)',
    });
  });
});

/** M⁻¹ of a small symmetric positive definite matrix, by Gauss-Jordan in float64. */
function inverse(m: Float64Array, n: number): Float64Array {
  const a = Float64Array.from(m),
    inv = new Float64Array(n * n);
  for (let i = 0; i < n; i++) inv[i * n + i] = 1;
  for (let c = 0; c < n; c++) {
    const p = a[c * n + c];
    for (let j = 0; j < n; j++) {
      a[c * n + j] /= p;
      inv[c * n + j] /= p;
    }
    for (let r = 0; r < n; r++) {
      if (r === c) continue;
      const f = a[r * n + c];
      for (let j = 0; j < n; j++) {
        a[r * n + j] -= f * a[c * n + j];
        inv[r * n + j] -= f * inv[c * n + j];
      }
    }
  }
  return inv;
}

describe('LoRA-FA gradient projection', () => {
  it.each([
    [7, 45, 37, 1],
    [33, 130, 97, 8],
  ] as const)('T=%i in=%i out=%i r=%i: dB (A Aᵀ + 1e-8 I)⁻¹ / s² matches float64', (T, I, O, R) => {
    const xv = randomF32(T * I, 11),
      Wv = randomF32(O * I, 12, 0.1),
      Av = randomF32(R * I, 13, 0.1),
      Bv = randomF32(O * R, 14);
    const dyv = randomF32(T * O, 15);
    const s = 0.75;
    const { saved } = lora.forward(tensor(xv, [T, I]), tensor(Wv, [O, I]), tensor(Av, [R, I]), tensor(Bv, [O, R]), {
      scale: s,
      frozenA: true,
    });
    const { dB } = lora.backward(tensor(dyv, [T, O]), saved, { projectGradB: true });
    const ref = loraBackwardRef(dyv, xv, Wv, Av, Bv, s, null, T, I, O, R);
    const gram = matmulNT(Av, Av, R, R, I).map((v, i) => v + (i % (R + 1) === 0 ? 1e-8 : 0));
    const projected = matmulNN(ref.dB, inverse(gram, R), O, R, R).map((v) => v / (s * s));
    expect(relErr(dB.toFloat32Array(), projected)).toBeLessThan(1e-4);
  });

  it('is refused for plain LoRA (forward without frozenA)', async () => {
    const { saved } = lora.forward(
      tensor(randomF32(14, 1), [2, 7]),
      tensor(randomF32(21, 2), [3, 7]),
      tensor(randomF32(14, 3), [2, 7]),
      tensor(randomF32(6, 4), [3, 2]),
      { scale: 1 },
    );
    const dy = tensor(randomF32(6, 5), [2, 3]);
    expect(errorOf(() => lora.backward(dy, saved, { projectGradB: true }))).toEqual({
      cls: 'RangeError',
      message: 'Expected false unless forward ran with frozenA (LoRA-FA) for options.projectGradB but received true',
    });
    await expect(lora.backwardAsync(dy, saved, { projectGradB: true })).rejects.toThrow(RangeError);
  });

  it('async gives the same bits', async () => {
    const args = [
      tensor(randomF32(33 * 45, 1), [33, 45]),
      tensor(randomF32(37 * 45, 2, 0.1), [37, 45]),
      tensor(randomF32(8 * 45, 3, 0.1), [8, 45]),
      tensor(randomF32(37 * 8, 4), [37, 8]),
    ] as const;
    const dy = tensor(randomF32(33 * 37, 5), [33, 37]);
    const a = lora.backward(dy, lora.forward(...args, { scale: 2, frozenA: true }).saved, { projectGradB: true }).dB.toFloat32Array();
    const b = (
      await lora.backwardAsync(dy, lora.forward(...args, { scale: 2, frozenA: true }).saved, { projectGradB: true })
    ).dB.toFloat32Array();
    expect(Buffer.from(a.buffer).equals(Buffer.from(b.buffer))).toBe(true);
  });
});

describe('lora.scaling', () => {
  it('alpha / r, or alpha / sqrt(r) with rsLoRA', () => {
    expect(lora.scaling(16, 8)).toBe(2);
    expect(lora.scaling(16, 64, { rslora: true })).toBe(2);
    expect(errorOf(() => lora.scaling(16, 0))).toEqual({
      cls: 'RangeError',
      message: 'Expected a positive integer for rank but received 0',
    });
    expect(errorOf(() => lora.scaling(Number.NaN, 4))).toEqual({
      cls: 'RangeError',
      message: 'Expected a finite number for alpha but received NaN',
    });
  });
});
