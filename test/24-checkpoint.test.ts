// checkpoint.mergeCheckpoint called as a library: a small base checkpoint (assembled byte by byte)
// merged with a LoRA and a VeRA adapter equals merging in memory with lora.merge / vera.merge bit
// for bit, everything else is copied, progress is reported per tensor, and bad inputs throw the
// errors `lowrank merge` prints (test/21-cli.test.ts runs the command line itself).
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { checkpoint, lora, peft, tensor, vera, type MergeProgress } from '../lib/index.js';
import { errorOf, randomF32 } from './helpers/reference.js';
import { parseSafetensors, safetensorsBytes } from './helpers/safetensors-fixture.js';

const tmp = mkdtempSync(path.join(os.tmpdir(), 'lowrank-checkpoint-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const IN = 24,
  R = 4;
const Q = 'model.layers.0.self_attn.q_proj',
  V = 'model.layers.0.self_attn.v_proj';
const OUT: Record<string, number> = { [Q]: 20, [V]: 12 };
const W: Record<string, Float32Array> = { [Q]: randomF32(OUT[Q] * IN, 1, 0.2), [V]: randomF32(OUT[V] * IN, 2, 0.2) };
const embed = randomF32(16 * IN, 3);
const norm = randomF32(IN, 4);

const baseFile = path.join(tmp, 'model.safetensors');
writeFileSync(
  baseFile,
  safetensorsBytes([
    { name: 'model.embed_tokens.weight', dtype: 'F32', shape: [16, IN], data: embed },
    { name: `${Q}.weight`, dtype: 'F32', shape: [OUT[Q], IN], data: W[Q] },
    { name: `${V}.weight`, dtype: 'F32', shape: [OUT[V], IN], data: W[V] },
    { name: 'model.norm.weight', dtype: 'F32', shape: [IN], data: norm },
  ]),
);

const loraDir = path.join(tmp, 'lora');
const loraLayers = new Map(
  [Q, V].map(
    (m, i) =>
      [m, { A: tensor(randomF32(R * IN, 10 + i, 0.3), [R, IN]), B: tensor(randomF32(OUT[m] * R, 20 + i, 0.3), [OUT[m], R]) }] as const,
  ),
);
peft.saveAdapter(loraDir, { kind: 'lora', layers: loraLayers, rank: R, alpha: 8 });

const veraDir = path.join(tmp, 'vera');
const projections = vera.projections({ rank: R, maxIn: IN, maxOut: OUT[Q], seed: 5 });
const veraLayers = new Map(
  [Q, V].map((m, i) => [m, { lambdaD: tensor(randomF32(R, 30 + i), [R]), lambdaB: tensor(randomF32(OUT[m], 40 + i), [OUT[m]]) }] as const),
);
peft.saveAdapter(veraDir, { kind: 'vera', layers: veraLayers, projections });

/** The base weight of `module` merged in memory by `merge`. */
function mergedInMemory(module: string, merge: (Wt: ReturnType<typeof tensor>) => void): Buffer {
  const Wt = tensor(W[module].slice(), [OUT[module], IN]);
  merge(Wt);
  return Buffer.from(Wt.toFloat32Array().buffer);
}

describe('checkpoint.mergeCheckpoint', () => {
  it.each(['lora', 'vera'] as const)(
    '%s: merged weights equal lora.merge / vera.merge in memory bit for bit; the rest is copied',
    (method) => {
      const out = path.join(tmp, `merged-${method}.safetensors`);
      const progress: MergeProgress[] = [];
      const report = checkpoint.mergeCheckpoint({
        base: baseFile,
        adapter: method === 'lora' ? loraDir : veraDir,
        out,
        onProgress: (p) => progress.push(p),
      });
      expect(report).toMatchObject({ merged: 2, biases: 0, replaced: 0, copied: 2, converted: 0, tensors: 4, outputs: [out] });
      expect(report.bytesWritten).toBe(report.bytesRead);
      expect(progress.map((p) => p.tensors)).toEqual([1, 2, 3, 4]);
      expect(progress.every((p) => p.totalTensors === 4 && p.totalBytes === report.bytesRead)).toBe(true);
      expect(progress.at(-1)!.bytes).toBe(report.bytesRead);

      const merged = parseSafetensors(out);
      expect(merged.names).toEqual(['model.embed_tokens.weight', `${Q}.weight`, `${V}.weight`, 'model.norm.weight'].sort());
      for (const m of [Q, V]) {
        const want = mergedInMemory(m, (Wt) => {
          if (method === 'lora') lora.merge(Wt, loraLayers.get(m)!.A, loraLayers.get(m)!.B, 8 / R);
          else vera.merge(Wt, projections, veraLayers.get(m)!.lambdaD, veraLayers.get(m)!.lambdaB);
        });
        expect(Buffer.compare(merged.bytes(`${m}.weight`), want), m).toBe(0);
      }
      expect(Buffer.compare(merged.bytes('model.embed_tokens.weight'), Buffer.from(embed.buffer))).toBe(0);
      expect(Buffer.compare(merged.bytes('model.norm.weight'), Buffer.from(norm.buffer))).toBe(0);
    },
  );

  it('a directory out mirrors a one-file base as model.safetensors; dtype converts every tensor', () => {
    const out = path.join(tmp, 'merged-dir');
    const report = checkpoint.mergeCheckpoint({ base: tmp, adapter: loraDir, out, dtype: 'bfloat16' });
    expect(report).toMatchObject({ merged: 2, converted: 2, copied: 0, outputs: [path.join(out, checkpoint.MODEL_NAME)] });
    expect(report.bytesWritten).toBe(report.bytesRead / 2);
    expect(Object.values(parseSafetensors(report.outputs[0]).header).map((h) => (h as { dtype: string }).dtype)).toEqual([
      'BF16',
      'BF16',
      'BF16',
      'BF16',
    ]);
  });

  it('bad inputs throw the errors lowrank merge prints, and write nothing', () => {
    const nope = path.join(tmp, 'nope');
    const out = path.join(tmp, 'bad.safetensors');
    expect(errorOf(() => checkpoint.mergeCheckpoint({ base: nope, adapter: loraDir, out }))).toEqual({
      cls: 'RangeError',
      message: `Expected a .safetensors file or a model directory for --base but received "${nope}" (no such file or directory)`,
    });
    const other = path.join(tmp, 'other-base.safetensors');
    writeFileSync(other, safetensorsBytes([{ name: 'lm_head.weight', dtype: 'F32', shape: [2, 2], data: new Float32Array(4) }]));
    expect(errorOf(() => checkpoint.mergeCheckpoint({ base: other, adapter: veraDir, out }))).toEqual({
      cls: 'RangeError',
      message: `Expected a base tensor for every adapted layer (<module>.weight) of the adapter (with or without leading components such as "model.") for --base but received none for "${Q}.weight", "${V}.weight"`,
    });
    expect(errorOf(() => checkpoint.mergeCheckpoint({ base: baseFile, adapter: loraDir, out, dtype: 'float64' as 'float32' }))).toEqual({
      cls: 'RangeError',
      message: 'Expected float32, bfloat16 or float16 for --dtype but received "float64"',
    });
    expect(errorOf(() => checkpoint.mergeCheckpoint({ base: baseFile, adapter: loraDir, out: baseFile }))).toEqual({
      cls: 'RangeError',
      message: `Expected an output path other than the base checkpoint for --out but received "${baseFile}" (${baseFile} is a base file)`,
    });
    expect(errorOf(() => checkpoint.mergeCheckpoint(undefined as never))).toEqual({
      cls: 'TypeError',
      message: 'Expected an options object { base, adapter, out, dtype?, device?, onProgress? } for options but received undefined',
    });
    expect(errorOf(() => checkpoint.mergeCheckpoint({ base: baseFile, adapter: loraDir, out, onProgress: 1 as never }))).toEqual({
      cls: 'TypeError',
      message: 'Expected a function for options.onProgress but received 1',
    });
    expect(readdirSync(tmp).filter((f) => f.startsWith('bad.safetensors'))).toEqual([]);
  });
});
