// VeRA (README.md, VeRA): one pair of frozen random projections, A [r, maxIn] and B [maxOut, r],
// shared by every adapted layer; a layer (out, in) uses their top-left slices A[:, :in] and
// B[:out, :] and trains only λd [r] and λb [out]:
//   y = x Wᵀ + b0 + λb ⊙ ((D(x) Aᵀ ⊙ λd) Bᵀ).
// Forward keeps only u = D(x) Aᵀ [T, r] for backward, never x. Every op runs where its tensors
// are: on CUDA, x, W, the bias and dy may be float32, bfloat16 or float16 (y and dx take x's
// dtype); the projections, λd, λb and their gradients are float32 on both devices.
import { invalidRange, invalidType } from '../errors.js';
import type { NativeTensor, NativeVeraDims } from '../native.js';
import { checkDevice, type Device, type DType, Tensor } from '../tensor.js';
import { bool, checkSeed, dropout, type DropoutOption, finite, options, positiveInt } from '../validate.js';
import { apart, biasOf, checked, nativeOf, operand, output, rowsOf, sameDevice, shapeIs, upstream, weight } from './check.js';
import { run, runAsync } from './run.js';
import type { MergeOptions } from './lora.js';

// ---- projections -------------------------------------------------------------------------

/** The shared projections a VeRA layer reads: float32 A [r, maxIn] and B [maxOut, r]. */
export interface VeraProjectionPair {
  readonly A: Tensor;
  readonly B: Tensor;
}

export interface VeraProjectionsOptions {
  /** r: the rank, rows of A and columns of B. */
  rank: number;
  /** The largest in over the adapted layers (columns of A). */
  maxIn: number;
  /** The largest out over the adapted layers (rows of B). */
  maxOut: number;
  /** PEFT's projection_prng_key; drawn at random when omitted (and recorded in the result). */
  seed?: number | bigint;
  /** Where A and B live (default 'cpu'): drawn on the host, then moved (the same values on every device). */
  device?: Device;
}

/**
 * Projections drawn from a seed. They are a pure function of (seed, rank, maxIn, maxOut), the
 * same on every backend and thread count, so a checkpoint may store those four numbers instead
 * of the matrices: `projections({ rank, maxIn, maxOut, seed })` recreates them bit for bit.
 */
export class VeraProjections implements VeraProjectionPair {
  /** A [rank, maxIn] ~ U(±√(6 / maxIn)). */
  readonly A: Tensor;
  /** B [maxOut, rank] ~ U(±√(6 / rank)). */
  readonly B: Tensor;
  readonly seed: bigint;
  readonly rank: number;
  readonly maxIn: number;
  readonly maxOut: number;

  /** @internal */
  constructor(A: Tensor, B: Tensor, seed: bigint, rank: number, maxIn: number, maxOut: number) {
    this.A = A;
    this.B = B;
    this.seed = seed;
    this.rank = rank;
    this.maxIn = maxIn;
    this.maxOut = maxOut;
  }

  /** Frees A and B; safe to call twice. */
  dispose(): void {
    this.A.dispose();
    this.B.dispose();
  }

  [Symbol.dispose](): void {
    this.dispose();
  }

  describe(): string {
    return `VeraProjections(rank=${this.rank}, maxIn=${this.maxIn}, maxOut=${this.maxOut}, seed=${this.seed}${this.A.disposed ? ', disposed' : ''})`;
  }
}

function prepareProjections(opts: VeraProjectionsOptions) {
  const o = options<VeraProjectionsOptions>(opts, 'options');
  const rank = positiveInt(o.rank, 'options.rank');
  const maxIn = positiveInt(o.maxIn, 'options.maxIn');
  const maxOut = positiveInt(o.maxOut, 'options.maxOut');
  const seed = checkSeed(o.seed, 'options.seed');
  const A = Tensor.empty([rank, maxIn], 'float32', 'cpu');
  const B = Tensor.empty([maxOut, rank], 'float32', 'cpu');
  const args = { A: nativeOf(A, 'A'), B: nativeOf(B, 'B'), r: rank, maxIn, maxOut, seed };
  return { args, result: new VeraProjections(A, B, seed, rank, maxIn, maxOut) };
}

function projectionsDevice(opts: VeraProjectionsOptions): Device {
  const device = options<VeraProjectionsOptions>(opts, 'options').device;
  return device === undefined ? 'cpu' : checkDevice(device, 'options.device');
}

/** Host projections moved to `device` (themselves on the CPU). */
function movedTo(device: Device, p: VeraProjections): VeraProjections {
  if (device === 'cpu') return p;
  try {
    const A = p.A.to(device);
    try {
      return new VeraProjections(A, p.B.to(device), p.seed, p.rank, p.maxIn, p.maxOut);
    } catch (e) {
      A.dispose();
      throw e;
    }
  } finally {
    p.dispose();
  }
}

/** The shared projections, kaiming-uniform as PEFT draws them, from the counter-based generator. */
export function projections(opts: VeraProjectionsOptions): VeraProjections {
  const device = projectionsDevice(opts);
  const { args, result } = prepareProjections(opts);
  run('veraProjections', args);
  return movedTo(device, result);
}

/** projections off the event loop; the result equals projections' bit for bit. */
export async function projectionsAsync(opts: VeraProjectionsOptions): Promise<VeraProjections> {
  const device = projectionsDevice(opts);
  const { args, result } = prepareProjections(opts);
  await runAsync('veraProjections', args, [result.A, result.B]);
  return movedTo(device, result);
}

// ---- per-layer vectors -------------------------------------------------------------------

export interface VeraInitOptions {
  outFeatures: number;
  rank: number;
  /** λd's initial value (PEFT's d_initial, default 0.1). */
  dInitial?: number;
  /** Where λd and λb live (default 'cpu'). */
  device?: Device;
}

/** Fresh trainable vectors as PEFT initialises them: λd [r] filled with dInitial, λb [out] zeros. */
export function init(opts: VeraInitOptions): { lambdaD: Tensor; lambdaB: Tensor } {
  const o = options<VeraInitOptions>(opts, 'options');
  const out = positiveInt(o.outFeatures, 'options.outFeatures');
  const r = positiveInt(o.rank, 'options.rank');
  const d = o.dInitial === undefined ? 0.1 : finite(o.dInitial, 'options.dInitial');
  const device = o.device === undefined ? 'cpu' : checkDevice(o.device, 'options.device');
  const host = Tensor.empty([r], 'float32', 'cpu');
  (host.storage() as Float32Array).fill(d);
  let lambdaD = host;
  if (device !== 'cpu') {
    lambdaD = host.to(device);
    host.dispose();
  }
  return { lambdaD, lambdaB: Tensor.empty([out], 'float32', device, true) };
}

// ---- forward / backward ------------------------------------------------------------------

export interface VeraForwardOptions {
  /** Base bias b0 [out]. */
  bias?: Tensor;
  /** Inverted dropout on the adapter's input; the mask is regenerated in backward, never stored. */
  dropout?: DropoutOption;
}

/**
 * What forward keeps for backward: u = D(x) Aᵀ [T, r] (T·r·4 bytes) and references to the
 * weights it read (W, the projections, λd, λb: they must not change before backward). Never x.
 */
export class VeraSaved {
  #u: Tensor;
  readonly #W: Tensor;
  readonly #A: Tensor;
  readonly #B: Tensor;
  readonly #lambdaD: Tensor;
  readonly #lambdaB: Tensor;
  /** @internal */ readonly dims: NativeVeraDims;
  /** @internal */ readonly leading: readonly number[];
  readonly p: number;
  /** @internal */ readonly seed: bigint;
  /** @internal The dtype of forward's x (and so of backward's dx). */
  readonly xDtype: DType;

  /** @internal */
  constructor(
    u: Tensor,
    W: Tensor,
    proj: VeraProjectionPair,
    lambdaD: Tensor,
    lambdaB: Tensor,
    dims: NativeVeraDims,
    leading: readonly number[],
    drop: { p: number; seed: bigint },
    xDtype: DType,
  ) {
    this.#u = u;
    this.#W = W;
    this.#A = proj.A;
    this.#B = proj.B;
    this.#lambdaD = lambdaD;
    this.#lambdaB = lambdaB;
    this.dims = dims;
    this.leading = leading;
    this.p = drop.p;
    this.seed = drop.seed;
    this.xDtype = xDtype;
  }

  /** The device of the tensors forward ran on. */
  get device(): Tensor['device'] {
    return this.#W.device;
  }

  /** Bytes of activations kept for backward: T·r·4 (u alone). */
  get bytes(): number {
    return this.#u.nbytes;
  }

  /** u = D(x) Aᵀ [T, r], as computed by forward. */
  get u(): Tensor {
    return this.#u;
  }

  /** @internal */
  parts(name: string) {
    if (this.#u.disposed) throw invalidType('live saved state', name, this, 'it was disposed');
    return {
      u: operand(this.#u, `${name}.u`, 'float32'),
      W: weight(this.#W, `${name} weight W`),
      A: operand(this.#A, `${name} projection A`, 'float32'),
      B: operand(this.#B, `${name} projection B`, 'float32'),
      lambdaD: operand(this.#lambdaD, `${name} lambdaD`, 'float32'),
      lambdaB: operand(this.#lambdaB, `${name} lambdaB`, 'float32'),
    };
  }

  /** @internal The tensors backward reads. */
  tensors(): Tensor[] {
    return [this.#u, this.#W, this.#A, this.#B, this.#lambdaD, this.#lambdaB];
  }

  /** Releases u. */
  dispose(): void {
    this.#u.dispose();
  }

  [Symbol.dispose](): void {
    this.dispose();
  }

  describe(): string {
    const { t, in: inDim, out, r } = this.dims;
    return `VeraSaved(T=${t}, in=${inDim}, out=${out}, r=${r}${this.#u.disposed ? ', disposed' : ''})`;
  }
}

export interface VeraForwardResult {
  y: Tensor;
  saved: VeraSaved;
}

export interface VeraGrads {
  dx: Tensor;
  /** [r] */
  dLambdaD: Tensor;
  /** [out] */
  dLambdaB: Tensor;
}

/** Checks the shapes of W [out, in], proj (A [r, maxIn], B [maxOut, r]), λd [r], λb [out]; returns the dimensions. */
/** The names a layer's tensors go by in messages. */
export interface VeraNames {
  W: string;
  A: string;
  B: string;
  lambdaD: string;
  lambdaB: string;
}

const ARG_NAMES: VeraNames = { W: 'W', A: 'proj.A', B: 'proj.B', lambdaD: 'lambdaD', lambdaB: 'lambdaB' };

function layerShapes(W: Tensor, proj: VeraProjectionPair, lambdaD: Tensor, lambdaB: Tensor, n: VeraNames = ARG_NAMES) {
  if (W.shape.length !== 2 || W.shape[0] < 1 || W.shape[1] < 1) throw invalidRange('a 2-D weight [out, in] with out, in >= 1', n.W, W);
  const [out, inDim] = W.shape as [number, number];
  const { A, B } = proj;
  if (A.shape.length !== 2 || A.shape[0] < 1 || A.shape[1] < 1)
    throw invalidRange('a 2-D projection [r, maxIn] with r, maxIn >= 1', n.A, A);
  const [r, maxIn] = A.shape as [number, number];
  if (B.shape.length !== 2 || B.shape[0] < 1 || B.shape[1] !== r)
    throw invalidRange(`a 2-D projection [maxOut, r] with r = ${r} (${n.A}'s rows) and maxOut >= 1`, n.B, B);
  const maxOut = B.shape[0];
  if (out > maxOut || inDim > maxIn)
    throw invalidRange(`a weight [out, in] with out <= ${maxOut} and in <= ${maxIn} (the projections' maxOut and maxIn)`, n.W, W);
  shapeIs(lambdaD, n.lambdaD, [r], ['r']);
  shapeIs(lambdaB, n.lambdaB, [out], ['out']);
  return { out, inDim, r, maxIn, maxOut };
}

/**
 * A VeRA layer's tensors as merge() takes them: W a weight, the projections and λ float32, all
 * live, on one device, of agreeing shapes, and W (written in place) sharing memory with none of
 * the others. `names` name them in the messages (VeraLinear: options.weight, ...).
 */
export function checkLayer(W: Tensor, proj: VeraProjectionPair, lambdaD: Tensor, lambdaB: Tensor, names: VeraNames = ARG_NAMES) {
  const device = sameDevice([
    [W, names.W],
    [proj.A, names.A],
    [proj.B, names.B],
    [lambdaD, names.lambdaD],
    [lambdaB, names.lambdaB],
  ]);
  checked(W, names.W, 'weight');
  for (const [t, name] of [
    [proj.A, names.A],
    [proj.B, names.B],
    [lambdaD, names.lambdaD],
    [lambdaB, names.lambdaB],
  ] as const)
    checked(t, name, 'float32');
  const shapes = layerShapes(W, proj, lambdaD, lambdaB, names);
  apart(
    [[W, names.W]],
    [
      [proj.A, names.A],
      [proj.B, names.B],
      [lambdaD, names.lambdaD],
      [lambdaB, names.lambdaB],
    ],
  );
  return { device, ...shapes };
}

/** The projections argument: an object { A, B } (checked as float32 tensors by projParts). */
function projPair(proj: unknown): VeraProjectionPair {
  if (typeof proj !== 'object' || proj === null) throw invalidType('projections { A, B } (from vera.projections)', 'proj', proj);
  return proj as VeraProjectionPair;
}

/** The projections' native fields: live float32 tensors A and B. */
function projParts(pair: VeraProjectionPair): { A: NativeTensor; B: NativeTensor } {
  return { A: operand(pair.A, 'proj.A', 'float32'), B: operand(pair.B, 'proj.B', 'float32') };
}

function prepareForward(
  x: Tensor,
  W: Tensor,
  proj: VeraProjectionPair,
  lambdaD: Tensor,
  lambdaB: Tensor,
  opts: VeraForwardOptions | undefined,
) {
  const o = options<VeraForwardOptions>(opts, 'options');
  const pair = projPair(proj);
  const bias = o.bias;
  const device = sameDevice([
    [x, 'x'],
    [W, 'W'],
    [pair.A, 'proj.A'],
    [pair.B, 'proj.B'],
    [lambdaD, 'lambdaD'],
    [lambdaB, 'lambdaB'],
    [bias, 'options.bias'],
  ]);
  const xs = operand(x, 'x', 'activation'),
    Ws = weight(W, 'W');
  const P = projParts(pair);
  const lds = operand(lambdaD, 'lambdaD', 'float32'),
    lbs = operand(lambdaB, 'lambdaB', 'float32');
  const { out, inDim, r, maxIn, maxOut } = layerShapes(W, pair, lambdaD, lambdaB);
  const { t, leading } = rowsOf(x, inDim);
  const biasS = biasOf(bias, out);
  const drop = dropout(o.dropout, 'options.dropout');
  const dims: NativeVeraDims = { t, in: inDim, out, r, maxIn, maxOut };
  const y = Tensor.empty([...leading, out], x.dtype, device);
  const u = Tensor.empty([t, r], 'float32', device);
  const args = {
    ...dims,
    x: xs,
    W: Ws,
    bias: biasS,
    ...P,
    lambdaD: lds,
    lambdaB: lbs,
    y: output(y),
    u: output(u),
    p: drop.p,
    seed: drop.seed,
  };
  const saved = new VeraSaved(u, W, pair, lambdaD, lambdaB, dims, leading, drop, x.dtype);
  return { device, args, result: { y, saved } };
}

function prepareBackward(dy: Tensor, saved: VeraSaved) {
  if (!(saved instanceof VeraSaved)) throw invalidType('the saved state from vera.forward', 'saved', saved);
  const parts = saved.parts('saved');
  const { in: inDim, out, r } = saved.dims;
  const dys = upstream(dy, saved.leading, out, saved.device);
  const device = saved.device;
  const dx = Tensor.empty([...saved.leading, inDim], saved.xDtype, device);
  const dLambdaD = Tensor.empty([r], 'float32', device);
  const dLambdaB = Tensor.empty([out], 'float32', device);
  const args = {
    ...saved.dims,
    dy: dys,
    ...parts,
    dx: output(dx),
    dLambdaD: output(dLambdaD),
    dLambdaB: output(dLambdaB),
    p: saved.p,
    seed: saved.seed,
  };
  return { device, args, grads: { dx, dLambdaD, dLambdaB } };
}

/** y = x Wᵀ + bias + λb ⊙ ((D(x) Aᵀ ⊙ λd) Bᵀ) for x [..., in], W [out, in], with A, B the top-left slices of proj. */
export function forward(
  x: Tensor,
  W: Tensor,
  proj: VeraProjectionPair,
  lambdaD: Tensor,
  lambdaB: Tensor,
  opts?: VeraForwardOptions,
): VeraForwardResult {
  const { args, result } = prepareForward(x, W, proj, lambdaD, lambdaB, opts);
  run('veraForward', args);
  return result;
}

/**
 * forward off the event loop; the result equals forward's bit for bit. Inputs must not change
 * until it settles. On CUDA the work is queued on the device in order, as forward's is.
 */
export async function forwardAsync(
  x: Tensor,
  W: Tensor,
  proj: VeraProjectionPair,
  lambdaD: Tensor,
  lambdaB: Tensor,
  opts?: VeraForwardOptions,
): Promise<VeraForwardResult> {
  const { args, result } = prepareForward(x, W, proj, lambdaD, lambdaB, opts);
  await runAsync('veraForward', args, [x, W, proj.A, proj.B, lambdaD, lambdaB, opts?.bias, result.y, result.saved.u]);
  return result;
}

/** Gradients for upstream gradient dy [..., out]: dx, dLambdaD and dLambdaB. W and the projections are frozen. */
export function backward(dy: Tensor, saved: VeraSaved): VeraGrads {
  const { args, grads } = prepareBackward(dy, saved);
  run('veraBackward', args);
  return grads;
}

/** backward off the event loop; the result equals backward's bit for bit. On CUDA the work is queued in order. */
export async function backwardAsync(dy: Tensor, saved: VeraSaved): Promise<VeraGrads> {
  const { args, grads } = prepareBackward(dy, saved);
  await runAsync('veraBackward', args, [dy, ...saved.tensors(), grads.dx, grads.dLambdaD, grads.dLambdaB]);
  return grads;
}

// ---- merge / unmerge ---------------------------------------------------------------------

function prepareMerge(W: Tensor, proj: VeraProjectionPair, lambdaD: Tensor, lambdaB: Tensor, opts: unknown, sign: 1 | -1) {
  const safe = bool(options<MergeOptions>(opts, 'options').safe, 'options.safe', false);
  const pair = projPair(proj);
  const { device, out, inDim, r, maxIn, maxOut } = checkLayer(W, pair, lambdaD, lambdaB);
  const args = {
    W: weight(W, 'W'),
    ...projParts(pair),
    lambdaD: operand(lambdaD, 'lambdaD', 'float32'),
    lambdaB: operand(lambdaB, 'lambdaB', 'float32'),
    out,
    in: inDim,
    r,
    maxIn,
    maxOut,
    sign,
    safe,
  };
  return { device, args };
}

/** W ← W + (λb ⊙ B)(λd ⊙ A), in place (A, B the slices of proj for W's shape). */
export function merge(W: Tensor, proj: VeraProjectionPair, lambdaD: Tensor, lambdaB: Tensor, opts?: MergeOptions): void {
  run('veraMerge', prepareMerge(W, proj, lambdaD, lambdaB, opts, 1).args);
}

/** W ← W − (λb ⊙ B)(λd ⊙ A), in place (undoes merge up to rounding). */
export function unmerge(W: Tensor, proj: VeraProjectionPair, lambdaD: Tensor, lambdaB: Tensor, opts?: MergeOptions): void {
  run('veraMerge', prepareMerge(W, proj, lambdaD, lambdaB, opts, -1).args);
}

async function mergeOffLoop(W: Tensor, proj: VeraProjectionPair, lambdaD: Tensor, lambdaB: Tensor, opts: unknown, sign: 1 | -1) {
  const { args } = prepareMerge(W, proj, lambdaD, lambdaB, opts, sign);
  await runAsync('veraMerge', args, [W, proj.A, proj.B, lambdaD, lambdaB]);
}

export async function mergeAsync(
  W: Tensor,
  proj: VeraProjectionPair,
  lambdaD: Tensor,
  lambdaB: Tensor,
  opts?: MergeOptions,
): Promise<void> {
  await mergeOffLoop(W, proj, lambdaD, lambdaB, opts, 1);
}

export async function unmergeAsync(
  W: Tensor,
  proj: VeraProjectionPair,
  lambdaD: Tensor,
  lambdaB: Tensor,
  opts?: MergeOptions,
): Promise<void> {
  await mergeOffLoop(W, proj, lambdaD, lambdaB, opts, -1);
}
