// Fine-tuning an embedding model for semantic search with a low-rank adapter on one dense layer
// (README, Semantic search). The model: e = l2norm(act(x Wᵀ + b)) with a frozen pretrained
// W [out, in] and b — for Universal Sentence Encoder lite the head over the pooled vector h
// (lib/embed/encoder.ts, act = tanh), for vectors from any other model an identity W (act =
// identity), so that the adapter learns a residual map. Queries and documents go through the same
// layer; the loss is InfoNCE with in-batch negatives (nn.infoNce, symmetric by default) plus each
// pair's hard negative where given; AdamW; early stopping on the validation nDCG@10 keeps the
// best epoch's weights. Methods: full fine-tuning of W and b, LoRA, LoRA-FA, VeRA, Delta-LoRA and
// LoRA+, all from the same start (at step 0 every method equals the frozen model).
import { existsSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { invalidRange, invalidType } from '../errors.js';
import { readSafetensors, writeSafetensors } from '../io/safetensors.js';
import * as peft from '../io/peft/index.js';
import { Linear } from '../layers/linear.js';
import { LoraLinear, type LoraVariant } from '../layers/lora-linear.js';
import { type Parameter } from '../layers/parameter.js';
import { VeraLinear } from '../layers/vera-linear.js';
import * as nn from '../ops/nn.js';
import * as vera from '../ops/vera.js';
import { AdamW, loraPlusGroups, type ParamGroup } from '../optim.js';
import { tensor, Tensor } from '../tensor.js';
import { evaluateRetrieval, mulberry32, type RetrievalReport, type RetrievalScores } from './metrics.js';
import { searchSync } from './search.js';

export type EmbeddingMethod = 'full' | 'lora' | 'lora-fa' | 'vera' | 'delta-lora' | 'lora+';
export const EMBEDDING_METHODS: readonly EmbeddingMethod[] = ['full', 'lora', 'lora-fa', 'vera', 'delta-lora', 'lora+'];
/** The names the tables print. */
export const METHOD_LABELS: Readonly<Record<EmbeddingMethod, string>> = {
  full: 'full fine-tuning',
  lora: 'LoRA',
  'lora-fa': 'LoRA-FA',
  vera: 'VeRA',
  'delta-lora': 'Delta-LoRA',
  'lora+': 'LoRA+',
};

/** The frozen layer the adapter sits on. */
export interface EmbeddingHead {
  /** [outFeatures, inFeatures] row-major (PEFT's layout, y = x Wᵀ). */
  weight: Float32Array;
  /** [outFeatures], or none. */
  bias?: Float32Array;
  inFeatures: number;
  outFeatures: number;
  activation: 'tanh' | 'identity';
  /** The module path the adapter file names (PEFT's target module). */
  module: string;
  /** base_model_name_or_path in the adapter file. */
  baseModel: string;
}

/** An identity head for vectors of `dim` from any other model: the adapter learns e = l2norm(x + ΔW x). */
export function identityHead(dim: number, baseModel = 'embeddings'): EmbeddingHead {
  if (!Number.isInteger(dim) || dim < 1) throw invalidRange('a positive integer', 'dim', dim);
  const weight = new Float32Array(dim * dim);
  for (let i = 0; i < dim; i++) weight[i * dim + i] = 1;
  return { weight, inFeatures: dim, outFeatures: dim, activation: 'identity', module: 'embedding_adapter', baseModel };
}

/** Training pairs: row i of `documents` is the positive of row i of `queries` ([count, inFeatures] each). */
export interface PairVectors {
  queries: Float32Array;
  documents: Float32Array;
  /** Optional hard negative of each pair, [count, inFeatures]: each batch appends its pairs' negatives as extra columns. */
  negatives?: Float32Array;
}

/** A retrieval evaluation set: queries, the document pool, the relevant pool rows of each query. */
export interface RetrievalSet {
  queries: Float32Array;
  documents: Float32Array;
  relevant: ReadonlyArray<ReadonlyArray<number>>;
}

export interface FinetuneOptions {
  method: EmbeddingMethod;
  /** Adapter rank (default 16; LoRA-FA, which trains only B, defaults to twice that; VeRA to 256). */
  rank?: number;
  /** lora_alpha (default 2 · rank). */
  alpha?: number;
  /** Maximum epochs (default 20). */
  epochs?: number;
  /** Pairs per step (default 64): each query's in-batch negatives are the other pairs' documents. */
  batchSize?: number;
  /** AdamW learning rate (default per method, see DEFAULT_LR). */
  lr?: number;
  weightDecay?: number;
  /** InfoNCE's scale, the inverse temperature (default 20). */
  scale?: number;
  /** Also the documents → queries direction (default true). */
  symmetric?: boolean;
  seed?: number;
  /** Stop after this many epochs without a better validation nDCG@10 (default 3). */
  patience?: number;
  /** Early stopping and the per-epoch curve; without it every epoch runs and the last is kept. */
  validation?: RetrievalSet;
  onEpoch?: (e: EpochReport) => void;
}

/** Learning rates tuned once on the Debian set (README, Semantic search). */
export const DEFAULT_LR: Readonly<Record<EmbeddingMethod, number>> = {
  full: 1e-4,
  lora: 1e-3,
  'lora-fa': 2e-3,
  vera: 5e-3,
  'delta-lora': 1e-3,
  'lora+': 5e-4,
};

export interface EpochReport {
  epoch: number;
  /** Mean training loss over the epoch's steps. */
  loss: number;
  validation?: RetrievalScores;
  steps: number;
}

export interface FinetuneResult {
  model: EmbeddingModel;
  history: EpochReport[];
  /** The epoch whose weights the model holds (0: the start, when no epoch beat it). */
  bestEpoch: number;
  steps: number;
  /** Median wall time of a training step (forward, loss, backward, optimizer). */
  msPerStep: number;
}

interface HeadLayer {
  forward(x: Tensor, opts?: { training?: boolean }): Tensor;
  backward(dy: Tensor): Tensor;
  parameters(): Parameter[];
  zeroGrad(): void;
  afterOptimizerStep(): void;
  dispose(): void;
}

/** Rows of `src` ([*, width]) at `rows`, packed into a new array. */
export function gatherRows(src: Float32Array, rows: readonly number[], width: number): Float32Array {
  const out = new Float32Array(rows.length * width);
  rows.forEach((r, j) => out.set(src.subarray(r * width, (r + 1) * width), j * width));
  return out;
}

/**
 * The queries at `rows` of Q ([*, width]) against every document row of D; a query's relevant
 * documents are all the rows whose key (a document's text, or a hash of its vector) equals that
 * of its own document: documentKeys[i] is the key of D's row i, the document of query i.
 */
export function retrievalSet(
  Q: Float32Array,
  D: Float32Array,
  rows: readonly number[],
  width: number,
  documentKeys: readonly string[],
): RetrievalSet {
  const byKey = new Map<string, number[]>();
  documentKeys.forEach((k, i) => byKey.get(k)?.push(i) ?? byKey.set(k, [i]));
  return { queries: gatherRows(Q, rows, width), documents: D, relevant: rows.map((r) => byKey.get(documentKeys[r])!) };
}

function rowsOf(data: Float32Array, width: number, name: string): number {
  if (!(data instanceof Float32Array)) throw invalidType('a Float32Array', name, data);
  if (data.length === 0 || data.length % width !== 0)
    throw invalidRange(`a non-empty Float32Array of rows of ${width}`, name, `${data.length} values`);
  return data.length / width;
}

/** The head with a method's adapter (or, for full fine-tuning, trainable), and what it can do after training. */
export class EmbeddingModel {
  readonly method: EmbeddingMethod;
  readonly head: EmbeddingHead;
  readonly rank: number;
  readonly alpha: number;
  readonly #layer: HeadLayer;
  readonly #weight: Tensor;
  readonly #bias?: Tensor;
  readonly #projections?: vera.VeraProjections;
  #disposed = false;

  readonly #owned?: { dispose(): void };

  /** A fresh adapter (B = 0, λb = 0: the frozen model) of `method` on `head`; see also EmbeddingModel.load. */
  constructor(head: EmbeddingHead, method: EmbeddingMethod, opts?: { rank?: number; alpha?: number; seed?: number }, loaded?: LoadedParts) {
    if (!EMBEDDING_METHODS.includes(method)) throw invalidType(EMBEDDING_METHODS.map((m) => `'${m}'`).join(', '), 'method', method);
    this.method = method;
    this.head = checkHead(head);
    const { inFeatures: din, outFeatures: dout } = head;
    if (loaded) {
      ({ layer: this.#layer, weight: this.#weight, bias: this.#bias, owned: this.#owned } = loaded);
      this.rank = loaded.rank;
      this.alpha = loaded.alpha;
      return;
    }
    const seed = opts?.seed ?? 0;
    const baseRank = opts?.rank ?? 16;
    this.rank =
      method === 'lora-fa' && opts?.rank === undefined ? 2 * baseRank : method === 'vera' && opts?.rank === undefined ? 256 : baseRank;
    this.alpha = opts?.alpha ?? 2 * this.rank;
    this.#weight = tensor(head.weight.slice(), [dout, din]);
    this.#bias = head.bias ? tensor(head.bias.slice(), [dout]) : undefined;
    switch (method) {
      case 'full':
        this.#layer = new Linear({ weight: this.#weight, bias: this.#bias });
        break;
      case 'vera':
        this.#projections = vera.projections({ rank: this.rank, maxIn: din, maxOut: dout, seed: BigInt(seed) });
        this.#layer = new VeraLinear({ weight: this.#weight, bias: this.#bias, projections: this.#projections });
        break;
      default: {
        const variant: LoraVariant = method === 'lora-fa' ? 'lora-fa' : method === 'delta-lora' ? 'delta-lora' : 'lora';
        // Delta-LoRA's base weight starts moving after a few epochs' worth of steps.
        this.#layer = new LoraLinear({
          weight: this.#weight,
          bias: this.#bias,
          rank: this.rank,
          alpha: this.alpha,
          variant,
          seed,
          delta: { startStep: 30 },
        });
      }
    }
  }

  /** Trainable parameters (full fine-tuning: W and b). */
  get trainable(): number {
    return this.#layer.parameters().reduce((s, p) => s + p.param.size, 0);
  }

  /** Bytes of what this method must store to reproduce the model: its trained tensors (Delta-LoRA: and the moved W; VeRA: and the projections' seed). */
  get checkpointBytes(): number {
    const own = this.#layer.parameters().reduce((s, p) => s + p.param.nbytes, 0);
    return own + (this.method === 'delta-lora' ? this.#weight.nbytes : 0) + (this.method === 'vera' ? 8 : 0);
  }

  parameters(): Parameter[] {
    return this.#layer.parameters();
  }

  /** The optimizer's groups for this method (LoRA+: B at 16 × lr). */
  paramGroups(lr: number, weightDecay: number): ParamGroup[] {
    const params = this.#layer.parameters();
    if (this.method === 'lora+') {
      return loraPlusGroups(
        { A: params.filter((p) => p.name === 'lora_A'), B: params.filter((p) => p.name === 'lora_B') },
        { lr, ratio: 16, weightDecay },
      );
    }
    return [{ params, lr, weightDecay }];
  }

  #check(): void {
    if (this.#disposed) throw invalidType('a live model', 'model', 'a disposed one');
  }

  /** The L2-normalised embeddings of `x` ([rows, inFeatures]), [rows, outFeatures]. */
  encode(x: Float32Array): Float32Array {
    this.#check();
    const { inFeatures: din, outFeatures: dout } = this.head;
    const rows = rowsOf(x, din, 'x');
    const out = new Float32Array(rows * dout);
    const CHUNK = 2048;
    for (let s = 0; s < rows; s += CHUNK) {
      const n = Math.min(CHUNK, rows - s);
      const xt = tensor(x.subarray(s * din, (s + n) * din), [n, din]);
      const y = this.#layer.forward(xt, { training: false });
      const a = this.head.activation === 'tanh' ? nn.tanh(y) : y;
      out.set(a.toFloat32Array(), s * dout);
      xt.dispose();
      y.dispose();
      if (a !== y) a.dispose();
    }
    normalizeRows(out, dout);
    return out;
  }

  /** Exact top-100 search of the set's queries over its documents, scored. */
  evaluate(set: RetrievalSet): RetrievalReport {
    const q = this.encode(set.queries);
    const d = this.encode(set.documents);
    const dout = this.head.outFeatures;
    const qt = tensor(q, [q.length / dout, dout]);
    const dt = tensor(d, [d.length / dout, dout]);
    try {
      const ranking = searchSync(qt, dt, { k: Math.min(100, d.length / dout) });
      return evaluateRetrieval(ranking, set.relevant);
    } finally {
      qt.dispose();
      dt.dispose();
    }
  }

  /**
   * One training step on a batch of pairs ([n, in] each, negatives optional): the mean InfoNCE
   * loss before the step.
   */
  trainStep(
    q: Float32Array,
    p: Float32Array,
    neg: Float32Array | undefined,
    opt: AdamW,
    loss: { scale: number; symmetric: boolean },
  ): number {
    this.#check();
    const din = this.head.inFeatures;
    const dout = this.head.outFeatures;
    const n = q.length / din;
    const m = neg ? neg.length / din : 0;
    // Queries, documents and negatives go through the one layer as one batch.
    const x = new Float32Array((2 * n + m) * din);
    x.set(q, 0);
    x.set(p, n * din);
    if (neg) x.set(neg, 2 * n * din);
    const xt = tensor(x, [2 * n + m, din]);
    const y = this.#layer.forward(xt);
    const a = this.head.activation === 'tanh' ? nn.tanh(y) : y;
    const all = a.toFloat32Array();
    const qt = tensor(all.subarray(0, n * dout), [n, dout]);
    const pt = tensor(all.subarray(n * dout), [n + m, dout]);
    const { loss: l, dq, dp } = nn.infoNce(qt, pt, { scale: loss.scale, symmetric: loss.symmetric, grad: true });
    const value = l.toFloat32Array()[0];
    const da = new Float32Array((2 * n + m) * dout);
    da.set(dq!.toFloat32Array(), 0);
    da.set(dp!.toFloat32Array(), n * dout);
    const dat = tensor(da, [2 * n + m, dout]);
    const dy = this.head.activation === 'tanh' ? nn.tanhBackward(dat, y) : dat;
    this.#layer.backward(dy).dispose();
    opt.step();
    this.#layer.afterOptimizerStep();
    opt.zeroGrad();
    for (const t of new Set([xt, y, a, qt, pt, l, dq!, dp!, dat, dy])) t.dispose();
    return value;
  }

  /** Copies of everything training changes (the trained tensors; Delta-LoRA: and W). */
  snapshot(): Tensor[] {
    return this.#mutable().map((t) => t.clone());
  }

  /** Puts back a snapshot(). */
  restore(snap: readonly Tensor[]): void {
    this.#mutable().forEach((t, i) => nn.scale(snap[i], 1, { out: t }));
  }

  #mutable(): Tensor[] {
    const own = this.#layer.parameters().map((p) => p.param);
    return this.method === 'delta-lora' ? [...own, this.#weight] : own;
  }

  /**
   * Writes the trained adapter to `dir`: LoRA, LoRA-FA and LoRA+ as a PEFT LoRA directory, VeRA
   * as a PEFT VeRA directory (projections included); full fine-tuning and Delta-LoRA (whose W
   * moved) as head.safetensors with the whole layer's weight and bias. Returns the files written.
   */
  save(dir: string): string[] {
    this.#check();
    mkdirSync(dir, { recursive: true });
    const layer = this.#layer;
    if (layer instanceof LoraLinear && this.method !== 'delta-lora') {
      peft.saveAdapter(
        dir,
        { kind: 'lora', layers: { [this.head.module]: { A: layer.A, B: layer.B } }, rank: this.rank, alpha: this.alpha },
        { baseModel: this.head.baseModel, targetModules: [this.head.module] },
      );
      return [path.join(dir, peft.CONFIG_NAME), path.join(dir, peft.WEIGHTS_NAME)];
    }
    if (layer instanceof VeraLinear) {
      peft.saveAdapter(
        dir,
        {
          kind: 'vera',
          layers: { [this.head.module]: { lambdaD: layer.lambdaD, lambdaB: layer.lambdaB } },
          projections: this.#projections!,
        },
        { baseModel: this.head.baseModel, targetModules: [this.head.module] },
      );
      return [path.join(dir, peft.CONFIG_NAME), path.join(dir, peft.WEIGHTS_NAME)];
    }
    const file = path.join(dir, 'head.safetensors');
    // Delta-LoRA: the moved W plus its adapter's s·BA, merged into one weight.
    const weight = layer instanceof LoraLinear ? mergedLora(this.#weight, layer) : this.#weight;
    const entries: Record<string, Tensor> = { [`${this.head.module}.weight`]: weight };
    if (this.#bias) entries[`${this.head.module}.bias`] = this.#bias;
    try {
      writeSafetensors(file, entries, { method: this.method, base_model: this.head.baseModel });
    } finally {
      if (weight !== this.#weight) weight.dispose();
    }
    return [file];
  }

  dispose(): void {
    if (this.#disposed) return;
    this.#disposed = true;
    this.#layer.dispose();
    this.#projections?.dispose();
    this.#owned?.dispose();
    this.#weight.dispose();
    this.#bias?.dispose();
  }

  /**
   * The model save() wrote to `dir` on `head`: a PEFT LoRA or VeRA directory (the head's module
   * must be among its layers), or a head.safetensors of the whole layer. Ready for encode() and
   * evaluate(); training it further works too.
   */
  static load(head: EmbeddingHead, dir: string): EmbeddingModel {
    checkHead(head);
    if (typeof dir !== 'string' || dir === '') throw invalidType('a directory path', 'dir', dir);
    const { inFeatures: din, outFeatures: dout } = head;
    const headFile = path.join(dir, 'head.safetensors');
    if (existsSync(headFile) && !existsSync(path.join(dir, peft.CONFIG_NAME))) {
      const { tensors } = readSafetensors(headFile);
      const weight = tensors.get(`${head.module}.weight`);
      const bias = tensors.get(`${head.module}.bias`);
      const release = () => tensors.forEach((t) => t.dispose());
      if (!weight || weight.shape[0] !== dout || weight.shape[1] !== din) {
        release();
        throw invalidRange(
          `${head.module}.weight [${dout}, ${din}] in ${headFile}`,
          'dir',
          weight ? `[${weight.shape.join(', ')}]` : 'no such tensor',
        );
      }
      return new EmbeddingModel(head, 'full', undefined, {
        layer: new Linear({ weight, bias }),
        weight,
        bias,
        rank: 0,
        alpha: 0,
        owned: { dispose: () => tensors.forEach((t) => t !== weight && t !== bias && t.dispose()) },
      });
    }
    const adapter = peft.loadAdapter(dir);
    try {
      if (!adapter.layers.has(head.module))
        throw invalidRange(`an adapter of module ${head.module}`, 'dir', `one of ${[...adapter.layers.keys()].join(', ') || 'no modules'}`);
      const weight = tensor(head.weight.slice(), [dout, din]);
      const bias = head.bias ? tensor(head.bias.slice(), [dout]) : undefined;
      if (adapter.kind === 'lora') {
        const layer = peft.loraLayer(adapter, head.module, weight, bias);
        return new EmbeddingModel(head, 'lora', undefined, { layer, weight, bias, rank: layer.rank, alpha: adapter.alpha, owned: adapter });
      }
      const layer = peft.veraLayer(adapter, head.module, weight, bias);
      return new EmbeddingModel(head, 'vera', undefined, { layer, weight, bias, rank: adapter.rank, alpha: 0, owned: adapter });
    } catch (e) {
      adapter.dispose();
      throw e;
    }
  }
}

/** What EmbeddingModel.load hands the constructor. */
interface LoadedParts {
  layer: HeadLayer;
  weight: Tensor;
  bias?: Tensor;
  rank: number;
  alpha: number;
  /** Released with the model (the loaded adapter's tensors). */
  owned?: { dispose(): void };
}

function checkHead(head: EmbeddingHead): EmbeddingHead {
  if (typeof head !== 'object' || head === null)
    throw invalidType('an embedding head { weight, inFeatures, outFeatures, ... }', 'head', head);
  const { inFeatures: din, outFeatures: dout } = head;
  if (!Number.isInteger(din) || din < 1) throw invalidRange('a positive integer', 'head.inFeatures', din);
  if (!Number.isInteger(dout) || dout < 1) throw invalidRange('a positive integer', 'head.outFeatures', dout);
  if (!(head.weight instanceof Float32Array) || head.weight.length !== din * dout)
    throw invalidRange(
      `a Float32Array of ${dout * din} weights [${dout}, ${din}]`,
      'head.weight',
      head.weight instanceof Float32Array ? `${head.weight.length} values` : head.weight,
    );
  if (head.bias !== undefined && (!(head.bias instanceof Float32Array) || head.bias.length !== dout))
    throw invalidRange(`a Float32Array of ${dout} values`, 'head.bias', head.bias);
  if (head.activation !== 'tanh' && head.activation !== 'identity')
    throw invalidType("'tanh' or 'identity'", 'head.activation', head.activation);
  return head;
}

/** W + s·BA of a LoRA layer, a new [out, in] tensor (computed on the host in float64 sums). */
function mergedLora(W: Tensor, layer: LoraLinear): Tensor {
  const [out, inDim] = W.shape as [number, number];
  const r = layer.rank;
  const w = W.toFloat32Array();
  const A = layer.A.toFloat32Array(); // [r, in]
  const B = layer.B.toFloat32Array(); // [out, r]
  for (let o = 0; o < out; o++)
    for (let i = 0; i < inDim; i++) {
      let acc = 0;
      for (let k = 0; k < r; k++) acc += B[o * r + k] * A[k * inDim + i];
      w[o * inDim + i] += layer.scale * acc;
    }
  return tensor(w, [out, inDim]);
}

/** Each row divided by its L2 norm (clamped at 1e-12), in place. */
export function normalizeRows(x: Float32Array, width: number): Float32Array {
  for (let r = 0; r < x.length; r += width) {
    let s = 0;
    for (let j = 0; j < width; j++) s += x[r + j] * x[r + j];
    const inv = 1 / Math.max(Math.sqrt(s), 1e-12);
    for (let j = 0; j < width; j++) x[r + j] *= inv;
  }
  return x;
}

/** Trains `method`'s adapter on `head` from the frozen start; see the file's header. */
export function finetuneEmbeddings(head: EmbeddingHead, train: PairVectors, opts: FinetuneOptions): FinetuneResult {
  if (typeof opts !== 'object' || opts === null) throw invalidType('an options object { method, ... }', 'options', opts);
  const din = head.inFeatures;
  const count = rowsOf(train.queries, din, 'train.queries');
  if (rowsOf(train.documents, din, 'train.documents') !== count)
    throw invalidRange(`${count} document rows (one per query)`, 'train.documents', `${train.documents.length / din}`);
  if (train.negatives && rowsOf(train.negatives, din, 'train.negatives') !== count)
    throw invalidRange(`${count} negative rows (one per pair)`, 'train.negatives', `${train.negatives.length / din}`);
  if (count < 2) throw invalidRange('at least 2 training pairs (in-batch negatives need two)', 'train', `${count}`);
  const epochs = opts.epochs ?? 20;
  const batchSize = Math.min(opts.batchSize ?? 64, count);
  const patience = opts.patience ?? 3;
  const lr = opts.lr ?? DEFAULT_LR[opts.method];
  for (const [v, name] of [
    [epochs, 'options.epochs'],
    [batchSize, 'options.batchSize'],
    [patience, 'options.patience'],
  ] as const)
    if (!Number.isInteger(v) || v < 1) throw invalidRange('a positive integer', name, v);
  if (batchSize < 2) throw invalidRange('an integer >= 2', 'options.batchSize', batchSize);
  const loss = { scale: opts.scale ?? 20, symmetric: opts.symmetric ?? true };
  const seed = opts.seed ?? 0;

  const model = new EmbeddingModel(head, opts.method, { rank: opts.rank, alpha: opts.alpha, seed });
  const opt = new AdamW(model.paramGroups(lr, opts.weightDecay ?? 0));
  const history: EpochReport[] = [];
  const stepMs: number[] = [];
  let best = opts.validation ? model.evaluate(opts.validation).mean.ndcg10 : -Infinity;
  let bestEpoch = 0;
  // With validation the start is a candidate too: a method that only gets worse keeps it.
  let bestSnap: Tensor[] | undefined = opts.validation ? model.snapshot() : undefined;
  let since = 0;
  const next = mulberry32(seed ^ 0x9e3779b9);
  const random = () => next() / 4294967296;
  const order = Array.from({ length: count }, (_, i) => i);
  const gather = (src: Float32Array, rows: number[]) => gatherRows(src, rows, din);
  try {
    for (let epoch = 1; epoch <= epochs; epoch++) {
      for (let i = count - 1; i > 0; i--) {
        const j = Math.floor(random() * (i + 1));
        [order[i], order[j]] = [order[j], order[i]];
      }
      let sum = 0;
      let steps = 0;
      for (let s = 0; s + 2 <= count; s += batchSize) {
        const rows = order.slice(s, s + batchSize);
        if (rows.length < 2) break;
        const t0 = performance.now();
        sum += model.trainStep(
          gather(train.queries, rows),
          gather(train.documents, rows),
          train.negatives ? gather(train.negatives, rows) : undefined,
          opt,
          loss,
        );
        stepMs.push(performance.now() - t0);
        steps++;
      }
      const report: EpochReport = { epoch, loss: sum / steps, steps };
      if (opts.validation) {
        report.validation = model.evaluate(opts.validation).mean;
        if (report.validation.ndcg10 > best) {
          best = report.validation.ndcg10;
          bestEpoch = epoch;
          bestSnap!.forEach((t) => t.dispose());
          bestSnap = model.snapshot();
          since = 0;
        } else since++;
      } else bestEpoch = epoch;
      history.push(report);
      opts.onEpoch?.(report);
      if (opts.validation && since >= patience) break;
    }
    if (bestSnap) model.restore(bestSnap);
  } catch (e) {
    model.dispose();
    throw e;
  } finally {
    bestSnap?.forEach((t) => t.dispose());
    opt.dispose();
  }
  stepMs.sort((a, b) => a - b);
  return { model, history, bestEpoch, steps: stepMs.length, msPerStep: stepMs[Math.floor(stepMs.length / 2)] ?? 0 };
}
