// Exact (brute-force) nearest-neighbour search of query embeddings against document
// embeddings by dot product, on either device: block by block over the query rows, each block
// one GEMM (linear.forward: scores = qBlock · documentsᵀ) and one topk, so the scores never
// exceed one bounded block and nothing is sorted in full.
import { invalidRange } from '../errors.js';
import { native } from '../native.js';
import { checked, sameDevice } from '../ops/check.js';
import * as linear from '../ops/linear.js';
import { holding } from '../ops/run.js';
import { topk, topkAsync, type TopkResult } from '../ops/search.js';
import { Tensor, tensor } from '../tensor.js';
import { MAX_ELEMENTS, options, positiveInt } from '../validate.js';

export interface SearchOptions {
  /** Results per query, 1 <= k <= the documents' rows. */
  k: number;
  /** Query rows per block; default: as many as keep a block of scores within 32 MiB (at least 1). */
  batchRows?: number;
}

export interface SearchResult {
  /** Results per query. */
  k: number;
  /** Queries (the rows of indices and scores). */
  rows: number;
  /** [rows, k] row-major: the documents' row numbers, best first. */
  indices: Int32Array;
  /** [rows, k] row-major: their scores (dot products), descending. */
  scores: Float32Array;
}

/** The bytes of one block of scores by default. */
const BLOCK_BYTES = 32 * 2 ** 20;

/** The checked arguments of one search. */
function plan(queries: Tensor, documents: Tensor, opts: SearchOptions) {
  const o = options<SearchOptions>(opts, 'options');
  const device = sameDevice([
    [queries, 'queries'],
    [documents, 'documents'],
  ]);
  const q = checked(queries, 'queries', 'float32'),
    docs = checked(documents, 'documents', 'float32');
  if (q.shape.length !== 2 || q.shape[0] < 1 || q.shape[1] < 1) throw invalidRange('a 2-D tensor [n, d] with n, d >= 1', 'queries', q);
  const [n, d] = q.shape as [number, number];
  if (docs.shape.length !== 2 || docs.shape[0] < 1 || docs.shape[1] !== d)
    throw invalidRange(`a 2-D tensor [N, d] with N >= 1 and d = ${d} (like queries)`, 'documents', docs);
  const N = docs.shape[0];
  const k = positiveInt(o.k, 'options.k');
  if (k > N) throw invalidRange(`a positive integer at most ${N} (the documents' rows)`, 'options.k', k);
  const most = Math.floor(MAX_ELEMENTS / N); // the rows of the largest tensor of scores
  let batch = Math.min(
    n,
    o.batchRows === undefined ? Math.max(1, Math.floor(BLOCK_BYTES / (4 * N))) : positiveInt(o.batchRows, 'options.batchRows'),
  );
  if (batch > most) {
    if (o.batchRows !== undefined)
      throw invalidRange(`a positive integer at most ${most} (a block of at most ${MAX_ELEMENTS} scores)`, 'options.batchRows', batch);
    batch = most;
  }
  const result: SearchResult = { k, rows: n, indices: new Int32Array(n * k), scores: new Float32Array(n * k) };
  return { q, docs, device, n, d, k, batch, result };
}

type Plan = ReturnType<typeof plan>;

/** Query rows [r0, r0 + rows): the queries themselves (one block) or a view (CPU); null on CUDA. */
function view(p: Plan, r0: number, rows: number): Tensor | null {
  if (rows === p.n) return p.q;
  if (p.device === 'cuda') return null;
  return tensor((p.q.storage('queries') as Float32Array).subarray(r0 * p.d, (r0 + rows) * p.d), [rows, p.d]);
}

/** The download of query rows [r0, r0 + rows) of a CUDA tensor into host memory (no device row slice exists). */
function rowsDownload(p: Plan, r0: number, rows: number) {
  return { block: p.q.deviceHandle('queries'), dst: new Float32Array(rows * p.d), offset: r0 * p.d * 4 };
}

/** Where a block's results go: rows [r0, r0 + rows) of the result arrays. */
function target(p: Plan, r0: number, rows: number) {
  const at = r0 * p.k,
    end = (r0 + rows) * p.k;
  return { indices: p.result.indices.subarray(at, end), scores: p.result.scores.subarray(at, end) };
}

/** A CPU block's results into `out`. */
function copyHost(top: TopkResult, out: ReturnType<typeof target>): void {
  out.indices.set(top.indices.storage());
  out.scores.set(top.values.storage());
}

/** Disposes a block's temporaries (the query rows only when they are a block's own). */
function discard(p: Plan, q: Tensor | null, scores: Tensor | undefined, top: TopkResult | undefined): void {
  if (q !== null && q !== p.q) q.dispose();
  scores?.dispose();
  top?.indices.dispose();
  top?.values.dispose();
}

/** One step of the search: run now on the calling thread, or later off the event loop. */
interface Step<T> {
  now(): T;
  later(): Promise<T>;
}

/** Yields a step and receives its result, for either driver below. */
function* step<T>(s: Step<T>): Generator<Step<unknown>, T, unknown> {
  return (yield s) as T;
}

/**
 * The search, once, as a sequence of steps: runSync performs each at once, runAsync awaits each
 * one's off-thread form. Either way a failing step is thrown back in, so the finally blocks run.
 */
function* searchSteps(p: Plan): Generator<Step<unknown>, SearchResult, unknown> {
  const releases = [p.q.hold(), p.docs.hold()]; // a dispose() meanwhile recycles their storage only afterwards
  try {
    for (let r0 = 0; r0 < p.n; r0 += p.batch) {
      const rows = Math.min(p.batch, p.n - r0);
      let q = view(p, r0, rows),
        scores: Tensor | undefined,
        top: TopkResult | undefined;
      try {
        if (q === null) {
          const down = rowsDownload(p, r0, rows);
          yield* step({ now: () => native().cudaDownload(down), later: () => holding(native().cudaDownload(down, true), []) });
          q = tensor(down.dst, [rows, p.d], { device: 'cuda' });
        }
        const block = q;
        scores = (yield* step({ now: () => linear.forward(block, p.docs), later: () => linear.forwardAsync(block, p.docs) })).y;
        const s = scores;
        top = yield* step({ now: () => topk(s, p.k), later: () => topkAsync(s, p.k) });
        const out = target(p, r0, rows);
        if (p.device === 'cpu') copyHost(top, out);
        else
          for (const [t, dst] of [
            [top.indices, out.indices],
            [top.values, out.scores],
          ] as const) {
            const down = { block: t.deviceHandle(), dst };
            yield* step({ now: () => native().cudaDownload(down), later: () => holding(native().cudaDownload(down, true), [t]) });
          }
      } finally {
        discard(p, q, scores, top);
      }
    }
  } finally {
    releases.forEach((r) => r());
  }
  return p.result;
}

function runSync<R>(g: Generator<Step<unknown>, R, unknown>): R {
  let r = g.next();
  while (!r.done) {
    let value: unknown;
    try {
      value = r.value.now();
    } catch (e) {
      r = g.throw(e);
      continue;
    }
    r = g.next(value);
  }
  return r.value;
}

async function runAsync<R>(g: Generator<Step<unknown>, R, unknown>): Promise<R> {
  let r = g.next();
  while (!r.done) {
    let value: unknown;
    try {
      value = await r.value.later();
    } catch (e) {
      r = g.throw(e);
      continue;
    }
    r = g.next(value);
  }
  return r.value;
}

/**
 * Exact search: for each row of queries [n, d], the k rows of documents [N, d] with the largest
 * dot products (float32 tensors on one device; pass L2-normalised rows for cosine similarity),
 * best first, ties to the lower document row (search.topk's order). Block by block over the
 * query rows (options.batchRows; by default a block of scores is at most 32 MiB), each block a
 * GEMM (linear.forwardAsync) and a topk off the event loop (CUDA: queued on the device), the
 * results read back into host arrays. On CUDA, when there is more than one block, each block's
 * query rows travel through the host.
 */
export async function search(queries: Tensor, documents: Tensor, opts: SearchOptions): Promise<SearchResult> {
  return runAsync(searchSteps(plan(queries, documents, opts)));
}

/** search on the calling thread, synchronously. */
export function searchSync(queries: Tensor, documents: Tensor, opts: SearchOptions): SearchResult {
  return runSync(searchSteps(plan(queries, documents, opts)));
}
