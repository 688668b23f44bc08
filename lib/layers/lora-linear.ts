// LoraLinear: a frozen linear layer with a LoRA adapter, in three variants:
//   'lora'        A and B train;
//   'lora-fa'     A frozen at its init, only B trains, backward keeps only xa (T·r·4 bytes);
//   'delta-lora'  like 'lora', and after each optimizer step W also moves by
//                 λ·s·(B₁A₁ − B₀A₀) once the step count passes startStep (dropout must be 0).
import { invalidRange, invalidType } from '../errors.js';
import { bool, finite, nonNegativeInt, options, positiveInt } from '../validate.js';
import { apart, checked, sameDevice, shapeIs } from '../ops/check.js';
import * as deltaLora from '../ops/delta-lora.js';
import * as linear from '../ops/linear.js';
import * as lora from '../ops/lora.js';
import { type LoraSaved } from '../ops/lora.js';
import { Tensor } from '../tensor.js';
import { AdapterLayer } from './adapter-layer.js';
import { accumulate, baseOptions, checkTensorOption, givenTogether, parameter } from './parameter.js';

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
  /** Seed for the adapter's init and dropout masks: an integer in [0, 2^64). */
  seed?: number | bigint;
  init?: 'kaiming' | 'gaussian';
  /** Existing adapter matrices (A [r, in], B [out, r]) instead of a fresh init. */
  A?: Tensor;
  B?: Tensor;
  /** 'lora-fa': PEFT's projection of B's gradient. */
  projectGradB?: boolean;
  /** 'delta-lora': λ (default 2) and the step after which W moves (default 500). */
  delta?: { lambda?: number; startStep?: number };
}

export class LoraLinear extends AdapterLayer<LoraSaved> {
  readonly variant: LoraVariant;
  readonly weight: Tensor;
  readonly bias?: Tensor;
  readonly A: Tensor;
  readonly B: Tensor;
  readonly rank: number;
  readonly scale: number;
  readonly #projectGradB: boolean;
  readonly #lambda: number;
  readonly #startStep: number;
  #steps = 0;
  #before: { A: Tensor; B: Tensor } | null = null;

  constructor(opts: LoraLinearOptions) {
    const o = options<LoraLinearOptions>(opts, 'options');
    super(o.dropout, o.seed);
    const base = baseOptions(o.weight, o.bias);
    this.weight = base.weight;
    this.bias = base.bias;
    const { out, inDim } = base;
    const variant = o.variant ?? 'lora';
    if (variant !== 'lora' && variant !== 'lora-fa' && variant !== 'delta-lora')
      throw invalidType("'lora', 'lora-fa' or 'delta-lora'", 'options.variant', variant);
    this.variant = variant;
    const rank = positiveInt(o.rank, 'options.rank');
    this.rank = rank;
    const alpha = o.alpha === undefined ? rank : finite(o.alpha, 'options.alpha');
    this.scale = lora.scaling(alpha, rank, { rslora: bool(o.rslora, 'options.rslora', false) });
    if (variant === 'delta-lora') deltaLora.checkDropout(this.dropout);
    if (o.init !== undefined && o.init !== 'kaiming' && o.init !== 'gaussian')
      throw invalidType("'kaiming' or 'gaussian'", 'options.init', o.init);
    if (givenTogether([o.A, 'options.A', o.B, 'options.B'], [o.init, 'options.init'])) {
      this.A = checked(checkTensorOption(o.A, 'options.A'), 'options.A', 'float32');
      this.B = checked(checkTensorOption(o.B, 'options.B'), 'options.B', 'float32');
      shapeIs(this.A, 'options.A', [rank, inDim], ['rank', 'in']);
      shapeIs(this.B, 'options.B', [out, rank], ['out', 'rank']);
    } else {
      ({ A: this.A, B: this.B } = lora.init({
        inFeatures: inDim,
        outFeatures: out,
        rank,
        method: o.init,
        seed: o.seed,
        device: this.weight.device,
      }));
    }
    sameDevice([
      [this.weight, 'options.weight'],
      [this.bias, 'options.bias'],
      [this.A, 'options.A'],
      [this.B, 'options.B'],
    ]);
    // merge(), unmerge() and Delta-LoRA's update write the weight.
    apart(
      [[this.weight, 'options.weight']],
      [
        [this.bias, 'options.bias'],
        [this.A, 'options.A'],
        [this.B, 'options.B'],
      ],
    );
    this.#projectGradB = bool(o.projectGradB, 'options.projectGradB', false);
    if (this.#projectGradB && variant !== 'lora-fa') throw invalidRange("false unless variant is 'lora-fa'", 'options.projectGradB', true);
    const delta = options<{ lambda: number; startStep: number }>(o.delta, 'options.delta');
    this.#lambda = delta.lambda === undefined ? deltaLora.DEFAULTS.lambda : finite(delta.lambda, 'options.delta.lambda');
    this.#startStep =
      delta.startStep === undefined ? deltaLora.DEFAULTS.startStep : nonNegativeInt(delta.startStep, 'options.delta.startStep');
    // parameters(): [lora_A, lora_B]; LoRA-FA: [lora_B]. savedBytes: T·(in + r)·4; LoRA-FA: T·r·4.
    this.params = variant === 'lora-fa' ? [parameter('lora_B', this.B)] : [parameter('lora_A', this.A), parameter('lora_B', this.B)];
  }

  /** y = x Wᵀ + b + s·(D(x) Aᵀ) Bᵀ. With `training` (default true) it keeps what backward needs. */
  forward(x: Tensor, opts?: { training?: boolean }): Tensor {
    const training = this.beginForward(opts);
    // Merged: the adapter lives in W, so the plain linear forward (beginForward refused training).
    if (this.isMerged) return linear.forward(x, this.weight, { bias: this.bias }).y;
    const { y, saved } = lora.forward(x, this.weight, this.A, this.B, {
      scale: this.scale,
      bias: this.bias,
      dropout: this.dropoutFor(training),
      frozenA: this.variant === 'lora-fa',
    });
    this.keep(training, saved);
    return y;
  }

  /** Adds this step's gradients into parameters()' grads and returns dx. */
  backward(dy: Tensor): Tensor {
    const saved = this.takeSaved();
    const g = lora.backward(dy, saved, { projectGradB: this.#projectGradB });
    const [pA, pB] = this.variant === 'lora-fa' ? [undefined, this.params[0]] : this.params;
    if (pA && g.dA) accumulate(pA, g.dA);
    accumulate(pB, g.dB);
    g.dA?.dispose();
    g.dB.dispose();
    if (this.variant === 'delta-lora' && !this.#before) this.#before = { A: this.A.clone(), B: this.B.clone() };
    saved.dispose();
    return g.dx;
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
    if (this.isMerged) return;
    lora.merge(this.weight, this.A, this.B, this.scale, { safe: true });
    this.isMerged = true;
  }

  unmerge(): void {
    if (!this.isMerged) return;
    lora.unmerge(this.weight, this.A, this.B, this.scale);
    this.isMerged = false;
  }

  override dispose(): void {
    super.dispose();
    this.#before?.A.dispose();
    this.#before?.B.dispose();
  }
}
