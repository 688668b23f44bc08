// npm start: fit a LoRA adapter on a frozen linear layer so that the layer learns a hidden
// low-rank change of its weight, on the CPU, then merge the adapter for inference.
//
//   teacher: y* = x (W0 + ΔW)ᵀ with ΔW of rank 4 (unknown to the student)
//   student: y  = x W0ᵀ + s · (x Aᵀ) Bᵀ with a rank-8 adapter; W0 frozen
import { backends, linear, lora, memory, randn, zeros } from 'lowrank';

const IN = 384,
  OUT = 256,
  T = 512,
  RANK = 8,
  ALPHA = 16,
  TRUE_RANK = 4;
const STEPS = 300,
  LR = 2e-3;
const scale = ALPHA / RANK;

const { cpu } = backends();
console.log(`lowrank: fitting a rank-${RANK} LoRA adapter to a rank-${TRUE_RANK} change of a ${OUT}x${IN} layer`);
console.log(`CPU: ${cpu.isa}, ${cpu.threads} threads; batch of ${T} fresh random inputs per step\n`);

// Frozen base weight and the hidden change ΔW = Bt·At (rank 4).
const W0 = randn([OUT, IN], { seed: 1, std: 1 / Math.sqrt(IN) });
const At = randn([TRUE_RANK, IN], { seed: 2, std: 1 / Math.sqrt(IN) });
const Bt = randn([OUT, TRUE_RANK], { seed: 3, std: 0.5 });

// The student's adapter, initialised as PEFT does (A kaiming-uniform, B = 0).
const { A, B } = lora.init({ inFeatures: IN, outFeatures: OUT, rank: RANK, seed: 4 });

// Adam on the adapter's two tensors (plain JavaScript; the optimizer kernels come later).
const params = [A, B].map((p) => ({ value: p.storage(), m: new Float32Array(p.size), v: new Float32Array(p.size) }));
function adamStep(grads, step) {
  const b1 = 0.9,
    b2 = 0.999,
    eps = 1e-8;
  const c1 = 1 - b1 ** step,
    c2 = 1 - b2 ** step;
  params.forEach((p, k) => {
    const g = grads[k];
    for (let i = 0; i < g.length; i++) {
      p.m[i] = b1 * p.m[i] + (1 - b1) * g[i];
      p.v[i] = b2 * p.v[i] + (1 - b2) * g[i] * g[i];
      p.value[i] -= (LR * (p.m[i] / c1)) / (Math.sqrt(p.v[i] / c2) + eps);
    }
  });
}

// How far the learned change s·B·A is from ΔW (relative Frobenius norm), using merge.
function deltaError() {
  const learned = zeros([OUT, IN]),
    truth = zeros([OUT, IN]);
  lora.merge(learned, A, B, scale);
  lora.merge(truth, At, Bt, 1);
  const l = learned.storage(),
    t = truth.storage();
  let num = 0,
    den = 0;
  for (let i = 0; i < l.length; i++) {
    num += (l[i] - t[i]) ** 2;
    den += t[i] ** 2;
  }
  learned.dispose();
  truth.dispose();
  return Math.sqrt(num / den);
}

const started = performance.now();
for (let step = 1; step <= STEPS; step++) {
  const x = randn([T, IN], { seed: 1000 + step });
  const target = lora.forward(x, W0, At, Bt, { scale: 1 });
  const { y, saved } = lora.forward(x, W0, A, B, { scale });
  // Mean squared error and its gradient dy = 2 (y − y*) / (T·OUT).
  const yv = y.storage(),
    tv = target.y.storage();
  const dy = zeros([T, OUT]);
  const dv = dy.storage();
  let loss = 0;
  for (let i = 0; i < yv.length; i++) {
    const d = yv[i] - tv[i];
    loss += d * d;
    dv[i] = (2 * d) / yv.length;
  }
  loss /= yv.length;
  const { dx, dA, dB } = lora.backward(dy, saved);
  adamStep([dA.storage(), dB.storage()], step);
  for (const t of [x, y, dy, dx, dA, dB, target.y]) t.dispose();
  saved.dispose();
  target.saved.dispose();
  if (step === 1 || step % 30 === 0)
    console.log(`step ${String(step).padStart(3)}  loss ${loss.toExponential(3)}  |sBA - ΔW| / |ΔW| = ${deltaError().toFixed(4)}`);
}
const seconds = (performance.now() - started) / 1000;

// Merge for zero-latency inference and check it computes the same function.
const x = randn([64, IN], { seed: 7 });
const viaAdapter = lora.forward(x, W0, A, B, { scale });
const merged = W0.clone();
lora.merge(merged, A, B, scale, { safe: true });
const viaMerged = linear.forward(x, merged); // the plain layer: no adapter product left
const a = viaAdapter.y.storage(),
  b = viaMerged.y.storage();
let maxDiff = 0,
  maxAbs = 0;
for (let i = 0; i < a.length; i++) {
  maxDiff = Math.max(maxDiff, Math.abs(a[i] - b[i]));
  maxAbs = Math.max(maxAbs, Math.abs(a[i]));
}
const last = deltaError();
console.log(`\n${STEPS} steps in ${seconds.toFixed(2)} s; the learned change is within ${(100 * last).toFixed(2)} % of ΔW`);
console.log(`merged weight vs adapter forward: max relative difference ${(maxDiff / maxAbs).toExponential(2)}`);
console.log(`live tensors: ${memory().numTensors}`);
if (!(last < 0.05) || !(maxDiff / maxAbs < 1e-5)) {
  console.error('lowrank: the example did not converge as expected');
  process.exit(1);
}
