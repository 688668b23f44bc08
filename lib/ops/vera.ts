// VeRA (SPEC section 2): one pair of frozen random projections, A [r, maxIn] and B [maxOut, r],
// shared by every adapted layer; a layer (out, in) uses their top-left slices A[:, :in] and
// B[:out, :] and trains only λd [r] and λb [out]:
//   y = x Wᵀ + b0 + λb ⊙ ((D(x) Aᵀ ⊙ λd) Bᵀ).
// Forward keeps only u = D(x) Aᵀ [T, r] for backward, never x.
import { invalidRange, invalidType } from '../errors.js';
import { native, type NativeVeraDims } from '../native.js';
import { checkSeed, Tensor } from '../tensor.js';
import { awaitHolding, biasOf, bool, dropout, type DropoutOption, f32, finite, options, rowsOf, sameDevice, shapeIs, upstream, weight } from './check.js';
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

function positiveInt(v: unknown, name: string): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v)) throw invalidType('a positive integer', name, v);
  if (v < 1) throw invalidRange('a positive integer', name, v);
  return v;
}

function prepareProjections(opts: VeraProjectionsOptions) {
  const o = options<VeraProjectionsOptions>(opts, 'options');
  const rank = positiveInt(o.rank, 'options.rank');
  const maxIn = positiveInt(o.maxIn, 'options.maxIn');
  const maxOut = positiveInt(o.maxOut, 'options.maxOut');
  const seed = checkSeed(o.seed, 'options.seed');
  const A = Tensor.empty([rank, maxIn], 'float32', 'cpu');
  const B = Tensor.empty([maxOut, rank], 'float32', 'cpu');
  const args = { A: A.storage() as Float32Array, B: B.storage() as Float32Array, r: rank, maxIn, maxOut, seed };
  return { args, result: new VeraProjections(A, B, seed, rank, maxIn, maxOut) };
}

/** The shared projections, kaiming-uniform as PEFT draws them, from the counter-based generator. */
export function projections(opts: VeraProjectionsOptions): VeraProjections {
  const { args, result } = prepareProjections(opts);
  native().veraProjections(args);
  return result;
}

/** projections off the event loop; the result equals projections' bit for bit. */
export async function projectionsAsync(opts: VeraProjectionsOptions): Promise<VeraProjections> {
  const { args, result } = prepareProjections(opts);
  await awaitHolding(native().veraProjections(args, true), [result.A, result.B]);
  return result;
}

// ---- per-layer vectors -------------------------------------------------------------------

export interface VeraInitOptions {
  outFeatures: number;
  rank: number;
  /** λd's initial value (PEFT's d_initial, default 0.1). */
  dInitial?: number;
}

const FLOAT32_MAX = 3.4028234663852886e38;

/** Fresh trainable vectors as PEFT initialises them: λd [r] filled with dInitial, λb [out] zeros. */
export function init(opts: VeraInitOptions): { lambdaD: Tensor; lambdaB: Tensor } {
  const o = options<VeraInitOptions>(opts, 'options');
  const out = positiveInt(o.outFeatures, 'options.outFeatures');
  const r = positiveInt(o.rank, 'options.rank');
  const d = o.dInitial === undefined ? 0.1 : finite(o.dInitial, 'options.dInitial');
  if (!(Math.abs(d) <= FLOAT32_MAX)) throw invalidRange('a finite number within float32 range', 'options.dInitial', d);
  const lambdaD = Tensor.empty([r], 'float32', 'cpu');
  (lambdaD.storage() as Float32Array).fill(d);
  return { lambdaD, lambdaB: Tensor.empty([out], 'float32', 'cpu', true) };
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
      u: f32(this.#u, `${name}.u`),
      ...weight(this.#W, `${name} weight W`),
      A: f32(this.#A, `${name} projection A`),
      B: f32(this.#B, `${name} projection B`),
      lambdaD: f32(this.#lambdaD, `${name} lambdaD`),
      lambdaB: f32(this.#lambdaB, `${name} lambdaB`),
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
function layerShapes(W: Tensor, proj: VeraProjectionPair, lambdaD: Tensor, lambdaB: Tensor) {
  if (W.shape.length !== 2 || W.shape[0] < 1 || W.shape[1] < 1)
    throw invalidRange('a 2-D weight [out, in] with out, in >= 1', 'W', W);
  const [out, inDim] = W.shape as [number, number];
  const { A, B } = proj;
  if (A.shape.length !== 2 || A.shape[0] < 1 || A.shape[1] < 1)
    throw invalidRange('a 2-D projection [r, maxIn] with r, maxIn >= 1', 'proj.A', A);
  const [r, maxIn] = A.shape as [number, number];
  if (B.shape.length !== 2 || B.shape[0] < 1 || B.shape[1] !== r)
    throw invalidRange(`a 2-D projection [maxOut, r] with r = ${r} (proj.A's rows) and maxOut >= 1`, 'proj.B', B);
  const maxOut = B.shape[0];
  if (out > maxOut || inDim > maxIn)
    throw invalidRange(
      `a weight [out, in] with out <= ${maxOut} and in <= ${maxIn} (the projections' maxOut and maxIn)`,
      'W',
      W,
    );
  shapeIs(lambdaD, 'lambdaD', [r], ['r']);
  shapeIs(lambdaB, 'lambdaB', [out], ['out']);
  return { out, inDim, r, maxIn, maxOut };
}

/** The projections argument: an object holding live float32 tensors A and B. */
function projParts(proj: unknown): { pair: VeraProjectionPair; A: Float32Array; B: Float32Array } {
  if (typeof proj !== 'object' || proj === null) throw invalidType('projections { A, B } (from vera.projections)', 'proj', proj);
  const pair = proj as VeraProjectionPair;
  return { pair, A: f32(pair.A, 'proj.A'), B: f32(pair.B, 'proj.B') };
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
  const xs = f32(x, 'x'), Ws = weight(W, 'W');
  const P = projParts(proj);
  const lds = f32(lambdaD, 'lambdaD'), lbs = f32(lambdaB, 'lambdaB');
  const { out, inDim, r, maxIn, maxOut } = layerShapes(W, P.pair, lambdaD, lambdaB);
  const { t, leading } = rowsOf(x, inDim);
  const bias = o.bias;
  const biasS = biasOf(bias, out);
  sameDevice([
    [x, 'x'],
    [W, 'W'],
    [P.pair.A, 'proj.A'],
    [P.pair.B, 'proj.B'],
    [lambdaD, 'lambdaD'],
    [lambdaB, 'lambdaB'],
    [bias, 'options.bias'],
  ]);
  const drop = dropout(o.dropout, 'options.dropout');
  const dims: NativeVeraDims = { t, in: inDim, out, r, maxIn, maxOut };
  const y = Tensor.empty([...leading, out], 'float32', x.device);
  const u = Tensor.empty([t, r], 'float32', x.device);
  const args = {
    ...dims,
    x: xs,
    ...Ws,
    bias: biasS,
    A: P.A,
    B: P.B,
    lambdaD: lds,
    lambdaB: lbs,
    y: y.storage() as Float32Array,
    u: u.storage() as Float32Array,
    p: drop.p,
    seed: drop.seed,
  };
  const saved = new VeraSaved(u, W, P.pair, lambdaD, lambdaB, dims, leading, drop);
  return { args, result: { y, saved } };
}

function prepareBackward(dy: Tensor, saved: VeraSaved) {
  if (!(saved instanceof VeraSaved)) throw invalidType('the saved state from vera.forward', 'saved', saved);
  const parts = saved.parts('saved');
  const { in: inDim, out, r } = saved.dims;
  const dys = upstream(dy, saved.leading, out, saved.device);
  const dx = Tensor.empty([...saved.leading, inDim], 'float32', dy.device);
  const dLambdaD = Tensor.empty([r], 'float32', dy.device);
  const dLambdaB = Tensor.empty([out], 'float32', dy.device);
  const args = {
    ...saved.dims,
    dy: dys,
    ...parts,
    dx: dx.storage() as Float32Array,
    dLambdaD: dLambdaD.storage() as Float32Array,
    dLambdaB: dLambdaB.storage() as Float32Array,
    p: saved.p,
    seed: saved.seed,
  };
  return { args, grads: { dx, dLambdaD, dLambdaB } as VeraGrads };
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
  native().veraForward(args);
  return result;
}

/** forward off the event loop; the result equals forward's bit for bit. Inputs must not change until it settles. */
export async function forwardAsync(
  x: Tensor,
  W: Tensor,
  proj: VeraProjectionPair,
  lambdaD: Tensor,
  lambdaB: Tensor,
  opts?: VeraForwardOptions,
): Promise<VeraForwardResult> {
  const { args, result } = prepareForward(x, W, proj, lambdaD, lambdaB, opts);
  await awaitHolding(native().veraForward(args, true), [x, W, proj.A, proj.B, lambdaD, lambdaB, opts?.bias, result.y, result.saved.u]);
  return result;
}

/** Gradients for upstream gradient dy [..., out]: dx, dLambdaD and dLambdaB. W and the projections are frozen. */
export function backward(dy: Tensor, saved: VeraSaved): VeraGrads {
  const { args, grads } = prepareBackward(dy, saved);
  native().veraBackward(args);
  return grads;
}

/** backward off the event loop; the result equals backward's bit for bit. */
export async function backwardAsync(dy: Tensor, saved: VeraSaved): Promise<VeraGrads> {
  const { args, grads } = prepareBackward(dy, saved);
  await awaitHolding(native().veraBackward(args, true), [dy, ...saved.tensors(), grads.dx, grads.dLambdaD, grads.dLambdaB]);
  return grads;
}

// ---- merge / unmerge ---------------------------------------------------------------------

function prepareMerge(W: Tensor, proj: VeraProjectionPair, lambdaD: Tensor, lambdaB: Tensor, opts: unknown, sign: 1 | -1) {
  const safe = bool(options<MergeOptions>(opts, 'options').safe, 'options.safe', false);
  const Ws = weight(W, 'W');
  const P = projParts(proj);
  const lds = f32(lambdaD, 'lambdaD'), lbs = f32(lambdaB, 'lambdaB');
  const { out, inDim, r, maxIn, maxOut } = layerShapes(W, P.pair, lambdaD, lambdaB);
  sameDevice([
    [W, 'W'],
    [P.pair.A, 'proj.A'],
    [P.pair.B, 'proj.B'],
    [lambdaD, 'lambdaD'],
    [lambdaB, 'lambdaB'],
  ]);
  return { ...Ws, A: P.A, B: P.B, lambdaD: lds, lambdaB: lbs, out, in: inDim, r, maxIn, maxOut, sign, safe };
}

/** W ← W + (λb ⊙ B)(λd ⊙ A), in place (A, B the slices of proj for W's shape). */
export function merge(W: Tensor, proj: VeraProjectionPair, lambdaD: Tensor, lambdaB: Tensor, opts?: MergeOptions): void {
  native().veraMerge(prepareMerge(W, proj, lambdaD, lambdaB, opts, 1));
}

/** W ← W − (λb ⊙ B)(λd ⊙ A), in place (undoes merge up to rounding). */
export function unmerge(W: Tensor, proj: VeraProjectionPair, lambdaD: Tensor, lambdaB: Tensor, opts?: MergeOptions): void {
  native().veraMerge(prepareMerge(W, proj, lambdaD, lambdaB, opts, -1));
}

async function mergeOffLoop(W: Tensor, proj: VeraProjectionPair, lambdaD: Tensor, lambdaB: Tensor, opts: unknown, sign: 1 | -1) {
  const args = prepareMerge(W, proj, lambdaD, lambdaB, opts, sign);
  await awaitHolding(native().veraMerge(args, true), [W, proj.A, proj.B, lambdaD, lambdaB]);
}

export async function mergeAsync(W: Tensor, proj: VeraProjectionPair, lambdaD: Tensor, lambdaB: Tensor, opts?: MergeOptions): Promise<void> {
  await mergeOffLoop(W, proj, lambdaD, lambdaB, opts, 1);
}

export async function unmergeAsync(W: Tensor, proj: VeraProjectionPair, lambdaD: Tensor, lambdaB: Tensor, opts?: MergeOptions): Promise<void> {
  await mergeOffLoop(W, proj, lambdaD, lambdaB, opts, -1);
}
