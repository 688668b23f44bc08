// VeraLinear: a frozen linear layer with a VeRA adapter. The random projections are shared by
// every layer of a model (sized by the largest in/out); a layer trains only λd [r] and λb [out].
import { invalidRange } from '../errors.js';
import { apart } from '../ops/check.js';
import { options } from '../validate.js';
import * as linear from '../ops/linear.js';
import * as vera from '../ops/vera.js';
import { type VeraProjectionPair, type VeraSaved } from '../ops/vera.js';
import { Tensor } from '../tensor.js';
import { AdapterLayer } from './adapter-layer.js';
import { accumulate, baseOptions, checkTensorOption, givenTogether, parameter } from './parameter.js';

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
  /** Seed of the dropout masks: an integer in [0, 2^64). */
  seed?: number | bigint;
  /** Existing trained vectors instead of a fresh init. */
  lambdaD?: Tensor;
  lambdaB?: Tensor;
}

export class VeraLinear extends AdapterLayer<VeraSaved> {
  readonly weight: Tensor;
  readonly bias?: Tensor;
  readonly projections: VeraProjectionPair;
  readonly lambdaD: Tensor;
  readonly lambdaB: Tensor;

  constructor(opts: VeraLinearOptions) {
    const o = options<VeraLinearOptions>(opts, 'options');
    super(o.dropout, o.seed);
    const base = baseOptions(o.weight, o.bias);
    this.weight = base.weight;
    this.bias = base.bias;
    const { out } = base;
    if (typeof o.projections !== 'object' || o.projections === null)
      throw invalidRange('the shared VeRA projections', 'options.projections', o.projections);
    this.projections = o.projections;
    const rank = checkTensorOption(o.projections.A, 'options.projections.A').shape[0];
    checkTensorOption(o.projections.B, 'options.projections.B');
    if (givenTogether([o.lambdaD, 'options.lambdaD', o.lambdaB, 'options.lambdaB'], [o.dInitial, 'options.dInitial'])) {
      this.lambdaD = checkTensorOption(o.lambdaD, 'options.lambdaD');
      this.lambdaB = checkTensorOption(o.lambdaB, 'options.lambdaB');
    } else {
      ({ lambdaD: this.lambdaD, lambdaB: this.lambdaB } = vera.init({
        outFeatures: out,
        rank,
        dInitial: o.dInitial,
        device: this.weight.device,
      }));
    }
    vera.checkLayer(this.weight, this.projections, this.lambdaD, this.lambdaB, {
      W: 'options.weight',
      A: 'options.projections.A',
      B: 'options.projections.B',
      lambdaD: 'options.lambdaD',
      lambdaB: 'options.lambdaB',
    });
    if (this.bias) apart([[this.weight, 'options.weight']], [[this.bias, 'options.bias']]);
    // parameters(): [vera_lambda_d, vera_lambda_b]. savedBytes: T·r·4 (u only).
    this.params = [parameter('vera_lambda_d', this.lambdaD), parameter('vera_lambda_b', this.lambdaB)];
  }

  forward(x: Tensor, opts?: { training?: boolean }): Tensor {
    const training = this.beginForward(opts);
    // Merged: the adapter lives in W, so the plain linear forward (beginForward refused training).
    if (this.isMerged) return linear.forward(x, this.weight, { bias: this.bias }).y;
    const { y, saved } = vera.forward(x, this.weight, this.projections, this.lambdaD, this.lambdaB, {
      bias: this.bias,
      dropout: this.dropoutFor(training),
    });
    this.keep(training, saved);
    return y;
  }

  /** Adds this step's gradients into parameters()' grads and returns dx. */
  backward(dy: Tensor): Tensor {
    const saved = this.takeSaved();
    const g = vera.backward(dy, saved);
    accumulate(this.params[0], g.dLambdaD);
    accumulate(this.params[1], g.dLambdaB);
    g.dLambdaD.dispose();
    g.dLambdaB.dispose();
    saved.dispose();
    return g.dx;
  }

  /** Nothing to do for VeRA (kept so every layer can be stepped the same way). */
  afterOptimizerStep(): void {}

  merge(): void {
    if (this.isMerged) return;
    vera.merge(this.weight, this.projections, this.lambdaD, this.lambdaB, { safe: true });
    this.isMerged = true;
  }

  unmerge(): void {
    if (!this.isMerged) return;
    vera.unmerge(this.weight, this.projections, this.lambdaD, this.lambdaB);
    this.isMerged = false;
  }
}
