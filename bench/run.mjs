#!/usr/bin/env node
// npm run bench [-- --quick] [-- --shapes S,M,M64] [-- --threads N] [-- --no-ort]
//
// Measures this machine's FMA peak and copy bandwidth, then times lowrank's CPU kernels at the
// shapes of SPEC section 6 beside onnxruntime-node running the same forward graph with the same
// thread count. Prints medians and ratios; writes bench/results/<date>.json.
import { mkdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { backends, deltaLora, lora, optim, randn, setThreads, Tensor, vera } from '../dist/index.js';
import { native } from '../dist/native.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const { values: args } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    shapes: { type: 'string' },
    threads: { type: 'string' },
    'no-ort': { type: 'boolean', default: false },
    out: { type: 'string' },
  },
});

const SHAPES = {
  S: { t: 512, inDim: 1024, out: 1024, r: 16 },
  M: { t: 2048, inDim: 4096, out: 4096, r: 16 },
  M64: { t: 2048, inDim: 4096, out: 4096, r: 64 },
  // --quick: small enough for a smoke run in seconds.
  Q: { t: 128, inDim: 256, out: 192, r: 8 },
};
const shapeNames = (args.shapes ?? (args.quick ? 'Q,S' : 'S,M,M64')).split(',');
for (const s of shapeNames) if (!SHAPES[s]) throw new RangeError(`Expected one of ${Object.keys(SHAPES)} for --shapes but received ${s}`);
const threads = args.threads ? setThreads(Number(args.threads)) : backends().cpu.threads;
const minReps = args.quick ? 3 : 5;
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

const n = native();
console.log(`lowrank bench: ${os.cpus()[0]?.model ?? 'unknown CPU'}, ${threads} threads, kernels ${backends().cpu.isa}`);
const peak = n.probePeak(args.quick ? 0.3 : 1.0);
const bandwidth = n.probeBandwidth(256 * 2 ** 20, args.quick ? 2 : 5);
console.log(`measured FMA peak ${peak.gflops.toFixed(1)} GFLOP/s (${peak.isa}), copy bandwidth ${bandwidth.toFixed(1)} GB/s (read + write)\n`);

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

  const xs = x.storage(), Ws = W.storage();
  const release = (res) => {
    res.y.dispose();
    res.saved.dispose();
  };
  let savedBytes = 0, savedBytesFa = 0;
  const trainStep = (frozenA) => () => {
    const res = lora.forward(x, W, A, B, { scale, frozenA });
    if (frozenA) savedBytesFa = res.saved.bytes;
    else savedBytes = res.saved.bytes;
    const g = lora.backward(dy, res.saved);
    release(res);
    for (const k of ['dx', 'dA', 'dB']) g[k]?.dispose();
  };
  const base = () =>
    n.gemm({ m: t, n: out, terms: [{ a: xs, lda: inDim, ta: false, b: Ws, ldb: inDim, tb: true, k: inDim, alpha: 1 }], c: y, ldc: out, beta: 0, bias: null, reference: false });
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
  const mergeMs = await time(() => lora.merge(W, A, B, scale), () => lora.unmerge(W, A, B, scale));
  const mergeFlops = 2 * out * inDim * r;
  const floorMs = 1000 * Math.max(mergeFlops / (peak.gflops * 1e9), (2 * out * inDim * 4) / (bandwidth * 1e9));
  record(name, 'merge W += s·B·A', mergeMs, mergeFlops, { floorMs, ratioFloor: mergeMs / floorMs });

  // Delta-LoRA: W += λs(B1A1 − B0A0), one pass over W with a 2r inner dimension.
  const A1 = randn([r, inDim], { seed: 6, std: 1 / Math.sqrt(inDim) }), B1 = randn([out, r], { seed: 7, std: 0.1 });
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
    const step = (label, fwd, bwd) => () => {
      const res = fwd();
      kept[label] = res.saved.bytes;
      const g = bwd(res.saved);
      res.y.dispose();
      res.saved.dispose();
      for (const t of Object.values(g)) t?.dispose?.();
    };
    const gr = await timeGroup({
      lora: step('lora', () => lora.forward(x, W, Ar, Br, { scale }), (sv) => lora.backward(dy, sv)),
      loraFa: step('loraFa', () => lora.forward(x, W, Ar, Br, { scale, frozenA: true }), (sv) => lora.backward(dy, sv)),
      vera: step('vera', () => vera.forward(x, W, proj, lambdaD, lambdaB), (sv) => vera.backward(dy, sv)),
    });
    const fwd = baseFlops + 2 * t * rank * (inDim + out);
    const flops = {
      lora: fwd + baseFlops + 2 * t * rank * (2 * out + 2 * inDim),
      loraFa: fwd + baseFlops + 2 * t * rank * (2 * out + inDim),
      vera: fwd + baseFlops + 2 * t * rank * (2 * out + inDim), // dyᵀu, h, and h·A
    };
    record(name, `LoRA forward + backward, r = ${rank}`, gr.lora.ms, flops.lora, { ratioBase: 1, savedBytes: kept.lora, vs: 'LoRA' });
    record(name, `LoRA-FA forward + backward, r = ${rank}`, gr.loraFa.ms, flops.loraFa, { ratioBase: gr.loraFa.ratio, savedBytes: kept.loraFa, vs: 'LoRA' });
    record(name, `VeRA forward + backward, r = ${rank}`, gr.vera.ms, flops.vera, { ratioBase: gr.vera.ratio, savedBytes: kept.vera, vs: 'LoRA' });
    proj.dispose();
    lambdaD.dispose();
    lambdaB.dispose();
    if (Ar !== A) Ar.dispose();
    if (Br !== B) Br.dispose();
  }

  // One fused AdamW step over a W-sized parameter (memory bound: p, g, m, v read; p, m, v
  // written). Only where that traffic is far larger than the caches, so the floor is DRAM's.
  if (out * inDim >= 8 * 2 ** 20) {
    const p = W.clone(), grad = randn([out, inDim], { seed: 15 });
    const opt = new optim.AdamW([{ param: p, grad }], { lr: 1e-4 });
    const adamMs = await time(() => opt.step());
    const adamFloor = (1000 * 7 * 4 * out * inDim) / (bandwidth * 1e9); // bandwidth counts reads + writes
    record(name, `AdamW step, ${((out * inDim) / 1e6).toFixed(1)} M params`, adamMs, 0, { floorMs: adamFloor, ratioFloor: adamMs / adamFloor });
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
  for (const tns of [x, W, A, B, dy]) tns.dispose();
}

const fmt = (v, d = 2) => (v === undefined ? '' : v.toFixed(d));
const header = ['shape', 'case', 'median ms', 'GFLOP/s', '% peak', '× base (or as noted)', '× onnxruntime', 'kept for backward'];
const table = rows.map((r) => [
  r.shape,
  r.name,
  fmt(r.ms, 3),
  r.gflops > 0 ? fmt(r.gflops, 1) : '',
  r.gflops > 0 ? fmt(r.peakPct, 1) : '',
  r.ratioFloor !== undefined ? `${fmt(r.ratioFloor)} × floor` : `${fmt(r.ratioBase, 3)}${r.vs ? ` × ${r.vs}` : ''}`,
  fmt(r.ratioOrt, 3),
  r.savedBytes !== undefined ? `${(r.savedBytes / 2 ** 20).toFixed(2)} MiB` : '',
]);
const widths = header.map((h, i) => Math.max(h.length, ...table.map((row) => row[i].length)));
const line = (cells) => `| ${cells.map((c, i) => c.padEnd(widths[i])).join(' | ')} |`;
console.log(`\n${line(header)}\n|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`);
for (const row of table) console.log(line(row));

const result = {
  date: new Date().toISOString(),
  machine: { cpu: os.cpus()[0]?.model, logicalCpus: os.cpus().length, threads, kernels: backends().cpu.isa, peakGflops: peak.gflops, peakIsa: peak.isa, copyGBs: bandwidth },
  onnxruntime: ort ? (await import('onnxruntime-node/package.json', { with: { type: 'json' } })).default.version : null,
  rows,
};
const file = args.out ?? path.join(here, 'results', `${result.date.slice(0, 19).replace(/[:T]/g, '-')}.json`);
mkdirSync(path.dirname(file), { recursive: true });
writeFileSync(file, `${JSON.stringify(result, null, 2)}\n`);
console.log(`\nwritten ${path.relative(process.cwd(), file)}`);
