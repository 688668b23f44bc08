// What every PEFT method shares (lora.ts, vera.ts): the adapter fields besides the layers, the
// scan of adapter_model.safetensors's header into per-module slots, trained biases and
// modules_to_save, the method interface index.ts's table holds, and the tensor helpers.
import { invalidRange, invalidRangeText, invalidType } from '../../errors.js';
import type { LoraVariant } from '../../layers/lora-linear.js';
import { floatDTypeOfSafetensors, type FloatDType } from '../../dtype.js';
import { formatShape, Tensor } from '../../tensor.js';
import { SafetensorsFile, type TensorEntry } from '../safetensors.js';
import { ConfigReader, MODULE_PREFIX, type PeftConfig } from './config.js';

// ---- the adapter objects -----------------------------------------------------------------

export interface AdapterCommon {
  /** adapter_config.json, every key kept (unknown keys survive saveAdapter). */
  config: PeftConfig;
  /** Where it was loaded from (absent for adapters built in memory). */
  dir?: string;
  /** The dtype its tensors were stored in; saveAdapter writes this dtype back by default. */
  dtype: FloatDType;
  /** fan_in_fan_out: the base stores W as [in, out] (GPT-2 Conv1D). */
  fanInFanOut: boolean;
  /** Trained biases [out] by module path (bias "all" / "lora_only" / "vera_only"): they replace the base's. */
  biases: Map<string, Tensor>;
  /** modules_to_save and saved embedding layers: whole tensors by name ("classifier.weight") that replace the base's. */
  modulesToSave: Map<string, Tensor>;
  /** Frees every tensor the adapter holds; safe to call twice. */
  dispose(): void;
  [Symbol.dispose](): void;
}

/** What saveAdapter accepts for either method besides the layers (AdapterCommon's fields, optional). */
export interface AdapterInputCommon {
  fanInFanOut?: boolean;
  biases?: Map<string, Tensor>;
  modulesToSave?: Map<string, Tensor>;
  /** A loaded adapter's config: its keys are kept (read-modify-write). */
  config?: PeftConfig;
  dtype?: FloatDType;
}

export interface LoadOptions {
  /**
   * The base weight shape [out, in] (nn.Linear layout, also for fan_in_fan_out) of each adapted
   * module. Needed only for VeRA saved with save_projection false, whose projections PEFT sizes by
   * the largest in over the adapted layers; only the adapter's own modules are read.
   */
  baseShapes?: Map<string, readonly [number, number] | readonly number[]>;
}

export interface SaveOptions {
  /** base_model_name_or_path. */
  baseModel?: string;
  /** target_modules (default: a loaded config's, else the last name of each adapted module). */
  targetModules?: string[] | string;
  /** Keys merged into adapter_config.json last (checked: the result must still describe the tensors). */
  extraConfig?: Record<string, unknown>;
  /** The dtype to store the tensors in (default: the adapter's `dtype`, else float32). */
  dtype?: FloatDType;
  /** VeRA: store vera_A / vera_B (default: the adapter's saveProjection, else true). */
  saveProjection?: boolean;
}

export interface LayerOptions {
  /** Dropout while training (default: the config's lora_dropout / vera_dropout). */
  dropout?: number;
  /** LoRA only: 'lora' (default), 'lora-fa' or 'delta-lora'. */
  variant?: LoraVariant;
  seed?: number;
}

export interface AdapterLayerSummary {
  module: string;
  /** Tensor shapes by PEFT's suffix (lora_A.weight, vera_lambda_b, ...). */
  shapes: Record<string, number[]>;
  out: number;
  /** LoRA: in features (from lora_A); VeRA: unknown from the adapter alone. */
  in?: number;
  rank: number;
  alpha?: number;
  scale?: number;
}

// ---- scanning the safetensors header ------------------------------------------------------

/** One module's adapter tensors by the method's slot name (lora.ts: A, B, loraBias). */
export type Slots = Partial<Record<string, TensorEntry>>;

export interface Scan {
  files: { dir: string; config: string; weights: string };
  reader: ConfigReader;
  file: SafetensorsFile;
  layers: Map<string, Slots>;
  /** Tensors outside any module that the method reads (VeRA's base_model.vera_A / vera_B), by key. */
  shared: Map<string, TensorEntry>;
  biases: Map<string, TensorEntry>;
  modulesToSave: Map<string, TensorEntry>;
  /** The dtype most of its tensors are stored in. */
  dtype: FloatDType;
}

/** A tensor to save under its PEFT key. */
export interface SavedTensor {
  name: string;
  tensor: Tensor;
}

/**
 * One PEFT method: a row of index.ts's table, keyed by peft_type. `A` is its adapter object,
 * `I` what saveAdapter takes for it.
 */
export interface PeftMethod<A extends AdapterCommon & { kind: string } = AdapterCommon & { kind: string }, I = unknown> {
  /** adapter_config.json's peft_type ("LORA"), the adapter's kind ('lora') and its name in messages ("LoRA"). */
  readonly peftType: string;
  readonly kind: A['kind'];
  readonly label: string;
  /** The keys it reads, for the error naming a key it does not. */
  readonly keys: string;
  /** The key every adapted layer has, for the error when a file has none ('<module>.lora_A.weight'). */
  readonly layerKey: string;
  /** Keys outside any module (not under base_model.model.) that it reads. */
  readonly sharedKeys: readonly string[];
  /** Refuses a config lowrank cannot read before the tensors are looked at (LoRA: use_dora). */
  checkConfig(reader: ConfigReader): void;
  /**
   * The module and slot of a layer tensor's key (the key minus base_model.model.), or undefined
   * for a key that is no adapter tensor (a trained bias, a modules_to_save tensor); throws
   * `unexpected` for a key of the method it does not read.
   */
  slotOf(rest: string, unexpected: (detail?: string) => RangeError): [module: string, slot: string] | undefined;
  /** The summary fields describeAdapter adds for this method, and its adapter tensors' element count. */
  describe(s: Scan): { summary: MethodSummary; trainable: number };
  /** The adapter from a scan; `read` loads a tensor as float32, `own` hands a made one to the adapter's dispose. */
  load(
    s: Scan,
    read: (e: TensorEntry) => Tensor,
    own: (t: Tensor) => void,
    common: Omit<AdapterCommon, 'fanInFanOut'>,
    options: LoadOptions,
  ): A;
  /** The config (defaults under `adapter.config`'s keys) and the tensors saveAdapter writes for the layers. */
  save(adapter: I | A, o: SaveOptions): { config: PeftConfig; tensors: SavedTensor[]; modules: string[] };
  /** Checks that a config being saved still describes the tensors (extraConfig may have changed it). */
  checkSaved(c: ConfigReader, tensors: readonly SavedTensor[]): void;
  /** W ← W + delta for the layer `module`, W as stored (see index.ts's mergeWeight). */
  mergeWeight(adapter: A, module: string, W: Tensor, safe: boolean): void;
}

/** The method's fields of an AdapterSummary (index.ts), in the order describeAdapter lists them. */
export interface MethodSummary {
  rank: number;
  alpha?: number;
  scale?: number;
  rslora?: boolean;
  seed?: bigint;
  saveProjection?: boolean;
  /** VeRA: the stored projections' shapes, or null when regenerated from the seed. */
  projections?: { A: number[]; B: number[] } | null;
  fanInFanOut: boolean;
  layers: AdapterLayerSummary[];
}

function unexpectedKey(file: string, m: PeftMethod, key: string, detail?: string): RangeError {
  return invalidRange(m.keys, `a tensor name in ${file}`, key, detail);
}

/** The module a non-adapter key belongs to, with PEFT's wrapper segments removed. */
function plainName(name: string): string {
  return name.replace(/\.base_layer(?=\.)/g, '').replace(/\.modules_to_save(?=\.)/g, '');
}

/** Sorts every tensor of the adapter file into the method's slots, trained biases and modules_to_save. */
export function scan(files: Scan['files'], reader: ConfigReader, m: PeftMethod): Scan {
  m.checkConfig(reader);
  const file = SafetensorsFile.open(files.weights);
  try {
    const layers = new Map<string, Slots>();
    const shared = new Map<string, TensorEntry>();
    const biases = new Map<string, TensorEntry>();
    const modulesToSave = new Map<string, TensorEntry>();
    const dtypes = new Map<FloatDType, number>();
    for (const e of file.entries) {
      const dtype = floatDTypeOfSafetensors(e.dtype);
      if (!dtype) throw invalidRange('a floating-point tensor (F32, BF16 or F16)', `${e.name} in ${files.weights}`, e.dtype);
      dtypes.set(dtype, (dtypes.get(dtype) ?? 0) + 1);
      const k = e.name;
      if (m.sharedKeys.includes(k)) {
        shared.set(k, e);
        continue;
      }
      if (!k.startsWith(MODULE_PREFIX)) throw unexpectedKey(files.weights, m, k, `it does not start with ${JSON.stringify(MODULE_PREFIX)}`);
      const rest = k.slice(MODULE_PREFIX.length);
      const slot = m.slotOf(rest, (detail) => unexpectedKey(files.weights, m, k, detail));
      if (slot) {
        const [module, which] = slot;
        if (module === '') throw unexpectedKey(files.weights, m, e.name, 'it names no module');
        let s = layers.get(module);
        if (!s) layers.set(module, (s = {}));
        s[which] = e;
      } else if (rest.includes('.original_module.'))
        continue; // modules_to_save's frozen original
      else if (rest.endsWith('.bias') && rest.length > '.bias'.length) biases.set(plainName(rest).slice(0, -'.bias'.length), e);
      else modulesToSave.set(plainName(rest), e);
    }
    if (layers.size === 0)
      throw invalidRangeText(`at least one adapted layer (${m.layerKey})`, files.weights, `${file.entries.length} tensors and no such key`);
    const dtype = [...dtypes.entries()].sort((a, b) => b[1] - a[1])[0]?.[0] ?? 'float32';
    return { files, reader, file, layers, shared, biases, modulesToSave, dtype };
  } catch (e) {
    file.close();
    throw e;
  }
}

export const shapeText = (s: readonly number[]) => formatShape(s);

/** The error for a layer tensor without its partner. */
export function missing(file: string, want: string, module: string, have: string): RangeError {
  return invalidRangeText(`${MODULE_PREFIX}${module}.${want} beside .${have}`, file, 'no such key');
}

const sizeOf = (shape: readonly number[]) => shape.reduce((a, b) => a * b, 1);

export function sumSizes(entries: readonly TensorEntry[]): number {
  return entries.reduce((n, e) => n + sizeOf(e.shape), 0);
}

/** Reads a tensor as float32 (converting BF16 / F16). */
export function readF32(file: SafetensorsFile, name: string): Tensor {
  const t = file.read(name);
  if (t.dtype === 'float32') return t;
  const f = t.astype('float32');
  t.dispose();
  return f;
}

// ---- using an adapter ---------------------------------------------------------------------

export function layerOf<T>(layers: Map<string, T>, module: unknown): T {
  if (typeof module !== 'string') throw invalidType('a module path', 'modulePath', module);
  const layer = layers.get(module);
  if (layer === undefined) {
    const names = [...layers.keys()];
    const list =
      names
        .slice(0, 4)
        .map((n) => JSON.stringify(n))
        .join(', ') + (names.length > 4 ? `, … (${names.length} in all)` : '');
    throw invalidRange(`one of the adapter's modules (${list})`, 'modulePath', module);
  }
  return layer;
}

/** A new [cols, rows] tensor holding t's transpose (float32 or 16-bit storage). */
export function transpose(t: Tensor): Tensor {
  const [rows, cols] = t.shape as [number, number];
  const out = Tensor.empty([cols, rows], t.dtype, 'cpu');
  const src = t.storage(),
    dst = out.storage();
  for (let i = 0; i < rows; i++) for (let j = 0; j < cols; j++) dst[j * rows + i] = src[i * cols + j];
  return out;
}

export function checkWeight(W: unknown, expected: readonly number[], labels: string, module: string, name = 'W'): Tensor {
  if (!(W instanceof Tensor)) throw invalidType('a Tensor', name, W);
  const s = W.shape;
  if (s.length !== 2 || s[0] !== expected[0] || s[1] !== expected[1])
    throw invalidRangeText(`shape ${labels} = ${shapeText(expected)} (the base weight of ${module})`, name, shapeText(s));
  return W;
}

/**
 * mergedBias (index.ts) for a checked adapter: the trained bias in place of `baseBias`, plus the
 * layer's own bias term scaled (LoRA's lora_B.bias: a layer with `loraBias` and `scale`).
 */
export function biasOf(a: AdapterCommon & { layers: Map<string, unknown> }, module: string, baseBias?: Tensor): Tensor | undefined {
  const trained = a.biases.get(module);
  const layer = a.layers.get(module) as { loraBias?: Tensor; scale: number } | undefined;
  const loraBias = layer?.loraBias;
  if (!trained && !loraBias) return undefined;
  const from = trained ?? baseBias;
  let out: Tensor;
  if (from) {
    out = from.astype('float32');
  } else {
    out = Tensor.empty([(loraBias as Tensor).size], 'float32', 'cpu', true);
  }
  if (loraBias) {
    if (out.size !== loraBias.size) throw invalidRangeText(`shape [out] = [${loraBias.size}]`, 'baseBias', shapeText(out.shape));
    const scale = layer.scale;
    const o = out.storage() as Float32Array,
      lb = loraBias.storage() as Float32Array;
    for (let i = 0; i < o.length; i++) o[i] = o[i] + scale * lb[i];
  }
  return out;
}

// ---- saving -------------------------------------------------------------------------------

export function layerEntries<T>(layers: unknown, name: string): Array<[string, T]> {
  const list =
    layers instanceof Map ? [...layers.entries()] : typeof layers === 'object' && layers !== null ? Object.entries(layers) : null;
  if (!list) throw invalidType('a Map (or object) of module paths to layer weights', name, layers);
  if (list.length === 0) throw invalidRange('at least one layer', name, layers);
  for (const [k] of list)
    if (typeof k !== 'string' || k === '' || k.startsWith(MODULE_PREFIX))
      throw invalidRange(`a module path without the ${JSON.stringify(MODULE_PREFIX)} prefix`, `a key of ${name}`, k);
  return list as Array<[string, T]>;
}

export function tensorArg(t: unknown, name: string, dims?: number): Tensor {
  if (!(t instanceof Tensor)) throw invalidType('a Tensor', name, t);
  t.storage(name);
  if (t.device !== 'cpu') throw invalidRange('a tensor on cpu', name, t);
  if (t.dtype === 'int32') throw invalidType('a float32, bfloat16 or float16 Tensor', name, t, 'dtype is int32');
  if (dims !== undefined && t.shape.length !== dims) throw invalidRange(`a ${dims}-D tensor`, name, t);
  return t;
}
