// Delta-LoRA (README.md, Delta-LoRA): LoRA whose optimizer step also moves the frozen weight. After a
// step takes the adapter from (A₀, B₀) to (A₁, B₁):
//   W ← W + λ · s · (B₁A₁ − B₀A₀)
// for steps t > K (the paper: λ = 2, K = 500), with dropout 0. The update is one fused pass over
// W: a product over the joined inner dimension 2r, [λsB₁ | −λsB₀] · [A₁ ; A₀], added into W, so
// W is read once and written once. On CUDA, W may be float32, bfloat16 or float16; the
// adapters are float32 on both devices.
import { invalidRange, invalidType } from '../errors.js';
import { type Tensor } from '../tensor.js';
import { finite, FLOAT32_MAX, options } from '../validate.js';
import { apart, operand, sameDevice, shapeIs, weight } from './check.js';
import { run, runAsync } from './run.js';

/**
 * The paper's settings: λ = 2, and the update starts after K = 500 steps — it applies to the
 * optimizer steps t > startStep (1-based), so steps 1 … 500 leave W alone and step 501 is the
 * first to move it. The layer class counts the steps.
 */
export const DEFAULTS: Readonly<{ lambda: number; startStep: number }> = Object.freeze({ lambda: 2, startStep: 500 });

/** An adapter's matrices: A [r, in], B [out, r], float32. */
export interface DeltaLoraAdapter {
  A: Tensor;
  B: Tensor;
}

export interface DeltaLoraUpdateOptions {
  /** λ, the paper's update ratio (default 2). */
  lambda?: number;
  /** s: the adapter's scale, alpha / r (or alpha / sqrt(r) with rsLoRA). Required. */
  scale: number;
}

function adapter(v: unknown, name: string): { At: unknown; Bt: unknown } {
  if (typeof v !== 'object' || v === null) throw invalidType('an object { A, B }', name, v);
  const { A, B } = v as Partial<DeltaLoraAdapter>;
  return { At: A, Bt: B };
}

function prepare(W: Tensor, before: DeltaLoraAdapter, after: DeltaLoraAdapter, opts: DeltaLoraUpdateOptions) {
  const pairs = { before: adapter(before, 'before'), after: adapter(after, 'after') };
  sameDevice([
    [W, 'W'],
    [pairs.before.At, 'before.A'],
    [pairs.before.Bt, 'before.B'],
    [pairs.after.At, 'after.A'],
    [pairs.after.Bt, 'after.B'],
  ]);
  const Ws = weight(W, 'W');
  const parts = (p: { At: unknown; Bt: unknown }, name: string) => ({
    A: operand(p.At, `${name}.A`, 'float32'),
    B: operand(p.Bt, `${name}.B`, 'float32'),
    At: p.At as Tensor,
    Bt: p.Bt as Tensor,
  });
  const b = parts(pairs.before, 'before');
  const a = parts(pairs.after, 'after');
  if (W.shape.length !== 2 || W.shape[0] < 1 || W.shape[1] < 1) throw invalidRange('a 2-D weight [out, in] with out, in >= 1', 'W', W);
  const [out, inDim] = W.shape as [number, number];
  // after.A fixes the rank; every other matrix must agree with it and with W.
  if (a.At.shape.length !== 2 || a.At.shape[0] < 1) throw invalidRange('a 2-D adapter [r, in] with rank r >= 1', 'after.A', a.At);
  const r = a.At.shape[0];
  shapeIs(a.At, 'after.A', [r, inDim], ['r', 'in']);
  shapeIs(a.Bt, 'after.B', [out, r], ['out', 'r']);
  shapeIs(b.At, 'before.A', [r, inDim], ['r', 'in']);
  shapeIs(b.Bt, 'before.B', [out, r], ['out', 'r']);
  const o = options<DeltaLoraUpdateOptions>(opts, 'options');
  const lambda = o.lambda === undefined ? DEFAULTS.lambda : finite(o.lambda, 'options.lambda');
  const scale = finite(o.scale, 'options.scale');
  if (Math.abs(lambda * scale) > FLOAT32_MAX)
    throw invalidRange(`a number whose product with options.lambda (${lambda}) is within float32 range`, 'options.scale', scale);
  apart(
    [[W, 'W']],
    [
      [b.At, 'before.A'],
      [b.Bt, 'before.B'],
      [a.At, 'after.A'],
      [a.Bt, 'after.B'],
    ],
  );
  const args = { W: Ws, A0: b.A, B0: b.B, A1: a.A, B1: a.B, out, in: inDim, r, lambda, scale };
  return { args, tensors: [W, b.At, b.Bt, a.At, a.Bt] };
}

/**
 * W ← W + λ · s · (B₁A₁ − B₀A₀), in place, for W [out, in] (float32 or bfloat16), the adapter
 * before the optimizer step (A₀ [r, in], B₀ [out, r]) and after it (A₁, B₁). A bfloat16 W is
 * updated in float32 and rounded to the nearest bfloat16.
 */
export function update(W: Tensor, before: DeltaLoraAdapter, after: DeltaLoraAdapter, opts: DeltaLoraUpdateOptions): void {
  run('deltaLoraUpdate', prepare(W, before, after, opts).args);
}

/**
 * update off the event loop; the result equals update's bit for bit. The tensors must not
 * change until it settles. On CUDA the update is queued on the device in order, as update's is.
 */
export async function updateAsync(
  W: Tensor,
  before: DeltaLoraAdapter,
  after: DeltaLoraAdapter,
  opts: DeltaLoraUpdateOptions,
): Promise<void> {
  const { args, tensors } = prepare(W, before, after, opts);
  await runAsync('deltaLoraUpdate', args, tensors);
}

/**
 * Delta-LoRA trains without dropout (the paper removes it: W's update assumes the adapter saw
 * the undropped input). Throws a RangeError for any p other than 0; accepts a probability or a
 * `{ p }` dropout option, and undefined (no dropout).
 */
export function checkDropout(p: unknown): void {
  const name = 'Delta-LoRA (the paper removes dropout)';
  const value = typeof p === 'object' && p !== null && 'p' in p ? p.p : p;
  if (value === undefined) return;
  if (typeof value !== 'number') throw invalidType('dropout p = 0', name, value);
  if (value !== 0) throw invalidRange('dropout p = 0', name, value);
}
