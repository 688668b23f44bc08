#!/usr/bin/env node
// The Node half of the cross-check against PyTorch + PEFT (bench/peft_compare.py is the other):
//
//   node bench/peft-compare.mjs --out DIR [--device cuda|cpu] [--dtype bfloat16|float32]
//                               [--shapes small,large] [--seed N] [--reps N] [--compare]
//   python3 bench/peft_compare.py DIR
//
// --compare runs the Python half right after (with $PYTHON, else python3) and exits with its
// status: `npm run bench:peft [-- --device cpu]` does both.
//
// Draws fresh random inputs (seeded; the seed is drawn at random unless given, and recorded),
// runs lowrank's LoRA forward and backward on them, and writes per shape DIR/<shape>.safetensors
// with the inputs (x, W, A, B, dy) and lowrank's results (y, dx, dA, dB), plus DIR/manifest.json
// (shapes, dtypes, scale, device, lowrank's median times). The Python script reruns the same
// math through PEFT on the same inputs, compares and times it.
//
// Shapes: large = the GPU shape of README.md's Performance section (T = 8192, 4096 × 4096, r = 16) (T = 8192, 4096 × 4096, r = 16); small = an awkward
// one (T = 33, in = 70, out = 45, r = 7). Defaults: on cuda both, bfloat16 x and W; on cpu the
// small one, float32 (the CPU kernels take float32 activations).
import { spawnSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import * as api from '../dist/index.js';
import { backends, linear, lora, rand, randn, safetensors } from '../dist/index.js';

const { values: args } = parseArgs({
  options: {
    out: { type: 'string' },
    device: { type: 'string', default: 'cuda' },
    dtype: { type: 'string' },
    shapes: { type: 'string' },
    seed: { type: 'string' },
    reps: { type: 'string' },
    compare: { type: 'boolean', default: false },
  },
});

function fail(message) {
  console.error(`peft-compare: ${message}`);
  process.exit(1);
}

if (!args.out) fail('Expected --out DIR (where the inputs, results and manifest.json go)');
const device = args.device;
if (device !== 'cpu' && device !== 'cuda') fail(`Expected 'cpu' or 'cuda' for --device but received ${device}`);
const dtype = args.dtype ?? (device === 'cuda' ? 'bfloat16' : 'float32');
if (dtype !== 'bfloat16' && dtype !== 'float32') fail(`Expected 'bfloat16' or 'float32' for --dtype but received ${dtype}`);
if (device === 'cpu' && dtype !== 'float32')
  fail(`Expected --dtype float32 with --device cpu (the CPU kernels take float32 x) but received ${dtype}`);
const SHAPES = {
  small: { t: 33, inDim: 70, out: 45, r: 7, alpha: 12 },
  large: { t: 8192, inDim: 4096, out: 4096, r: 16, alpha: 24 },
};
const shapeNames = (args.shapes ?? (device === 'cuda' ? 'small,large' : 'small')).split(',');
for (const s of shapeNames) if (!SHAPES[s]) fail(`Expected one of ${Object.keys(SHAPES)} for --shapes but received ${s}`);
const seed = args.seed !== undefined ? Number(args.seed) : Math.floor(Math.random() * 2 ** 31);
if (!Number.isSafeInteger(seed) || seed < 0) fail(`Expected a non-negative integer for --seed but received ${args.seed}`);
const reps = args.reps !== undefined ? Number(args.reps) : 20;
if (!Number.isSafeInteger(reps) || reps < 1) fail(`Expected a positive integer for --reps but received ${args.reps}`);

const cuda = backends().cuda;
if (device === 'cuda' && !cuda.available) fail(`CUDA is unavailable: ${cuda.reason ?? 'no usable device'}`);

/** Waits for the device (CUDA ops only queue work); CPU ops return finished. */
function deviceSync() {
  if (device === 'cpu') return async () => {};
  return async () => api.synchronize();
}
const sync = deviceSync();

function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/**
 * Median ms of fn over `reps` samples after warm-up. One sample is a batch of calls between two
 * synchronizations (sized to about 20 ms after warm-up, so the synchronization weighs little),
 * divided by the batch's length: device calls only queue work.
 */
async function timeMs(fn) {
  for (let i = 0; i < 3; i++) fn();
  await sync();
  let t0 = performance.now();
  fn();
  await sync();
  const batch = Math.max(1, Math.min(1000, Math.round(20 / Math.max(performance.now() - t0, 1e-3))));
  const samples = [];
  for (let i = 0; i < reps; i++) {
    await sync();
    t0 = performance.now();
    for (let j = 0; j < batch; j++) fn();
    await sync();
    samples.push((performance.now() - t0) / batch);
  }
  return median(samples);
}

const disposeAll = (...ts) => ts.forEach((t) => t?.dispose());

mkdirSync(args.out, { recursive: true });
const gpu = device === 'cuda' ? (cuda.devices[0]?.name ?? 'unknown GPU') : null;
console.log(`lowrank on ${device}${gpu ? ` (${gpu})` : ''}, ${dtype} x and W, seed ${seed}`);
const cases = [];
for (const [i, name] of shapeNames.entries()) {
  const { t, inDim, out, r, alpha } = SHAPES[name];
  const scale = alpha / r; // PEFT's lora_alpha / r
  const s0 = seed + 10 * i;
  const on = { device };
  // PEFT's shapes and initial distributions, except B: PEFT starts it at zero, which would hide
  // the adapter's path; here it is random so every product is checked.
  const x = randn([t, inDim], { seed: s0 + 1, dtype, ...on });
  const W = randn([out, inDim], { seed: s0 + 2, std: 1 / Math.sqrt(inDim), dtype, ...on });
  const A = rand([r, inDim], { seed: s0 + 3, low: -1 / Math.sqrt(inDim), high: 1 / Math.sqrt(inDim), ...on });
  const B = randn([out, r], { seed: s0 + 4, std: 0.2, ...on });
  const { y, saved } = lora.forward(x, W, A, B, { scale });
  // The upstream gradient has the output's dtype, as in torch.
  const dy = randn(y.shape, { seed: s0 + 5, dtype: y.dtype, ...on });
  const { dx, dA, dB } = lora.backward(dy, saved);

  const tensors = { x, W, A, B, dy, y, dx, dA, dB };
  const onCpu = Object.fromEntries(Object.entries(tensors).map(([k, v]) => [k, v.device === 'cpu' ? v : v.to('cpu')]));
  const file = `${name}.safetensors`;
  safetensors.writeSafetensors(path.join(args.out, file), onCpu, { format: 'lowrank-peft-compare', shape: name });
  const dtypes = Object.fromEntries(Object.entries(tensors).map(([k, v]) => [k, v.dtype]));
  for (const [k, v] of Object.entries(onCpu)) if (v !== tensors[k]) v.dispose();
  saved.dispose();
  disposeAll(y, dx, dA, dB);

  // lowrank's own times on the same tensors: the base product alone, LoRA forward, and LoRA
  // forward + backward (the training step PEFT's eager forward + backward is compared with).
  const timings = {
    baseForwardMs: await timeMs(() => {
      const res = linear.forward(x, W);
      res.y.dispose();
    }),
    forwardMs: await timeMs(() => {
      const res = lora.forward(x, W, A, B, { scale });
      res.y.dispose();
      res.saved.dispose();
    }),
    trainMs: await timeMs(() => {
      const res = lora.forward(x, W, A, B, { scale });
      const g = lora.backward(dy, res.saved);
      res.y.dispose();
      res.saved.dispose();
      disposeAll(g.dx, g.dA, g.dB);
    }),
    reps,
  };
  disposeAll(x, W, A, B, dy);
  cases.push({ name, file, t, in: inDim, out, r, alpha, scale, dtypes, timings });
  const f = (v) => v.toFixed(4);
  console.log(
    `${name}: T=${t} in=${inDim} out=${out} r=${r} scale=${scale.toFixed(4)}; y ${dtypes.y}, dx ${dtypes.dx}; ` +
      `median ms: base ${f(timings.baseForwardMs)}, forward ${f(timings.forwardMs)}, forward + backward ${f(timings.trainMs)}`,
  );
}

const manifest = {
  format: 'lowrank-peft-compare',
  version: 1,
  created: new Date().toISOString(),
  device,
  gpu,
  dtype,
  seed,
  node: process.version,
  cases,
};
writeFileSync(path.join(args.out, 'manifest.json'), `${JSON.stringify(manifest, null, 2)}\n`);
const script = path.join(path.dirname(fileURLToPath(import.meta.url)), 'peft_compare.py');
if (!args.compare) {
  console.log(`written ${path.join(args.out, 'manifest.json')}; now: python3 ${path.relative(process.cwd(), script)} ${args.out}`);
} else {
  const python = process.env.PYTHON ?? 'python3';
  console.log(`written ${path.join(args.out, 'manifest.json')}; running ${python} ${path.relative(process.cwd(), script)} ${args.out}\n`);
  const res = spawnSync(python, [script, args.out, '--reps', String(reps)], { stdio: 'inherit' });
  if (res.error) fail(`could not run ${python}: ${res.error.message}`);
  process.exitCode = res.status ?? 1;
}
