#!/usr/bin/env node
// Peak memory of `lowrank merge` on a large base checkpoint:
//   node bench/merge-memory.mjs [--gib 1] [--dir /tmp/lowrank-merge]
// Writes a base of `gib` GiB (float32 4096 x 4096 tensors, 64 MiB each) and a rank-16 LoRA
// adapter on two of them, runs the command in a child process, and prints its report (peak
// resident memory from /proc/self/status VmHWM) beside the largest tensor's size.
import { execFileSync } from 'node:child_process';
import { mkdirSync, rmSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { peft, randn, safetensors } from '../dist/index.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const { values } = parseArgs({
  options: { gib: { type: 'string', default: '1' }, dir: { type: 'string', default: '/tmp/lowrank-merge' } },
});
const count = Math.round(Number(values.gib) * 16);
const dir = values.dir;
rmSync(dir, { recursive: true, force: true });
mkdirSync(dir, { recursive: true });

const N = 4096;
const declared = Array.from({ length: count }, (_, i) => ({ name: `model.layers.${i}.proj.weight`, dtype: 'F32', shape: [N, N] }));
const writer = new safetensors.SafetensorsWriter(path.join(dir, 'model.safetensors'), declared);
for (const name of writer.order) {
  const t = randn([N, N], { seed: declared.findIndex((d) => d.name === name) + 1, std: 0.02 });
  const s = t.storage();
  writer.write(name, new Uint8Array(s.buffer, s.byteOffset, s.byteLength));
  t.dispose();
}
writer.commit();

const layers = {};
for (const i of [0, 1]) {
  layers[`model.layers.${i}.proj`] = {
    A: randn([16, N], { seed: 100 + i, std: 0.01 }),
    B: randn([N, 16], { seed: 200 + i, std: 0.01 }),
    scale: 2,
  };
}
peft.saveAdapter(path.join(dir, 'adapter'), { kind: 'lora', layers, rank: 16, alpha: 32 });

const report = execFileSync(
  process.execPath,
  [
    path.join(root, 'dist', 'cli', 'main.js'),
    'merge',
    '--base',
    path.join(dir, 'model.safetensors'),
    '--adapter',
    path.join(dir, 'adapter'),
    '--out',
    path.join(dir, 'merged.safetensors'),
    '--json',
  ],
  { encoding: 'utf8' },
);
console.log(`base: ${count} tensors of 64 MiB (${values.gib} GiB); largest tensor 64 MiB`);
console.log(report.trim());
rmSync(dir, { recursive: true, force: true });
