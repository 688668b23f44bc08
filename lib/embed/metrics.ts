// metrics: retrieval evaluation for semantic search (README.md, Retrieval metrics). A query's
// result is a ranking, its document ids best first, as an exact top-k search returns them (ties
// already broken by the searcher, by lower document id); a query has one or more relevant
// documents, with binary relevance. The definitions follow sentence-transformers'
// InformationRetrievalEvaluator (recall@k, MRR@k, nDCG@k and MAP@k), and pairedBootstrap gives a
// percentile confidence interval for the difference of two systems' mean scores over the same
// queries.
//
// Conventions shared by every function here:
// - A ranking is a permutation prefix: its ids are non-negative integers, each at most once
//   (a repeated id is a RangeError naming the entry). It should be at least as long as the
//   largest cutoff asked for; a shorter one is read as the whole pool (every document of a pool
//   smaller than the cutoff ranked), and the missing ranks count as misses.
// - A query's relevant set is non-empty: a query without relevant documents has no defined
//   recall (0 / 0) and no ideal ranking to normalise nDCG by, so it is refused (RangeError)
//   rather than scored 0 or skipped; filter such queries out before evaluating. Relevant ids
//   are non-negative integers; they need not appear in the ranking (a relevant document the
//   search never returned counts in every denominator).
// - All arithmetic is in double, summed in rank (or query) order.
import { describe, invalidRange, invalidType } from '../errors.js';
import { options, positiveInt } from '../validate.js';

/** One query's ranked document ids, best first (at least as long as the largest cutoff you ask for, or shorter when the pool is small). */
export type Ranking = ArrayLike<number>;

// ---- argument checks ----------------------------------------------------------------------

/** An array or typed array (anything with a non-negative integer length, strings aside). */
function arrayLike(v: unknown, name: string, what: string): ArrayLike<unknown> {
  const length = typeof v === 'object' && v !== null ? (v as { length?: unknown }).length : undefined;
  if (typeof length !== 'number' || !Number.isSafeInteger(length) || length < 0) throw invalidType(what, name, v);
  return v as ArrayLike<unknown>;
}

/** A document id: a non-negative safe integer. */
function documentId(v: unknown, name: string): number {
  if (typeof v !== 'number') throw invalidType('a document id (a non-negative integer)', name, v);
  if (!(Number.isSafeInteger(v) && v >= 0)) throw invalidRange('a document id (a non-negative integer)', name, v);
  return v;
}

/** `ranked` holds distinct document ids (a permutation prefix); `name` is the argument's name. */
function checkRanking(ranked: unknown, name: string): Ranking {
  const r = arrayLike(ranked, name, 'an array of document ids (a ranking)');
  const seen = new Map<number, number>();
  for (let i = 0; i < r.length; i++) {
    const id = documentId(r[i], `${name}[${i}]`);
    const first = seen.get(id);
    if (first !== undefined)
      throw invalidRange(
        'a document id not ranked before (a ranking is a permutation prefix)',
        `${name}[${i}]`,
        id,
        `also ${name}[${first}]`,
      );
    seen.set(id, i);
  }
  return r as Ranking;
}

/** A non-empty Set of document ids. */
function checkRelevantSet(relevant: unknown, name: string): ReadonlySet<number> {
  if (!(relevant instanceof Set)) throw invalidType('a Set of relevant document ids', name, relevant);
  if (relevant.size === 0)
    throw invalidRange('a non-empty Set of relevant document ids (a query without relevant documents cannot be scored)', name, relevant);
  for (const id of relevant as Set<unknown>) {
    const what = 'a Set of document ids (non-negative integers)';
    if (typeof id !== 'number') throw invalidType(what, name, relevant, `it holds ${describe(id)}`);
    if (!(Number.isSafeInteger(id) && id >= 0)) throw invalidRange(what, name, relevant, `it holds ${id}`);
  }
  return relevant as ReadonlySet<number>;
}

/** The checks of the four single-query metrics. */
function checkQuery(ranked: unknown, relevant: unknown, k: unknown): void {
  checkRanking(ranked, 'ranked');
  checkRelevantSet(relevant, 'relevant');
  positiveInt(k, 'k');
}

// ---- the metrics, unchecked ----------------------------------------------------------------

/** 1 / log2(rank + 1): the discount of a hit at 1-based `rank`. */
const discount = (rank: number): number => 1 / Math.log2(rank + 1);

function recallOf(ranked: Ranking, relevant: ReadonlySet<number>, k: number): number {
  const n = Math.min(k, ranked.length);
  let hits = 0;
  for (let i = 0; i < n; i++) if (relevant.has(ranked[i])) hits++;
  return hits / relevant.size;
}

function reciprocalRankOf(ranked: Ranking, relevant: ReadonlySet<number>, k: number): number {
  const n = Math.min(k, ranked.length);
  for (let i = 0; i < n; i++) if (relevant.has(ranked[i])) return 1 / (i + 1);
  return 0;
}

function ndcgOf(ranked: Ranking, relevant: ReadonlySet<number>, k: number): number {
  const n = Math.min(k, ranked.length);
  let dcg = 0;
  for (let i = 0; i < n; i++) if (relevant.has(ranked[i])) dcg += discount(i + 1);
  let idcg = 0;
  const ideal = Math.min(relevant.size, k);
  for (let r = 1; r <= ideal; r++) idcg += discount(r);
  return dcg / idcg;
}

function averagePrecisionOf(ranked: Ranking, relevant: ReadonlySet<number>, k: number): number {
  const n = Math.min(k, ranked.length);
  let hits = 0,
    sum = 0;
  for (let i = 0; i < n; i++)
    if (relevant.has(ranked[i])) {
      hits++;
      sum += hits / (i + 1);
    }
  return sum / Math.min(relevant.size, k);
}

// ---- the metrics --------------------------------------------------------------------------

/**
 * Recall@k: the fraction of the relevant documents found in the top k, |relevant ∩ top-k| / |relevant|.
 * Throws a TypeError or RangeError naming `ranked`, `relevant` or `k` for bad input (see the
 * conventions at the top of this file: distinct ids, a non-empty relevant set, k >= 1).
 */
export function recallAt(ranked: Ranking, relevant: ReadonlySet<number>, k: number): number {
  checkQuery(ranked, relevant, k);
  return recallOf(ranked, relevant, k);
}

/** Reciprocal rank@k: 1 / rank of the first relevant document within the top k (ranks from 1), else 0. MRR@k is its mean over queries. */
export function reciprocalRankAt(ranked: Ranking, relevant: ReadonlySet<number>, k: number): number {
  checkQuery(ranked, relevant, k);
  return reciprocalRankOf(ranked, relevant, k);
}

/**
 * nDCG@k with binary gains: DCG@k = Σ over relevant documents at ranks r <= k of 1 / log2(r + 1),
 * divided by the ideal DCG, that of a ranking with every relevant document first: Σ_{r=1}^{min(|relevant|, k)} 1 / log2(r + 1).
 */
export function ndcgAt(ranked: Ranking, relevant: ReadonlySet<number>, k: number): number {
  checkQuery(ranked, relevant, k);
  return ndcgOf(ranked, relevant, k);
}

/**
 * Average precision@k: Σ over relevant documents at ranks r <= k of precision@r (the fraction of
 * the top r that is relevant), divided by min(|relevant|, k). That denominator is
 * sentence-transformers' InformationRetrievalEvaluator convention (MAP@k there): a ranking with
 * min(|relevant|, k) relevant documents first scores 1 even when more relevant documents exist
 * than fit in the top k (TREC's AP divides by |relevant| instead). MAP@k is its mean over queries.
 */
export function averagePrecisionAt(ranked: Ranking, relevant: ReadonlySet<number>, k: number): number {
  checkQuery(ranked, relevant, k);
  return averagePrecisionOf(ranked, relevant, k);
}

// ---- many queries -------------------------------------------------------------------------

/** The scores evaluateRetrieval reports (sentence-transformers' names: ndcg@10, recall@1, recall@10, mrr@10, map@100). */
export interface RetrievalScores {
  /** nDCG@10. */
  ndcg10: number;
  /** Recall@1 (for a query with one relevant document: whether it ranked first). */
  recall1: number;
  /** Recall@10. */
  recall10: number;
  /** MRR@10: the reciprocal rank of the first relevant document within the top 10. */
  mrr10: number;
  /** MAP@100: average precision@100 (denominator min(|relevant|, 100)). */
  map100: number;
}

export interface RetrievalReport {
  /** The number of queries (rows). */
  queries: number;
  /** Each score's mean over the queries (summed in query order). */
  mean: RetrievalScores;
  /** Each score of each query, in query order (the input to pairedBootstrap). */
  perQuery: { [K in keyof RetrievalScores]: Float64Array };
}

const SCORES: ReadonlyArray<[keyof RetrievalScores, (ranked: Ranking, relevant: ReadonlySet<number>, k: number) => number, number]> = [
  ['ndcg10', ndcgOf, 10],
  ['recall1', recallOf, 1],
  ['recall10', recallOf, 10],
  ['mrr10', reciprocalRankOf, 10],
  ['map100', averagePrecisionOf, 100],
];

/**
 * indices: rows*k row-major ranked doc ids (as returned by a top-k search), relevant[i]: the relevant doc ids of query i.
 *
 * Row i of `ranking.indices` (k ids, best first, distinct, non-negative) is query i's ranking;
 * `relevant[i]` (non-empty, distinct ids) its relevant documents. Each row is scored at the
 * cutoffs 1, 10 and 100, so k should be at least 100, or the pool size when the pool is smaller
 * (a row shorter than a cutoff is read as the whole pool: with k = 10 over a larger pool,
 * map100 would be MAP over the top 10 only). A search that pads short rows (with -1, say) must
 * be asked for k = the pool size instead: negative ids are refused.
 */
export function evaluateRetrieval(
  ranking: { indices: Int32Array; k: number },
  relevant: ReadonlyArray<ReadonlyArray<number>>,
): RetrievalReport {
  if (typeof ranking !== 'object' || ranking === null) throw invalidType('an object { indices, k }', 'ranking', ranking);
  const { indices, k } = ranking;
  positiveInt(k, 'ranking.k');
  if (!(indices instanceof Int32Array)) throw invalidType('an Int32Array', 'ranking.indices', indices);
  if (indices.length === 0 || indices.length % k !== 0)
    throw invalidRange(`a non-empty Int32Array whose length is a multiple of ranking.k = ${k} (rows × k ids)`, 'ranking.indices', indices);
  const rows = indices.length / k;
  const lists = arrayLike(relevant, 'relevant', 'an array of relevant-id arrays, one per query');
  if (lists.length !== rows)
    throw invalidRange(
      `an array of ${rows} relevant-id arrays (one per row of ranking.indices)`,
      'relevant',
      relevant,
      `length ${lists.length}`,
    );

  // Every row and every relevant list is checked before any is scored.
  const sets: Array<Set<number>> = [];
  for (let i = 0; i < rows; i++) {
    const seen = new Map<number, number>();
    for (let j = i * k; j < (i + 1) * k; j++) {
      const id = indices[j];
      if (id < 0) throw invalidRange('a document id (a non-negative integer)', `ranking.indices[${j}]`, id, `row ${i}`);
      const first = seen.get(id);
      if (first !== undefined)
        throw invalidRange(
          'a document id not ranked before in its row (a ranking is a permutation prefix)',
          `ranking.indices[${j}]`,
          id,
          `also ranking.indices[${first}]`,
        );
      seen.set(id, j);
    }
    const name = `relevant[${i}]`;
    const list = arrayLike(lists[i], name, 'an array of relevant document ids');
    if (list.length === 0)
      throw invalidRange(
        'a non-empty array of relevant document ids (a query without relevant documents cannot be scored)',
        name,
        lists[i],
      );
    const set = new Set<number>();
    for (let j = 0; j < list.length; j++) {
      const id = documentId(list[j], `${name}[${j}]`);
      if (set.has(id)) throw invalidRange('a document id not listed before (relevant ids are a set)', `${name}[${j}]`, id);
      set.add(id);
    }
    sets.push(set);
  }

  const perQuery = {} as RetrievalReport['perQuery'];
  const mean = {} as RetrievalScores;
  for (const [key] of SCORES) perQuery[key] = new Float64Array(rows);
  for (let i = 0; i < rows; i++) {
    const row = indices.subarray(i * k, (i + 1) * k);
    for (const [key, score, cutoff] of SCORES) perQuery[key][i] = score(row, sets[i], cutoff);
  }
  for (const [key] of SCORES) {
    let sum = 0;
    for (const v of perQuery[key]) sum += v;
    mean[key] = sum / rows;
  }
  return { queries: rows, mean, perQuery };
}

// ---- paired bootstrap ---------------------------------------------------------------------

export interface BootstrapOptions {
  /** The number of resamples, a positive integer (default 10000). */
  samples?: number;
  /** The interval's confidence level, in (0, 1) (default 0.95). */
  confidence?: number;
  /** The resampling generator's seed, an integer in [0, 2^32) (default 0). */
  seed?: number;
}

export interface BootstrapInterval {
  /** mean(b) − mean(a), computed as the mean of the paired differences b[i] − a[i]. */
  difference: number;
  /** The interval's lower end: the (1 − confidence)/2 percentile of the resampled differences. */
  low: number;
  /** The interval's upper end: the (1 + confidence)/2 percentile of the resampled differences. */
  high: number;
  /** The confidence level asked for. */
  confidence: number;
  /** The number of resamples drawn. */
  samples: number;
  /** The seed of the resampling generator. */
  seed: number;
}

/** mulberry32: a 32-bit generator (32 bits of state), returning uint32 values (also the shuffles of lib/embed/finetune.ts). */
export function mulberry32(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  };
}

/**
 * The p-quantile of ascending `sorted` by Hyndman and Fan's type 7 (R's and NumPy's default):
 * h = (N − 1)·p, then sorted[⌊h⌋] + (h − ⌊h⌋)·(sorted[⌊h⌋ + 1] − sorted[⌊h⌋]).
 */
function quantile7(sorted: Float64Array, p: number): number {
  const h = (sorted.length - 1) * p;
  const lo = Math.floor(h);
  if (lo + 1 >= sorted.length) return sorted[sorted.length - 1];
  return sorted[lo] + (h - lo) * (sorted[lo + 1] - sorted[lo]);
}

/** Per-query scores: an array of finite numbers. */
function scores(v: unknown, name: string): ArrayLike<number> {
  const s = arrayLike(v, name, 'an array of per-query scores');
  for (let i = 0; i < s.length; i++) {
    const x = s[i];
    if (typeof x !== 'number') throw invalidType('a finite number', `${name}[${i}]`, x);
    if (!Number.isFinite(x)) throw invalidRange('a finite number', `${name}[${i}]`, x);
  }
  return s as ArrayLike<number>;
}

const TWO_32 = 2 ** 32;

/**
 * Paired bootstrap over queries: resample query indices with replacement (same indices for both systems), the percentile interval of mean(b) - mean(a). Deterministic given seed.
 *
 * a[i] and b[i] are two systems' scores on query i (a perQuery array of evaluateRetrieval, say).
 * Each of `samples` resamples draws n query indices uniformly with replacement (mulberry32 seeded
 * with `seed`, an index by rejection sampling so that every index is equally likely) and takes
 * the mean of b[j] − a[j] over them; the interval is the (1 − confidence)/2 and (1 + confidence)/2
 * percentiles (type 7, linear interpolation) of those means. O(samples · n) time,
 * `samples` doubles of memory. Options: see BootstrapOptions. Throws a TypeError or RangeError
 * naming the argument for a or b not arrays of finite numbers, empty, or of different lengths,
 * and for bad options.
 */
export function pairedBootstrap(a: ArrayLike<number>, b: ArrayLike<number>, opts?: BootstrapOptions): BootstrapInterval {
  const sa = scores(a, 'a'),
    sb = scores(b, 'b');
  const n = sa.length;
  if (n === 0) throw invalidRange('a non-empty array of per-query scores', 'a', a);
  if (sb.length !== n) throw invalidRange(`an array of ${n} per-query scores (like a)`, 'b', b, `length ${sb.length}`);
  const o = options<BootstrapOptions>(opts, 'options');
  const samples = o.samples === undefined ? 10000 : positiveInt(o.samples, 'options.samples');
  const confidence = o.confidence ?? 0.95;
  if (typeof confidence !== 'number') throw invalidType('a number in (0, 1)', 'options.confidence', confidence);
  if (!(confidence > 0 && confidence < 1)) throw invalidRange('a number in (0, 1)', 'options.confidence', confidence);
  const seed = o.seed ?? 0;
  if (typeof seed !== 'number') throw invalidType('an integer in [0, 2^32)', 'options.seed', seed);
  if (!(Number.isInteger(seed) && seed >= 0 && seed < TWO_32)) throw invalidRange('an integer in [0, 2^32)', 'options.seed', seed);

  const d = new Float64Array(n);
  let total = 0;
  for (let i = 0; i < n; i++) {
    d[i] = sb[i] - sa[i];
    total += d[i];
  }
  const next = mulberry32(seed);
  // Draws at or above `limit` (the largest multiple of n within 2^32) are redrawn, so x % n is uniform.
  const limit = TWO_32 - (TWO_32 % n);
  const means = new Float64Array(samples);
  for (let s = 0; s < samples; s++) {
    let sum = 0;
    for (let j = 0; j < n; j++) {
      let x = next();
      while (x >= limit) x = next();
      sum += d[x % n];
    }
    means[s] = sum / n;
  }
  means.sort();
  return {
    difference: total / n,
    low: quantile7(means, (1 - confidence) / 2),
    high: quantile7(means, (1 + confidence) / 2),
    confidence,
    samples,
    seed,
  };
}
