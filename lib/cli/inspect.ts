// `lowrank inspect <adapter dir | file.safetensors>`: what a PEFT adapter or a safetensors file
// holds, from its config and header only (no tensor data is read).
import { existsSync, statSync } from 'node:fs';
import path from 'node:path';
import { invalidRange, invalidType } from '../errors.js';
import * as peft from '../io/peft/index.js';
import { DTYPE_BYTES, SafetensorsFile } from '../io/safetensors.js';
import { formatShape } from '../tensor.js';

export interface SafetensorsSummary {
  kind: 'safetensors';
  file: string;
  bytes: number;
  metadata: Record<string, string>;
  entries: Array<{ name: string; dtype: string; shape: number[]; bytes: number }>;
  parameters: number;
  dtypes: Record<string, number>;
}

export type InspectResult = peft.AdapterSummary | SafetensorsSummary;

/** Summarises an adapter directory (or a file inside one) or a plain .safetensors file. */
export function inspect(target: string): InspectResult {
  if (typeof target !== 'string' || target === '') throw invalidType('a path', 'the path to inspect', target);
  if (!existsSync(target))
    throw invalidRange('an adapter directory or a .safetensors file', 'the path to inspect', target, 'no such file or directory');
  const isDir = statSync(target).isDirectory();
  // A model directory (no adapter_config.json): its one model.safetensors.
  if (isDir && !existsSync(path.join(target, peft.CONFIG_NAME)) && existsSync(path.join(target, 'model.safetensors')))
    return inspect(path.join(target, 'model.safetensors'));
  if (
    isDir ||
    path.basename(target) === peft.CONFIG_NAME ||
    (path.basename(target) === peft.WEIGHTS_NAME && existsSync(path.join(path.dirname(target), peft.CONFIG_NAME)))
  )
    return peft.describeAdapter(target);
  const f = SafetensorsFile.open(target);
  try {
    const dtypes: Record<string, number> = {};
    const entries = f.entries.map((e) => {
      dtypes[e.dtype] = (dtypes[e.dtype] ?? 0) + 1;
      return { name: e.name, dtype: e.dtype, shape: [...e.shape], bytes: e.end - e.begin };
    });
    const parameters = f.entries.reduce((n, e) => n + (e.end - e.begin) / DTYPE_BYTES[e.dtype], 0);
    return {
      kind: 'safetensors',
      file: path.resolve(target),
      bytes: statSync(target).size,
      metadata: { ...f.metadata },
      entries,
      parameters,
      dtypes,
    };
  } finally {
    f.close();
  }
}

export function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let v = n / 1024,
    u = 0;
  while (v >= 1024 && u < units.length - 1) [v, u] = [v / 1024, u + 1];
  return `${v.toFixed(v < 10 ? 2 : 1)} ${units[u]}`;
}

const num = (n: number) => String(Number.isInteger(n) ? n : Number(n.toPrecision(6)));

/** The human-readable report. */
export function formatInspect(r: InspectResult): string {
  const lines: string[] = [];
  const row = (k: string, v: string) => lines.push(`  ${k.padEnd(22)}${v}`);
  if (r.kind === 'safetensors') {
    lines.push(`${r.file}: safetensors, ${r.entries.length} tensors, ${num(r.parameters)} parameters, ${formatBytes(r.bytes)}`);
    row(
      'dtypes',
      Object.entries(r.dtypes)
        .map(([d, n]) => `${d} × ${n}`)
        .join(', ') || '(none)',
    );
    const meta = Object.entries(r.metadata);
    row('metadata', meta.length ? meta.map(([k, v]) => `${k}=${JSON.stringify(v)}`).join(', ') : '(none)');
    const width = Math.min(72, Math.max(4, ...r.entries.map((e) => e.name.length)));
    lines.push('');
    lines.push(`  ${'name'.padEnd(width)}  dtype  shape`);
    for (const e of r.entries) lines.push(`  ${e.name.padEnd(width)}  ${e.dtype.padEnd(5)}  ${formatShape(e.shape)}`);
    return lines.join('\n');
  }
  const method = r.kind === 'lora' ? `LoRA${r.rslora ? ' (rsLoRA)' : ''}` : 'VeRA';
  lines.push(`${r.dir}: PEFT ${method} adapter`);
  row('method', method);
  row('rank', String(r.rank));
  if (r.kind === 'lora') {
    row('alpha', num(r.alpha!));
    row('scale', `${num(r.scale!)} (alpha / ${r.rslora ? 'sqrt(r)' : 'r'})`);
  } else {
    row('projection seed', String(r.seed));
    row(
      'projections',
      r.projections
        ? `saved: vera_A ${formatShape(r.projections.A)}, vera_B ${formatShape(r.projections.B)}`
        : 'not saved (regenerated from the seed)',
    );
  }
  row(
    'target modules',
    r.targetModules === null
      ? '(none recorded)'
      : typeof r.targetModules === 'string'
        ? `regex ${JSON.stringify(r.targetModules)}`
        : r.targetModules.join(', '),
  );
  if (r.baseModel) row('base model', r.baseModel);
  if (r.fanInFanOut) row('fan_in_fan_out', 'true (base weights stored [in, out])');
  row('layers', String(r.layers.length));
  if (r.biases.length) row('trained biases', String(r.biases.length));
  if (r.modulesToSave.length) row('modules_to_save', r.modulesToSave.join(', '));
  row('trainable parameters', num(r.trainableParameters));
  row('dtype', r.dtypes.join(', '));
  row('files', `${peft.CONFIG_NAME} ${formatBytes(r.bytes.config)}, ${peft.WEIGHTS_NAME} ${formatBytes(r.bytes.weights)}`);
  lines.push('');
  const width = Math.min(72, Math.max(6, ...r.layers.map((l) => l.module.length)));
  lines.push(`  ${'module'.padEnd(width)}  ${r.kind === 'lora' ? 'lora_A      lora_B      r    scale' : 'vera_lambda_d  vera_lambda_b'}`);
  for (const l of r.layers) {
    if (r.kind === 'lora') {
      const A = formatShape(l.shapes['lora_A.weight']),
        B = formatShape(l.shapes['lora_B.weight']);
      lines.push(
        `  ${l.module.padEnd(width)}  ${A.padEnd(10)}  ${B.padEnd(10)}  ${String(l.rank).padEnd(3)}  ${num(l.scale!)}${l.shapes['lora_B.bias'] ? '  +lora_B.bias' : ''}`,
      );
    } else {
      lines.push(`  ${l.module.padEnd(width)}  ${formatShape(l.shapes.vera_lambda_d).padEnd(13)}  ${formatShape(l.shapes.vera_lambda_b)}`);
    }
  }
  return lines.join('\n');
}

/** JSON for --json (bigints as strings). */
export function inspectJson(r: InspectResult): string {
  return JSON.stringify(r, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v), 2);
}
