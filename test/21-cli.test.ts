// The `lowrank` command line, run as users run it (node dist/cli/main.js, built here with tsc):
// --help for every command, inspect, merge of a sharded base (one file and mirrored shards),
// key mapping with and without "model.", VeRA regenerated from its seed, bad arguments, and the
// peak memory of a streamed merge. Fixtures are assembled byte by byte from the safetensors
// format, independent of lowrank's reader and writer.
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { checkpoint, type MergeReport, peft } from '../lib/index.js';
import { bf16Value, errorOf, matmulNN, randomF32, relErr } from './helpers/reference.js';
import { type FixtureTensor, fromBf16Bits, parseSafetensors, safetensorsBytes, toBf16Bits } from './helpers/safetensors-fixture.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const main = path.join(root, 'dist', 'cli', 'main.js');
const tmp = mkdtempSync(path.join(os.tmpdir(), 'lowrank-cli-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

beforeAll(() => {
  // Refresh dist/ (tsc emits even when another file has a type error; the CLI test needs only its own files).
  const r = spawnSync(process.execPath, [path.join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', 'tsconfig.json'], {
    cwd: root,
    encoding: 'utf8',
  });
  if (r.status !== 0) console.warn(`tsc reported problems (dist/ was still written):\n${r.stdout}${r.stderr}`);
});

function cli(args: string[], env: Record<string, string> = {}) {
  const r = spawnSync(process.execPath, [main, ...args], { cwd: tmp, encoding: 'utf8', env: { ...process.env, ...env } });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

// ---- fixtures --------------------------------------------------------------------------------

const IN = 32,
  R = 4;
const Q = 'model.layers.0.self_attn.q_proj',
  V = 'model.layers.0.self_attn.v_proj';
const OUT: Record<string, number> = { [Q]: 32, [V]: 16 };
const Wq = randomF32(OUT[Q] * IN, 1, 0.2);
const Wv = toBf16Bits(randomF32(OUT[V] * IN, 2, 0.2)); // v_proj stored as bfloat16
const embed = randomF32(64 * IN, 3);
const norm = randomF32(IN, 4);
const qBias = randomF32(OUT[Q], 5);
const positions = BigInt64Array.from({ length: 8 }, (_, i) => BigInt(i));

/** The base model's tensors; `prefix` is "model." for LlamaForCausalLM's keys, "" for LlamaModel's. */
function baseShards(prefix: string): FixtureTensor[][] {
  const k = (name: string) => prefix + name.replace(/^model\./, '');
  return [
    [
      { name: k('model.embed_tokens.weight'), dtype: 'F32', shape: [64, IN], data: embed },
      { name: k(`${Q}.weight`), dtype: 'F32', shape: [OUT[Q], IN], data: Wq },
      { name: k(`${Q}.bias`), dtype: 'F32', shape: [OUT[Q]], data: qBias },
    ],
    [
      { name: k(`${V}.weight`), dtype: 'BF16', shape: [OUT[V], IN], data: Wv },
      { name: k('model.norm.weight'), dtype: 'F32', shape: [IN], data: norm },
      { name: k('model.position_ids'), dtype: 'I64', shape: [8], data: positions },
    ],
  ];
}

/** Two shards and model.safetensors.index.json, as transformers writes a sharded checkpoint. */
function writeShardedBase(dir: string, shards: FixtureTensor[][]): void {
  mkdirSync(dir, { recursive: true });
  const weightMap: Record<string, string> = {};
  let total = 0;
  shards.forEach((entries, i) => {
    const file = `model-0000${i + 1}-of-0000${shards.length}.safetensors`;
    writeFileSync(path.join(dir, file), safetensorsBytes(entries));
    for (const e of entries) {
      weightMap[e.name] = file;
      total += e.data.byteLength;
    }
  });
  writeFileSync(
    path.join(dir, 'model.safetensors.index.json'),
    JSON.stringify({ metadata: { total_size: total }, weight_map: weightMap }, null, 2),
  );
}

const A: Record<string, Float32Array> = { [Q]: randomF32(R * IN, 10, 0.2), [V]: randomF32(R * IN, 11, 0.2) };
const B: Record<string, Float32Array> = { [Q]: randomF32(OUT[Q] * R, 12, 0.2), [V]: randomF32(OUT[V] * R, 13, 0.2) };
const SCALE = 16 / R;

function writeLoraAdapter(dir: string): string {
  mkdirSync(dir, { recursive: true });
  const config = {
    base_model_name_or_path: 'tiny-llama',
    bias: 'none',
    fan_in_fan_out: false,
    inference_mode: true,
    lora_alpha: 16,
    lora_dropout: 0.0,
    peft_type: 'LORA',
    r: R,
    target_modules: ['q_proj', 'v_proj'],
    task_type: 'CAUSAL_LM',
    use_rslora: false,
  };
  writeFileSync(path.join(dir, 'adapter_config.json'), JSON.stringify(config, null, 2));
  writeFileSync(
    path.join(dir, 'adapter_model.safetensors'),
    safetensorsBytes(
      [Q, V].flatMap((m): FixtureTensor[] => [
        { name: `base_model.model.${m}.lora_A.weight`, dtype: 'F32', shape: [R, IN], data: A[m] },
        { name: `base_model.model.${m}.lora_B.weight`, dtype: 'F32', shape: [OUT[m], R], data: B[m] },
      ]),
    ),
  );
  return dir;
}

function loraMerged(m: string, W: Float32Array): Float64Array {
  const ba = matmulNN(B[m], A[m], OUT[m], IN, R);
  return Float64Array.from(W, (w, i) => w + SCALE * ba[i]);
}

function nearestBf16(got: Float32Array, ref: Float64Array): string | null {
  for (let i = 0; i < ref.length; i++) {
    const want = bf16Value(ref[i]);
    if (Object.is(got[i], want)) continue;
    if (Math.abs(ref[i] - (got[i] + want) / 2) > 1e-6 * Math.abs(ref[i])) return `element ${i}: ${got[i]} vs ${want} (${ref[i]})`;
  }
  return null;
}

const baseDir = path.join(tmp, 'base');
const adapterDir = path.join(tmp, 'adapter');
writeShardedBase(baseDir, baseShards('model.'));
writeLoraAdapter(adapterDir);

// ---- tests -----------------------------------------------------------------------------------

describe('lowrank --help', () => {
  it('lowrank alone prints the usage and exits 2; --help exits 0', () => {
    const none = cli([]);
    expect(none.status).toBe(2);
    expect(none.stderr).toContain('Usage: lowrank <command> [options]');
    const help = cli(['--help']);
    expect(help.status).toBe(0);
    for (const c of ['merge', 'inspect', 'demo', 'finetune-embeddings', 'bench']) expect(help.stdout).toMatch(new RegExp(`^  ${c} `, 'm'));
    expect(cli(['--version']).stdout.trim()).toBe(
      (JSON.parse(readFileSync(path.join(root, 'package.json'), 'utf8')) as { version: string }).version,
    );
  });

  it.each([
    ['merge', 'lowrank merge --base <model> --adapter <dir> --out <path> [options]'],
    ['inspect', 'lowrank inspect <adapter dir | file.safetensors> [--json]'],
    ['demo', '--max-pairs N'],
    ['finetune-embeddings', 'lowrank finetune-embeddings (--pairs <data.jsonl>'],
    ['bench', 'lowrank bench [--quick]'],
  ])('lowrank %s --help exits 0 with its usage', (command, usage) => {
    const r = cli([command, '--help']);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toContain(usage);
  });
});

describe('lowrank inspect', () => {
  it('an adapter directory: method, rank, alpha, scale, targets, layer shapes, parameters', () => {
    const r = cli(['inspect', adapterDir]);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toContain('PEFT LoRA adapter');
    expect(r.stdout).toMatch(/^ {2}rank {18}4$/m);
    expect(r.stdout).toMatch(/^ {2}alpha {17}16$/m);
    expect(r.stdout).toMatch(/^ {2}scale {17}4 \(alpha \/ r\)$/m);
    expect(r.stdout).toMatch(/^ {2}target modules {8}q_proj, v_proj$/m);
    expect(r.stdout).toMatch(/^ {2}trainable parameters {2}448$/m); // 2·4·32 + 32·4 + 16·4
    expect(r.stdout).toMatch(new RegExp(`^  ${Q.replace(/\./g, '\\.')} +\\[4, 32\\] +\\[32, 4\\] +4 +4$`, 'm'));
    const json = JSON.parse(cli(['inspect', adapterDir, '--json']).stdout) as Pick<
      peft.AdapterSummary,
      'kind' | 'rank' | 'alpha' | 'scale' | 'layers'
    >;
    expect([json.kind, json.rank, json.alpha, json.scale, json.layers.length]).toEqual(['lora', 4, 16, 4, 2]);
  });

  it('a safetensors file: entries, dtypes, shapes, metadata', () => {
    const r = cli(['inspect', path.join(baseDir, 'model-00002-of-00002.safetensors')]);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toContain('safetensors, 3 tensors');
    expect(r.stdout).toMatch(/metadata {14}format="pt"/);
    expect(r.stdout).toMatch(/model\.position_ids +I64 +\[8\]/);
    expect(r.stdout).toMatch(/model\.layers\.0\.self_attn\.v_proj\.weight +BF16 +\[16, 32\]/);
  });
});

describe('lowrank merge', () => {
  const inputs = [0, 1].map((i) => parseSafetensors(path.join(baseDir, `model-0000${i + 1}-of-00002.safetensors`)));
  const inputOf = (name: string) => inputs.find((s) => s.header[name])!;

  /** The adapted weights of output files (one, or mirrored shards) against the float64 reference. */
  function checkMerged(files: string[], prefix = 'model.') {
    const parsed = files.map(parseSafetensors);
    const find = (n: string) => parsed.find((s) => s.header[n])!;
    const k = (n: string) => prefix + n.replace(/^model\./, '');
    expect(relErr(find(k(`${Q}.weight`)).f32(k(`${Q}.weight`)), loraMerged(Q, Wq))).toBeLessThan(1e-6);
    expect(find(k(`${V}.weight`)).header[k(`${V}.weight`)].dtype).toBe('BF16');
    expect(nearestBf16(find(k(`${V}.weight`)).f32(k(`${V}.weight`)), loraMerged(V, fromBf16Bits(Wv)))).toBeNull();
  }

  it('a sharded base into one file: adapted weights = W + delta, everything else byte-identical', () => {
    const out = path.join(tmp, 'merged.safetensors');
    const r = cli(['merge', '--base', baseDir, '--adapter', adapterDir, '--out', out, '--json']);
    expect(r.status, r.stderr).toBe(0);
    const report = JSON.parse(r.stdout) as MergeReport;
    expect([report.merged, report.copied, report.converted, report.tensors]).toEqual([2, 4, 0, 6]);
    const merged = parseSafetensors(out);
    expect(merged.metadata).toEqual({ format: 'pt' });
    expect(merged.names).toEqual([...inputs[0].names, ...inputs[1].names].sort());
    checkMerged([out]);
    for (const n of merged.names.filter((n) => !n.endsWith('_proj.weight'))) {
      expect(merged.header[n]).toMatchObject({ dtype: inputOf(n).header[n].dtype, shape: inputOf(n).header[n].shape });
      expect(Buffer.compare(merged.bytes(n), inputOf(n).bytes(n)), n).toBe(0);
    }
  });

  it('into a directory: mirrored shards and model.safetensors.index.json; plain progress lines off a TTY', () => {
    const out = path.join(tmp, 'merged-dir');
    const r = cli(['merge', '--base', path.join(baseDir, 'model.safetensors.index.json'), '--adapter', adapterDir, '--out', out]);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^merge: 100% \(6\/6 tensors, /m);
    expect(r.stdout).toMatch(/^merged 2 adapted weights; copied 4 tensors unchanged \(6 in all\)$/m);
    expect(r.stdout).toMatch(/^peak RSS .+ \(largest tensor 8\.00 KiB\)$/m);
    expect(readdirSync(out).sort()).toEqual([
      'model-00001-of-00002.safetensors',
      'model-00002-of-00002.safetensors',
      'model.safetensors.index.json',
    ]);
    const index: unknown = JSON.parse(readFileSync(path.join(out, 'model.safetensors.index.json'), 'utf8'));
    const inIndex: unknown = JSON.parse(readFileSync(path.join(baseDir, 'model.safetensors.index.json'), 'utf8'));
    expect(index).toEqual(inIndex);
    for (const [i, shard] of ['model-00001-of-00002.safetensors', 'model-00002-of-00002.safetensors'].entries()) {
      const s = parseSafetensors(path.join(out, shard));
      expect(s.names).toEqual(inputs[i].names);
      for (const n of s.names.filter((n) => !n.endsWith('_proj.weight'))) expect(Buffer.compare(s.bytes(n), inputs[i].bytes(n)), n).toBe(0);
    }
    checkMerged(['model-00001-of-00002.safetensors', 'model-00002-of-00002.safetensors'].map((f) => path.join(out, f)));
  });

  it('a base whose keys lack "model." (LlamaModel) maps the same modules', () => {
    const dir = path.join(tmp, 'base-no-prefix');
    writeShardedBase(dir, baseShards(''));
    const out = path.join(tmp, 'merged-no-prefix.safetensors');
    const r = cli(['merge', '--base', dir, '--adapter', adapterDir, '--out', out, '--quiet']);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toBe('');
    checkMerged([out], '');
  });

  it('--dtype bfloat16 converts every floating-point tensor, integers stay as they are', () => {
    const out = path.join(tmp, 'merged-bf16.safetensors');
    const r = cli(['merge', '--base', baseDir, '--adapter', adapterDir, '--out', out, '--dtype', 'bfloat16', '--json']);
    expect(r.status, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ merged: 2, converted: 3, copied: 1 });
    const s = parseSafetensors(out);
    expect(s.names.map((n) => s.header[n].dtype)).toEqual(s.names.map((n) => (n.endsWith('position_ids') ? 'I64' : 'BF16')));
    expect(nearestBf16(s.f32(`${Q}.weight`), loraMerged(Q, Wq))).toBeNull();
    expect(Array.from(s.f32('model.norm.weight'))).toEqual(Array.from(fromBf16Bits(toBf16Bits(norm))));
  });

  it('VeRA saved without projections: regenerated at the size the base gives (max in from its headers)', () => {
    const dir = path.join(tmp, 'vera-adapter');
    mkdirSync(dir, { recursive: true });
    const lambda: Record<string, { d: Float32Array; b: Float32Array }> = {
      [Q]: { d: randomF32(R, 20), b: randomF32(OUT[Q], 21) },
      [V]: { d: randomF32(R, 22), b: randomF32(OUT[V], 23) },
    };
    writeFileSync(
      path.join(dir, 'adapter_config.json'),
      JSON.stringify({
        peft_type: 'VERA',
        r: R,
        projection_prng_key: 7,
        save_projection: false,
        target_modules: ['q_proj', 'v_proj'],
        d_initial: 0.1,
      }),
    );
    writeFileSync(
      path.join(dir, 'adapter_model.safetensors'),
      safetensorsBytes(
        [Q, V].flatMap((m): FixtureTensor[] => [
          { name: `base_model.model.${m}.vera_lambda_b`, dtype: 'F32', shape: [OUT[m]], data: lambda[m].b },
          { name: `base_model.model.${m}.vera_lambda_d`, dtype: 'F32', shape: [R], data: lambda[m].d },
        ]),
      ),
    );
    expect(cli(['inspect', dir]).stdout).toContain('not saved (regenerated from the seed)');
    const out = path.join(tmp, 'merged-vera.safetensors');
    const r = cli(['merge', '--base', baseDir, '--adapter', dir, '--out', out, '--json']);
    expect(r.status, r.stderr).toBe(0);
    const proj = peft.veraProjections({ seed: 7, rank: R, maxIn: IN, maxOut: OUT[Q] });
    const pa = proj.A.toFloat32Array(),
      pb = proj.B.toFloat32Array();
    const ref = Float64Array.from(Wq);
    for (let o = 0; o < OUT[Q]; o++)
      for (let i = 0; i < IN; i++)
        for (let j = 0; j < R; j++) ref[o * IN + i] += lambda[Q].b[o] * pb[o * R + j] * lambda[Q].d[j] * pa[j * IN + i];
    expect(relErr(parseSafetensors(out).f32(`${Q}.weight`), ref)).toBeLessThan(1e-6);
  });

  it('bad arguments exit 2 with an "Expected ..." message', () => {
    const cases: Array<[string[], string]> = [
      [['merge', '--base', baseDir], 'lowrank merge: Expected --adapter <dir> for lowrank merge but received nothing'],
      [
        ['merge', '--base', baseDir, '--adapter', adapterDir, '--out', 'x.safetensors', '--dtype', 'float64'],
        'lowrank merge: Expected float32, bfloat16, float16 for --dtype but received "float64"',
      ],
      [
        ['merge', '--bas', baseDir],
        'lowrank merge: Expected one of --base, --adapter, --out, --dtype, --device, --json, --quiet, --help for an option of lowrank merge but received "--bas"',
      ],
      [['merge', '--base', '--adapter', adapterDir], 'lowrank merge: Expected a value for --base but received the option "--adapter"'],
      [
        ['inspect'],
        'lowrank inspect: Expected one path (an adapter directory or a .safetensors file) for lowrank inspect but received none',
      ],
      [['frobnicate'], 'lowrank: Expected a command (merge, inspect, demo, finetune-embeddings, bench) but received "frobnicate"'],
      [
        ['demo', '--synthetic', '--stepz', '3'],
        'lowrank demo: Expected one of --synthetic, --steps, --out, --device, --quiet, --help for an option of lowrank demo but received "--stepz"',
      ],
      [
        ['demo', '--stepz', '3'],
        'lowrank demo: Expected one of --datasets, --max-pairs, --epochs, --methods, --out, --cache, --workers, --refresh, --seed, --quiet, --synthetic, --help for an option of lowrank demo but received "--stepz"',
      ],
      [
        ['demo', '--datasets', 'imdb'],
        'lowrank demo: Expected a comma-separated list of debian, manpages, wordnet for --datasets but received imdb',
      ],
    ];
    for (const [args, message] of cases) {
      const r = cli(args);
      expect(r.status, args.join(' ')).toBe(2);
      expect(r.stderr.split('\n')[0]).toBe(message);
    }
  });

  it('failures exit 1: CUDA unavailable, a module the base lacks, a missing base', () => {
    const cuda = cli(['merge', '--base', baseDir, '--adapter', adapterDir, '--out', path.join(tmp, 'c.safetensors'), '--device', 'cuda']);
    expect(cuda.status).toBe(1);
    expect(cuda.stderr).toMatch(/^lowrank merge: Expected an available device for --device but received "cuda" \(.+\)$/m);
    const other = path.join(tmp, 'other-base.safetensors');
    writeFileSync(other, safetensorsBytes([{ name: 'lm_head.weight', dtype: 'F32', shape: [2, 2], data: new Float32Array(4) }]));
    const missing = cli(['merge', '--base', other, '--adapter', adapterDir, '--out', path.join(tmp, 'm.safetensors')]);
    expect(missing.status).toBe(1);
    expect(missing.stderr.trim()).toBe(
      `lowrank merge: Expected a base tensor for every adapted layer (<module>.weight) of the adapter (with or without leading components such as "model.") for --base but received none for "${Q}.weight", "${V}.weight"`,
    );
    const none = cli(['merge', '--base', path.join(tmp, 'nope'), '--adapter', adapterDir, '--out', path.join(tmp, 'n.safetensors')]);
    expect(none.status).toBe(1);
    expect(none.stderr.trim()).toBe(
      `lowrank merge: Expected a .safetensors file or a model directory for --base but received "${path.join(tmp, 'nope')}" (no such file or directory)`,
    );
    // The library function the command runs throws what it prints (test/24-checkpoint.test.ts tests the library).
    for (const [r, base] of [
      [missing, other],
      [none, path.join(tmp, 'nope')],
    ] as const) {
      const e = errorOf(() => checkpoint.mergeCheckpoint({ base, adapter: adapterDir, out: path.join(tmp, 'lib.safetensors') }));
      expect(`lowrank merge: ${e.message}`).toBe(r.stderr.trim());
      expect(e.cls).toBe('RangeError');
    }
    expect(readdirSync(tmp).filter((f) => f.startsWith('m.safetensors') || f.startsWith('c.safetensors'))).toEqual([]);
  });
});

describe('lowrank merge memory', () => {
  // 64 MiB in 16 tensors of 4 MiB: a merge that held the checkpoint would grow by 64 MiB or more.
  it('a 64 MiB base: peak RSS under 2 × the largest tensor + 150 MiB, growth under 2 × the largest + 32 MiB', () => {
    const N = 1024,
      LAYERS = 4,
      MiB = 1024 * 1024;
    const dir = path.join(tmp, 'big');
    mkdirSync(dir, { recursive: true });
    const fill = (seed: number) => {
      const v = new Float32Array(N * N);
      for (let i = 0; i < v.length; i++) v[i] = (((i * 2654435761 + seed * 40503) >>> 8) % 2001) * 1e-4 - 0.1;
      return v;
    };
    const names = Array.from({ length: LAYERS }, (_, l) =>
      ['self_attn.q_proj', 'self_attn.v_proj', 'mlp.up_proj', 'mlp.down_proj'].map((p) => `model.layers.${l}.${p}.weight`),
    ).flat();
    writeFileSync(
      path.join(dir, 'model.safetensors'),
      safetensorsBytes(names.map((name, i) => ({ name, dtype: 'F32', shape: [N, N], data: fill(i) }))),
    );
    const adapter = path.join(tmp, 'big-adapter');
    mkdirSync(adapter, { recursive: true });
    writeFileSync(
      path.join(adapter, 'adapter_config.json'),
      JSON.stringify({ peft_type: 'LORA', r: 8, lora_alpha: 16, target_modules: ['q_proj', 'v_proj'] }),
    );
    const a = randomF32(8 * N, 30, 0.02),
      b = randomF32(N * 8, 31, 0.02);
    writeFileSync(
      path.join(adapter, 'adapter_model.safetensors'),
      safetensorsBytes(
        Array.from({ length: LAYERS }, (_, l) => ['q_proj', 'v_proj'].map((p) => `base_model.model.model.layers.${l}.self_attn.${p}`))
          .flat()
          .flatMap((m): FixtureTensor[] => [
            { name: `${m}.lora_A.weight`, dtype: 'F32', shape: [8, N], data: a },
            { name: `${m}.lora_B.weight`, dtype: 'F32', shape: [N, 8], data: b },
          ]),
      ),
    );
    const out = path.join(tmp, 'big-merged.safetensors');
    const r = cli(['merge', '--base', dir, '--adapter', adapter, '--out', out, '--json']);
    expect(r.status, r.stderr).toBe(0);
    const report = JSON.parse(r.stdout) as MergeReport;
    const limit = 2 * report.largestTensorBytes + 150 * MiB;
    const growth = report.peakRssBytes - report.startRssBytes;
    console.log(
      `merge of ${(report.bytesRead / MiB).toFixed(0)} MiB (largest tensor ${(report.largestTensorBytes / MiB).toFixed(0)} MiB) in ${report.seconds.toFixed(2)} s: ` +
        `peak RSS ${(report.peakRssBytes / MiB).toFixed(1)} MiB (limit ${(limit / MiB).toFixed(0)} MiB), ` +
        `${(growth / MiB).toFixed(1)} MiB above the ${(report.startRssBytes / MiB).toFixed(1)} MiB at its start`,
    );
    expect([report.merged, report.copied]).toEqual([8, 8]);
    expect(report.largestTensorBytes).toBe(4 * MiB);
    expect(report.peakRssBytes).toBeLessThan(limit);
    expect(growth).toBeLessThan(2 * report.largestTensorBytes + 32 * MiB);
    // spot-check a merged row against W + s·B A, and an unchanged tensor
    const merged = parseSafetensors(out);
    const row = 777,
      W = fill(names.indexOf('model.layers.2.self_attn.v_proj.weight'));
    const got = merged.f32('model.layers.2.self_attn.v_proj.weight').subarray(row * N, (row + 1) * N);
    const ref = Float64Array.from({ length: N }, (_, i) => {
      let s = 0;
      for (let j = 0; j < 8; j++) s += b[row * 8 + j] * a[j * N + i];
      return W[row * N + i] + 2 * s;
    });
    expect(relErr(got, ref)).toBeLessThan(1e-6);
    expect(
      Buffer.from(merged.bytes('model.layers.3.mlp.up_proj.weight')).equals(
        Buffer.from(fill(names.indexOf('model.layers.3.mlp.up_proj.weight')).buffer),
      ),
    ).toBe(true);
    rmSync(dir, { recursive: true, force: true });
    rmSync(out, { force: true });
  });
});
