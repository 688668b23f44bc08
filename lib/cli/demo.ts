// The method comparison (`npm start`, `lowrank demo`): pretrain a small MLP on a base task,
// then adapt it to two new tasks from the same start with full fine-tuning and with each of
// LoRA, LoRA-FA, VeRA, Delta-LoRA and LoRA+:
//   - "low-rank shift": the teacher's first layer moved by a rank-2 change, which a low-rank
//     adapter can represent;
//   - "full-rank shift": the teacher's first layer moved by a dense random change, which no
//     low-rank adapter can represent: here full fine-tuning should win.
// Prints a table per task, draws the loss curves to an SVG file. With --device cuda the models
// (weights, adapters, optimizer state, activations), the labels and every step's ReLU and loss
// live on the GPU: a training step copies nothing to the host; the per-step losses stay device
// tensors until the run of a method ends. The teachers that label the data run on the host.
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { SingleBar } from 'cli-progress';
import { backends, synchronize } from '../backends.js';
import { invalidRange } from '../errors.js';
import { Linear } from '../layers/linear.js';
import { LoraLinear, type LoraVariant } from '../layers/lora-linear.js';
import { type Parameter } from '../layers/parameter.js';
import { VeraLinear } from '../layers/vera-linear.js';
import * as linear from '../ops/linear.js';
import * as nn from '../ops/nn.js';
import * as vera from '../ops/vera.js';
import { AdamW, loraPlusGroups, type ParamGroup } from '../optim.js';
import { type Device, randn, Tensor, tensor } from '../tensor.js';
import { lossChart, type Series } from './chart.js';

const D = 32; // input features
const H = 128; // hidden units
const C = 10; // classes
const BATCH = 256;

interface Layer {
  forward(x: Tensor, opts?: { training?: boolean }): Tensor;
  backward(dy: Tensor): Tensor;
  parameters(): Parameter[];
  zeroGrad(): void;
  afterOptimizerStep(): void;
  readonly savedBytes: number;
  dispose(): void;
}

interface Weights {
  W1: Tensor;
  b1: Tensor;
  W2: Tensor;
  b2: Tensor;
}

function cloneWeights(w: Weights): Weights {
  return { W1: w.W1.clone(), b1: w.b1.clone(), W2: w.W2.clone(), b2: w.b2.clone() };
}

function disposeWeights(w: Weights): void {
  for (const t of [w.W1, w.b1, w.W2, w.b2]) t.dispose();
}

// ---- the MLP: layer1 → ReLU → layer2 → softmax cross-entropy ----------------------------

// ReLU and the loss are the nn ops on the model's device (lib/ops/nn.ts).

/** The number of rows whose largest logit is their label's (read at evaluation only). */
function correctCount(logits: Tensor, labels: Int32Array): number {
  const z = logits.toFloat32Array();
  let correct = 0;
  for (let t = 0; t < labels.length; t++) {
    let arg = 0;
    for (let c = 1; c < C; c++) if (z[t * C + c] > z[t * C + arg]) arg = c;
    if (arg === labels[t]) correct++;
  }
  return correct;
}

/** Class labels a teacher MLP (on the host) assigns to x (on the host). */
function teacherLabels(teacher: Weights, x: Tensor): Int32Array {
  const h = linear.forward(x, teacher.W1, { bias: teacher.b1 }).y;
  const a = nn.relu(h);
  const z = linear.forward(a, teacher.W2, { bias: teacher.b2 }).y.storage() as Float32Array;
  const rows = x.shape[0];
  const labels = new Int32Array(rows);
  for (let t = 0; t < rows; t++) {
    let best = 0;
    for (let c = 1; c < C; c++) if (z[t * C + c] > z[t * C + best]) best = c;
    labels[t] = best;
  }
  h.dispose();
  a.dispose();
  return labels;
}

interface Batch {
  x: Tensor;
  /** The class labels as an int32 tensor on x's device (for the loss) and on the host (for accuracy). */
  labels: Tensor;
  hostLabels: Int32Array;
}

/** Inputs drawn and labelled on the host, then moved to `device`. */
function batches(teacher: Weights, count: number, seed: number, device: Device, size = BATCH): Batch[] {
  return Array.from({ length: count }, (_, i) => {
    const x = randn([size, D], { seed: seed + i });
    const hostLabels = teacherLabels(teacher, x);
    const labels = tensor(hostLabels, [size], { dtype: 'int32', device });
    if (device === 'cpu') return { x, labels, hostLabels };
    const moved = x.to(device);
    x.dispose();
    return { x: moved, labels, hostLabels };
  });
}

function disposeBatch(b: Batch): void {
  b.x.dispose();
  b.labels.dispose();
}

// ---- methods -------------------------------------------------------------------------------

type Method = 'full fine-tuning' | 'LoRA' | 'LoRA-FA' | 'VeRA' | 'Delta-LoRA' | 'LoRA+';
const METHODS: Method[] = ['full fine-tuning', 'LoRA', 'LoRA-FA', 'VeRA', 'Delta-LoRA', 'LoRA+'];

interface Model {
  layer1: Layer;
  layer2: Layer;
  optimizer: AdamW;
  /** Bytes an adapter checkpoint of this method takes. */
  checkpointBytes: number;
  dispose(): void;
}

const RANK = 16;
// LoRA-FA trains only B: at twice LoRA's rank it trains about as many parameters as LoRA.
const FA_RANK = 32;
const VERA_RANK = 1024;
const DELTA_START = 50;
const PRETRAIN_STEPS = 2000;
const LOW_RANK_SCALE = 0.4; // size of the rank-2 change relative to the weights' scale
// Learning rates (AdamW, no weight decay), one per method family, tuned once on these tasks.
const LR = { full: 3e-3, lora: 3e-3, loraFa: 1e-2, vera: 5e-2, loraPlus: 1e-3 }; // the paper's K is 500 for runs of thousands of steps; these are short

function build(method: Method, base: Weights, seed: number): Model {
  const w = cloneWeights(base); // every method starts from the same pretrained weights
  const bytes = (params: Parameter[]) => params.reduce((s, p) => s + p.param.nbytes, 0);
  const lora = (variant: LoraVariant) => (W: Tensor, b: Tensor, s: number) => {
    const rank = variant === 'lora-fa' ? FA_RANK : RANK;
    return new LoraLinear({ weight: W, bias: b, rank, alpha: 2 * rank, variant, seed: s, delta: { startStep: DELTA_START } });
  };
  let layer1: Layer, layer2: Layer, groups: ParamGroup[] | Parameter[], checkpointBytes: number;
  let projections: vera.VeraProjections | undefined;
  switch (method) {
    case 'full fine-tuning': {
      layer1 = new Linear({ weight: w.W1, bias: w.b1 });
      layer2 = new Linear({ weight: w.W2, bias: w.b2 });
      groups = [{ params: [...layer1.parameters(), ...layer2.parameters()], lr: LR.full, weightDecay: 0 }];
      checkpointBytes = bytes(groups[0].params as Parameter[]);
      break;
    }
    case 'VeRA': {
      projections = vera.projections({
        rank: VERA_RANK,
        maxIn: Math.max(D, H),
        maxOut: Math.max(H, C),
        seed: BigInt(seed),
        device: w.W1.device,
      });
      layer1 = new VeraLinear({ weight: w.W1, bias: w.b1, projections });
      layer2 = new VeraLinear({ weight: w.W2, bias: w.b2, projections });
      const params = [...layer1.parameters(), ...layer2.parameters()];
      groups = [{ params, lr: LR.vera, weightDecay: 0 }];
      checkpointBytes = bytes(params) + 8; // λd, λb per layer + the projections' seed
      break;
    }
    default: {
      const variant: LoraVariant = method === 'LoRA-FA' ? 'lora-fa' : method === 'Delta-LoRA' ? 'delta-lora' : 'lora';
      layer1 = lora(variant)(w.W1, w.b1, seed);
      layer2 = lora(variant)(w.W2, w.b2, seed + 1);
      const params = [...layer1.parameters(), ...layer2.parameters()];
      if (method === 'LoRA+') {
        groups = loraPlusGroups(
          { A: params.filter((p) => p.name === 'lora_A'), B: params.filter((p) => p.name === 'lora_B') },
          { lr: LR.loraPlus, ratio: 16, weightDecay: 0 },
        );
      } else {
        groups = [{ params, lr: method === 'LoRA-FA' ? LR.loraFa : LR.lora, weightDecay: 0 }];
      }
      // A Delta-LoRA checkpoint carries the updated base weights too.
      checkpointBytes = bytes(params) + (method === 'Delta-LoRA' ? w.W1.nbytes + w.W2.nbytes : 0);
    }
  }
  const optimizer = new AdamW(groups);
  return {
    layer1,
    layer2,
    optimizer,
    checkpointBytes,
    dispose() {
      optimizer.dispose();
      layer1.dispose();
      layer2.dispose();
      projections?.dispose();
      disposeWeights(w);
    },
  };
}

interface StepResult {
  /** The batch's mean loss, [1] on the model's device (read when the caller wants it). */
  loss: Tensor;
  savedBytes: number;
}

function trainStep(m: Model, batch: Batch): StepResult {
  const h = m.layer1.forward(batch.x);
  const a = nn.relu(h);
  const logits = m.layer2.forward(a);
  const savedBytes = m.layer1.savedBytes + m.layer2.savedBytes;
  const { loss, dlogits } = nn.softmaxCrossEntropy(logits, batch.labels, { grad: true });
  const da = m.layer2.backward(dlogits!);
  const dh = nn.reluBackward(da, h);
  m.layer1.backward(dh).dispose();
  m.optimizer.step();
  m.layer1.afterOptimizerStep();
  m.layer2.afterOptimizerStep();
  m.optimizer.zeroGrad();
  for (const t of [h, a, logits, dlogits!, da, dh]) t.dispose();
  return { loss, savedBytes };
}

function evaluate(m: Model, test: Batch): { loss: number; accuracy: number } {
  const h = m.layer1.forward(test.x, { training: false });
  const a = nn.relu(h);
  const logits = m.layer2.forward(a, { training: false });
  const { loss } = nn.softmaxCrossEntropy(logits, test.labels);
  const result = { loss: loss.toFloat32Array()[0], accuracy: correctCount(logits, test.hostLabels) / test.hostLabels.length };
  for (const t of [h, a, logits, loss]) t.dispose();
  return result;
}

// ---- the run -------------------------------------------------------------------------------

interface Row {
  method: Method;
  trainable: number;
  checkpointBytes: number;
  savedBytes: number;
  msPerStep: number;
  loss: number;
  accuracy: number;
  curve: number[];
}

/** Exponential moving average (0.95) of a noisy per-step curve, for the chart. */
function smooth(xs: readonly number[]): number[] {
  let avg = xs[0] ?? 0;
  return xs.map((v) => (avg = 0.95 * avg + 0.05 * v));
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[s.length >> 1];
}

function runMethod(method: Method, base: Weights, train: Batch[], test: Batch, steps: number, bar: SingleBar | null): Row {
  const m = build(method, base, 7);
  const losses: Tensor[] = [];
  const times: number[] = [];
  let savedBytes = 0;
  const started = performance.now();
  for (let s = 0; s < steps; s++) {
    const t0 = performance.now();
    const r = trainStep(m, train[s % train.length]);
    times.push(performance.now() - t0);
    savedBytes = r.savedBytes;
    losses.push(r.loss);
    bar?.increment();
  }
  // On the CPU each step's ops ran before it returned: the median step. On CUDA a step only
  // queues its kernels: the steps' whole time, the queue drained, over their number.
  const onDevice = test.x.device === 'cuda';
  if (onDevice) synchronize();
  const msPerStep = onDevice ? (performance.now() - started) / steps : median(times);
  const curve = losses.map((l) => l.toFloat32Array()[0]); // read once, after the steps
  for (const l of losses) l.dispose();
  const { loss, accuracy } = evaluate(m, test);
  const trainable = [...m.layer1.parameters(), ...m.layer2.parameters()].reduce((s, p) => s + p.param.size, 0);
  const row = { method, trainable, checkpointBytes: m.checkpointBytes, savedBytes, msPerStep, loss, accuracy, curve };
  m.dispose();
  return row;
}

function pretrain(teacher: Weights, steps: number, device: Device): Weights {
  const w: Weights = {
    W1: randn([H, D], { seed: 101, std: Math.sqrt(2 / D), device }),
    b1: randn([H], { seed: 102, std: 0.01, device }),
    W2: randn([C, H], { seed: 103, std: Math.sqrt(1 / H), device }),
    b2: randn([C], { seed: 104, std: 0.01, device }),
  };
  const layer1 = new Linear({ weight: w.W1, bias: w.b1 }),
    layer2 = new Linear({ weight: w.W2, bias: w.b2 });
  const optimizer = new AdamW([...layer1.parameters(), ...layer2.parameters()], { lr: 3e-3, weightDecay: 0 });
  const m: Model = { layer1, layer2, optimizer, checkpointBytes: 0, dispose() {} };
  const data = batches(teacher, 64, 5000, device);
  for (let s = 0; s < steps; s++) trainStep(m, data[s % data.length]).loss.dispose();
  optimizer.dispose();
  layer1.dispose();
  layer2.dispose();
  data.forEach(disposeBatch);
  return w;
}

function teacherWith(base: Weights, change: Tensor): Weights {
  const t = cloneWeights(base);
  const w = t.W1.storage() as Float32Array,
    c = change.storage() as Float32Array;
  for (let i = 0; i < w.length; i++) w[i] += c[i];
  return t;
}

/** U Vᵀ with U [H, 2], V [D, 2]: a rank-2 change of the first layer. */
function lowRankChange(scale: number): Tensor {
  const U = randn([H, 2], { seed: 201 }).storage() as Float32Array,
    V = randn([D, 2], { seed: 202 }).storage() as Float32Array;
  const out = new Float32Array(H * D);
  for (let i = 0; i < H; i++) for (let j = 0; j < D; j++) out[i * D + j] = scale * (U[i * 2] * V[j * 2] + U[i * 2 + 1] * V[j * 2 + 1]);
  return tensor(out, [H, D]);
}

function formatBytes(n: number): string {
  return n >= 2 ** 20 ? `${(n / 2 ** 20).toFixed(2)} MiB` : n >= 1024 ? `${(n / 1024).toFixed(1)} KiB` : `${n} B`;
}

function printTable(title: string, rows: Row[]): void {
  const header = ['method', 'trainable params', 'checkpoint', 'kept for backward', 'ms / step', 'test loss', 'test accuracy'];
  const cells = rows.map((r) => [
    r.method,
    r.trainable.toLocaleString('en-US'),
    formatBytes(r.checkpointBytes),
    formatBytes(r.savedBytes),
    r.msPerStep.toFixed(2),
    r.loss.toFixed(4),
    `${(100 * r.accuracy).toFixed(1)} %`,
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...cells.map((c) => c[i].length)));
  const line = (c: string[]) => `| ${c.map((v, i) => (i === 0 ? v.padEnd(widths[i]) : v.padStart(widths[i]))).join(' | ')} |`;
  console.log(`\n${title}\n${line(header)}\n|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`);
  for (const c of cells) console.log(line(c));
}

export interface DemoOptions {
  steps: number;
  out: string;
  device: 'cpu' | 'cuda';
  quiet: boolean;
}

export function demo(opts: DemoOptions): { tasks: Array<{ name: string; rows: Row[] }>; chart: string } {
  const { cpu, cuda } = backends();
  if (opts.device === 'cuda' && !cuda.available)
    throw invalidRange('an available device', '--device', opts.device, `CUDA is unavailable: ${cuda.reason ?? 'unknown reason'}`);
  const device = opts.device;
  const started = performance.now();
  const log = (s: string) => !opts.quiet && console.log(s);
  const where = device === 'cuda' ? `on CUDA (${cuda.devices[0]?.name ?? 'device 0'})` : `on the CPU (${cpu.isa}, ${cpu.threads} threads)`;
  log(`lowrank method comparison ${where}: MLP ${D} → ${H} → ${C}, batch ${BATCH}`);
  const teacher: Weights = {
    W1: randn([H, D], { seed: 1, std: Math.sqrt(2 / D) }),
    b1: randn([H], { seed: 2, std: 0.1 }),
    W2: randn([C, H], { seed: 3, std: Math.sqrt(2 / H) }),
    b2: randn([C], { seed: 4, std: 0.1 }),
  };
  log('pretraining on the base task ...');
  const base = pretrain(teacher, PRETRAIN_STEPS, device);
  const lowRank = lowRankChange(LOW_RANK_SCALE);
  const fullRank = randn([H, D], { seed: 301, std: 1.2 * Math.sqrt(2 / D) });
  const tasks = [
    { name: 'low-rank shift (a rank-2 change of the first layer)', teacher: teacherWith(teacher, lowRank) },
    { name: 'full-rank shift (a dense change of the first layer)', teacher: teacherWith(teacher, fullRank) },
  ];
  const results: Array<{ name: string; rows: Row[] }> = [];
  for (const [k, task] of tasks.entries()) {
    const train = batches(task.teacher, 48, 10_000 + 1000 * k, device);
    const test = batches(task.teacher, 1, 90_000 + k, device, 4096)[0];
    const rows: Row[] = [];
    for (const method of METHODS) {
      const bar =
        opts.quiet || !process.stdout.isTTY
          ? null
          : new SingleBar({ format: `  ${method.padEnd(16)} {bar} {value}/{total} steps`, hideCursor: true });
      bar?.start(opts.steps, 0);
      rows.push(runMethod(method, base, train, test, opts.steps, bar));
      bar?.stop();
      if (!bar) log(`  ${task.name}: ${method} done`);
    }
    if (!opts.quiet) printTable(`Task ${k + 1}: ${task.name}, ${opts.steps} steps`, rows);
    results.push({ name: task.name, rows });
    [...train, test].forEach(disposeBatch);
    disposeWeights(task.teacher);
  }
  const svg = lossChart(
    results.map((r) => ({ title: r.name, series: r.rows.map((row): Series => ({ name: row.method, values: smooth(row.curve) })) })),
    'training loss, moving average (log scale)',
  );
  writeFileSync(opts.out, svg);
  log(
    [
      '',
      'checkpoint: the bytes of what a method must save (Delta-LoRA: the adapters and the updated W; VeRA: λd, λb and the',
      'projections as their seed). kept for backward: activations the two adapted layers keep between forward and backward',
      '(LoRA: x and xa; LoRA-FA: xa only; VeRA: u, T·r·4 per layer, which at r = 1024 exceeds x here because in = 32).',
    ].join('\n'),
  );
  log(`\nloss curves: ${path.resolve(opts.out)}`);
  log(`total ${((performance.now() - started) / 1000).toFixed(1)} s`);
  disposeWeights(base);
  disposeWeights(teacher);
  lowRank.dispose();
  fullRank.dispose();
  return { tasks: results, chart: path.resolve(opts.out) };
}

export function parseDemoArgs(argv: string[]): DemoOptions {
  const { values } = parseArgs({
    args: argv,
    options: {
      steps: { type: 'string', default: '1000' },
      out: { type: 'string', default: 'lowrank-methods.svg' },
      device: { type: 'string', default: 'cpu' },
      quiet: { type: 'boolean', default: false },
      help: { type: 'boolean', default: false },
    },
  });
  if (values.help) {
    console.log(`lowrank demo: compare full fine-tuning, LoRA, LoRA-FA, VeRA, Delta-LoRA and LoRA+ on two tasks

Options:
  --steps N       training steps per method and task (default 1000)
  --out FILE      where to write the loss curves as SVG (default lowrank-methods.svg)
  --device D      cpu (default) or cuda: where the models train
  --quiet         print nothing
  --help          this text`);
    process.exit(0);
  }
  const steps = Number(values.steps);
  if (!Number.isSafeInteger(steps) || steps < 1)
    throw new RangeError(`Expected a positive integer for --steps but received ${values.steps}`);
  if (values.device !== 'cpu' && values.device !== 'cuda')
    throw new RangeError(`Expected cpu or cuda for --device but received ${values.device}`);
  return { steps, out: values.out, device: values.device, quiet: values.quiet };
}
