// A base checkpoint + a PEFT adapter → a merged checkpoint, streamed shard by shard and tensor by
// tensor (SafetensorsFile in, SafetensorsWriter out): at most one base tensor (and its converted
// copy) is in memory at a time, never the whole checkpoint. `lowrank merge` (lib/cli/merge.ts) is
// this function with argv parsing and a progress bar; errors name the options as the command
// line spells them (--base, --adapter, --out, --dtype, --device).
//
// - Adapted layers: `<module>.weight` gets W + delta, computed in float32 (bfloat16 W kept as
//   bfloat16 when it stays bfloat16: one rounding to nearest). Biases change where the adapter
//   trained them (bias "all" / "lora_only" / "vera_only") or has lora_B.bias; modules_to_save
//   tensors replace the base's. Everything else is copied byte for byte.
// - Output dtype: `dtype` converts every floating-point tensor (a model in one dtype, as
//   torch's model.to(dtype) makes it); integer tensors and, without `dtype`, every tensor keep
//   the base's dtype.
// - Output layout: `out` ending in .safetensors is one file (a sharded base is joined); any
//   other `out` is a directory that mirrors the base: the same shard file names and a
//   model.safetensors.index.json (or model.safetensors for a one-file base).
// - Module paths: PEFT's key minus "base_model.model." names the module in the model PEFT
//   wrapped; a checkpoint may name it with or without leading components (LlamaForCausalLM's
//   "model.", GPT-2's "transformer."). Each adapter tensor maps to the base tensor of the same
//   name, else to the one base tensor that equals it after dropping leading components from
//   either side; none or several is an error.
// - Device: with device 'cuda' each adapted weight is uploaded, merged on the GPU and downloaded
//   into the same host buffer (one weight on the device at a time); everything else, biases
//   included, stays on the host.
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, readSync, statSync } from 'node:fs';
import path from 'node:path';
import { backends } from '../backends.js';
import { invalidRange, invalidRangeText, invalidType } from '../errors.js';
import { type HostMemory, native } from '../native.js';
import { FLOAT_DTYPES, dtypeBytes, dtypeCode, floatDTypeOfSafetensors, safetensorsName, type FloatDType } from '../dtype.js';
import * as lora from '../ops/lora.js';
import * as vera from '../ops/vera.js';
import { formatShape, tensor, Tensor } from '../tensor.js';
import { writeFileAtomic } from './atomic.js';
import { transpose } from './peft/adapter.js';
import * as peft from './peft/index.js';
import { transposedFactors } from './peft/vera.js';
import { SafetensorsFile, SafetensorsWriter, type SafetensorsDtype, type TensorEntry } from './safetensors.js';

export const INDEX_NAME = 'model.safetensors.index.json';
export const MODEL_NAME = 'model.safetensors';

export interface MergeProgress {
  /** Tensors written so far, and in all. */
  tensors: number;
  totalTensors: number;
  /** Bytes of base tensors processed so far, and in all. */
  bytes: number;
  totalBytes: number;
  /** The tensor just written. */
  name: string;
}

/** What mergeCheckpoint reads and writes (the CLI's --base, --adapter, --out, --dtype, --device). */
export interface MergeCheckpointOptions {
  /** A .safetensors file, a model.safetensors.index.json, or a directory holding either. */
  base: string;
  /** A PEFT adapter directory. */
  adapter: string;
  /** A .safetensors file, or a directory (mirrors the base's shards). */
  out: string;
  /** Convert every floating-point tensor to this dtype (default: each keeps its own). */
  dtype?: FloatDType;
  /** Where to compute the deltas (default cpu). */
  device?: 'cpu' | 'cuda';
  /** Called after each tensor is written. */
  onProgress?: (p: MergeProgress) => void;
}

export interface MergeReport {
  /** Adapted weights merged. */
  merged: number;
  /** Biases changed by the adapter, and tensors replaced by modules_to_save. */
  biases: number;
  replaced: number;
  /** Tensors copied byte for byte, and converted to --dtype unchanged otherwise. */
  copied: number;
  converted: number;
  tensors: number;
  /** Bytes of tensor data read from the base and written. */
  bytesRead: number;
  bytesWritten: number;
  outputs: string[];
  seconds: number;
  /** The process's peak resident set size (VmHWM, else getrusage's maxrss), and its resident set when the merge began. */
  peakRssBytes: number;
  startRssBytes: number;
  /** The largest tensor of the base, in bytes (for judging the peak). */
  largestTensorBytes: number;
}

// ---- the base checkpoint -----------------------------------------------------------------

interface BaseCheckpoint {
  /** Shard files, absolute, in the index's order of first appearance (or the one file). */
  shards: string[];
  /** The parsed index, when the base is sharded. */
  index?: { metadata?: Record<string, unknown>; weight_map: Record<string, string> };
}

/** Finds the base's shard files from a file, an index, or a directory. */
export function resolveBase(base: string): BaseCheckpoint {
  if (typeof base !== 'string' || base === '') throw invalidType('a path', '--base', base);
  const p = path.resolve(base);
  if (!existsSync(p)) throw invalidRange('a .safetensors file or a model directory', '--base', base, 'no such file or directory');
  if (statSync(p).isDirectory()) {
    const index = path.join(p, INDEX_NAME),
      single = path.join(p, MODEL_NAME);
    if (existsSync(index)) return readIndex(index);
    if (existsSync(single)) return { shards: [single] };
    throw invalidRange(`a directory with ${INDEX_NAME} or ${MODEL_NAME}`, '--base', base, 'it has neither');
  }
  if (p.endsWith('.index.json')) return readIndex(p);
  return { shards: [p] };
}

function readIndex(file: string): BaseCheckpoint {
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(file, 'utf8'));
  } catch (e) {
    throw invalidRangeText('a JSON object', file, `text that is not JSON (${(e as Error).message})`);
  }
  const index = parsed as BaseCheckpoint['index'];
  const map = index?.weight_map;
  if (typeof map !== 'object' || map === null || Array.isArray(map))
    throw invalidType('an object of tensor names to shard files', `weight_map in ${file}`, map);
  const shards: string[] = [];
  for (const [name, shard] of Object.entries(map)) {
    if (typeof shard !== 'string' || shard === '' || path.isAbsolute(shard) || shard.split(/[\\/]/).includes('..'))
      throw invalidType('a shard file name in the same directory', `weight_map[${JSON.stringify(name)}] in ${file}`, shard);
    const full = path.join(path.dirname(file), shard);
    if (!shards.includes(full)) shards.push(full);
  }
  for (const s of shards)
    if (!existsSync(s))
      throw invalidRangeText('shard files that exist', `weight_map in ${file}`, `${JSON.stringify(path.basename(s))} (no such file)`);
  return { shards, index };
}

// ---- module matching ---------------------------------------------------------------------

export interface NameMatch {
  matched: Map<string, string>;
  missing: string[];
  ambiguous: Array<[string, string[]]>;
}

/**
 * Maps each wanted dotted name (an adapter's `<module>.weight`) to the one available name (a base
 * tensor) it denotes: itself; else the one available name that ends with "." + it (the base
 * has extra leading components); else the longest tail of it that is available (the adapter
 * has extra leading components).
 */
export function matchNames(wanted: Iterable<string>, available: Iterable<string>): NameMatch {
  const avail = new Set(available);
  const bySuffix = new Map<string, string[]>();
  for (const a of avail) {
    for (let i = a.indexOf('.'); i >= 0; i = a.indexOf('.', i + 1)) {
      const tail = a.slice(i + 1);
      const list = bySuffix.get(tail);
      if (list) list.push(a);
      else bySuffix.set(tail, [a]);
    }
  }
  const result: NameMatch = { matched: new Map(), missing: [], ambiguous: [] };
  for (const w of wanted) {
    if (avail.has(w)) {
      result.matched.set(w, w);
      continue;
    }
    const longer = bySuffix.get(w);
    if (longer && longer.length === 1) {
      result.matched.set(w, longer[0]);
      continue;
    }
    if (longer && longer.length > 1) {
      result.ambiguous.push([w, longer]);
      continue;
    }
    let found: string | undefined;
    for (let i = w.indexOf('.'); i >= 0 && !found; i = w.indexOf('.', i + 1)) if (avail.has(w.slice(i + 1))) found = w.slice(i + 1);
    if (found) result.matched.set(w, found);
    else result.missing.push(w);
  }
  return result;
}

function checkMatch(m: NameMatch, what: string): void {
  if (m.ambiguous.length) {
    const [w, list] = m.ambiguous[0];
    throw invalidRangeText(
      `one base tensor for the adapter's ${what}`,
      JSON.stringify(w),
      `${list.length}: ${list
        .slice(0, 4)
        .map((s) => JSON.stringify(s))
        .join(', ')}`,
    );
  }
  if (m.missing.length) {
    const list =
      m.missing
        .slice(0, 3)
        .map((s) => JSON.stringify(s))
        .join(', ') + (m.missing.length > 3 ? `, … (${m.missing.length} in all)` : '');
    throw invalidRangeText(
      `a base tensor for every ${what} of the adapter (with or without leading components such as "model.")`,
      '--base',
      `none for ${list}`,
    );
  }
}

// ---- the merge ---------------------------------------------------------------------------

const MiB = 1024 * 1024;
/** Unchanged tensors move in pieces of at most this many bytes (or elements, when converted). */
const CHUNK_BYTES = 16 * MiB;
const CHUNK_ELEMENTS = 4 * MiB;
const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

const elements = (e: TensorEntry) => e.shape.reduce((a, b) => a * b, 1);

/** The dtype a changed tensor is worked on in: bfloat16 W merges as bfloat16 when it stays so, else float32. */
function workDtype(kind: 'merge' | 'bias' | 'replace', stored: FloatDType, target: FloatDType): FloatDType {
  if (kind !== 'merge') return 'float32';
  return stored === 'float32' || (stored === 'bfloat16' && target === 'bfloat16') ? stored : 'float32';
}

/** Converts between float32 / bfloat16 / float16 storage (round to nearest even) into `dst`. */
function convert(src: HostMemory, from: FloatDType, dst: HostMemory, to: FloatDType): void {
  if (from === to) dst.set(src);
  else native().convert({ src: { data: src, dtype: dtypeCode(from) }, dst: { data: dst, dtype: dtypeCode(to) } });
}

/**
 * The process's peak resident set: VmHWM from /proc/self/status where there is one. (getrusage's
 * maxrss is no good for a child process on Linux: it starts from the parent's resident set at
 * fork, carried across exec.)
 */
function peakRss(): number {
  try {
    const m = /^VmHWM:\s*(\d+)\s*kB/m.exec(readFileSync('/proc/self/status', 'utf8'));
    if (m) return Number(m[1]) * 1024;
  } catch {
    // not Linux
  }
  return process.resourceUsage().maxRSS * 1024;
}

/** Whether every value of a float32 / 16-bit tensor is finite. */
function allFinite(t: Tensor): boolean {
  const s = t.storage();
  if (s instanceof Float32Array) {
    for (let i = 0; i < s.length; i++) if (!Number.isFinite(s[i])) return false;
    return true;
  }
  const exp = t.dtype === 'bfloat16' ? 0x7f80 : 0x7c00;
  for (let i = 0; i < s.length; i++) if ((s[i] & exp) === exp) return false;
  return true;
}

function checkDevice(device: unknown): 'cpu' | 'cuda' {
  if (device === undefined || device === 'cpu') return 'cpu';
  if (device !== 'cuda') throw invalidRange('cpu or cuda', '--device', device);
  const cuda = backends().cuda;
  if (!cuda.available)
    throw invalidRange('an available device', '--device', device, `CUDA is unavailable: ${cuda.reason ?? 'unknown reason'}`);
  return 'cuda';
}

/**
 * peft.mergeWeight on CUDA: W (host, as stored) gets the module's delta computed on the device
 * and is written back in place. LoRA: W += s·B A ([out, in]), or with fan_in_fan_out W [in, out]
 * += s·Aᵀ Bᵀ (a merge with Bᵀ as "A" and Aᵀ as "B"). VeRA: its merge with the shared
 * projections (moved once), or with fan_in_fan_out a merge of (λd ⊙ A)ᵀ and (λb ⊙ B)ᵀ formed on
 * the host by peft/vera.ts's transposedFactors (r × in and r × out: small).
 */
class CudaMerger {
  readonly #adapter: peft.Adapter;
  #projections: vera.VeraProjectionPair | null = null;

  constructor(adapter: peft.Adapter) {
    this.#adapter = adapter;
  }

  merge(module: string, W: Tensor): void {
    const moved: Tensor[] = [];
    const onDevice = (t: Tensor) => {
      const d = t.to('cuda');
      moved.push(d);
      return d;
    };
    const host: Tensor[] = [];
    const made = (t: Tensor) => {
      host.push(t);
      return t;
    };
    try {
      const Wd = onDevice(W);
      const a = this.#adapter;
      const fifo = a.fanInFanOut;
      if (a.kind === 'lora') {
        const l = a.layers.get(module)!;
        if (fifo) lora.merge(Wd, onDevice(made(transpose(l.B))), onDevice(made(transpose(l.A))), l.scale);
        else lora.merge(Wd, onDevice(l.A), onDevice(l.B), l.scale);
      } else {
        const l = a.layers.get(module)!;
        if (!fifo) {
          this.#projections ??= { A: a.projections.A.to('cuda'), B: a.projections.B.to('cuda') };
          vera.merge(Wd, this.#projections, onDevice(l.lambdaD), onDevice(l.lambdaB));
        } else {
          const { bB, dA } = transposedFactors(a, l, W.shape[0]);
          made(bB);
          made(dA);
          lora.merge(Wd, onDevice(bB), onDevice(dA), 1);
        }
      }
      native().cudaDownload({ block: Wd.deviceHandle('W'), dst: W.storage('W') });
    } finally {
      for (const t of [...moved, ...host]) t.dispose();
    }
  }

  dispose(): void {
    this.#projections?.A.dispose();
    this.#projections?.B.dispose();
    this.#projections = null;
  }
}

/**
 * Merges the PEFT adapter directory `options.adapter` (LoRA or VeRA) into the base checkpoint
 * `options.base`, streaming, and writes the result to `options.out` (see the top of this file for
 * what changes and the layout written). Returns what it wrote: the counts, bytes and output files
 * (`outputs`, the index last). `onProgress` is called after each tensor is written. Bad inputs
 * throw the RangeError / TypeError `lowrank merge` prints. Each output file is written atomically:
 * a failed merge leaves no half-written file.
 */
export function mergeCheckpoint(options: MergeCheckpointOptions): MergeReport {
  if (typeof options !== 'object' || options === null)
    throw invalidType('an options object { base, adapter, out, dtype?, device?, onProgress? }', 'options', options);
  if (options.onProgress !== undefined && typeof options.onProgress !== 'function')
    throw invalidType('a function', 'options.onProgress', options.onProgress);
  const o = options;
  const started = performance.now();
  const startRssBytes = process.memoryUsage.rss();
  const device = checkDevice(o.device);
  if (!LITTLE_ENDIAN)
    throw new RangeError(
      'Expected a little-endian host for lowrank merge but received a big-endian one (it copies safetensors data as stored)',
    );
  if (o.dtype !== undefined && !(FLOAT_DTYPES as readonly unknown[]).includes(o.dtype))
    throw invalidRange('float32, bfloat16 or float16', '--dtype', o.dtype);
  if (typeof o.out !== 'string' || o.out === '') throw invalidType('a path', '--out', o.out);
  const base = resolveBase(o.base);
  const summary = peft.describeAdapter(o.adapter);

  const files: SafetensorsFile[] = [];
  const writers: SafetensorsWriter[] = [];
  let adapter: peft.Adapter | undefined;
  let merger: CudaMerger | undefined;
  try {
    // Headers of every shard: where each tensor lives.
    const where = new Map<string, { file: SafetensorsFile; entry: TensorEntry }>();
    let largest = 0,
      totalBytes = 0;
    for (const shard of base.shards) {
      const f = SafetensorsFile.open(shard);
      files.push(f);
      for (const entry of f.entries) {
        if (where.has(entry.name))
          throw invalidRangeText(
            'distinct tensor names across shards',
            '--base',
            `${JSON.stringify(entry.name)} in ${where.get(entry.name)!.file.path} and ${shard}`,
          );
        where.set(entry.name, { file: f, entry });
        largest = Math.max(largest, entry.end - entry.begin);
        totalBytes += entry.end - entry.begin;
      }
    }
    if (base.index) {
      for (const [name, shard] of Object.entries(base.index.weight_map)) {
        const w = where.get(name);
        if (!w || path.basename(w.file.path) !== path.basename(shard))
          throw invalidRangeText(`the tensors its index lists`, '--base', `no ${JSON.stringify(name)} in ${shard}`);
      }
    }

    // Adapter modules → base tensors.
    const names = [...where.keys()];
    const weightMatch = matchNames(
      summary.layers.map((l) => `${l.module}.weight`),
      names,
    );
    checkMatch(weightMatch, 'adapted layer (<module>.weight)');
    const biasMatch = matchNames(
      [...new Set([...summary.biases, ...summary.layers.filter((l) => l.shapes['lora_B.bias']).map((l) => l.module)])].map(
        (m) => `${m}.bias`,
      ),
      names,
    );
    checkMatch(biasMatch, 'trained bias (<module>.bias)');
    const savedMatch = matchNames(summary.modulesToSave, names);
    checkMatch(savedMatch, 'modules_to_save tensor');

    const fifo = summary.fanInFanOut;
    const baseShapes = new Map<string, [number, number]>();
    for (const l of summary.layers) {
      const e = where.get(weightMatch.matched.get(`${l.module}.weight`)!)!.entry;
      if (e.shape.length === 2) baseShapes.set(l.module, fifo ? [e.shape[1], e.shape[0]] : [e.shape[0], e.shape[1]]);
    }
    adapter = peft.loadAdapter(summary.dir, { baseShapes });
    if (device === 'cuda') merger = new CudaMerger(adapter);

    // What happens to each base tensor.
    type Action = { kind: 'merge'; module: string } | { kind: 'bias'; module: string } | { kind: 'replace'; tensor: Tensor };
    const actions = new Map<string, Action>();
    for (const l of summary.layers) {
      const name = weightMatch.matched.get(`${l.module}.weight`)!;
      const { file, entry: e } = where.get(name)!;
      const at = `${name} in ${file.path}`;
      if (!floatDTypeOfSafetensors(e.dtype)) throw invalidRangeText('a floating-point weight (F32, BF16 or F16)', at, e.dtype);
      // LoRA knows in (lora_A's columns); VeRA only that in fits the projections.
      const maxIn = adapter.kind === 'vera' ? adapter.projections.A.shape[1] : (l.in as number);
      const [outAxis, inAxis] = fifo ? [1, 0] : [0, 1];
      const fits =
        e.shape.length === 2 && e.shape[outAxis] === l.out && (l.in !== undefined ? e.shape[inAxis] === l.in : e.shape[inAxis] <= maxIn);
      if (!fits)
        throw invalidRangeText(
          `shape ${fifo ? '[in, out]' : '[out, in]'} with out = ${l.out} and in ${l.in !== undefined ? `= ${l.in}` : `<= ${maxIn}`} (the adapter's ${l.module})`,
          at,
          formatShape(e.shape),
        );
      actions.set(name, { kind: 'merge', module: l.module });
    }
    for (const [wanted, name] of biasMatch.matched) {
      const module = wanted.slice(0, -'.bias'.length);
      const e = where.get(name)!.entry;
      if (!floatDTypeOfSafetensors(e.dtype) || e.shape.length !== 1)
        throw invalidRangeText(
          'a 1-D floating-point bias',
          `${name} in ${where.get(name)!.file.path}`,
          `${e.dtype} ${formatShape(e.shape)}`,
        );
      actions.set(name, { kind: 'bias', module });
    }
    for (const [wanted, name] of savedMatch.matched) {
      const t = adapter.modulesToSave.get(wanted)!;
      const e = where.get(name)!.entry;
      if (e.shape.length !== t.shape.length || e.shape.some((d, i) => d !== t.shape[i]))
        throw invalidRangeText(
          `shape ${formatShape(e.shape)} (the base's ${name})`,
          `the adapter's modules_to_save tensor ${JSON.stringify(wanted)}`,
          formatShape(t.shape),
        );
      actions.set(name, { kind: 'replace', tensor: t });
    }

    // Output files.
    const outDtype = (e: TensorEntry): SafetensorsDtype =>
      o.dtype && floatDTypeOfSafetensors(e.dtype) ? safetensorsName(o.dtype) : e.dtype;
    const outPath = path.resolve(o.out);
    const single = outPath.endsWith('.safetensors');
    const plan: Array<{ path: string; names: string[]; metadata: Record<string, string> }> = [];
    if (single) {
      mkdirSync(path.dirname(outPath), { recursive: true });
      plan.push({ path: outPath, names: files.flatMap((f) => f.entries.map((e) => e.name)), metadata: files[0]?.metadata ?? {} });
    } else {
      mkdirSync(outPath, { recursive: true });
      for (const f of files)
        plan.push({
          path: path.join(outPath, base.index ? path.basename(f.path) : MODEL_NAME),
          names: f.entries.map((e) => e.name),
          metadata: f.metadata,
        });
    }
    for (const p of plan)
      if (base.shards.some((s) => path.resolve(s) === p.path))
        throw invalidRange('an output path other than the base checkpoint', '--out', o.out, `${p.path} is a base file`);

    const report: MergeReport = {
      merged: 0,
      biases: 0,
      replaced: 0,
      copied: 0,
      converted: 0,
      tensors: 0,
      bytesRead: 0,
      bytesWritten: 0,
      outputs: [],
      seconds: 0,
      peakRssBytes: 0,
      startRssBytes,
      largestTensorBytes: largest,
    };
    const totalTensors = where.size;
    const weightMap: Record<string, string> = {};
    let totalSize = 0;

    // Scratch buffers, sized once from the plan and reused for every tensor (no allocation per
    // tensor, so nothing waits for the garbage collector): `raw` holds a tensor's bytes as read
    // (whole for the tensors the adapter changes, in pieces of at most CHUNK bytes for the others),
    // `wide` a float32 working copy when the stored dtype is not merged directly, `narrow` the
    // result converted to the output dtype, `piece` a converted piece of an unchanged tensor.
    const need = { raw: CHUNK_BYTES, wide: 0, narrow: 0, piece: 0 };
    for (const [name, action] of actions) {
      const e = where.get(name)!.entry;
      const n = elements(e),
        S = floatDTypeOfSafetensors(e.dtype)!,
        D = floatDTypeOfSafetensors(outDtype(e))!;
      need.raw = Math.max(need.raw, e.end - e.begin);
      const work = workDtype(action.kind, S, D);
      if (action.kind === 'merge' && work !== S) need.wide = Math.max(need.wide, 4 * n);
      if (work !== D) need.narrow = Math.max(need.narrow, n * dtypeBytes(D));
    }
    for (const { entry: e } of where.values())
      if (!actions.has(e.name) && outDtype(e) !== e.dtype)
        need.piece = Math.max(need.piece, Math.min(elements(e), CHUNK_ELEMENTS) * dtypeBytes(floatDTypeOfSafetensors(outDtype(e))!));
    const raw = new ArrayBuffer(need.raw),
      wide = new ArrayBuffer(need.wide),
      narrow = new ArrayBuffer(need.narrow),
      piece = new ArrayBuffer(need.piece);
    const fds = new Map(files.map((f) => [f, openSync(f.path, 'r')] as const));
    const readInto = (f: SafetensorsFile, e: TensorEntry, offset: number, bytes: number) => {
      const dst = new Uint8Array(raw, 0, bytes);
      for (let done = 0; done < bytes;) {
        const n = readSync(fds.get(f)!, dst, done, bytes - done, f.headerBytes + e.begin + offset + done);
        if (n === 0) throw invalidRangeText(`${e.end - e.begin} bytes of data`, `${e.name} in ${f.path}`, 'a file that ends early');
        done += n;
      }
      return dst;
    };
    const view = (buffer: ArrayBuffer, dtype: FloatDType, n: number) =>
      dtype === 'float32' ? new Float32Array(buffer, 0, n) : new Uint16Array(buffer, 0, n);
    try {
      for (const p of plan) {
        const declared = p.names.map((name) => {
          const e = where.get(name)!.entry;
          return { name, dtype: outDtype(e), shape: [...e.shape] };
        });
        const writer = new SafetensorsWriter(p.path, declared, p.metadata);
        writers.push(writer);
        for (const name of writer.order) {
          const { file, entry } = where.get(name)!;
          const target = outDtype(entry);
          const action = actions.get(name);
          const bytes = entry.end - entry.begin;
          let written = 0;
          if (!action && target === entry.dtype) {
            // Unchanged: copied in pieces.
            for (let off = 0; off < bytes; off += raw.byteLength) {
              const len = Math.min(raw.byteLength, bytes - off);
              writer.write(name, readInto(file, entry, off, len));
            }
            written = bytes;
            report.copied += 1;
          } else if (!action) {
            // Unchanged but converted to --dtype: piece by piece.
            const S = floatDTypeOfSafetensors(entry.dtype)!,
              D = floatDTypeOfSafetensors(target)!,
              n = elements(entry);
            for (let i = 0; i < n; i += CHUNK_ELEMENTS) {
              const m = Math.min(CHUNK_ELEMENTS, n - i);
              const src = readInto(file, entry, i * dtypeBytes(S), m * dtypeBytes(S));
              const dst = view(piece, D, m);
              convert(view(src.buffer, S, m), S, dst, D);
              writer.write(name, new Uint8Array(dst.buffer, 0, dst.byteLength));
              written += dst.byteLength;
            }
            report.converted += 1;
          } else {
            const S = floatDTypeOfSafetensors(entry.dtype)!,
              D = floatDTypeOfSafetensors(target)!,
              n = elements(entry);
            readInto(file, entry, 0, bytes);
            const work = workDtype(action.kind, S, D);
            const wrappers: Tensor[] = [];
            const wrap = (buffer: ArrayBuffer, dtype: FloatDType) => {
              const t = tensor(view(buffer, dtype, n), [...entry.shape], { dtype });
              wrappers.push(t);
              return t;
            };
            try {
              let result: Tensor;
              if (action.kind === 'merge') {
                // float32 W, or bfloat16 W that stays bfloat16 (one rounding); else a float32 copy.
                let W = wrap(raw, S);
                if (work !== S) {
                  const w = wrap(wide, 'float32');
                  convert(W.storage(), S, w.storage(), 'float32');
                  W = w;
                }
                if (merger) merger.merge(action.module, W);
                else peft.mergeWeight(adapter, action.module, W);
                if (!allFinite(W))
                  throw invalidRangeText(
                    'finite values after merging',
                    name,
                    `non-finite values (the adapter's ${action.module} overflows)`,
                  );
                result = W;
                report.merged += 1;
              } else if (action.kind === 'bias') {
                result = peft.mergedBias(adapter, action.module, wrap(raw, S))!;
                wrappers.push(result);
                report.biases += 1;
              } else {
                result = action.tensor;
                report.replaced += 1;
              }
              let out = result.storage();
              if (result.dtype !== D) {
                const dst = view(narrow, D, n);
                convert(out, result.dtype as FloatDType, dst, D); // adapters hold float tensors only (peft refuses int32)
                out = dst;
              }
              const outBytes = new Uint8Array(out.buffer, out.byteOffset, out.byteLength);
              writer.write(name, outBytes);
              written = outBytes.byteLength;
            } finally {
              for (const t of wrappers) t.dispose();
            }
          }
          report.bytesRead += bytes;
          report.bytesWritten += written;
          totalSize += written;
          weightMap[name] = path.basename(p.path);
          report.tensors += 1;
          o.onProgress?.({ tensors: report.tensors, totalTensors, bytes: report.bytesRead, totalBytes, name });
        }
        writer.commit();
        writers.pop();
        report.outputs.push(p.path);
      }
    } finally {
      for (const fd of fds.values()) closeSync(fd);
    }
    if (!single && base.index) {
      const index = { metadata: { ...(base.index.metadata ?? {}), total_size: totalSize }, weight_map: weightMap };
      const indexPath = path.join(outPath, INDEX_NAME);
      writeFileAtomic(indexPath, peft.pythonJson(index) + '\n');
      report.outputs.push(indexPath);
    }
    report.seconds = (performance.now() - started) / 1000;
    report.peakRssBytes = peakRss();
    return report;
  } finally {
    for (const w of writers) w.abort();
    for (const f of files) f.close();
    merger?.dispose();
    adapter?.dispose();
  }
}
