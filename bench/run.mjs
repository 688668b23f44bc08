#!/usr/bin/env node
// npm run bench [-- --quick] [-- --shapes S,M,M64] [-- --threads N] [-- --no-ort]
// npm run bench -- --device cuda [--quick] [--shapes G,G64]
//
// CPU (the default): measures this machine's FMA peak and copy bandwidth, then times lowrank's
// CPU kernels at the shapes of README.md's Performance section beside onnxruntime-node running the same forward
// graph with the same thread count. Prints medians and ratios; writes bench/results/<date>.json.
//
// CUDA (--device cuda): times the same ops on the first GPU at the GPU shape of README.md's Performance section (T = 8192, 4096 × 4096, r = 16)
// (T = 8192, 4096 × 4096, r = 16) with bfloat16 and float32 activations and weights, beside the
// base product alone; prints medians, TFLOP/s and ratios to the base product and to the floors
// (the vendor's peak figures and the measured device copy bandwidth); writes
// bench/results/<date>-cuda.json. Refuses with the backend's reason when no device is usable.
import { mkdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import * as api from '../dist/index.js';
import { backends, deltaLora, linear, lora, optim, randn, setThreads, tensor, Tensor, vera } from '../dist/index.js';
import { native } from '../dist/native.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const { values: args } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    shapes: { type: 'string' },
    threads: { type: 'string' },
    'no-ort': { type: 'boolean', default: false },
    out: { type: 'string' },
    device: { type: 'string', default: 'cpu' },
  },
});
if (args.device !== 'cpu' && args.device !== 'cuda')
  throw new RangeError(`Expected 'cpu' or 'cuda' for --device but received ${args.device}`);

const SHAPES = {
  S: { t: 512, inDim: 1024, out: 1024, r: 16 },
  M: { t: 2048, inDim: 4096, out: 4096, r: 16 },
  M64: { t: 2048, inDim: 4096, out: 4096, r: 64 },
  // --quick: small enough for a smoke run in seconds.
  Q: { t: 128, inDim: 256, out: 192, r: 8 },
};
const threads = args.threads ? setThreads(Number(args.threads)) : backends().cpu.threads;
const minReps = args.quick ? 3 : 7; // rounds: more of them steady the medians on a noisy VM
const minSeconds = args.quick ? 0.2 : 1.0;

function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/**
 * Runs the functions of `group` round-robin (after one warm-up round) so each sees the same
 * machine conditions; returns the median milliseconds of each and, for each, the median of its
 * per-round ratio to the first function. `after(name, result)` runs untimed after each call.
 */
async function timeGroup(group, after = () => {}) {
  const names = Object.keys(group);
  const times = Object.fromEntries(names.map((n) => [n, []]));
  const ratios = Object.fromEntries(names.map((n) => [n, []]));
  for (const n of names) after(n, await group[n]());
  const started = performance.now();
  for (let round = 0; round < 50; round++) {
    if (round >= minReps && (performance.now() - started) / 1000 >= minSeconds * names.length) break;
    for (const n of names) {
      const t0 = performance.now();
      const r = await group[n]();
      times[n].push(performance.now() - t0);
      after(n, r);
    }
    for (const n of names) ratios[n].push(times[n][round] / times[names[0]][round]);
  }
  return Object.fromEntries(names.map((n) => [n, { ms: median(times[n]), ratio: median(ratios[n]) }]));
}

/** Median milliseconds of fn() after a warm-up; `after` runs untimed after each call. */
async function time(fn, after = () => {}) {
  after(await fn());
  const times = [];
  const started = performance.now();
  while (times.length < minReps || (performance.now() - started) / 1000 < minSeconds) {
    const t0 = performance.now();
    const r = await fn();
    times.push(performance.now() - t0);
    after(r);
    if (times.length >= 50) break;
  }
  return median(times);
}

/** A Markdown table, after a blank line. */
function printTable(header, table) {
  const widths = header.map((h, i) => Math.max(h.length, ...table.map((row) => row[i].length)));
  const line = (cells) => `| ${cells.map((c, i) => c.padEnd(widths[i])).join(' | ')} |`;
  console.log(`\n${line(header)}\n|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`);
  for (const row of table) console.log(line(row));
}

/** Writes the results to --out, else bench/results/<date><suffix>.json. */
function writeResult(result, suffix) {
  const file = args.out ?? path.join(here, 'results', `${result.date.slice(0, 19).replace(/[:T]/g, '-')}${suffix}.json`);
  mkdirSync(path.dirname(file), { recursive: true });
  writeFileSync(file, `${JSON.stringify(result, null, 2)}\n`);
  console.log(`\nwritten ${path.relative(process.cwd(), file)}`);
}

/**
 * A training step to time: forward, then backward from its saved state, then dispose of every
 * result. The bytes each method keeps for backward go into `kept[label]`.
 */
function trainingStep(kept) {
  return (label, fwd, bwd) => () => {
    const res = fwd();
    kept[label] = res.saved.bytes;
    const g = bwd(res.saved);
    res.y.dispose();
    res.saved.dispose();
    for (const t of Object.values(g)) t?.dispose?.();
  };
}

/** The CPU benchmark: README.md's Performance shapes, fp32, with onnxruntime-node beside it. */
async function benchCpu() {
  const shapeNames = (args.shapes ?? (args.quick ? 'Q,S' : 'S,M,M64')).split(',');
  for (const s of shapeNames) if (!SHAPES[s]) throw new RangeError(`Expected one of ${Object.keys(SHAPES)} for --shapes but received ${s}`);
  const n = native();
  const { isa, caches, blocking } = backends().cpu;
  const kib = (b) => `${Math.round(b / 1024)} KiB`;
  console.log(`lowrank bench: ${os.cpus()[0]?.model ?? 'unknown CPU'}, ${threads} threads, kernels ${isa}`);
  console.log(
    `caches L1d ${kib(caches.l1d)}, L2 ${kib(caches.l2)}, L3 ${kib(caches.l3)} (${caches.source}); ` +
      `blocking ${blocking.mr}x${blocking.nr} kernel, kc ${blocking.kc}, mc ${blocking.mc}, nc ${blocking.nc} (${blocking.rule})`,
  );
  const peak = n.probePeak(args.quick ? 0.3 : 1.0);
  const bandwidth = n.probeBandwidth(256 * 2 ** 20, args.quick ? 2 : 5);
  console.log(
    `measured FMA peak ${peak.gflops.toFixed(1)} GFLOP/s (${peak.isa}), copy bandwidth ${bandwidth.toFixed(1)} GB/s (read + write)\n`,
  );

  let ort = null;
  let loraForwardModel = null; // onnx-graph.mjs needs onnx-proto, a devDependency like onnxruntime-node
  if (!args['no-ort']) {
    try {
      ort = await import('onnxruntime-node');
      ({ loraForwardModel } = await import('./onnx-graph.mjs'));
    } catch (e) {
      console.log(`onnxruntime-node unavailable (${e.message.split('\n')[0]}); its column stays empty\n`);
    }
  }

  async function ortSession(model) {
    return ort.InferenceSession.create(model, {
      intraOpNumThreads: threads,
      interOpNumThreads: 1,
      graphOptimizationLevel: 'all',
      executionMode: 'sequential',
    });
  }

  const rows = [];
  let blasMissing = null; // why OpenBLAS could not be timed, once known
  function record(shape, name, ms, flops, extra = {}) {
    const gflops = flops / (ms / 1000) / 1e9;
    rows.push({ shape, name, ms, gflops, peakPct: (100 * gflops) / peak.gflops, ...extra });
  }

  for (const name of shapeNames) {
    const { t, inDim, out, r } = SHAPES[name];
    const scale = 2;
    console.log(`shape ${name}: T=${t} in=${inDim} out=${out} r=${r}`);
    const x = randn([t, inDim], { seed: 1 });
    const W = randn([out, inDim], { seed: 2, std: 1 / Math.sqrt(inDim) });
    const A = randn([r, inDim], { seed: 3, std: 1 / Math.sqrt(inDim) });
    const B = randn([out, r], { seed: 4, std: 0.1 });
    const dy = randn([t, out], { seed: 5 });
    const y = new Float32Array(t * out);
    const baseFlops = 2 * t * inDim * out;
    const fwdFlops = baseFlops + 2 * t * inDim * r + 2 * t * out * r;
    const bwdFlops = 2 * t * out * inDim + 2 * t * r * (2 * out + 2 * inDim);
    const bwdFaFlops = 2 * t * out * inDim + 2 * t * r * (2 * out + inDim);

    const xs = x.storage(),
      Ws = W.storage();
    const release = (res) => {
      res.y.dispose();
      res.saved.dispose();
    };
    let savedBytes = 0,
      savedBytesFa = 0;
    const trainStep = (frozenA) => () => {
      const res = lora.forward(x, W, A, B, { scale, frozenA });
      if (frozenA) savedBytesFa = res.saved.bytes;
      else savedBytes = res.saved.bytes;
      const g = lora.backward(dy, res.saved);
      release(res);
      for (const k of ['dx', 'dA', 'dB']) g[k]?.dispose();
    };
    const base = () =>
      n._gemm({
        m: t,
        n: out,
        terms: [{ a: xs, lda: inDim, ta: false, b: Ws, ldb: inDim, tb: true, k: inDim, alpha: 1 }],
        c: y,
        ldc: out,
        beta: 0,
        bias: null,
        reference: false,
      });
    // The base product, forward and training steps interleaved: their ratios come from rounds
    // that ran under the same conditions.
    const W16 = W.astype('bfloat16');
    const g = await timeGroup(
      {
        base,
        forward: () => lora.forward(x, W, A, B, { scale }),
        forwardBf16: () => lora.forward(x, W16, A, B, { scale }),
        train: trainStep(false),
        trainFa: trainStep(true),
      },
      (name, res) => (name === 'forward' || name === 'forwardBf16') && release(res),
    );
    W16.dispose();
    record(name, 'base product x·Wᵀ', g.base.ms, baseFlops, { ratioBase: 1 });
    record(name, 'LoRA forward', g.forward.ms, fwdFlops, { ratioBase: g.forward.ratio });
    record(name, 'LoRA forward, bfloat16 W', g.forwardBf16.ms, fwdFlops, { ratioBase: g.forwardBf16.ratio });
    record(name, 'LoRA forward + backward', g.train.ms, fwdFlops + bwdFlops, { ratioBase: g.train.ratio, savedBytes });
    record(name, 'LoRA-FA forward + backward', g.trainFa.ms, fwdFlops + bwdFaFlops, {
      ratioBase: g.trainFa.ratio,
      savedBytes: savedBytesFa,
    });
    const mergeMs = await time(
      () => lora.merge(W, A, B, scale),
      () => lora.unmerge(W, A, B, scale),
    );
    const mergeFlops = 2 * out * inDim * r;
    const floorMs = 1000 * Math.max(mergeFlops / (peak.gflops * 1e9), (2 * out * inDim * 4) / (bandwidth * 1e9));
    record(name, 'merge W += s·B·A', mergeMs, mergeFlops, { floorMs, ratioFloor: mergeMs / floorMs });

    // Delta-LoRA: W += λs(B1A1 − B0A0), one pass over W with a 2r inner dimension.
    const A1 = randn([r, inDim], { seed: 6, std: 1 / Math.sqrt(inDim) }),
      B1 = randn([out, r], { seed: 7, std: 0.1 });
    const deltaMs = await time(
      () => deltaLora.update(W, { A, B }, { A: A1, B: B1 }, { lambda: 2, scale }),
      () => deltaLora.update(W, { A: A1, B: B1 }, { A, B }, { lambda: 2, scale }),
    );
    const deltaFlops = 4 * out * inDim * r;
    const deltaFloor = 1000 * Math.max(deltaFlops / (peak.gflops * 1e9), (2 * out * inDim * 4) / (bandwidth * 1e9));
    record(name, 'Delta-LoRA update of W', deltaMs, deltaFlops, { floorMs: deltaFloor, ratioFloor: deltaMs / deltaFloor });
    A1.dispose();
    B1.dispose();

    // VeRA and LoRA-FA beside LoRA at this shape's rank and at r = 256 (interleaved rounds).
    for (const rank of [r, 256]) {
      const proj = vera.projections({ rank, maxIn: inDim, maxOut: out, seed: 11 });
      const lambdaD = Tensor.empty([rank], 'float32', 'cpu');
      lambdaD.storage().fill(0.1);
      const lambdaB = randn([out], { seed: 12, std: 0.1 });
      const Ar = rank === r ? A : randn([rank, inDim], { seed: 13, std: 1 / Math.sqrt(inDim) });
      const Br = rank === r ? B : randn([out, rank], { seed: 14, std: 0.1 });
      const kept = {};
      const step = trainingStep(kept);
      const gr = await timeGroup({
        lora: step(
          'lora',
          () => lora.forward(x, W, Ar, Br, { scale }),
          (sv) => lora.backward(dy, sv),
        ),
        loraFa: step(
          'loraFa',
          () => lora.forward(x, W, Ar, Br, { scale, frozenA: true }),
          (sv) => lora.backward(dy, sv),
        ),
        vera: step(
          'vera',
          () => vera.forward(x, W, proj, lambdaD, lambdaB),
          (sv) => vera.backward(dy, sv),
        ),
      });
      const fwd = baseFlops + 2 * t * rank * (inDim + out);
      const flops = {
        lora: fwd + baseFlops + 2 * t * rank * (2 * out + 2 * inDim),
        loraFa: fwd + baseFlops + 2 * t * rank * (2 * out + inDim),
        vera: fwd + baseFlops + 2 * t * rank * (2 * out + inDim), // dyᵀu, h, and h·A
      };
      record(name, `LoRA forward + backward, r = ${rank}`, gr.lora.ms, flops.lora, { ratioBase: 1, savedBytes: kept.lora, vs: 'LoRA' });
      record(name, `LoRA-FA forward + backward, r = ${rank}`, gr.loraFa.ms, flops.loraFa, {
        ratioBase: gr.loraFa.ratio,
        savedBytes: kept.loraFa,
        vs: 'LoRA',
      });
      record(name, `VeRA forward + backward, r = ${rank}`, gr.vera.ms, flops.vera, {
        ratioBase: gr.vera.ratio,
        savedBytes: kept.vera,
        vs: 'LoRA',
      });
      proj.dispose();
      lambdaD.dispose();
      lambdaB.dispose();
      if (Ar !== A) Ar.dispose();
      if (Br !== B) Br.dispose();
    }

    // One fused AdamW step over a W-sized parameter (memory bound: p, g, m, v read; p, m, v
    // written). Only where that traffic is far larger than the caches, so the floor is DRAM's.
    if (out * inDim >= 8 * 2 ** 20) {
      const p = W.clone(),
        grad = randn([out, inDim], { seed: 15 });
      const opt = new optim.AdamW([{ param: p, grad }], { lr: 1e-4 });
      const adamMs = await time(() => opt.step());
      const adamFloor = (1000 * 7 * 4 * out * inDim) / (bandwidth * 1e9); // bandwidth counts reads + writes
      record(name, `AdamW step, ${((out * inDim) / 1e6).toFixed(1)} M params`, adamMs, 0, {
        floorMs: adamFloor,
        ratioFloor: adamMs / adamFloor,
      });
      opt.dispose();
      p.dispose();
      grad.dispose();
    }

    if (ort) {
      const feeds = { x: new ort.Tensor('float32', xs, [t, inDim]) };
      const model = loraForwardModel({ t, inDim, out, r, W: Ws, A: A.storage(), B: B.storage(), scale });
      const session = await ortSession(model);
      const ortMs = await time(() => session.run(feeds));
      record(name, 'onnxruntime-node LoRA forward', ortMs, fwdFlops, { ratioBase: ortMs / g.base.ms });
      rows.find((row) => row.shape === name && row.name === 'LoRA forward').ratioOrt = g.forward.ms / ortMs;
      const baseModel = loraForwardModel({ t, inDim, out, r, W: Ws, scale, withAdapter: false });
      const baseSession = await ortSession(baseModel);
      const ortBase = await time(() => baseSession.run(feeds));
      record(name, 'onnxruntime-node base product', ortBase, baseFlops, { ratioBase: ortBase / g.base.ms });
      rows.find((row) => row.shape === name && row.name === 'base product x·Wᵀ').ratioOrt = g.base.ms / ortBase;
      await session.release();
      await baseSession.release();
    }
    // OpenBLAS's sgemm on the same base product (x·Wᵀ, row-major), when libopenblas is installed.
    const blasOut = new Float32Array(t * out);
    const blas = () => n._openblasSgemm({ m: t, n: out, k: inDim, a: xs, b: Ws, c: blasOut, threads });
    const missing = blas();
    if (typeof missing === 'string') {
      if (!blasMissing) console.log(`OpenBLAS: ${missing}; its column stays empty`);
      blasMissing = missing;
    } else {
      const blasMs = await time(blas);
      record(name, 'OpenBLAS sgemm base product', blasMs, baseFlops, { ratioBase: blasMs / g.base.ms });
      rows.find((row) => row.shape === name && row.name === 'base product x·Wᵀ').ratioBlas = g.base.ms / blasMs;
    }
    for (const tns of [x, W, A, B, dy]) tns.dispose();
  }

  const fmt = (v, d = 2) => (v === undefined ? '' : v.toFixed(d));
  const header = [
    'shape',
    'case',
    'median ms',
    'GFLOP/s',
    '% peak',
    '× base (or as noted)',
    '× onnxruntime',
    '× OpenBLAS',
    'kept for backward',
  ];
  const table = rows.map((r) => [
    r.shape,
    r.name,
    fmt(r.ms, 3),
    r.gflops > 0 ? fmt(r.gflops, 1) : '',
    r.gflops > 0 ? fmt(r.peakPct, 1) : '',
    r.ratioFloor !== undefined ? `${fmt(r.ratioFloor)} × floor` : `${fmt(r.ratioBase, 3)}${r.vs ? ` × ${r.vs}` : ''}`,
    fmt(r.ratioOrt, 3),
    fmt(r.ratioBlas, 3),
    r.savedBytes !== undefined ? `${(r.savedBytes / 2 ** 20).toFixed(2)} MiB` : '',
  ]);
  printTable(header, table);

  const result = {
    date: new Date().toISOString(),
    machine: {
      cpu: os.cpus()[0]?.model,
      logicalCpus: os.cpus().length,
      threads,
      kernels: backends().cpu.isa,
      caches: backends().cpu.caches,
      blocking: backends().cpu.blocking,
      peakGflops: peak.gflops,
      peakIsa: peak.isa,
      copyGBs: bandwidth,
    },
    onnxruntime: ort ? (await import('onnxruntime-node/package.json', { with: { type: 'json' } })).default.version : null,
    openblas: blasMissing ?? 'loaded',
    rows,
  };
  writeResult(result, '');
  // The probe is the ceiling of every rate in this run, lowrank's or a peer's: a row above it
  // means the probe read low (load, frequency ramp), and every "% peak" of the run is suspect.
  // With LOWRANK_ISA forcing a narrower ISA, the peers still run the CPU's best one: their
  // ceiling is that ISA's peak.
  let bestPeak = peak.gflops;
  if (process.env.LOWRANK_ISA) {
    n._setIsa('');
    bestPeak = n.probePeak(args.quick ? 0.3 : 1.0).gflops;
    n._setIsa(isa);
  }
  const above = rows.filter((r) => r.gflops > (/^(onnxruntime|OpenBLAS)/.test(r.name) ? bestPeak : peak.gflops));
  if (above.length > 0) {
    console.error(
      `lowrank bench: the measured peak (${peak.gflops.toFixed(1)} GFLOP/s) is below ${above.length} timed row(s), ` +
        `e.g. ${above[0].shape} ${above[0].name} at ${above[0].gflops.toFixed(1)} GFLOP/s: the probe read low; rerun on a quiet machine`,
    );
    process.exitCode = 1;
  }
}

// ---- CUDA ------------------------------------------------------------------------------------

const CUDA_SHAPES = {
  // the GPU shape of README.md's Performance section (T = 8192, 4096 × 4096, r = 16), and the same at r = 64.
  G: { t: 8192, inDim: 4096, out: 4096, r: 16 },
  G64: { t: 8192, inDim: 4096, out: 4096, r: 64 },
};

/**
 * The vendor's datasheet figures (dense, no sparsity) by device name: bfloat16 tensor-core
 * peak and HBM bandwidth. FLOP floors use the peak; byte floors use the measured device copy
 * bandwidth when the probe works, else the HBM figure. First match wins.
 */
const GPU_FIGURES = [
  { match: /H200 NVL/i, label: 'H200 NVL', bf16Tflops: 835, hbmGBs: 4800 },
  { match: /H200/i, label: 'H200 SXM', bf16Tflops: 989.4, hbmGBs: 4800 },
  { match: /H100 NVL/i, label: 'H100 NVL', bf16Tflops: 835, hbmGBs: 3900 },
  { match: /H100 PCIe/i, label: 'H100 PCIe', bf16Tflops: 756, hbmGBs: 2000 },
  { match: /H100/i, label: 'H100 SXM', bf16Tflops: 989.4, hbmGBs: 3350 },
  { match: /A100.*80GB/i, label: 'A100 80GB SXM', bf16Tflops: 312, hbmGBs: 2039 },
  { match: /A100/i, label: 'A100 40GB SXM', bf16Tflops: 312, hbmGBs: 1555 },
];

const firstLine = (e) => (e instanceof Error ? e.message : String(e)).split('\n')[0];
const cudaVersion = (v) => (v > 0 ? `${Math.floor(v / 1000)}.${Math.floor((v % 1000) / 10)}` : 'none');

/** make() on the first call and the same value afterwards; `.made` holds it once made. */
function lazy(make) {
  const get = () => (get.made ??= make());
  return get;
}

/** Waits for the device: every CUDA op only queues work. */
function deviceSync() {
  return { how: 'synchronize()', sync: async () => api.synchronize() };
}

/**
 * Times device work. Calls only queue work, so one sample is a batch of k calls between two
 * synchronizations, divided by k; k is sized after warm-up so a batch lasts about `batchMs`, and
 * the synchronization's own cost (tens of microseconds) weighs little. The functions of `group`
 * run round-robin, as on the CPU, so their per-round ratios to the first come from the same
 * conditions. `after(name, result)` runs after each call, inside the batch (it only frees).
 * Returns each function's median ms, median ratio to the first, and its batch size; a function
 * that throws during warm-up is left out and returns { error } instead (a kernel this build
 * lacks does not stop the rest; then no ratios are given if it was the first).
 */
async function timeGroupCuda(group, sync, { warmup, rounds, batchMs }, after = () => {}) {
  const batch = {};
  const failed = {};
  for (const n of Object.keys(group)) {
    try {
      for (let i = 0; i < warmup; i++) after(n, await group[n]());
      await sync();
      const t0 = performance.now();
      for (let i = 0; i < 3; i++) after(n, await group[n]());
      await sync();
      const each = (performance.now() - t0) / 3;
      batch[n] = Math.max(1, Math.min(1000, Math.round(batchMs / Math.max(each, 1e-3))));
    } catch (e) {
      failed[n] = { error: firstLine(e) };
    }
  }
  const names = Object.keys(batch);
  const first = Object.keys(group)[0];
  const times = Object.fromEntries(names.map((n) => [n, []]));
  const ratios = Object.fromEntries(names.map((n) => [n, []]));
  for (let round = 0; round < rounds; round++) {
    for (const n of names) {
      await sync();
      const t0 = performance.now();
      for (let i = 0; i < batch[n]; i++) after(n, await group[n]());
      await sync();
      times[n].push((performance.now() - t0) / batch[n]);
    }
    if (!failed[first]) for (const n of names) ratios[n].push(times[n][round] / times[first][round]);
  }
  const timed = names.map((n) => [n, { ms: median(times[n]), ratio: failed[first] ? undefined : median(ratios[n]), batch: batch[n] }]);
  return { ...failed, ...Object.fromEntries(timed) };
}

/** The CUDA benchmark: the GPU shape of README.md's Performance section (T = 8192, 4096 × 4096, r = 16) with bfloat16 (and float32) x, W, dy. */
async function benchCuda() {
  const cuda = backends().cuda;
  if (!cuda.available) {
    console.error(
      `lowrank bench: CUDA is unavailable: ${cuda.reason ?? (cuda.compiled ? 'no usable device' : 'this build has no CUDA backend')}`,
    );
    process.exitCode = 1;
    return;
  }
  const shapeNames = (args.shapes ?? 'G').split(',');
  for (const s of shapeNames)
    if (!CUDA_SHAPES[s])
      throw new RangeError(`Expected one of ${Object.keys(CUDA_SHAPES)} for --shapes with --device cuda but received ${s}`);
  const settings = args.quick ? { warmup: 2, rounds: 5, batchMs: 10 } : { warmup: 5, rounds: 20, batchMs: 40 };
  let timing;
  try {
    timing = deviceSync();
  } catch (e) {
    console.error(`lowrank bench: cannot make a CUDA tensor: ${firstLine(e)}`);
    process.exitCode = 1;
    return;
  }
  const { sync } = timing;
  const dev = cuda.devices[0];
  const figures = GPU_FIGURES.find((f) => f.match.test(dev.name)) ?? null;
  console.log(
    `lowrank bench: ${dev.name} (compute capability ${dev.computeCapability}, ${(dev.memoryBytes / 2 ** 30).toFixed(0)} GiB, ` +
      `${dev.multiprocessors} SMs), CUDA runtime ${cudaVersion(cuda.runtimeVersion)}, driver ${cudaVersion(cuda.driverVersion)}`,
  );
  console.log(
    figures
      ? `vendor figures (${figures.label}, dense): bfloat16 tensor cores ${figures.bf16Tflops} TFLOP/s, HBM ${(figures.hbmGBs / 1000).toFixed(2)} TB/s`
      : 'no vendor figures for this device: no % of peak and no FLOP floors',
  );

  // Device copy bandwidth (read + write), the bytes floor's rate, as the CPU bench measures its own.
  let copyGBs = null;
  try {
    const buf = randn([64 * 2 ** 20], { seed: 99, device: 'cuda' }); // 256 MiB
    const bytes = 2 * buf.nbytes;
    const g = await timeGroupCuda({ copy: () => buf.to('cuda') }, sync, settings, (_, c) => c.dispose());
    buf.dispose();
    if (g.copy.error !== undefined) throw new Error(g.copy.error);
    copyGBs = bytes / (g.copy.ms / 1000) / 1e9;
  } catch (e) {
    console.log(`device copy probe unavailable (${firstLine(e)})`);
  }
  if (copyGBs !== null && figures && copyGBs < 0.25 * figures.hbmGBs) {
    // Far below HBM: the copy went through the host, so it says nothing about device memory.
    console.log(`device copy ran at ${copyGBs.toFixed(0)} GB/s, under a quarter of HBM's figure: not used as the bytes rate`);
    copyGBs = null;
  }
  const bandwidthGBs = copyGBs ?? figures?.hbmGBs ?? null;
  console.log(
    `${copyGBs !== null ? `measured device copy ${copyGBs.toFixed(0)} GB/s (read + write)` : 'no measured copy bandwidth'}; ` +
      `bytes floors at ${bandwidthGBs !== null ? `${bandwidthGBs.toFixed(0)} GB/s${copyGBs === null ? " (vendor's HBM figure)" : ''}` : 'no known rate (none)'}; ` +
      `timing: batches between synchronizations by ${timing.how}\n`,
  );

  const rows = [];
  /**
   * One row from a timeGroupCuda entry (`per` calls' worth of work per timed call). % of peak
   * for bfloat16 rows; FLOP floors where the bfloat16 peak applies (bfloat16 rows, and
   * memory-bound rows whose few FLOPs could run at it); bytes floors wherever a rate is known.
   */
  function record(shape, dtype, name, timed, flops, bytes, extra = {}, per = 1) {
    if (timed.error !== undefined) {
      rows.push({ shape, dtype, name, error: timed.error });
      return;
    }
    const ms = timed.ms / per;
    const tflops = flops / (ms / 1000) / 1e12;
    const row = { shape, dtype, name, ms, tflops, flops, bytes, ...extra };
    if (extra.ratioBase === undefined && timed.ratio !== undefined && !extra.memoryBound) row.ratioBase = timed.ratio;
    if (figures && dtype === 'bfloat16' && !extra.memoryBound && tflops > 0) row.peakPct = (100 * tflops) / figures.bf16Tflops;
    const peak = figures && (dtype === 'bfloat16' || extra.memoryBound) ? figures.bf16Tflops : null;
    if (bandwidthGBs !== null && (peak !== null || flops === 0)) {
      row.floorMs = 1000 * Math.max(peak !== null ? flops / (peak * 1e12) : 0, bytes / (bandwidthGBs * 1e9));
      row.ratioFloor = ms / row.floorMs;
    }
    rows.push(row);
  }

  for (const name of shapeNames) {
    const { t, inDim, out, r } = CUDA_SHAPES[name];
    const scale = 2;
    console.log(`shape ${name}: T=${t} in=${inDim} out=${out} r=${r}`);
    const onDevice = { device: 'cuda' };
    const A = randn([r, inDim], { seed: 3, std: 1 / Math.sqrt(inDim), ...onDevice });
    const B = randn([out, r], { seed: 4, std: 0.1, ...onDevice });
    const A1 = randn([r, inDim], { seed: 6, std: 1 / Math.sqrt(inDim), ...onDevice });
    const B1 = randn([out, r], { seed: 7, std: 0.1, ...onDevice });
    const cpuProj = vera.projections({ rank: r, maxIn: inDim, maxOut: out, seed: 11 });
    const proj = { A: cpuProj.A.to('cuda'), B: cpuProj.B.to('cuda') };
    cpuProj.dispose();
    const lambdaD = tensor(new Float32Array(r).fill(0.1), [r], onDevice);
    const lambdaB = randn([out], { seed: 12, std: 0.1, ...onDevice });

    const baseFlops = 2 * t * inDim * out;
    const fwdFlops = baseFlops + 2 * t * inDim * r + 2 * t * out * r;
    const bwdFlops = 2 * t * out * inDim + 2 * t * r * (2 * out + 2 * inDim);
    const bwdFaFlops = 2 * t * out * inDim + 2 * t * r * (2 * out + inDim);
    const adapterBytes = 4 * (r * inDim + out * r); // A and B, or dA and dB (float32)

    for (const dtype of ['bfloat16', 'float32']) {
      const e = dtype === 'float32' ? 4 : 2; // bytes per element of x, W, y, dy, dx
      const x = randn([t, inDim], { seed: 1, dtype, ...onDevice });
      const W = randn([out, inDim], { seed: 2, std: 1 / Math.sqrt(inDim), dtype, ...onDevice });
      const dy = randn([t, out], { seed: 5, dtype, ...onDevice });
      // The fewest bytes: every operand read once and every result written once.
      const baseBytes = e * (t * inDim + out * inDim + t * out);
      const fwdBytes = baseBytes + adapterBytes + 4 * t * r; // + A, B read, xa written
      const bwdBytes = e * (t * out + out * inDim + 2 * t * inDim) + 4 * t * r + 2 * adapterBytes; // dy, W, x, xa, A, B; dx, dA, dB
      const bwdFaBytes = e * (t * out + out * inDim + t * inDim) + 4 * t * r + adapterBytes + 4 * out * r; // no x, no dA
      const veraBytes = fwdBytes + bwdFaBytes + 8 * (r + out); // LoRA-FA's traffic plus λd, λb and their gradients

      const kept = {};
      const step = trainingStep(kept);
      const g = await timeGroupCuda(
        {
          base: () => linear.forward(x, W),
          forward: () => lora.forward(x, W, A, B, { scale }),
          train: step(
            'lora',
            () => lora.forward(x, W, A, B, { scale }),
            (sv) => lora.backward(dy, sv),
          ),
          trainFa: step(
            'loraFa',
            () => lora.forward(x, W, A, B, { scale, frozenA: true }),
            (sv) => lora.backward(dy, sv),
          ),
          vera: step(
            'vera',
            () => vera.forward(x, W, proj, lambdaD, lambdaB),
            (sv) => vera.backward(dy, sv),
          ),
        },
        sync,
        settings,
        (n, res) => {
          if (n !== 'base' && n !== 'forward') return;
          res.y.dispose();
          res.saved.dispose?.();
        },
      );
      record(name, dtype, 'base product x·Wᵀ', g.base, baseFlops, baseBytes);
      record(name, dtype, 'LoRA forward', g.forward, fwdFlops, fwdBytes);
      record(name, dtype, 'LoRA forward + backward', g.train, fwdFlops + bwdFlops, fwdBytes + bwdBytes, { savedBytes: kept.lora });
      record(name, dtype, 'LoRA-FA forward + backward', g.trainFa, fwdFlops + bwdFaFlops, fwdBytes + bwdFaBytes, {
        savedBytes: kept.loraFa,
      });
      record(name, dtype, 'VeRA forward + backward', g.vera, fwdFlops + bwdFaFlops, veraBytes, { savedBytes: kept.vera });

      // In-place updates of W. Each call is undone by the next (merge then unmerge; Delta-LoRA
      // forward then back), so W stays bounded; each pass is one op, and a pair counts two.
      const gw = await timeGroupCuda(
        {
          merge: () => {
            lora.merge(W, A, B, scale);
            lora.unmerge(W, A, B, scale);
          },
          delta: () => {
            deltaLora.update(W, { A, B }, { A: A1, B: B1 }, { lambda: 2, scale });
            deltaLora.update(W, { A: A1, B: B1 }, { A, B }, { lambda: 2, scale });
          },
        },
        sync,
        settings,
      );
      const wBytes = 2 * e * out * inDim; // W read and written once
      record(name, dtype, 'merge W += s·B·A', gw.merge, 2 * out * inDim * r, wBytes + adapterBytes, { memoryBound: true }, 2);
      record(name, dtype, 'Delta-LoRA update of W', gw.delta, 4 * out * inDim * r, wBytes + 2 * adapterBytes, { memoryBound: true }, 2);
      for (const tns of [x, W, dy]) tns.dispose();
    }

    // AdamW (float32 parameters and state): one fused step over the adapter (LoRA+ groups: A at
    // lr, B at 16 lr), launch-bound at this size, and one over a W-sized parameter, bound by HBM.
    // Each reads p, g, m, v and writes p, m, v: 28 bytes per parameter.
    const pA = A.to('cuda'),
      pB = B.to('cuda');
    const gA = randn([r, inDim], { seed: 16, std: 1e-3, ...onDevice }),
      gB = randn([out, r], { seed: 17, std: 1e-3, ...onDevice });
    const big = randn([out, inDim], { seed: 15, std: 1 / Math.sqrt(inDim), ...onDevice });
    const bigGrad = randn([out, inDim], { seed: 18, std: 1e-3, ...onDevice });
    // Made on the first call, so an optimizer that refuses device tensors is reported like a missing kernel.
    const adapterOpt = lazy(
      () => new optim.AdamW(optim.loraPlusGroups({ A: [{ param: pA, grad: gA }], B: [{ param: pB, grad: gB }] }, { lr: 1e-4 })),
    );
    const bigOpt = lazy(() => new optim.AdamW([{ param: big, grad: bigGrad }], { lr: 1e-4 }));
    const ga = await timeGroupCuda({ adapter: () => adapterOpt().step(), full: () => bigOpt().step() }, sync, settings);
    const nAdapter = r * inDim + out * r;
    record(name, 'float32', `AdamW step over the adapter, ${nAdapter} params`, ga.adapter, 0, 28 * nAdapter, { memoryBound: true });
    record(name, 'float32', `AdamW step, ${((out * inDim) / 1e6).toFixed(1)} M params`, ga.full, 0, 28 * out * inDim, {
      memoryBound: true,
    });
    for (const opt of [adapterOpt, bigOpt]) opt.made?.dispose();
    for (const tns of [pA, pB, gA, gB, big, bigGrad, A, B, A1, B1, proj.A, proj.B, lambdaD, lambdaB]) tns.dispose();
  }

  const fmt = (v, d = 2) => (v === undefined ? '' : v.toFixed(d));
  const header = ['shape', 'dtype', 'case', 'median ms', 'TFLOP/s', '% bf16 peak', '× base', 'floor ms', '× floor', 'kept for backward'];
  const table = rows.map((r) => [
    r.shape,
    r.dtype,
    r.name,
    r.error !== undefined ? 'failed' : fmt(r.ms, 4),
    r.tflops > 0 ? fmt(r.tflops, 1) : '',
    fmt(r.peakPct, 1),
    fmt(r.ratioBase, 3),
    fmt(r.floorMs, 4),
    fmt(r.ratioFloor),
    r.savedBytes !== undefined ? `${(r.savedBytes / 2 ** 20).toFixed(2)} MiB` : '',
  ]);
  printTable(header, table);
  const failures = rows.filter((r) => r.error !== undefined);
  if (failures.length > 0) {
    console.log('\nfailed:');
    for (const r of failures) console.log(`  ${r.shape} ${r.dtype} ${r.name}: ${r.error}`);
    process.exitCode = 1;
  }

  const result = {
    date: new Date().toISOString(),
    device: 'cuda',
    machine: {
      gpu: dev.name,
      computeCapability: dev.computeCapability,
      memoryBytes: dev.memoryBytes,
      multiprocessors: dev.multiprocessors,
      cudaRuntime: cuda.runtimeVersion,
      cudaDriver: cuda.driverVersion,
      cpu: os.cpus()[0]?.model,
    },
    vendorFigures: figures && { label: figures.label, bf16Tflops: figures.bf16Tflops, hbmGBs: figures.hbmGBs },
    copyGBs,
    bandwidthGBs,
    timing: { ...settings, sync: timing.how },
    rows,
  };
  writeResult(result, '-cuda');
}

if (args.device === 'cuda') await benchCuda();
else await benchCpu();
