// LoRA (README.md, LoRA): y = x Wᵀ + b0 + s · (D(x) Aᵀ) Bᵀ, its backward, merge and unmerge.
// The `frozenA` option is LoRA-FA's path: A stays fixed, backward keeps only xa, never x.
// Every op runs where its tensors are: on CUDA, x, W, the bias and dy may be float32, bfloat16
// or float16 (y and dx take x's dtype); A, B and the gradients are float32 on both devices.
import { invalidRange, invalidType } from '../errors.js';
import type { NativeLoraDims } from '../native.js';
import { type Device, type DType, rand, randn, Tensor, zeros } from '../tensor.js';
import { bool, dropout, type DropoutOption, finite, FLOAT32_MAX, options, positiveInt } from '../validate.js';
import { apart, biasOf, operand, output, rowsOf, sameDevice, shapeIs, upstream, weight } from './check.js';
import { run, runAsync } from './run.js';

export interface LoraForwardOptions {
  /** s: alpha / r (or alpha / sqrt(r) with rsLoRA). Required. */
  scale: number;
  /** Base bias b0 [out]. */
  bias?: Tensor;
  /** Inverted dropout on the adapter's input; the mask is regenerated in backward, never stored. */
  dropout?: DropoutOption;
  /** LoRA-FA: A is frozen, backward returns no dA and `saved` never holds x. */
  frozenA?: boolean;
}

/** What forward keeps for backward. `bytes` counts the activations it holds. */
export class LoraSaved {
  #x: Tensor | null;
  #xa: Tensor;
  readonly #W: Tensor;
  readonly #A: Tensor;
  readonly #B: Tensor;
  /** @internal */ readonly dims: NativeLoraDims;
  /** @internal */ readonly leading: readonly number[];
  readonly scale: number;
  readonly p: number;
  /** @internal */ readonly seed: bigint;
  readonly frozenA: boolean;
  /** @internal The dtype of forward's x (and so of backward's dx), kept even when x is not. */
  readonly xDtype: DType;

  /** @internal */
  constructor(
    x: Tensor | null,
    xa: Tensor,
    W: Tensor,
    A: Tensor,
    B: Tensor,
    dims: NativeLoraDims,
    leading: readonly number[],
    scale: number,
    drop: { p: number; seed: bigint },
    xDtype: DType,
  ) {
    this.#x = x;
    this.#xa = xa;
    this.#W = W;
    this.#A = A;
    this.#B = B;
    this.dims = dims;
    this.leading = leading;
    this.scale = scale;
    this.p = drop.p;
    this.seed = drop.seed;
    this.frozenA = x === null;
    this.xDtype = xDtype;
  }

  /** The device of the tensors forward ran on. */
  get device(): Tensor['device'] {
    return this.#W.device;
  }

  /** Bytes of activations kept for backward: T·(in + r)·4 for LoRA, T·r·4 with frozenA. */
  get bytes(): number {
    return (this.#x?.nbytes ?? 0) + this.#xa.nbytes;
  }

  /** xa = D(x) Aᵀ [T, r], as computed by forward. */
  get xa(): Tensor {
    return this.#xa;
  }

  /** @internal */
  parts(name: string) {
    if (this.#xa.disposed) throw invalidType('live saved state', name, this, 'it was disposed');
    return {
      x: this.#x === null ? null : operand(this.#x, `${name} input x`, 'activation'),
      xa: operand(this.#xa, `${name}.xa`, 'float32'),
      W: weight(this.#W, `${name} weight W`),
      A: operand(this.#A, `${name} adapter A`, 'float32'),
      B: operand(this.#B, `${name} adapter B`, 'float32'),
    };
  }

  /** @internal The tensors backward reads. */
  tensors(): Tensor[] {
    return [this.#xa, this.#W, this.#A, this.#B, ...(this.#x ? [this.#x] : [])];
  }

  /** Releases xa and the reference to x. */
  dispose(): void {
    this.#xa.dispose();
    this.#x = null;
  }

  [Symbol.dispose](): void {
    this.dispose();
  }

  describe(): string {
    return `LoraSaved(T=${this.dims.t}, in=${this.dims.in}, out=${this.dims.out}, r=${this.dims.r}${this.#xa.disposed ? ', disposed' : ''})`;
  }
}

export interface LoraForwardResult {
  y: Tensor;
  saved: LoraSaved;
}

export interface LoraGrads {
  dx: Tensor;
  /** Absent when forward ran with frozenA. */
  dA?: Tensor;
  dB: Tensor;
}

/** W [out, in], A [r, in], B [out, r] with every dimension >= 1; returns (out, in, r). */
function adapterShapes(W: Tensor, A: Tensor, B: Tensor): { out: number; inDim: number; r: number } {
  if (W.shape.length !== 2 || W.shape[0] < 1 || W.shape[1] < 1) throw invalidRange('a 2-D weight [out, in] with out, in >= 1', 'W', W);
  const [out, inDim] = W.shape as [number, number];
  if (A.shape.length !== 2 || A.shape[0] < 1) throw invalidRange('a 2-D adapter [r, in] with rank r >= 1', 'A', A);
  const r = A.shape[0];
  shapeIs(A, 'A', [r, inDim], ['r', 'in']);
  shapeIs(B, 'B', [out, r], ['out', 'r']);
  return { out, inDim, r };
}

function prepareForward(x: Tensor, W: Tensor, A: Tensor, B: Tensor, opts: LoraForwardOptions | undefined) {
  const o = options<LoraForwardOptions>(opts, 'options');
  const bias = o.bias;
  const device = sameDevice([
    [x, 'x'],
    [W, 'W'],
    [A, 'A'],
    [B, 'B'],
    [bias, 'options.bias'],
  ]);
  const xs = operand(x, 'x', 'activation'),
    Ws = weight(W, 'W'),
    As = operand(A, 'A', 'float32'),
    Bs = operand(B, 'B', 'float32');
  const { out, inDim, r } = adapterShapes(W, A, B);
  const { t, leading } = rowsOf(x, inDim);
  const biasS = biasOf(bias, out);
  const scale = finite(o.scale, 'options.scale');
  const drop = dropout(o.dropout, 'options.dropout');
  const frozenA = bool(o.frozenA, 'options.frozenA', false);
  const dims: NativeLoraDims = { t, in: inDim, out, r };
  const y = Tensor.empty([...leading, out], x.dtype, device);
  const xa = Tensor.empty([t, r], 'float32', device);
  const args = { ...dims, x: xs, W: Ws, bias: biasS, A: As, B: Bs, y: output(y), xa: output(xa), scale, p: drop.p, seed: drop.seed };
  const saved = new LoraSaved(frozenA ? null : x, xa, W, A, B, dims, leading, scale, drop, x.dtype);
  return { device, args, result: { y, saved } };
}

function prepareBackward(dy: Tensor, saved: LoraSaved) {
  if (!(saved instanceof LoraSaved)) throw invalidType('the saved state from lora.forward', 'saved', saved);
  const parts = saved.parts('saved');
  const { in: inDim, out, r } = saved.dims;
  const dys = upstream(dy, saved.leading, out, saved.device);
  const device = saved.device;
  const dx = Tensor.empty([...saved.leading, inDim], saved.xDtype, device);
  const dA = saved.frozenA ? undefined : Tensor.empty([r, inDim], 'float32', device);
  const dB = Tensor.empty([out, r], 'float32', device);
  const args = {
    ...saved.dims,
    dy: dys,
    ...parts,
    dx: output(dx),
    dA: dA ? output(dA) : null,
    dB: output(dB),
    scale: saved.scale,
    p: saved.p,
    seed: saved.seed,
  };
  const grads: LoraGrads = dA ? { dx, dA, dB } : { dx, dB };
  return { device, args, grads };
}

function prepareMerge(W: Tensor, A: Tensor, B: Tensor, scale: number, safe: boolean) {
  const device = sameDevice([
    [W, 'W'],
    [A, 'A'],
    [B, 'B'],
  ]);
  const Ws = weight(W, 'W'),
    As = operand(A, 'A', 'float32'),
    Bs = operand(B, 'B', 'float32');
  const { out, inDim, r } = adapterShapes(W, A, B);
  apart(
    [[W, 'W']],
    [
      [A, 'A'],
      [B, 'B'],
    ],
  );
  return { device, args: { W: Ws, A: As, B: Bs, out, in: inDim, r, scale: finite(scale, 'scale'), safe } };
}

function mergeOptions(opts: unknown): boolean {
  return bool(options<{ safe: boolean }>(opts, 'options').safe, 'options.safe', false);
}

/** y = x Wᵀ + bias + scale · (D(x) Aᵀ) Bᵀ for x [..., in], W [out, in], A [r, in], B [out, r]. */
export function forward(x: Tensor, W: Tensor, A: Tensor, B: Tensor, opts: LoraForwardOptions): LoraForwardResult {
  const { args, result } = prepareForward(x, W, A, B, opts);
  run('loraForward', args);
  return result;
}

/**
 * forward off the event loop; the result equals forward's bit for bit. Inputs must not change
 * until it settles. On CUDA the work is queued on the device in order, as forward's is.
 */
export async function forwardAsync(x: Tensor, W: Tensor, A: Tensor, B: Tensor, opts: LoraForwardOptions): Promise<LoraForwardResult> {
  const { args, result } = prepareForward(x, W, A, B, opts);
  await runAsync('loraForward', args, [x, W, A, B, opts.bias, result.y, result.saved.xa]);
  return result;
}

export interface LoraBackwardOptions {
  /**
   * LoRA-FA only (forward ran with frozenA): project B's gradient as PEFT does,
   * dB ← dB (A Aᵀ + 1e-8·I)⁻¹ / scale².
   */
  projectGradB?: boolean;
}

function backwardOptions(opts: unknown, saved: LoraSaved): boolean {
  if (!(saved instanceof LoraSaved)) throw invalidType('the saved state from lora.forward', 'saved', saved);
  const project = bool(options<LoraBackwardOptions>(opts, 'options').projectGradB, 'options.projectGradB', false);
  if (project && !saved.frozenA) throw invalidRange('false unless forward ran with frozenA (LoRA-FA)', 'options.projectGradB', project);
  const s = Math.fround(saved.scale);
  if (project && !(s !== 0 && 1 / (s * s) <= FLOAT32_MAX))
    throw invalidRange(
      `false for a forward scale (${saved.scale}) whose 1 / scale² is not finite in float32 (the projection divides by it)`,
      'options.projectGradB',
      project,
    );
  return project;
}

function projectArgs(saved: LoraSaved, dB: Tensor) {
  const { in: inDim, out, r } = saved.dims;
  return { A: saved.parts('saved').A, dB: output(dB), in: inDim, out, r, scale: saved.scale };
}

/** Gradients for upstream gradient dy [..., out]: dx, dA (unless frozenA) and dB. W is frozen. */
export function backward(dy: Tensor, saved: LoraSaved, opts?: LoraBackwardOptions): LoraGrads {
  const project = backwardOptions(opts, saved);
  const { args, grads } = prepareBackward(dy, saved);
  run('loraBackward', args);
  if (project) run('loraFaProjectGrad', projectArgs(saved, grads.dB));
  return grads;
}

/** backward off the event loop; the result equals backward's bit for bit. On CUDA the work is queued in order. */
export async function backwardAsync(dy: Tensor, saved: LoraSaved, opts?: LoraBackwardOptions): Promise<LoraGrads> {
  const project = backwardOptions(opts, saved);
  const { args, grads } = prepareBackward(dy, saved);
  const held = [dy, ...saved.tensors(), grads.dx, grads.dA, grads.dB];
  await runAsync('loraBackward', args, held);
  if (project) await runAsync('loraFaProjectGrad', projectArgs(saved, grads.dB), held);
  return grads;
}

export interface MergeOptions {
  /** Compute into a copy, check every value is finite, and leave W untouched (RangeError) if not. */
  safe?: boolean;
}

/** W ← W + scale · B A, in place. */
export function merge(W: Tensor, A: Tensor, B: Tensor, scale: number, opts?: MergeOptions): void {
  run('loraMerge', prepareMerge(W, A, B, scale, mergeOptions(opts)).args);
}

async function mergeOffLoop(W: Tensor, A: Tensor, B: Tensor, scale: number, opts: unknown, sign: 1 | -1): Promise<void> {
  const { args } = prepareMerge(W, A, B, scale, mergeOptions(opts));
  await runAsync('loraMerge', { ...args, scale: sign * args.scale }, [W, A, B]);
}

export async function mergeAsync(W: Tensor, A: Tensor, B: Tensor, scale: number, opts?: MergeOptions): Promise<void> {
  await mergeOffLoop(W, A, B, scale, opts, 1);
}

/** W ← W − scale · B A, in place (undoes merge up to rounding). */
export function unmerge(W: Tensor, A: Tensor, B: Tensor, scale: number, opts?: MergeOptions): void {
  const { args } = prepareMerge(W, A, B, scale, mergeOptions(opts));
  run('loraMerge', { ...args, scale: -args.scale });
}

export async function unmergeAsync(W: Tensor, A: Tensor, B: Tensor, scale: number, opts?: MergeOptions): Promise<void> {
  await mergeOffLoop(W, A, B, scale, opts, -1);
}

export interface LoraInitOptions {
  inFeatures: number;
  outFeatures: number;
  rank: number;
  /** 'kaiming' (PEFT's default): A ~ U(±1/√in); 'gaussian': A ~ N(0, σ = 1/r) as PEFT draws it. B = 0 either way. */
  method?: 'kaiming' | 'gaussian';
  seed?: number | bigint;
  /** Where A and B live (default 'cpu'); the same seed gives the same values on every device. */
  device?: Device;
}

/** Fresh adapter matrices A [r, in], B [out, r] initialised as PEFT does. */
export function init(opts: LoraInitOptions): { A: Tensor; B: Tensor } {
  const o = options<LoraInitOptions>(opts, 'options');
  const inDim = positiveInt(o.inFeatures, 'options.inFeatures');
  const out = positiveInt(o.outFeatures, 'options.outFeatures');
  const r = positiveInt(o.rank, 'options.rank');
  const method = o.method ?? 'kaiming';
  if (method !== 'kaiming' && method !== 'gaussian') throw invalidType("'kaiming' or 'gaussian'", 'options.method', method);
  const device = o.device ?? 'cpu';
  const A =
    method === 'kaiming'
      ? rand([r, inDim], { seed: o.seed, low: -1 / Math.sqrt(inDim), high: 1 / Math.sqrt(inDim), device })
      : randn([r, inDim], { seed: o.seed, std: 1 / r, device });
  return { A, B: zeros([out, r], { device }) };
}

/** PEFT's scale: alpha / r, or alpha / sqrt(r) with rsLoRA (`use_rslora`). */
export function scaling(alpha: number, rank: number, opts?: { rslora?: boolean }): number {
  const a = finite(alpha, 'alpha');
  positiveInt(rank, 'rank');
  const rs = bool(options<{ rslora: boolean }>(opts, 'options').rslora, 'options.rslora', false);
  return rs ? a / Math.sqrt(rank) : a / rank;
}
