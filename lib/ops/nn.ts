// nn: the building blocks of a training loop on either device, each one native op on the
// tensors' device (CUDA: device kernels queued on the backend stream), so a step never copies to
// the host. Every function validates its arguments here (lib/ops/check.ts, lib/validate.ts) and
// returns new tensors on its inputs' device unless told to write into `out`.
import { invalidRange, invalidType } from '../errors.js';
import { Tensor } from '../tensor.js';
import { bool, finiteF32, FLOAT32_MAX, options } from '../validate.js';
import { apart, checked, indices, live, nativeOf, output, sameDevice, sameShape } from './check.js';
import { run, runAsync } from './run.js';

const INT32_MIN = -(2 ** 31),
  INT32_MAX = 2 ** 31 - 1;

/**
 * t ← value in place, for a tensor of any dtype: a float tensor takes the value rounded to its
 * dtype (NaN and ±Infinity included), an int32 tensor an integer in int32's range. Returns t.
 */
export function fill(t: Tensor, value: number): Tensor {
  const c = live(t, 't');
  if (typeof value !== 'number') throw invalidType('a number', 'value', value);
  if (c.dtype === 'int32' && !(Number.isInteger(value) && value >= INT32_MIN && value <= INT32_MAX))
    throw invalidRange('an integer in int32 range (t is int32)', 'value', value);
  if (c.dtype !== 'int32' && Number.isFinite(value) && Math.abs(value) > FLOAT32_MAX)
    throw invalidRange(`a number within float32 range, NaN or ±Infinity (t is ${c.dtype})`, 'value', value);
  run('fill', { dst: nativeOf(c, 't'), value });
  return c;
}

/** dst += src in place, element by element (float32 tensors of one shape on one device). Returns dst. */
export function addInto(dst: Tensor, src: Tensor): Tensor {
  sameDevice([
    [dst, 'dst'],
    [src, 'src'],
  ]);
  const d = checked(dst, 'dst', 'float32'),
    s = checked(src, 'src', 'float32');
  sameShape(s, 'src', d, 'dst');
  apart([[d, 'dst']], [[s, 'src']], true);
  run('addInto', { dst: nativeOf(d, 'dst'), src: nativeOf(s, 'src') });
  return d;
}

// ---- activations and their gradients ------------------------------------------------------

type Activation = 'relu' | 'gelu' | 'tanh';

/** A fresh float32 tensor like `like`, or `out` checked to be one (float32, same shape and device). */
function outputLike(out: unknown, like: Tensor, likeName: string): Tensor {
  if (out === undefined) return Tensor.empty(like.shape, 'float32', like.device);
  const o = checked(out, 'options.out', 'float32');
  sameDevice([
    [like, likeName],
    [o, 'options.out'],
  ]);
  sameShape(o, 'options.out', like, likeName);
  return o;
}

function activation(op: `${Activation}Forward`, x: Tensor): Tensor {
  const c = checked(x, 'x', 'float32');
  const xs = nativeOf(c, 'x');
  const y = Tensor.empty(c.shape, 'float32', c.device);
  run(op, { x: xs, y: output(y) });
  return y;
}

function activationBackward(op: `${Activation}Backward`, dy: Tensor, x: Tensor): Tensor {
  sameDevice([
    [dy, 'dy'],
    [x, 'x'],
  ]);
  const d = checked(dy, 'dy', 'float32'),
    c = checked(x, 'x', 'float32');
  sameShape(d, 'dy', c, 'x');
  const xs = nativeOf(c, 'x'),
    dys = nativeOf(d, 'dy');
  const dx = Tensor.empty(c.shape, 'float32', c.device);
  run(op, { x: xs, dy: dys, dx: output(dx) });
  return dx;
}

/** max(x, 0) element by element (NaN stays NaN), a new float32 tensor on x's device. */
export function relu(x: Tensor): Tensor {
  return activation('reluForward', x);
}

/** relu's input gradient: dy where x > 0, else 0 (x is the forward's input). */
export function reluBackward(dy: Tensor, x: Tensor): Tensor {
  return activationBackward('reluBackward', dy, x);
}

/** GELU, the exact form x·Φ(x) = x/2·(1 + erf(x/√2)) (torch's nn.GELU default). */
export function gelu(x: Tensor): Tensor {
  return activation('geluForward', x);
}

/** gelu's input gradient: dy ⊙ (Φ(x) + x·φ(x)). */
export function geluBackward(dy: Tensor, x: Tensor): Tensor {
  return activationBackward('geluBackward', dy, x);
}

/** tanh element by element. */
export function tanh(x: Tensor): Tensor {
  return activation('tanhForward', x);
}

/** tanh's input gradient from the forward's input: dy ⊙ (1 − tanh²(x)). */
export function tanhBackward(dy: Tensor, x: Tensor): Tensor {
  return activationBackward('tanhBackward', dy, x);
}

// ---- add and scale ------------------------------------------------------------------------

/**
 * a + alpha·b (float32 tensors of one shape on one device; alpha defaults to 1), a new tensor,
 * or written into options.out (which may be a or b). Returns the result.
 */
export function add(a: Tensor, b: Tensor, opts?: { alpha?: number; out?: Tensor }): Tensor {
  const o = options<{ alpha: number; out: Tensor }>(opts, 'options');
  sameDevice([
    [a, 'a'],
    [b, 'b'],
    [o.out, 'options.out'],
  ]);
  const p = checked(a, 'a', 'float32'),
    q = checked(b, 'b', 'float32');
  sameShape(q, 'b', p, 'a');
  const alpha = finiteF32(o.alpha, 'options.alpha', 1);
  const as = nativeOf(p, 'a'),
    bs = nativeOf(q, 'b');
  const out = outputLike(o.out, p, 'a');
  apart(
    [[o.out, 'options.out']],
    [
      [p, 'a'],
      [q, 'b'],
    ],
    true,
  );
  run('add', { a: as, b: bs, out: nativeOf(out, 'options.out'), alpha });
  return out;
}

/** alpha·x (float32), a new tensor, or written into options.out (which may be x). Returns the result. */
export function scale(x: Tensor, alpha: number, opts?: { out?: Tensor }): Tensor {
  const o = options<{ out: Tensor }>(opts, 'options');
  sameDevice([
    [x, 'x'],
    [o.out, 'options.out'],
  ]);
  const c = checked(x, 'x', 'float32');
  if (alpha === undefined) throw invalidType('a finite number', 'alpha', alpha);
  const a = finiteF32(alpha, 'alpha', 1);
  const xs = nativeOf(c, 'x');
  const out = outputLike(o.out, c, 'x');
  apart([[o.out, 'options.out']], [[c, 'x']], true);
  run('scale', { x: xs, y: nativeOf(out, 'options.out'), alpha: a });
  return out;
}

// ---- losses -------------------------------------------------------------------------------

export interface SoftmaxCrossEntropyResult {
  /** [1] float32: the mean over rows of logsumexp(z_t) − z_t[label_t]. */
  loss: Tensor;
  /** [T, C] float32: (softmax(z_t) − onehot(label_t)) / T, with { grad: true }. */
  dlogits?: Tensor;
}

/** The checked arguments of one cross-entropy call, its fresh results and what it holds. */
function prepareCrossEntropy(logits: Tensor, labels: Tensor, opts: { grad?: boolean } | undefined) {
  const o = options<{ grad: boolean }>(opts, 'options');
  const grad = bool(o.grad, 'options.grad', false);
  sameDevice([
    [logits, 'logits'],
    [labels, 'labels'],
  ]);
  const z = checked(logits, 'logits', 'float32');
  if (z.shape.length !== 2 || z.shape[0] < 1 || z.shape[1] < 1) throw invalidRange('a 2-D tensor [T, C] with T, C >= 1', 'logits', z);
  const [t, c] = z.shape as [number, number];
  const l = indices(labels, 'labels', [t], ['T']);
  const zs = nativeOf(z, 'logits'),
    ls = nativeOf(l, 'labels');
  const loss = Tensor.empty([1], 'float32', z.device);
  const dlogits = grad ? Tensor.empty([t, c], 'float32', z.device) : undefined;
  const args = { t, c, logits: zs, labels: ls, loss: output(loss), dlogits: dlogits ? output(dlogits) : null };
  const result: SoftmaxCrossEntropyResult = dlogits ? { loss, dlogits } : { loss };
  const discard = () => {
    loss.dispose();
    dlogits?.dispose();
  };
  return { args, result, held: [z, l, loss, dlogits], discard };
}

/**
 * Softmax cross-entropy of logits [T, C] (float32) against labels [T] (an int32 tensor on the
 * logits' device, each in [0, C)): the mean loss, and with { grad: true } its gradient, fused in
 * one op that reads the logits once. Results on the logits' device. A label out of range is a
 * RangeError naming it on the CPU; on CUDA it makes the loss (and that row of dlogits) NaN, as
 * the labels are never read on the host. softmaxCrossEntropyAsync: the same off the event loop.
 */
export function softmaxCrossEntropy(logits: Tensor, labels: Tensor, opts?: { grad?: boolean }): SoftmaxCrossEntropyResult {
  const { args, result, discard } = prepareCrossEntropy(logits, labels, opts);
  try {
    run('softmaxCrossEntropy', args);
  } catch (e) {
    discard();
    throw e;
  }
  return result;
}

/** softmaxCrossEntropy off the event loop (on CUDA: queued on the device in order). */
export async function softmaxCrossEntropyAsync(
  logits: Tensor,
  labels: Tensor,
  opts?: { grad?: boolean },
): Promise<SoftmaxCrossEntropyResult> {
  const { args, result, held, discard } = prepareCrossEntropy(logits, labels, opts);
  try {
    await runAsync('softmaxCrossEntropy', args, held);
  } catch (e) {
    discard();
    throw e;
  }
  return result;
}

export interface InfoNceOptions {
  /** The logits' scale (the inverse temperature), a finite number; default 20. */
  scale?: number;
  /** Also the documents → queries direction over the n positive columns, averaged; default false. */
  symmetric?: boolean;
  /** L2-normalise each row of q and p first (norm clamped at 1e-12); default true. */
  normalize?: boolean;
  /** Also return dq and dp; default false. */
  grad?: boolean;
}

export interface InfoNceResult {
  /** [1] float32: the mean cross-entropy of each query against its positive (see infoNce). */
  loss: Tensor;
  /** [N, D] float32: dloss/dq (before the normalisation), with { grad: true }. */
  dq?: Tensor;
  /** [N + M, D] float32: dloss/dp (before the normalisation), with { grad: true }. */
  dp?: Tensor;
}

/** The checked arguments of one InfoNCE call, its fresh results and what it holds. */
function prepareInfoNce(q: Tensor, p: Tensor, opts: InfoNceOptions | undefined) {
  const o = options<InfoNceOptions>(opts, 'options');
  const scale = finiteF32(o.scale, 'options.scale', 20);
  const symmetric = bool(o.symmetric, 'options.symmetric', false);
  const normalize = bool(o.normalize, 'options.normalize', true);
  const grad = bool(o.grad, 'options.grad', false);
  sameDevice([
    [q, 'q'],
    [p, 'p'],
  ]);
  const qc = checked(q, 'q', 'float32'),
    pc = checked(p, 'p', 'float32');
  if (qc.shape.length !== 2 || qc.shape[0] < 1 || qc.shape[1] < 1) throw invalidRange('a 2-D tensor [N, D] with N, D >= 1', 'q', qc);
  const [n, d] = qc.shape as [number, number];
  if (pc.shape.length !== 2 || pc.shape[0] < n || pc.shape[1] !== d)
    throw invalidRange(`a 2-D tensor [N + M, D] with N + M >= ${n} and D = ${d} (like q)`, 'p', pc);
  const rows = pc.shape[0];
  const qs = nativeOf(qc, 'q'),
    ps = nativeOf(pc, 'p');
  const loss = Tensor.empty([1], 'float32', qc.device);
  const dq = grad ? Tensor.empty([n, d], 'float32', qc.device) : undefined;
  const dp = grad ? Tensor.empty([rows, d], 'float32', qc.device) : undefined;
  const args = {
    n,
    d,
    rows,
    q: qs,
    p: ps,
    scale,
    symmetric,
    normalize,
    loss: output(loss),
    dq: dq ? output(dq) : null,
    dp: dp ? output(dp) : null,
  };
  const result: InfoNceResult = dq && dp ? { loss, dq, dp } : { loss };
  const discard = () => {
    loss.dispose();
    dq?.dispose();
    dp?.dispose();
  };
  return { args, result, held: [qc, pc, loss, dq, dp], discard };
}

/**
 * InfoNCE with in-batch negatives (sentence-transformers' MultipleNegativesRankingLoss) of
 * queries q [N, D] against p [N + M, D] (float32, one device): row i of p is the positive of
 * query i, rows N.. are M >= 0 hard negatives shared by every query. With normalize (default)
 * each row of q and p is divided by max(‖row‖, 1e-12). Logits S = scale · q̂ p̂ᵀ [N, N + M];
 * loss = mean_i (logsumexp(S[i, :]) − S[i, i]). With symmetric (as
 * MultipleNegativesSymmetricRankingLoss) the loss is the average of that and the documents →
 * queries direction mean_j (logsumexp(S[:N, j]) − S[j, j]) over the N positive columns. With
 * { grad: true }, also dq and dp, the gradients with respect to q and p as given (through the
 * normalisation), fused in the same op. Results on the inputs' device. infoNceAsync: the same
 * off the event loop.
 */
export function infoNce(q: Tensor, p: Tensor, opts?: InfoNceOptions): InfoNceResult {
  const { args, result, discard } = prepareInfoNce(q, p, opts);
  try {
    run('infoNce', args);
  } catch (e) {
    discard();
    throw e;
  }
  return result;
}

/** infoNce off the event loop (on CUDA: queued on the device in order). */
export async function infoNceAsync(q: Tensor, p: Tensor, opts?: InfoNceOptions): Promise<InfoNceResult> {
  const { args, result, held, discard } = prepareInfoNce(q, p, opts);
  try {
    await runAsync('infoNce', args, held);
  } catch (e) {
    discard();
    throw e;
  }
  return result;
}
