// A plain linear layer, y = x Wᵀ + b, with W trainable: the full fine-tuning baseline.
import { invalidRange } from '../errors.js';
import { native } from '../native.js';
import { Tensor } from '../tensor.js';
import { awaitHolding, biasOf, f32, options, rowsOf, sameDevice, upstream, weight } from './check.js';

export interface LinearSaved {
  x: Tensor;
  W: Tensor;
  hasBias: boolean;
  /** Bytes of activations kept for backward (x). */
  bytes: number;
}

function dims(x: Tensor, W: Tensor) {
  if (W.shape.length !== 2 || W.shape[0] < 1 || W.shape[1] < 1)
    throw invalidRange('a 2-D weight [out, in] with out, in >= 1', 'W', W);
  const [out, inDim] = W.shape as [number, number];
  return { ...rowsOf(x, inDim), in: inDim, out };
}

function prepareForward(x: Tensor, W: Tensor, opts: { bias?: Tensor } | undefined) {
  const o = options<{ bias: Tensor }>(opts, 'options');
  const xs = f32(x, 'x'), Ws = weight(W, 'W');
  const d = dims(x, W);
  const bias = biasOf(o.bias, d.out);
  sameDevice([
    [x, 'x'],
    [W, 'W'],
    [o.bias, 'options.bias'],
  ]);
  const y = Tensor.empty([...d.leading, d.out], 'float32', x.device);
  const saved: LinearSaved = { x, W, hasBias: o.bias !== undefined, bytes: x.nbytes };
  return { args: { t: d.t, in: d.in, out: d.out, x: xs, ...Ws, bias, y: y.storage() as Float32Array }, y, saved };
}

/** y = x Wᵀ + bias for x [..., in], W [out, in]. */
export function forward(x: Tensor, W: Tensor, opts?: { bias?: Tensor }): { y: Tensor; saved: LinearSaved } {
  const { args, y, saved } = prepareForward(x, W, opts);
  native().linearForward(args);
  return { y, saved };
}

export interface LinearGrads {
  dx: Tensor;
  dW: Tensor;
  /** Present when forward had a bias. */
  db?: Tensor;
}

function prepareBackward(dy: Tensor, saved: LinearSaved) {
  const d = dims(saved.x, saved.W);
  const dys = upstream(dy, d.leading, d.out, saved.x.device);
  if (saved.W.dtype !== 'float32') throw invalidRange('a float32 W to train (a bfloat16 W is frozen storage)', 'saved.W', saved.W);
  const dx = Tensor.empty([...d.leading, d.in], 'float32', dy.device);
  const dW = Tensor.empty([d.out, d.in], 'float32', dy.device);
  const db = saved.hasBias ? Tensor.empty([d.out], 'float32', dy.device) : undefined;
  const args = {
    t: d.t,
    in: d.in,
    out: d.out,
    dy: dys,
    x: f32(saved.x, 'saved input x'),
    ...weight(saved.W, 'saved weight W'),
    dx: dx.storage() as Float32Array,
    dW: dW.storage() as Float32Array,
    db: db ? (db.storage() as Float32Array) : null,
  };
  return { args, grads: db ? { dx, dW, db } : { dx, dW } };
}

/** dx = dy W, dW = dyᵀ x, db = Σ dy. */
export function backward(dy: Tensor, saved: LinearSaved): LinearGrads {
  const { args, grads } = prepareBackward(dy, saved);
  native().linearBackward(args);
  return grads;
}

export async function forwardAsync(x: Tensor, W: Tensor, opts?: { bias?: Tensor }): Promise<{ y: Tensor; saved: LinearSaved }> {
  const { args, y, saved } = prepareForward(x, W, opts);
  await awaitHolding(native().linearForward(args, true), [x, W, opts?.bias, y]);
  return { y, saved };
}

export async function backwardAsync(dy: Tensor, saved: LinearSaved): Promise<LinearGrads> {
  const { args, grads } = prepareBackward(dy, saved);
  await awaitHolding(native().linearBackward(args, true), [dy, saved.x, saved.W, grads.dx, grads.dW, grads.db]);
  return grads;
}
