// A plain linear layer, y = x Wᵀ + b, with W trainable: the full fine-tuning baseline. On CUDA,
// x, W, the bias and dy may be float32, bfloat16 or float16 (y and dx take x's dtype); dW and
// db are float32.
import { invalidRange, invalidType } from '../errors.js';
import { Tensor } from '../tensor.js';
import { options } from '../validate.js';
import { biasOf, operand, output, rowsOf, sameDevice, upstream, weight } from './check.js';
import { run, runAsync } from './run.js';

export interface LinearSaved {
  x: Tensor;
  W: Tensor;
  hasBias: boolean;
  /** Bytes of activations kept for backward (x). */
  bytes: number;
}

function dims(x: Tensor, W: Tensor) {
  if (W.shape.length !== 2 || W.shape[0] < 1 || W.shape[1] < 1) throw invalidRange('a 2-D weight [out, in] with out, in >= 1', 'W', W);
  const [out, inDim] = W.shape as [number, number];
  return { ...rowsOf(x, inDim), in: inDim, out };
}

function prepareForward(x: Tensor, W: Tensor, opts: { bias?: Tensor } | undefined) {
  const o = options<{ bias: Tensor }>(opts, 'options');
  const device = sameDevice([
    [x, 'x'],
    [W, 'W'],
    [o.bias, 'options.bias'],
  ]);
  const xs = operand(x, 'x', 'activation'),
    Ws = weight(W, 'W');
  const d = dims(x, W);
  const bias = biasOf(o.bias, d.out);
  const y = Tensor.empty([...d.leading, d.out], x.dtype, device);
  const saved: LinearSaved = { x, W, hasBias: o.bias !== undefined, bytes: x.nbytes };
  const args = { t: d.t, in: d.in, out: d.out, x: xs, W: Ws, bias, y: output(y) };
  return { args, y, saved };
}

/** y = x Wᵀ + bias for x [..., in], W [out, in]. */
export function forward(x: Tensor, W: Tensor, opts?: { bias?: Tensor }): { y: Tensor; saved: LinearSaved } {
  const { args, y, saved } = prepareForward(x, W, opts);
  run('linearForward', args);
  return { y, saved };
}

export interface LinearGrads {
  dx: Tensor;
  dW: Tensor;
  /** Present when forward had a bias. */
  db?: Tensor;
}

function prepareBackward(dy: Tensor, saved: LinearSaved) {
  const s = saved as Partial<LinearSaved> | null | undefined;
  if (typeof s !== 'object' || s === null || !(s.x instanceof Tensor) || !(s.W instanceof Tensor))
    throw invalidType('the saved state from linear.forward', 'saved', saved);
  const d = dims(saved.x, saved.W);
  const device = saved.x.device;
  const dys = upstream(dy, d.leading, d.out, device);
  if (saved.W.dtype !== 'float32') throw invalidRange(`a float32 W to train (a ${saved.W.dtype} W is frozen storage)`, 'saved.W', saved.W);
  const xs = operand(saved.x, 'saved input x', 'activation');
  const Ws = weight(saved.W, 'saved weight W');
  const dx = Tensor.empty([...d.leading, d.in], saved.x.dtype, device);
  const dW = Tensor.empty([d.out, d.in], 'float32', device);
  const db = saved.hasBias ? Tensor.empty([d.out], 'float32', device) : undefined;
  const args = { t: d.t, in: d.in, out: d.out, dy: dys, x: xs, W: Ws, dx: output(dx), dW: output(dW), db: db ? output(db) : null };
  const grads: LinearGrads = db ? { dx, dW, db } : { dx, dW };
  return { args, grads };
}

/** dx = dy W, dW = dyᵀ x, db = Σ dy. */
export function backward(dy: Tensor, saved: LinearSaved): LinearGrads {
  const { args, grads } = prepareBackward(dy, saved);
  run('linearBackward', args);
  return grads;
}

/** forward off the event loop (on CUDA: queued on the device in order, as forward's is). */
export async function forwardAsync(x: Tensor, W: Tensor, opts?: { bias?: Tensor }): Promise<{ y: Tensor; saved: LinearSaved }> {
  const { args, y, saved } = prepareForward(x, W, opts);
  await runAsync('linearForward', args, [x, W, opts?.bias, y]);
  return { y, saved };
}

/** backward off the event loop (on CUDA: queued on the device in order). */
export async function backwardAsync(dy: Tensor, saved: LinearSaved): Promise<LinearGrads> {
  const { args, grads } = prepareBackward(dy, saved);
  await runAsync('linearBackward', args, [dy, saved.x, saved.W, grads.dx, grads.dW, grads.db]);
  return grads;
}
