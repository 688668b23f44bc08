// LoraLinear: a frozen linear layer with a LoRA adapter, in three variants:
//   'lora'        A and B train;
//   'lora-fa'     A frozen at its init, only B trains, backward keeps only xa (T·r·4 bytes);
//   'delta-lora'  like 'lora', and after each optimizer step W also moves by
//                 λ·s·(B₁A₁ − B₀A₀) once the step count passes startStep (dropout must be 0).
import { invalidRange, invalidType } from '../errors.js';
import * as deltaLora from '../ops/delta-lora.js';
import * as lora from '../ops/lora.js';
import { type LoraSaved } from '../ops/lora.js';
import { bool, finite, options } from '../ops/check.js';
import { Tensor } from '../tensor.js';
import { accumulate, checkTensorOption, type Parameter, parameter, zeroGrad } from './parameter.js';

export type LoraVariant = 'lora' | 'lora-fa' | 'delta-lora';

export interface LoraLinearOptions {
  /** The frozen base weight [out, in], float32 or bfloat16 (shared, not copied). */
  weight: Tensor;
  bias?: Tensor;
  rank: number;
  /** PEFT's lora_alpha (default: rank, so scale 1). */
  alpha?: number;
  /** Scale by alpha / sqrt(r) instead of alpha / r. */
  rslora?: boolean;
  variant?: LoraVariant;
  /** Dropout probability on the adapter input while training (not for 'delta-lora'). */
  dropout?: number;
  /** Seed for the adapter's init and dropout masks. */
  seed?: number;
  init?: 'kaiming' | 'gaussian';
  /** Existing adapter matrices (A [r, in], B [out, r]) instead of a fresh init. */
  A?: Tensor;
  B?: Tensor;
  /** 'lora-fa': PEFT's projection of B's gradient. */
  projectGradB?: boolean;
  /** 'delta-lora': λ (default 2) and the step after which W moves (default 500). */
  delta?: { lambda?: number; startStep?: number };
}

export class LoraLinear {
  readonly variant: LoraVariant;
  readonly weight: Tensor;
  readonly bias?: Tensor;
  readonly A: Tensor;
  readonly B: Tensor;
  readonly rank: number;
  readonly scale: number;
  readonly dropout: number;
  #seed: number;
  #calls = 0;
  #saved: LoraSaved | null = null;
  #params: Parameter[];
  #merged = false;
  readonly #projectGradB: boolean;
  readonly #lambda: number;
  readonly #startStep: number;
  #steps = 0;
  #before: { A: Tensor; B: Tensor } | null = null;

  constructor(opts: LoraLinearOptions) {
    const o = options<LoraLinearOptions>(opts, 'options');
    this.weight = checkTensorOption(o.weight, 'options.weight');
    if (this.weight.shape.length !== 2) throw invalidRange('a 2-D weight [out, in]', 'options.weight', this.weight);
    const [out, inDim] = this.weight.shape as [number, number];
    this.bias = o.bias === undefined ? undefined : checkTensorOption(o.bias, 'options.bias');
    const variant = o.variant ?? 'lora';
    if (variant !== 'lora' && variant !== 'lora-fa' && variant !== 'delta-lora')
      throw invalidType("'lora', 'lora-fa' or 'delta-lora'", 'options.variant', variant);
    this.variant = variant;
    if (typeof o.rank !== 'number' || !Number.isSafeInteger(o.rank)) throw invalidType('a positive integer', 'options.rank', o.rank);
    if (o.rank < 1) throw invalidRange('a positive integer', 'options.rank', o.rank);
    this.rank = o.rank;
    const alpha = o.alpha === undefined ? o.rank : finite(o.alpha, 'options.alpha');
    this.scale = lora.scaling(alpha, o.rank, { rslora: bool(o.rslora, 'options.rslora', false) });
    const p = o.dropout === undefined ? 0 : finite(o.dropout, 'options.dropout');
    if (!(p >= 0 && p < 1)) throw invalidRange('a number in [0, 1)', 'options.dropout', p);
    if (variant === 'delta-lora') deltaLora.checkDropout(p);
    this.dropout = p;
    this.#seed = o.seed ?? 0;
    if ((o.A === undefined) !== (o.B === undefined)) throw invalidType('A and B together, or neither', 'options.A', o.A);
    if (o.A && o.B) {
      this.A = checkTensorOption(o.A, 'options.A');
      this.B = checkTensorOption(o.B, 'options.B');
    } else {
      ({ A: this.A, B: this.B } = lora.init({ inFeatures: inDim, outFeatures: out, rank: o.rank, method: o.init, seed: this.#seed }));
    }
    this.#projectGradB = bool(o.projectGradB, 'options.projectGradB', false);
    if (this.#projectGradB && variant !== 'lora-fa') throw invalidRange("false unless variant is 'lora-fa'", 'options.projectGradB', true);
    const delta = options<{ lambda: number; startStep: number }>(o.delta, 'options.delta');
    this.#lambda = delta.lambda === undefined ? deltaLora.DEFAULTS.lambda : finite(delta.lambda, 'options.delta.lambda');
    this.#startStep = delta.startStep === undefined ? deltaLora.DEFAULTS.startStep : finite(delta.startStep, 'options.delta.startStep');
    this.#params =
      variant === 'lora-fa' ? [parameter('lora_B', this.B)] : [parameter('lora_A', this.A), parameter('lora_B', this.B)];
  }

  /** Trainable tensors with their gradients (LoRA-FA: B only). */
  parameters(): Parameter[] {
    return this.#params;
  }

  /** Bytes the last training forward kept for backward (LoRA: T·(in + r)·4; LoRA-FA: T·r·4). */
  get savedBytes(): number {
    return this.#saved?.bytes ?? 0;
  }

  get merged(): boolean {
    return this.#merged;
  }

  /** y = x Wᵀ + b + s·(D(x) Aᵀ) Bᵀ. With `training` (default true) it keeps what backward needs. */
  forward(x: Tensor, opts?: { training?: boolean }): Tensor {
    const training = bool(options<{ training: boolean }>(opts, 'options').training, 'options.training', true);
    if (this.#merged) {
      if (training) throw invalidRange('an unmerged layer to train (call unmerge() first)', 'layer', 'merged');
      // The adapter lives in W: a base-only forward (a rank-1 zero adapter costs nothing).
      return this.#baseForward(x);
    }
    this.#saved?.dispose();
    this.#saved = null;
    const dropout = training && this.dropout > 0 ? { p: this.dropout, seed: this.#seed * 1_000_003 + ++this.#calls } : undefined;
    const { y, saved } = lora.forward(x, this.weight, this.A, this.B, {
      scale: this.scale,
      bias: this.bias,
      dropout,
      frozenA: this.variant === 'lora-fa',
    });
    if (training) this.#saved = saved;
    else saved.dispose();
    return y;
  }

  #baseForward(x: Tensor): Tensor {
    const [out] = this.weight.shape as [number, number];
    const zeroB = Tensor.empty([out, 1], 'float32', x.device, true);
    const zeroA = Tensor.empty([1, this.weight.shape[1]], 'float32', x.device, true);
    const { y, saved } = lora.forward(x, this.weight, zeroA, zeroB, { scale: 0, bias: this.bias });
    saved.dispose();
    zeroA.dispose();
    zeroB.dispose();
    return y;
  }

  /** Adds this step's gradients into parameters()' grads and returns dx. */
  backward(dy: Tensor): Tensor {
    if (!this.#saved) throw invalidRange('a training forward() before backward()', 'layer', 'no saved state');
    const g = lora.backward(dy, this.#saved, { projectGradB: this.#projectGradB });
    const [pA, pB] = this.variant === 'lora-fa' ? [undefined, this.#params[0]] : this.#params;
    if (pA && g.dA) accumulate(pA, g.dA);
    accumulate(pB, g.dB);
    g.dA?.dispose();
    g.dB.dispose();
    if (this.variant === 'delta-lora' && !this.#before) this.#before = { A: this.A.clone(), B: this.B.clone() };
    this.#saved.dispose();
    this.#saved = null;
    return g.dx;
  }

  zeroGrad(): void {
    zeroGrad(this.#params);
  }

  /**
   * Call after the optimizer stepped. Delta-LoRA: W += λ·s·(B₁A₁ − B₀A₀) from the A, B the
   * last backward saw to the ones the optimizer made, once more than startStep steps ran.
   * Other variants only count the step.
   */
  afterOptimizerStep(): void {
    this.#steps += 1;
    if (this.variant !== 'delta-lora' || !this.#before) return;
    if (this.#steps > this.#startStep)
      deltaLora.update(this.weight, this.#before, { A: this.A, B: this.B }, { lambda: this.#lambda, scale: this.scale });
    this.#before.A.dispose();
    this.#before.B.dispose();
    this.#before = null;
  }

  get stepCount(): number {
    return this.#steps;
  }

  /** W ← W + s·B·A for zero-latency inference (safe: refuses a non-finite result). */
  merge(): void {
    if (this.#merged) return;
    lora.merge(this.weight, this.A, this.B, this.scale, { safe: true });
    this.#merged = true;
  }

  unmerge(): void {
    if (!this.#merged) return;
    lora.unmerge(this.weight, this.A, this.B, this.scale);
    this.#merged = false;
  }

  dispose(): void {
    this.#saved?.dispose();
    for (const p of this.#params) p.grad.dispose();
    this.#before?.A.dispose();
    this.#before?.B.dispose();
  }
}
