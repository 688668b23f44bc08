// The semantic-search method comparison (`npm start`, `lowrank demo`): fine-tune a real
// pretrained encoder — Universal Sentence Encoder lite, shipped in an npm package — for retrieval
// on real text built from packages (Debian's package descriptions: synopsis → long description;
// WordNet: example sentence → sense), with full fine-tuning of its head and with each of LoRA,
// LoRA-FA, VeRA, Delta-LoRA and LoRA+ on the head's pretrained W, all from the same start.
// Per dataset: the shipped model's test scores, each method's after early stopping on validation
// nDCG@10, a paired bootstrap interval of each gain, a table, an SVG chart, a JSON file of the
// numbers; the best LoRA adapter saved as a PEFT directory, reloaded, and checked to reproduce
// its scores. The pooled vectors are cached (lib/embed/encoder.ts), so only the first run
// encodes. The old synthetic comparison (lib/cli/demo.ts) runs with --synthetic.
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { backends } from '../backends.js';
import { writeFileAtomic } from '../io/atomic.js';
import { loadDataset, type Dataset, type DatasetName, DatasetUnavailableError, defaultCacheDir } from '../embed/datasets.js';
import { encoderIdentity, pooledCached, SentenceEncoder, useHead, USE_LITE } from '../embed/encoder.js';
import {
  EMBEDDING_METHODS,
  type EmbeddingMethod,
  EmbeddingModel,
  type EpochReport,
  finetuneEmbeddings,
  gatherRows,
  METHOD_LABELS,
  type PairVectors,
  retrievalSet,
} from '../embed/finetune.js';
import { type BootstrapInterval, pairedBootstrap, type RetrievalReport, type RetrievalScores } from '../embed/metrics.js';
import { barsChart, curvesChart, stackCharts } from './chart.js';

const DATASET_NAMES: readonly DatasetName[] = ['debian', 'manpages', 'wordnet'];
const DATASET_TITLES: Readonly<Record<DatasetName, string>> = {
  debian: 'Debian packages: synopsis → description',
  manpages: 'man pages: NAME line → DESCRIPTION',
  wordnet: 'WordNet: example sentence → sense',
};

export interface SearchDemoOptions {
  datasets: DatasetName[];
  maxPairs: number;
  epochs: number;
  methods: EmbeddingMethod[];
  /** The results folder: results.json, chart.svg, the LoRA adapters. */
  out: string;
  cacheDir: string;
  workers?: number;
  refresh: boolean;
  quiet: boolean;
  seed: number;
}

export interface MethodRow {
  method: EmbeddingMethod;
  label: string;
  trainable: number;
  checkpointBytes: number;
  msPerStep: number;
  steps: number;
  epochs: number;
  bestEpoch: number;
  test: RetrievalScores;
  /** nDCG@10 after − before on the test queries, with its 95 % paired bootstrap interval. */
  gain: BootstrapInterval;
  history: EpochReport[];
}

export interface DatasetResult {
  name: DatasetName;
  title: string;
  pairs: number;
  split: { train: number; validation: number; test: number };
  source: Dataset['source'];
  datasetCached: boolean;
  encodingsCached: boolean;
  encodeSeconds: number;
  before: RetrievalScores;
  beforeValidation: RetrievalScores;
  rows: MethodRow[];
  adapter?: { dir: string; reloaded: RetrievalScores; identical: boolean };
}

export interface SearchDemoResult {
  datasets: DatasetResult[];
  skipped: { name: DatasetName; reason: string }[];
  json: string;
  chart: string;
  seconds: number;
}

function formatBytes(n: number): string {
  return n >= 2 ** 20 ? `${(n / 2 ** 20).toFixed(2)} MiB` : n >= 1024 ? `${(n / 1024).toFixed(1)} KiB` : `${n} B`;
}

const f3 = (v: number) => v.toFixed(3);
const signed = (v: number) => `${v >= 0 ? '+' : ''}${v.toFixed(3)}`;

function printTable(r: DatasetResult): void {
  const header = ['method', 'trainable', 'checkpoint', 'ms / step', 'epochs', 'nDCG@10', 'R@1', 'R@10', 'MRR@10', 'nDCG@10 gain [95 % CI]'];
  const b = r.before;
  const cells = [
    ['shipped model', '0', '0 B', '', '', f3(b.ndcg10), f3(b.recall1), f3(b.recall10), f3(b.mrr10), ''],
    ...r.rows.map((row) => [
      row.label,
      row.trainable.toLocaleString('en-US'),
      formatBytes(row.checkpointBytes),
      row.msPerStep.toFixed(2),
      `${row.bestEpoch}/${row.epochs}`,
      f3(row.test.ndcg10),
      f3(row.test.recall1),
      f3(row.test.recall10),
      f3(row.test.mrr10),
      `${signed(row.gain.difference)} [${signed(row.gain.low)}, ${signed(row.gain.high)}]`,
    ]),
  ];
  const widths = header.map((h, i) => Math.max(h.length, ...cells.map((c) => c[i].length)));
  const line = (c: string[]) => `| ${c.map((v, i) => (i === 0 ? v.padEnd(widths[i]) : v.padStart(widths[i]))).join(' | ')} |`;
  console.log(
    `\n${r.title}: ${r.pairs} pairs (train ${r.split.train}, validation ${r.split.validation}, test ${r.split.test} queries over all ${r.pairs} documents)`,
  );
  console.log(`${line(header)}\n|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`);
  for (const c of cells) console.log(line(c));
}

export async function searchDemo(opts: SearchDemoOptions): Promise<SearchDemoResult> {
  const started = performance.now();
  const log = (s: string) => !opts.quiet && console.log(s);
  const { cpu } = backends();
  const head = useHead();
  const identity = encoderIdentity();
  log(
    `lowrank semantic search: ${USE_LITE.name} (${head.baseModel}), adapters on its ${head.inFeatures} x ${head.outFeatures} head; ` +
      `training on the CPU (${cpu.isa}, ${cpu.threads} threads)`,
  );
  mkdirSync(opts.out, { recursive: true });
  let encoder: SentenceEncoder | undefined;
  const results: DatasetResult[] = [];
  const skipped: { name: DatasetName; reason: string }[] = [];
  try {
    for (const name of opts.datasets) {
      let ds: Dataset;
      try {
        ds = await loadDataset(name, {
          cacheDir: opts.cacheDir,
          maxPairs: opts.maxPairs,
          refresh: opts.refresh,
          log: opts.quiet ? undefined : log,
        });
      } catch (e) {
        if (!(e instanceof DatasetUnavailableError)) throw e;
        skipped.push({ name, reason: e.reason });
        log(`${name}: unavailable (${e.message}); skipping it`);
        continue;
      }
      const n = ds.pairs.length;
      const texts = [...ds.pairs.map((p) => p.query), ...ds.pairs.map((p) => p.document)];
      const t0 = performance.now();
      const enc = await pooledCached(texts, {
        cacheDir: opts.cacheDir,
        encoder: async () => (encoder ??= await SentenceEncoder.open({ workers: opts.workers })),
        progress: !opts.quiet,
        label: `encoding ${name}`,
      });
      const encodeSeconds = (performance.now() - t0) / 1000;
      log(
        `${name}: ${n} pairs; ${enc.cached ? 'pooled vectors from the cache' : `encoded ${texts.length} texts in ${encodeSeconds.toFixed(1)} s`}`,
      );
      const dim = head.inFeatures;
      const Q = enc.pooled.subarray(0, n * dim);
      const D = enc.pooled.subarray(n * dim);
      const train: PairVectors = { queries: gatherRows(Q, ds.split.train, dim), documents: gatherRows(D, ds.split.train, dim) };
      const documentTexts = ds.pairs.map((p) => p.document); // the same text is one document
      const validation = retrievalSet(Q, D, ds.split.validation, dim, documentTexts);
      const test = retrievalSet(Q, D, ds.split.test, dim, documentTexts);
      const shipped = new EmbeddingModel(head, 'full'); // untrained: the model as shipped
      const before = shipped.evaluate(test);
      const beforeValidation = shipped.evaluate(validation).mean;
      shipped.dispose();
      const rows: MethodRow[] = [];
      let bestLora: { model: EmbeddingModel; report: RetrievalReport } | undefined;
      for (const method of opts.methods) {
        const run = finetuneEmbeddings(head, train, { method, epochs: opts.epochs, validation, seed: opts.seed });
        const report = run.model.evaluate(test);
        rows.push({
          method,
          label: METHOD_LABELS[method],
          trainable: run.model.trainable,
          checkpointBytes: run.model.checkpointBytes,
          msPerStep: run.msPerStep,
          steps: run.steps,
          epochs: run.history.length,
          bestEpoch: run.bestEpoch,
          test: report.mean,
          gain: pairedBootstrap(before.perQuery.ndcg10, report.perQuery.ndcg10, { seed: opts.seed }),
          history: run.history,
        });
        log(
          `  ${METHOD_LABELS[method].padEnd(16)} nDCG@10 ${f3(before.mean.ndcg10)} → ${f3(report.mean.ndcg10)} (best epoch ${run.bestEpoch} of ${run.history.length})`,
        );
        if (method === 'lora') bestLora = { model: run.model, report };
        else run.model.dispose();
      }
      const result: DatasetResult = {
        name,
        title: DATASET_TITLES[name],
        pairs: n,
        split: { train: ds.split.train.length, validation: ds.split.validation.length, test: ds.split.test.length },
        source: ds.source,
        datasetCached: ds.cached,
        encodingsCached: enc.cached,
        encodeSeconds,
        before: before.mean,
        beforeValidation,
        rows,
      };
      if (bestLora) {
        // The adapter as a PEFT directory, loaded back into a fresh model: the same scores.
        const dir = path.join(opts.out, `${name}-lora`);
        bestLora.model.save(dir);
        bestLora.model.dispose();
        const reloaded = EmbeddingModel.load(head, dir);
        const again = reloaded.evaluate(test).mean;
        reloaded.dispose();
        const identical = (Object.keys(again) as (keyof RetrievalScores)[]).every((k) => again[k] === bestLora.report.mean[k]);
        result.adapter = { dir: path.resolve(dir), reloaded: again, identical };
        if (!identical) throw new Error(`the reloaded LoRA adapter in ${dir} does not reproduce its scores`);
      }
      if (!opts.quiet) printTable(result);
      if (result.adapter)
        log(`LoRA adapter (PEFT): ${result.adapter.dir} — reloaded, it reproduces nDCG@10 ${f3(result.adapter.reloaded.ndcg10)} exactly`);
      results.push(result);
    }
  } finally {
    await encoder?.close();
  }
  if (results.length === 0) throw new Error(`no dataset was available: ${skipped.map((s) => `${s.name}: ${s.reason}`).join('; ')}`);

  const curves = curvesChart(
    results.map((r) => ({
      title: `${r.title}: validation`,
      series: r.rows.map((row) => ({
        name: row.label,
        values: [r.beforeValidation.ndcg10, ...row.history.map((h) => h.validation!.ndcg10)],
      })),
    })),
    { yLabel: 'validation nDCG@10', xLabel: 'epoch (0: the shipped model)', log: false, first: 0 },
  );
  const bars = barsChart(
    results.map((r) => ({
      title: `${r.title}: test`,
      groups: r.rows.map((row) => ({ label: row.label, values: [r.before.ndcg10, row.test.ndcg10] })),
    })),
    ['shipped model', 'fine-tuned'],
    'test nDCG@10',
  );
  const chart = path.resolve(opts.out, 'chart.svg');
  writeFileSync(chart, stackCharts([curves, bars]));
  const seconds = (performance.now() - started) / 1000;
  const json = path.resolve(opts.out, 'results.json');
  const machine = { cpu: cpus()[0]?.model ?? 'unknown', cores: cpus().length, isa: cpu.isa, threads: cpu.threads, node: process.version };
  const doc = {
    date: new Date().toISOString(),
    machine,
    encoder: { name: USE_LITE.name, package: head.baseModel, integrity: identity.integrity, module: head.module },
    settings: { maxPairs: opts.maxPairs, epochs: opts.epochs, seed: opts.seed, loss: 'symmetric InfoNCE, scale 20', optimizer: 'AdamW' },
    datasets: results,
    skipped,
    seconds,
  };
  writeFileAtomic(json, JSON.stringify(doc, null, 1) + '\n');
  log(`\nchart: ${chart}\nresults: ${json}\ntotal ${seconds.toFixed(1)} s`);
  return { datasets: results, skipped, json, chart, seconds };
}

export const SEARCH_DEMO_HELP = `lowrank demo: fine-tune a pretrained sentence encoder for semantic search with full fine-tuning,
LoRA, LoRA-FA, VeRA, Delta-LoRA and LoRA+, and compare them on real retrieval data

Options:
  --datasets A,B   which sets, in order (default debian,wordnet; also manpages). One that cannot be
                   built here is skipped with its reason.
  --max-pairs N    pairs per dataset (default 1500)
  --epochs N       maximum epochs per method (default 20; early stopping on validation nDCG@10)
  --methods A,B    some of ${EMBEDDING_METHODS.join(',')} (default all)
  --out DIR        results folder: results.json, chart.svg, the LoRA adapters (default lowrank-search)
  --cache DIR      where datasets and pooled vectors are cached (default ${defaultCacheDir()})
  --workers N      encoder threads (default: one per core)
  --refresh        rebuild the datasets
  --seed N         (default 0)
  --quiet          print nothing
  --synthetic      the older comparison on a synthetic MLP task instead (its options: --synthetic --help)
  --help           this text`;

function positive(v: string, name: string): number {
  const n = Number(v);
  if (!Number.isSafeInteger(n) || n < 1) throw new RangeError(`Expected a positive integer for ${name} but received ${v}`);
  return n;
}

function listOf<T extends string>(v: string, allowed: readonly T[], name: string): T[] {
  const items = v.split(',').map((s) => s.trim());
  for (const it of items)
    if (!(allowed as readonly string[]).includes(it))
      throw new RangeError(`Expected a comma-separated list of ${allowed.join(', ')} for ${name} but received ${v}`);
  return items as T[];
}

/** Parses the options above; undefined after printing --help. */
export function parseSearchDemoArgs(argv: string[]): SearchDemoOptions | undefined {
  const { values } = parseArgs({
    args: argv,
    options: {
      datasets: { type: 'string', default: 'debian,wordnet' },
      'max-pairs': { type: 'string', default: '1500' },
      epochs: { type: 'string', default: '20' },
      methods: { type: 'string', default: EMBEDDING_METHODS.join(',') },
      out: { type: 'string', default: 'lowrank-search' },
      cache: { type: 'string' },
      workers: { type: 'string' },
      refresh: { type: 'boolean', default: false },
      seed: { type: 'string', default: '0' },
      quiet: { type: 'boolean', default: false },
      help: { type: 'boolean', default: false },
    },
  });
  if (values.help) {
    console.log(SEARCH_DEMO_HELP);
    return undefined;
  }
  const seed = Number(values.seed);
  if (!Number.isSafeInteger(seed) || seed < 0)
    throw new RangeError(`Expected a non-negative integer for --seed but received ${values.seed}`);
  return {
    datasets: listOf(values.datasets, DATASET_NAMES, '--datasets'),
    maxPairs: positive(values['max-pairs'], '--max-pairs'),
    epochs: positive(values.epochs, '--epochs'),
    methods: listOf(values.methods, EMBEDDING_METHODS, '--methods'),
    out: values.out,
    cacheDir: values.cache ?? defaultCacheDir(),
    workers: values.workers === undefined ? undefined : positive(values.workers, '--workers'),
    refresh: values.refresh,
    quiet: values.quiet,
    seed,
  };
}
