// `lowrank finetune-embeddings`: train a low-rank adapter for semantic search on the user's own
// data — query/document pairs as JSONL (encoded with the shipped Universal Sentence Encoder lite,
// the adapter on its head) or query and document vectors from any other model as two safetensors
// files (the adapter on an identity map of their dimension). Holds out a split by a hash of the
// query text, reports nDCG@10, R@1, R@10 and MRR@10 before and after with a paired bootstrap
// interval of the gain, saves the adapter (a PEFT directory) and prints how to apply it. Every
// input is read and checked before anything is trained or written: a bad line is one error
// naming the file and line, exit status 1, no output folder.
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, renameSync, rmSync } from 'node:fs';
import path from 'node:path';
import { readSafetensors } from '../io/safetensors.js';
import { pooledCached, SentenceEncoder, useHead } from '../embed/encoder.js';
import { defaultCacheDir } from '../embed/datasets.js';
import {
  EMBEDDING_METHODS,
  type EmbeddingHead,
  type EmbeddingMethod,
  EmbeddingModel,
  finetuneEmbeddings,
  gatherRows,
  identityHead,
  METHOD_LABELS,
  retrievalSet,
} from '../embed/finetune.js';
import { pairedBootstrap, type RetrievalScores } from '../embed/metrics.js';
import { type CommandSpec, HELP, parseCommand, UsageError, usageOf } from './args.js';

export const FINETUNE_EMBEDDINGS = {
  usage:
    'lowrank finetune-embeddings (--pairs <data.jsonl> | --embeddings <queries.safetensors> <documents.safetensors>) [--out <dir>] [options]',
  summary: 'train a low-rank adapter for semantic search on your query/document pairs or your own embeddings',
  options: {
    pairs: { type: 'string', arg: '<file>', help: 'JSONL, one {"query": ..., "document": ..., "negative"?: ...} per line' },
    embeddings: {
      type: 'string',
      arg: '<q> <d>',
      help: 'two safetensors files of one 2-D float tensor each: row i of d is the document of query i',
    },
    out: { type: 'string', arg: '<dir>', help: 'where to save the adapter, a new or empty folder (default embedding-adapter)' },
    method: { type: 'string', values: EMBEDDING_METHODS, arg: '<method>', help: 'the adapter (default lora)' },
    rank: { type: 'string', arg: '<r>', help: 'adapter rank (default 16)' },
    epochs: { type: 'string', arg: '<n>', help: 'maximum epochs (default 20, early stopping on the validation split)' },
    'test-fraction': { type: 'string', arg: '<f>', help: 'share of queries held out for the report (default 0.2)' },
    seed: { type: 'string', arg: '<n>', help: 'seed of the split and the adapter (default 0)' },
    cache: { type: 'string', arg: '<dir>', help: `encodings cache for --pairs (default ${defaultCacheDir()})` },
    json: { type: 'boolean', help: 'print the report as JSON' },
    quiet: { type: 'boolean', help: 'print nothing but the report' },
    help: HELP,
  },
} satisfies CommandSpec;

/** A problem with the user's data (exit status 1), as opposed to a bad command line (2). */
export class InputError extends Error {}

export interface PairText {
  query: string;
  document: string;
  negative?: string;
}

/** Parses and checks a JSONL file of pairs; every problem names the file and line. */
export function readPairs(file: string): PairText[] {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new InputError(`cannot read ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  const pairs: PairText[] = [];
  const lines = text.split('\n');
  lines.forEach((raw, i) => {
    const line = raw.trim();
    if (line === '') return;
    const where = `${file}:${i + 1}`;
    let v: unknown;
    try {
      v = JSON.parse(line);
    } catch {
      throw new InputError(`${where}: expected a JSON object {"query": ..., "document": ...} but the line is not valid JSON`);
    }
    if (typeof v !== 'object' || v === null || Array.isArray(v))
      throw new InputError(`${where}: expected a JSON object but received ${Array.isArray(v) ? 'an array' : JSON.stringify(v)}`);
    const o = v as Record<string, unknown>;
    for (const key of ['query', 'document'] as const) {
      if (typeof o[key] !== 'string')
        throw new InputError(`${where}: expected a string "${key}" but received ${o[key] === undefined ? 'none' : JSON.stringify(o[key])}`);
      if (o[key].trim() === '') throw new InputError(`${where}: expected a non-empty "${key}" but received an empty text`);
    }
    if (o.negative !== undefined && (typeof o.negative !== 'string' || o.negative.trim() === ''))
      throw new InputError(`${where}: expected "negative" to be a non-empty string when given but received ${JSON.stringify(o.negative)}`);
    pairs.push({
      query: o.query as string,
      document: o.document as string,
      ...(o.negative !== undefined ? { negative: o.negative } : {}),
    });
  });
  const withNeg = pairs.filter((p) => p.negative !== undefined).length;
  if (withNeg !== 0 && withNeg !== pairs.length)
    throw new InputError(`${file}: expected "negative" on every line or on none but ${withNeg} of ${pairs.length} lines have one`);
  if (pairs.length < 2)
    throw new InputError(`${file}: expected at least 2 pairs (in-batch negatives need two) but received ${pairs.length}`);
  return pairs;
}

/** One 2-D float tensor of a safetensors file, as float32 rows. */
export function readMatrix(file: string, role: string): { data: Float32Array; rows: number; dim: number } {
  let tensors;
  try {
    tensors = readSafetensors(file).tensors;
  } catch (e) {
    throw new InputError(`cannot read the ${role} file ${file}: ${(e as Error).message}`);
  }
  try {
    if (tensors.size !== 1)
      throw new InputError(
        `${file}: expected one tensor of ${role} [rows, dim] but received ${tensors.size} (${[...tensors.keys()].join(', ')})`,
      );
    const [[name, t]] = [...tensors];
    if (t.shape.length !== 2 || t.shape[0] < 1 || t.shape[1] < 1)
      throw new InputError(`${file}: expected ${name} to be 2-D [rows, dim] but received [${t.shape.join(', ')}]`);
    if (t.dtype === 'int32') throw new InputError(`${file}: expected ${name} to hold floats but received int32`);
    const data = t.toFloat32Array();
    const bad = data.findIndex((x) => !Number.isFinite(x));
    if (bad >= 0)
      throw new InputError(`${file}: expected finite values but row ${Math.floor(bad / t.shape[1])} of ${name} holds ${data[bad]}`);
    return { data, rows: t.shape[0], dim: t.shape[1] };
  } finally {
    tensors.forEach((t) => t.dispose());
  }
}

/** Test / validation / train by SHA-256 of (seed, query text): the same query always lands in the same split. */
export function splitQueries(
  queries: readonly string[],
  testFraction: number,
  seed: number,
): { train: number[]; validation: number[]; test: number[] } {
  const split = { train: [] as number[], validation: [] as number[], test: [] as number[] };
  const valFraction = Math.min(0.1, (1 - testFraction) / 4);
  queries.forEach((q, i) => {
    const h = createHash('sha256').update(`${seed}\n${q}`).digest().readUInt32BE(0) / 2 ** 32;
    (h < testFraction ? split.test : h < testFraction + valFraction ? split.validation : split.train).push(i);
  });
  // Tiny sets: keep at least one test query and two training pairs.
  if (split.test.length === 0) split.test.push(split.train.pop() ?? split.validation.pop()!);
  while (split.train.length < 2 && split.validation.length > 0) split.train.push(split.validation.pop()!);
  if (split.train.length < 2)
    throw new InputError(
      `expected at least 2 training pairs after holding out the test queries but ${queries.length} pairs leave ${split.train.length}`,
    );
  return split;
}

function numberOption(v: unknown, name: string, fallback: number, check: (n: number) => boolean, expected: string): number {
  if (v === undefined) return fallback;
  const n = Number(v);
  if (!check(n)) throw new UsageError(`Expected ${expected} for --${name} but received ${JSON.stringify(v)}`);
  return n;
}

export interface FinetuneReport {
  mode: 'pairs' | 'embeddings';
  method: EmbeddingMethod;
  pairs: number;
  split: { train: number; validation: number; test: number };
  before: RetrievalScores;
  after: RetrievalScores;
  gain: { difference: number; low: number; high: number; confidence: number };
  bestEpoch: number;
  epochs: number;
  adapter: string;
  files: string[];
}

export async function runFinetuneEmbeddings(argv: string[]): Promise<number> {
  // --embeddings takes two paths: the second is taken out here, the rest parsed as usual.
  const args = [...argv];
  const at = args.indexOf('--embeddings');
  let documentsFile: string | undefined;
  if (at >= 0 && args[at + 2] !== undefined && !args[at + 2].startsWith('--')) [documentsFile] = args.splice(at + 2, 1);
  const { values } = parseCommand('finetune-embeddings', FINETUNE_EMBEDDINGS, args);
  if (values.help) {
    console.log(usageOf(FINETUNE_EMBEDDINGS));
    return 0;
  }
  const pairsFile = values.pairs as string | undefined;
  const queriesFile = values.embeddings as string | undefined;
  if ((pairsFile === undefined) === (queriesFile === undefined))
    throw new UsageError(
      `Expected exactly one of --pairs <file> or --embeddings <q> <d> for lowrank finetune-embeddings but received ${pairsFile ? 'both' : 'neither'}`,
    );
  if (queriesFile !== undefined && documentsFile === undefined)
    throw new UsageError('Expected two files after --embeddings (queries, then documents) but received one');
  const method = (values.method as EmbeddingMethod | undefined) ?? 'lora';
  const rank = numberOption(values.rank, 'rank', 16, (n) => Number.isSafeInteger(n) && n >= 1, 'a positive integer');
  const epochs = numberOption(values.epochs, 'epochs', 20, (n) => Number.isSafeInteger(n) && n >= 1, 'a positive integer');
  const testFraction = numberOption(values['test-fraction'], 'test-fraction', 0.2, (n) => n > 0 && n < 0.9, 'a number in (0, 0.9)');
  const seed = numberOption(values.seed, 'seed', 0, (n) => Number.isSafeInteger(n) && n >= 0, 'a non-negative integer');
  const out = path.resolve((values.out as string | undefined) ?? 'embedding-adapter');
  if (existsSync(out) && readdirSync(out).length > 0)
    throw new InputError(`${out} exists and is not empty; pass a new or empty folder as --out`);
  const quiet = values.quiet === true || values.json === true;
  const log = (s: string) => !quiet && console.error(s);

  // ---- read and check everything first
  let head: EmbeddingHead;
  let Q: Float32Array, D: Float32Array, N: Float32Array | undefined;
  let queryTexts: string[];
  let documentKeys: string[];
  if (pairsFile !== undefined) {
    const pairs = readPairs(pairsFile);
    head = useHead();
    const texts = [
      ...pairs.map((p) => p.query),
      ...pairs.map((p) => p.document),
      ...pairs.flatMap((p) => (p.negative ? [p.negative] : [])),
    ];
    log(`${pairs.length} pairs from ${pairsFile}; encoding with the shipped encoder`);
    let encoder: SentenceEncoder | undefined;
    try {
      const enc = await pooledCached(texts, {
        cacheDir: (values.cache as string | undefined) ?? defaultCacheDir(),
        encoder: async () => (encoder ??= await SentenceEncoder.open()),
        progress: !quiet,
        label: 'encoding',
      });
      const n = pairs.length,
        d = head.inFeatures;
      Q = enc.pooled.slice(0, n * d);
      D = enc.pooled.slice(n * d, 2 * n * d);
      N = pairs[0].negative !== undefined ? enc.pooled.slice(2 * n * d) : undefined;
    } finally {
      await encoder?.close();
    }
    queryTexts = pairs.map((p) => p.query);
    documentKeys = pairs.map((p) => p.document);
  } else {
    const q = readMatrix(queriesFile!, 'queries');
    const d = readMatrix(documentsFile!, 'documents');
    if (q.dim !== d.dim)
      throw new InputError(
        `expected queries and documents of one dimension but ${queriesFile} has ${q.dim} and ${documentsFile!} has ${d.dim}`,
      );
    if (q.rows !== d.rows)
      throw new InputError(
        `expected one document row per query row but ${queriesFile} has ${q.rows} rows and ${documentsFile!} has ${d.rows}`,
      );
    if (q.rows < 2) throw new InputError(`expected at least 2 pairs (in-batch negatives need two) but received ${q.rows}`);
    head = identityHead(q.dim, path.basename(queriesFile!));
    Q = q.data;
    D = d.data;
    // Identical vectors are the same query / the same document.
    const key = (m: Float32Array, r: number) =>
      createHash('sha256')
        .update(new Uint8Array(m.buffer, m.byteOffset + 4 * r * q.dim, 4 * q.dim))
        .digest('hex');
    queryTexts = Array.from({ length: q.rows }, (_, r) => key(Q, r));
    documentKeys = Array.from({ length: q.rows }, (_, r) => key(D, r));
  }
  const split = splitQueries(queryTexts, testFraction, seed);
  const dim = head.inFeatures;
  const set = (rows: number[]) => retrievalSet(Q, D, rows, dim, documentKeys);
  const test = set(split.test);
  const validation = split.validation.length > 0 ? set(split.validation) : undefined;

  // ---- train, report, save
  const shipped = new EmbeddingModel(head, 'full');
  const before = shipped.evaluate(test);
  shipped.dispose();
  log(
    `training ${METHOD_LABELS[method]} (rank ${rank}) on ${split.train.length} pairs; ${split.validation.length} validation, ${split.test.length} test queries`,
  );
  const run = finetuneEmbeddings(
    head,
    {
      queries: gatherRows(Q, split.train, dim),
      documents: gatherRows(D, split.train, dim),
      negatives: N ? gatherRows(N, split.train, dim) : undefined,
    },
    {
      method,
      rank,
      epochs,
      seed,
      validation,
      onEpoch: (e) =>
        log(`  epoch ${e.epoch}: loss ${e.loss.toFixed(4)}${e.validation ? `, validation nDCG@10 ${e.validation.ndcg10.toFixed(3)}` : ''}`),
    },
  );
  let files: string[];
  let after;
  try {
    after = run.model.evaluate(test);
    // Written beside the target, then renamed: a failure leaves no half-written folder.
    const tmp = `${out}.tmp-${process.pid}`;
    rmSync(tmp, { recursive: true, force: true });
    run.model.save(tmp);
    if (existsSync(out)) rmSync(out, { recursive: true });
    renameSync(tmp, out);
    files = readdirSync(out).map((f) => path.join(out, f));
  } finally {
    run.model.dispose();
  }
  const gain = pairedBootstrap(before.perQuery.ndcg10, after.perQuery.ndcg10, { seed });
  const report: FinetuneReport = {
    mode: pairsFile !== undefined ? 'pairs' : 'embeddings',
    method,
    pairs: queryTexts.length,
    split: { train: split.train.length, validation: split.validation.length, test: split.test.length },
    before: before.mean,
    after: after.mean,
    gain: { difference: gain.difference, low: gain.low, high: gain.high, confidence: gain.confidence },
    bestEpoch: run.bestEpoch,
    epochs: run.history.length,
    adapter: out,
    files,
  };
  if (values.json) {
    console.log(JSON.stringify(report, null, 1));
    return 0;
  }
  const f = (v: number) => v.toFixed(3);
  console.log(`held-out queries: ${split.test.length} over ${queryTexts.length} documents`);
  console.log(`                 nDCG@10   R@1    R@10   MRR@10`);
  console.log(
    `  before         ${f(before.mean.ndcg10)}    ${f(before.mean.recall1)}  ${f(before.mean.recall10)}  ${f(before.mean.mrr10)}`,
  );
  console.log(`  after          ${f(after.mean.ndcg10)}    ${f(after.mean.recall1)}  ${f(after.mean.recall10)}  ${f(after.mean.mrr10)}`);
  console.log(
    `  nDCG@10 gain ${gain.difference >= 0 ? '+' : ''}${f(gain.difference)}, 95 % paired bootstrap interval [${f(gain.low)}, ${f(gain.high)}]`,
  );
  console.log(`adapter: ${out}`);
  console.log(howToApply(report, head));
  return 0;
}

function howToApply(r: FinetuneReport, head: EmbeddingHead): string {
  const load =
    r.mode === 'pairs'
      ? `import { embed } from 'lowrank';\nconst model = embed.EmbeddingModel.load(embed.useHead(), '${r.adapter}');\n// h: pooled vectors of your texts from embed.SentenceEncoder (encoder.pooled(texts))\nconst e = model.encode(h); // L2-normalised, 512 per text`
      : `import { embed } from 'lowrank';\nconst model = embed.EmbeddingModel.load(embed.identityHead(${head.inFeatures}), '${r.adapter}');\nconst e = model.encode(vectors); // your model's vectors [n, ${head.inFeatures}] → adapted, L2-normalised`;
  return `apply it to queries and documents alike:\n${load}`;
}
