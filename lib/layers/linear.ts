// Linear: a plain trainable linear layer, y = x Wᵀ + b (full fine-tuning).
import { invalidRange } from '../errors.js';
import { bool, options } from '../validate.js';
import * as linear from '../ops/linear.js';
import { type LinearSaved } from '../ops/linear.js';
import { Tensor } from '../tensor.js';
import { apart, checked } from '../ops/check.js';
import { accumulate, baseOptions, type Parameter, parameter, zeroGrad } from './parameter.js';

export class Linear {
  readonly weight: Tensor;
  readonly bias?: Tensor;
  #saved: LinearSaved | null = null;
  #params: Parameter[];

  /** Trains `weight` [out, in] (float32) and `bias` [out] in place. */
  constructor(opts: { weight: Tensor; bias?: Tensor }) {
    const o = options<{ weight: Tensor; bias: Tensor }>(opts, 'options');
    const base = baseOptions(o.weight, o.bias);
    // both train (the optimizer writes them): float32, apart from each other
    this.weight = checked(base.weight, 'options.weight', 'float32');
    this.bias = base.bias && checked(base.bias, 'options.bias', 'float32');
    apart([[this.weight, 'options.weight']], [[this.bias, 'options.bias']]);
    this.#params = [parameter('weight', this.weight), ...(this.bias ? [parameter('bias', this.bias)] : [])];
  }

  parameters(): Parameter[] {
    return this.#params;
  }

  /** Bytes the last training forward kept for backward (x: T·in·4). */
  get savedBytes(): number {
    return this.#saved?.bytes ?? 0;
  }

  forward(x: Tensor, opts?: { training?: boolean }): Tensor {
    const training = bool(options<{ training: boolean }>(opts, 'options').training, 'options.training', true);
    const { y, saved } = linear.forward(x, this.weight, { bias: this.bias });
    this.#saved = training ? saved : null;
    return y;
  }

  backward(dy: Tensor): Tensor {
    if (!this.#saved) throw invalidRange('a training forward() before backward()', 'layer', 'no saved state');
    const g = linear.backward(dy, this.#saved);
    accumulate(this.#params[0], g.dW);
    if (g.db && this.#params[1]) accumulate(this.#params[1], g.db);
    g.dW.dispose();
    g.db?.dispose();
    this.#saved = null;
    return g.dx;
  }

  zeroGrad(): void {
    zeroGrad(this.#params);
  }

  afterOptimizerStep(): void {}

  dispose(): void {
    for (const p of this.#params) p.grad.dispose();
  }
}
