// Cross-check against PyTorch on the CPU (needs torch, not part of npm test):
//   node bench/torch-crosscheck.mjs out.json && python3 bench/torch_crosscheck.py out.json
// lowrank runs AdamW (two groups, 5 steps), a LoRA forward + backward and nn.infoNce (three
// configurations, with gradients) here and saves inputs and results; the Python side reruns them
// with torch.optim.AdamW, autograd, and sentence-transformers' MultipleNegativesRankingLoss and
// MultipleNegativesSymmetricRankingLoss written out in torch, and compares.
import { writeFileSync } from 'node:fs';
import { lora, nn, optim, randn } from '../dist/index.js';
// AdamW: 2 groups, 5 steps with fresh grads; LoRA forward/backward with dropout off.
const n1 = 1000,
  n2 = 777;
const p1 = randn([n1], { seed: 1 }),
  p2 = randn([n2], { seed: 2 });
const g1 = randn([n1], { seed: 3 }),
  g2 = randn([n2], { seed: 4 });
const init = { p1: p1.toFloat32Array(), p2: p2.toFloat32Array() };
const grads = [];
const opt = new optim.AdamW([
  { params: [{ param: p1, grad: g1 }], lr: 1e-2, weightDecay: 0.1 },
  { params: [{ param: p2, grad: g2 }], lr: 3e-3, weightDecay: 0, betas: [0.8, 0.99], eps: 1e-6 },
]);
for (let s = 0; s < 5; s++) {
  const a = randn([n1], { seed: 100 + s }).toFloat32Array(),
    b = randn([n2], { seed: 200 + s }).toFloat32Array();
  g1.storage().set(a);
  g2.storage().set(b);
  grads.push([a, b]);
  opt.step();
}
const T = 33,
  I = 45,
  O = 37,
  R = 8;
const x = randn([T, I], { seed: 5 }),
  W = randn([O, I], { seed: 6, std: 0.1 }),
  A = randn([R, I], { seed: 7, std: 0.1 }),
  B = randn([O, R], { seed: 8 }),
  dy = randn([T, O], { seed: 9 });
const { y, saved } = lora.forward(x, W, A, B, { scale: 1.5 });
const g = lora.backward(dy, saved);
// InfoNCE: N queries, N positives and M hard negatives shared by all, D features.
const N = 33,
  D = 48;
const infonce = [
  { M: 5, scale: 20, symmetric: false },
  { M: 0, scale: 20, symmetric: true },
  { M: 7, scale: 7.5, symmetric: true },
].map((c, i) => {
  const q = randn([N, D], { seed: 20 + 2 * i }),
    p = randn([N + c.M, D], { seed: 21 + 2 * i });
  const r = nn.infoNce(q, p, { scale: c.scale, symmetric: c.symmetric, grad: true });
  return {
    ...c,
    ...Object.fromEntries(Object.entries({ q, p, loss: r.loss, dq: r.dq, dp: r.dp }).map(([k, t]) => [k, [...t.toFloat32Array()]])),
  };
});
const out = {
  infonce: { N, D, cases: infonce },
  init: { p1: [...init.p1], p2: [...init.p2] },
  grads: grads.map(([a, b]) => [[...a], [...b]]),
  final: { p1: [...p1.toFloat32Array()], p2: [...p2.toFloat32Array()] },
  lora: Object.fromEntries(
    Object.entries({ x, W, A, B, dy, y, dx: g.dx, dA: g.dA, dB: g.dB }).map(([k, t]) => [k, [...t.toFloat32Array()]]),
  ),
};
const file = process.argv[2] ?? 'lowrank-crosscheck.json';
writeFileSync(file, JSON.stringify(out));
console.log(`wrote ${file}; now: python3 bench/torch_crosscheck.py ${file}`);
