// VeraLinear: a frozen linear layer with a VeRA adapter. The random projections are shared by
// every layer of a model (sized by the largest in/out); a layer trains only λd [r] and λb [out].
import { invalidRange } from '../errors.js';
import { bool, finite, options } from '../ops/check.js';
import * as vera from '../ops/vera.js';
import { type VeraProjectionPair, type VeraSaved } from '../ops/vera.js';
import { Tensor } from '../tensor.js';
import { accumulate, checkTensorOption, type Parameter, parameter, zeroGrad } from './parameter.js';

export interface VeraLinearOptions {
  /** The frozen base weight [out, in], float32 or bfloat16 (shared, not copied). */
  weight: Tensor;
  bias?: Tensor;
  /** The shared projections (vera.projections({ rank, maxIn, maxOut, seed })). */
  projections: VeraProjectionPair & { readonly A: Tensor };
  /** λd's initial value (PEFT's d_initial, default 0.1). */
  dInitial?: number;
  /** Dropout probability on the adapter input while training. */
  dropout?: number;
  seed?: number;
  /** Existing trained vectors instead of a fresh init. */
  lambdaD?: Tensor;
  lambdaB?: Tensor;
}

export class VeraLinear {
  readonly weight: Tensor;
  readonly bias?: Tensor;
  readonly projections: VeraProjectionPair;
  readonly lambdaD: Tensor;
  readonly lambdaB: Tensor;
  readonly dropout: number;
  #seed: number;
  #calls = 0;
  #saved: VeraSaved | null = null;
  #params: Parameter[];
  #merged = false;

  constructor(opts: VeraLinearOptions) {
    const o = options<VeraLinearOptions>(opts, 'options');
    this.weight = checkTensorOption(o.weight, 'options.weight');
    if (this.weight.shape.length !== 2) throw invalidRange('a 2-D weight [out, in]', 'options.weight', this.weight);
    const [out] = this.weight.shape as [number, number];
    this.bias = o.bias === undefined ? undefined : checkTensorOption(o.bias, 'options.bias');
    if (typeof o.projections !== 'object' || o.projections === null) throw invalidRange('the shared VeRA projections', 'options.projections', o.projections);
    this.projections = o.projections;
    const rank = checkTensorOption(o.projections.A, 'options.projections.A').shape[0];
    const p = o.dropout === undefined ? 0 : finite(o.dropout, 'options.dropout');
    if (!(p >= 0 && p < 1)) throw invalidRange('a number in [0, 1)', 'options.dropout', p);
    this.dropout = p;
    this.#seed = o.seed ?? 0;
    if (o.lambdaD !== undefined || o.lambdaB !== undefined) {
      this.lambdaD = checkTensorOption(o.lambdaD, 'options.lambdaD');
      this.lambdaB = checkTensorOption(o.lambdaB, 'options.lambdaB');
    } else {
      ({ lambdaD: this.lambdaD, lambdaB: this.lambdaB } = vera.init({ outFeatures: out, rank, dInitial: o.dInitial }));
    }
    this.#params = [parameter('vera_lambda_d', this.lambdaD), parameter('vera_lambda_b', this.lambdaB)];
  }

  parameters(): Parameter[] {
    return this.#params;
  }

  /** Bytes the last training forward kept for backward: T·r·4 (u only). */
  get savedBytes(): number {
    return this.#saved?.bytes ?? 0;
  }

  get merged(): boolean {
    return this.#merged;
  }

  forward(x: Tensor, opts?: { training?: boolean }): Tensor {
    const training = bool(options<{ training: boolean }>(opts, 'options').training, 'options.training', true);
    if (this.#merged && training) throw invalidRange('an unmerged layer to train (call unmerge() first)', 'layer', 'merged');
    this.#saved?.dispose();
    this.#saved = null;
    const dropout = training && this.dropout > 0 ? { p: this.dropout, seed: this.#seed * 1_000_003 + ++this.#calls } : undefined;
    // Merged: the adapter lives in W; λb = 0 turns the adapter path off.
    const lambdaB = this.#merged ? Tensor.empty(this.lambdaB.shape, 'float32', x.device, true) : this.lambdaB;
    const { y, saved } = vera.forward(x, this.weight, this.projections, this.lambdaD, lambdaB, { bias: this.bias, dropout });
    if (this.#merged) lambdaB.dispose();
    if (training) this.#saved = saved;
    else saved.dispose();
    return y;
  }

  /** Adds this step's gradients into parameters()' grads and returns dx. */
  backward(dy: Tensor): Tensor {
    if (!this.#saved) throw invalidRange('a training forward() before backward()', 'layer', 'no saved state');
    const g = vera.backward(dy, this.#saved);
    accumulate(this.#params[0], g.dLambdaD);
    accumulate(this.#params[1], g.dLambdaB);
    g.dLambdaD.dispose();
    g.dLambdaB.dispose();
    this.#saved.dispose();
    this.#saved = null;
    return g.dx;
  }

  zeroGrad(): void {
    zeroGrad(this.#params);
  }

  /** Nothing to do for VeRA (kept so every layer can be stepped the same way). */
  afterOptimizerStep(): void {}

  merge(): void {
    if (this.#merged) return;
    vera.merge(this.weight, this.projections, this.lambdaD, this.lambdaB, { safe: true });
    this.#merged = true;
  }

  unmerge(): void {
    if (!this.#merged) return;
    vera.unmerge(this.weight, this.projections, this.lambdaD, this.lambdaB);
    this.#merged = false;
  }

  dispose(): void {
    this.#saved?.dispose();
    for (const p of this.#params) p.grad.dispose();
  }
}
