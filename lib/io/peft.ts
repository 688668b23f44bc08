// PEFT adapter directories (SPEC section 4), read and written exactly as Hugging Face PEFT does:
//
//   adapter_config.json        json.dumps(config, indent=2, sort_keys=True), no trailing newline;
//                              PeftModel.save_pretrained stores inference_mode: true.
//   adapter_model.safetensors  metadata {"format": "pt"}; the adapter name ("default") stripped:
//     LoRA  base_model.model.<module>.lora_A.weight [r, in]   base_model.model.<module>.lora_B.weight [out, r]
//           base_model.model.<module>.lora_B.bias [out]      (lora_bias: true)
//     VeRA  base_model.model.<module>.vera_lambda_d [r]      base_model.model.<module>.vera_lambda_b [out]
//           base_model.vera_A [r, max in]  base_model.vera_B [max out, r]   (save_projection: true)
//     both  trained biases (bias "all" / "lora_only" / "vera_only"): base_model.model.<module>.bias, or
//           base_model.model.<module>.base_layer.bias for an adapted module (the key PEFT's state dict
//           has there); modules_to_save: base_model.model.<module>.<param> (older PEFT:
//           <module>.modules_to_save.<param>).
// <module> is the module's path in the base model (model.layers.0.self_attn.q_proj): the key minus
// "base_model.model." and the parameter suffix. Adapter tensors load as float32 whatever their
// stored dtype (F32, BF16, F16); `adapter.dtype` remembers the stored one and saveAdapter writes it
// back, so bfloat16 adapters round-trip bit for bit.
//
// fan_in_fan_out (GPT-2's Conv1D) means the base stores W as [in, out]: A and B keep PEFT's
// [r, in] / [out, r] layout and the delta is transposed when merged into such a W.
//
// VeRA with save_projection false: PEFT regenerates vera_A [r, max in] and vera_B [max out, r] from
// projection_prng_key (torch's MT19937, see torch-random.ts), sized by the largest in / out over
// the adapted layers of the BASE MODEL. max out is the longest vera_lambda_b, but nothing in the
// adapter records a layer's in features, so loadAdapter then needs `baseShapes` (the base weight
// shape [out, in] of each adapted module) and says so when it is missing.
import { existsSync, mkdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { invalidRange, invalidRangeText, invalidType } from '../errors.js';
import { LoraLinear, type LoraVariant } from '../layers/lora-linear.js';
import { VeraLinear } from '../layers/vera-linear.js';
import * as lora from '../ops/lora.js';
import * as vera from '../ops/vera.js';
import type { VeraProjectionPair } from '../ops/vera.js';
import { formatShape, Tensor, type FloatDType } from '../tensor.js';
import { writeFileAtomic } from './atomic.js';
import { SafetensorsFile, writeSafetensors, type SafetensorsDtype, type TensorEntry, type WriteEntry } from './safetensors.js';
import { peftVeraProjections } from './torch-random.js';

export const CONFIG_NAME = 'adapter_config.json';
export const WEIGHTS_NAME = 'adapter_model.safetensors';
/** The prefix of every module key in a PEFT adapter file (PeftModel.base_model.model). */
export const MODULE_PREFIX = 'base_model.model.';

/** adapter_config.json as parsed: every key kept, known or not. */
export type PeftConfig = Record<string, unknown>;

// ---- the adapter objects -----------------------------------------------------------------

export interface LoraLayerWeights {
  /** [r, in], float32. */
  A: Tensor;
  /** [out, r], float32. */
  B: Tensor;
  /** This layer's r and lora_alpha (rank_pattern / alpha_pattern applied) and scale. */
  rank: number;
  alpha: number;
  scale: number;
  /** lora_B's bias [out] (lora_bias: true); the merged bias is b + scale · loraBias. */
  loraBias?: Tensor;
}

interface AdapterCommon {
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

export interface LoraAdapter extends AdapterCommon {
  kind: 'lora';
  /** config r and lora_alpha (the defaults; a layer may differ through rank_pattern / alpha_pattern). */
  rank: number;
  alpha: number;
  /** use_rslora: scale = alpha / sqrt(r) instead of alpha / r. */
  rslora: boolean;
  /** The default scale (lora.scaling(alpha, rank, { rslora })). */
  scale: number;
  layers: Map<string, LoraLayerWeights>;
}

export interface VeraLayerWeights {
  /** [r], float32. */
  lambdaD: Tensor;
  /** [out], float32. */
  lambdaB: Tensor;
}

export interface VeraAdapter extends AdapterCommon {
  kind: 'vera';
  rank: number;
  /** projection_prng_key. */
  seed: bigint;
  /** Whether the file holds vera_A / vera_B (else they were regenerated from the seed). */
  saveProjection: boolean;
  /** The shared projections: A [r, max in], B [max out, r], float32. */
  projections: VeraProjectionPair;
  layers: Map<string, VeraLayerWeights>;
}

export type Adapter = LoraAdapter | VeraAdapter;

/** What saveAdapter accepts for either method besides the layers (AdapterCommon's fields, optional). */
interface AdapterInputCommon {
  fanInFanOut?: boolean;
  biases?: Map<string, Tensor>;
  modulesToSave?: Map<string, Tensor>;
  /** A loaded adapter's config: its keys are kept (read-modify-write). */
  config?: PeftConfig;
  dtype?: FloatDType;
}

/** What saveAdapter accepts for LoRA: a loaded adapter, or layers built in Node (a LoraLinear has A, B and scale). */
export interface LoraAdapterInput extends AdapterInputCommon {
  kind: 'lora';
  layers: Map<string, LoraLayerInput> | Record<string, LoraLayerInput>;
  /** Defaults: the most common layer rank; alpha from the layers' scale, else the rank. */
  rank?: number;
  alpha?: number;
  rslora?: boolean;
}

export interface LoraLayerInput {
  A: Tensor;
  B: Tensor;
  loraBias?: Tensor;
  /** This layer's lora_alpha; else derived from `scale`, else the adapter's alpha. */
  alpha?: number;
  scale?: number;
}

export interface VeraAdapterInput extends AdapterInputCommon {
  kind: 'vera';
  layers: Map<string, VeraLayerWeights> | Record<string, VeraLayerWeights>;
  /** A [r, max in], B [max out, r]. */
  projections: VeraProjectionPair;
  /** projection_prng_key (required when the projections are not saved). */
  seed?: number | bigint;
  /** Store vera_A / vera_B in the file (PEFT's default, true). */
  saveProjection?: boolean;
  /** d_initial to record (default 0.1). */
  dInitial?: number;
}

export interface LoadOptions {
  /**
   * The base weight shape [out, in] (nn.Linear layout, also for fan_in_fan_out) of each adapted
   * module. Needed only for VeRA saved with save_projection false, whose projections PEFT sizes by
   * the largest in over the adapted layers; only the adapter's own modules are read.
   */
  baseShapes?: Map<string, readonly [number, number] | readonly number[]>;
}

// ---- reading adapter_config.json ---------------------------------------------------------

const SAFETENSORS_TO_DTYPE: Partial<Record<SafetensorsDtype, FloatDType>> = { F32: 'float32', BF16: 'bfloat16', F16: 'float16' };
const DTYPE_TO_SAFETENSORS: Record<FloatDType, SafetensorsDtype> = { float32: 'F32', bfloat16: 'BF16', float16: 'F16' };

/** Resolves `dir` (or a file inside it) to the adapter directory and its two files. */
function adapterFiles(dir: unknown): { dir: string; config: string; weights: string } {
  if (typeof dir !== 'string' || dir === '') throw invalidType('a path to a PEFT adapter directory', 'dir', dir);
  let d = path.resolve(dir);
  if (existsSync(d) && statSync(d).isFile() && (path.basename(d) === CONFIG_NAME || path.basename(d) === WEIGHTS_NAME)) d = path.dirname(d);
  if (!existsSync(d)) throw invalidRange('a PEFT adapter directory', 'dir', dir, 'no such file or directory');
  if (!statSync(d).isDirectory()) throw invalidRange(`a PEFT adapter directory (with ${CONFIG_NAME} and ${WEIGHTS_NAME})`, 'dir', dir, 'it is a file');
  const config = path.join(d, CONFIG_NAME);
  const weights = path.join(d, WEIGHTS_NAME);
  if (!existsSync(config)) throw invalidRange(`a PEFT adapter directory with ${CONFIG_NAME}`, 'dir', dir, `${config} does not exist`);
  if (!existsSync(weights)) {
    const bin = path.join(d, 'adapter_model.bin');
    const hint = existsSync(bin) ? `; it has adapter_model.bin, a pickle lowrank does not read: re-save it in Python with safe_serialization=True` : '';
    throw invalidRange(`a PEFT adapter directory with ${WEIGHTS_NAME}`, 'dir', dir, `${weights} does not exist${hint}`);
  }
  return { dir: d, config, weights };
}

/** Reads and parses adapter_config.json (any JSON object; fields are checked by the loader). */
export function readConfig(dir: string): PeftConfig {
  const files = adapterFiles(dir);
  return parseConfigFile(files.config);
}

function parseConfigFile(file: string): PeftConfig {
  const text = readFileSync(file, 'utf8');
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (e) {
    throw invalidRangeText('a JSON object', file, `text that is not JSON (${(e as Error).message})`);
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw invalidType('a JSON object', file, parsed);
  return parsed as PeftConfig;
}

/** Typed reads of config fields, each error naming the key and the file. */
class ConfigReader {
  constructor(
    readonly config: PeftConfig,
    readonly file: string,
  ) {}

  name(key: string): string {
    return `${key} in ${this.file}`;
  }

  positiveInt(key: string, fallback: number): number {
    const v = this.config[key];
    if (v === undefined || v === null) return fallback;
    if (typeof v !== 'number' || !Number.isSafeInteger(v)) throw invalidType('a positive integer', this.name(key), v);
    if (v < 1) throw invalidRange('a positive integer', this.name(key), v);
    return v;
  }

  number(key: string, fallback: number): number {
    const v = this.config[key];
    if (v === undefined || v === null) return fallback;
    if (typeof v !== 'number') throw invalidType('a finite number', this.name(key), v);
    if (!Number.isFinite(v)) throw invalidRange('a finite number', this.name(key), v);
    return v;
  }

  probability(key: string): number {
    const p = this.number(key, 0);
    if (!(p >= 0 && p < 1)) throw invalidRange('a number in [0, 1)', this.name(key), p);
    return p;
  }

  bool(key: string, fallback: boolean): boolean {
    const v = this.config[key];
    if (v === undefined || v === null) return fallback;
    if (typeof v !== 'boolean') throw invalidType('a boolean', this.name(key), v);
    return v;
  }

  oneOf<T extends string>(key: string, allowed: readonly T[], fallback: T): T {
    const v = this.config[key];
    if (v === undefined || v === null) return fallback;
    const expected = allowed.map((a) => JSON.stringify(a)).join(', ');
    if (typeof v !== 'string') throw invalidType(`one of ${expected}`, this.name(key), v);
    if (!(allowed as readonly string[]).includes(v)) throw invalidRange(`one of ${expected}`, this.name(key), v);
    return v as T;
  }

  /** rank_pattern / alpha_pattern: an object of numbers keyed by module-name regexes. */
  pattern(key: string, integers: boolean): Array<[RegExp, string, number]> {
    const v = this.config[key];
    if (v === undefined || v === null) return [];
    if (typeof v !== 'object' || Array.isArray(v)) throw invalidType('an object of module patterns to numbers', this.name(key), v);
    return Object.entries(v as Record<string, unknown>).map(([k, n]) => {
      const where = `${key}[${JSON.stringify(k)}] in ${this.file}`;
      if (typeof n !== 'number' || (integers && !Number.isSafeInteger(n))) throw invalidType(integers ? 'a positive integer' : 'a finite number', where, n);
      if (integers ? n < 1 : !Number.isFinite(n)) throw invalidRange(integers ? 'a positive integer' : 'a finite number', where, n);
      let re: RegExp;
      try {
        // PEFT's get_pattern_key: re.match(rf"(^|.*\.){key}$", module), anchored at the start only.
        re = new RegExp(`^(?:(?:^|.*\\.)${k}$)`);
      } catch (e) {
        throw invalidRangeText('a module-name regular expression', `a key of ${key} in ${this.file}`, `${JSON.stringify(k)} (${(e as Error).message})`);
      }
      return [re, k, n];
    });
  }

  /** target_modules: a list of names, one regex string, or null. */
  targets(): string[] | string | null {
    const v = this.config.target_modules;
    if (v === undefined || v === null) return null;
    if (typeof v === 'string') return v;
    if (Array.isArray(v) && v.every((s) => typeof s === 'string')) return v as string[];
    throw invalidType('a list of module names, a regex string or null', this.name('target_modules'), v);
  }
}

/** The first pattern matching `module` (PEFT's order: the file's key order), else `fallback`. */
function fromPattern(patterns: Array<[RegExp, string, number]>, module: string, fallback: number): number {
  for (const [re, , n] of patterns) if (re.test(module)) return n;
  return fallback;
}

// ---- scanning the safetensors header ------------------------------------------------------

interface LoraSlots {
  A?: TensorEntry;
  B?: TensorEntry;
  loraBias?: TensorEntry;
}
interface VeraSlots {
  lambdaD?: TensorEntry;
  lambdaB?: TensorEntry;
}

interface Scan {
  kind: 'lora' | 'vera';
  files: { dir: string; config: string; weights: string };
  reader: ConfigReader;
  file: SafetensorsFile;
  layers: Map<string, LoraSlots & VeraSlots>;
  biases: Map<string, TensorEntry>;
  modulesToSave: Map<string, TensorEntry>;
  projA?: TensorEntry;
  projB?: TensorEntry;
  dtype: FloatDType;
}

function unexpectedKey(file: string, kind: 'lora' | 'vera', key: string, detail?: string): RangeError {
  const expected =
    kind === 'lora'
      ? `keys of a PEFT LoRA adapter (${MODULE_PREFIX}<module>.lora_A.weight, .lora_B.weight, .lora_B.bias, .bias)`
      : `keys of a PEFT VeRA adapter (${MODULE_PREFIX}<module>.vera_lambda_d, .vera_lambda_b, .bias, base_model.vera_A, base_model.vera_B)`;
  return invalidRange(expected, `a tensor name in ${file}`, key, detail);
}

/** The module a non-adapter key belongs to, with PEFT's wrapper segments removed. */
function plainName(name: string): string {
  return name.replace(/\.base_layer(?=\.)/g, '').replace(/\.modules_to_save(?=\.)/g, '');
}

function scan(dir: string): Scan {
  const files = adapterFiles(dir);
  const reader = new ConfigReader(parseConfigFile(files.config), files.config);
  const peftType = reader.config.peft_type;
  if (typeof peftType !== 'string') throw invalidType('"LORA" or "VERA"', reader.name('peft_type'), peftType);
  if (peftType !== 'LORA' && peftType !== 'VERA') throw invalidRange('"LORA" or "VERA"', reader.name('peft_type'), peftType, 'lowrank reads LoRA and VeRA adapters');
  const kind = peftType === 'LORA' ? 'lora' : 'vera';
  if (kind === 'lora' && reader.bool('use_dora', false))
    throw invalidRange('false', reader.name('use_dora'), true, 'DoRA adapters (lora_magnitude_vector) are not supported');
  const file = SafetensorsFile.open(files.weights);
  try {
    const layers = new Map<string, LoraSlots & VeraSlots>();
    const biases = new Map<string, TensorEntry>();
    const modulesToSave = new Map<string, TensorEntry>();
    const dtypes = new Map<FloatDType, number>();
    let projA: TensorEntry | undefined, projB: TensorEntry | undefined;
    const slot = (module: string) => {
      let s = layers.get(module);
      if (!s) layers.set(module, (s = {}));
      return s;
    };
    const put = (module: string, which: keyof (LoraSlots & VeraSlots), e: TensorEntry) => {
      if (module === '') throw unexpectedKey(files.weights, kind, e.name, 'it names no module');
      slot(module)[which] = e;
    };
    for (const e of file.entries) {
      const dtype = SAFETENSORS_TO_DTYPE[e.dtype];
      if (!dtype) throw invalidRange('a floating-point tensor (F32, BF16 or F16)', `${e.name} in ${files.weights}`, e.dtype);
      dtypes.set(dtype, (dtypes.get(dtype) ?? 0) + 1);
      const k = e.name;
      if (kind === 'vera' && (k === 'base_model.vera_A' || k === 'base_model.vera_B')) {
        if (k === 'base_model.vera_A') projA = e;
        else projB = e;
        continue;
      }
      if (!k.startsWith(MODULE_PREFIX)) throw unexpectedKey(files.weights, kind, k, `it does not start with ${JSON.stringify(MODULE_PREFIX)}`);
      const rest = k.slice(MODULE_PREFIX.length);
      const ends = (suffix: string) => rest.endsWith(suffix) && rest.length > suffix.length;
      const cut = (suffix: string) => rest.slice(0, -suffix.length);
      if (kind === 'lora') {
        if (ends('.lora_A.weight')) put(cut('.lora_A.weight'), 'A', e);
        else if (ends('.lora_B.weight')) put(cut('.lora_B.weight'), 'B', e);
        else if (ends('.lora_B.bias')) put(cut('.lora_B.bias'), 'loraBias', e);
        else if (/(^|\.)lora_embedding_[AB]$/.test(rest))
          throw unexpectedKey(files.weights, kind, k, 'LoRA on embedding layers (lora_embedding_A / lora_embedding_B) is not supported');
        else if (/(^|\.)lora_/.test(rest)) throw unexpectedKey(files.weights, kind, k);
        else if (rest.includes('.original_module.')) continue; // modules_to_save's frozen original
        else if (ends('.bias')) biases.set(plainName(rest).slice(0, -'.bias'.length), e);
        else modulesToSave.set(plainName(rest), e);
      } else {
        if (ends('.vera_lambda_d')) put(cut('.vera_lambda_d'), 'lambdaD', e);
        else if (ends('.vera_lambda_b')) put(cut('.vera_lambda_b'), 'lambdaB', e);
        else if (/(^|\.)vera_/.test(rest)) throw unexpectedKey(files.weights, kind, k);
        else if (rest.includes('.original_module.')) continue;
        else if (ends('.bias')) biases.set(plainName(rest).slice(0, -'.bias'.length), e);
        else modulesToSave.set(plainName(rest), e);
      }
    }
    if (layers.size === 0)
      throw invalidRangeText(
        `at least one adapted layer (${kind === 'lora' ? '<module>.lora_A.weight' : '<module>.vera_lambda_b'})`,
        files.weights,
        `${file.entries.length} tensors and no such key`,
      );
    const dtype = [...dtypes.entries()].sort((a, b) => b[1] - a[1])[0]?.[0] ?? 'float32';
    return { kind, files, reader, file, layers, biases, modulesToSave, projA, projB, dtype };
  } catch (e) {
    file.close();
    throw e;
  }
}

const shapeText = (s: readonly number[]) => formatShape(s);

function missing(file: string, want: string, module: string, have: string): RangeError {
  return invalidRangeText(`${MODULE_PREFIX}${module}.${want} beside .${have}`, file, 'no such key');
}

/** Per-layer shapes and ranks, checked against the config (what PEFT's loader would accept). */
interface LoraLayerPlan {
  module: string;
  A: TensorEntry;
  B: TensorEntry;
  loraBias?: TensorEntry;
  rank: number;
  alpha: number;
  scale: number;
  out: number;
  in: number;
}

interface LoraPlan {
  rank: number;
  alpha: number;
  rslora: boolean;
  scale: number;
  fanInFanOut: boolean;
  layers: LoraLayerPlan[];
}

function planLora(s: Scan): LoraPlan {
  const c = s.reader;
  const rank = c.positiveInt('r', 8);
  const alpha = c.number('lora_alpha', 8);
  const rslora = c.bool('use_rslora', false);
  const fanInFanOut = c.bool('fan_in_fan_out', false);
  c.oneOf('bias', ['none', 'all', 'lora_only'], 'none');
  c.probability('lora_dropout');
  c.targets();
  const loraBias = c.bool('lora_bias', false);
  const rankPattern = c.pattern('rank_pattern', true);
  const alphaPattern = c.pattern('alpha_pattern', false);
  const f = s.files.weights;
  const layers: LoraLayerPlan[] = [];
  for (const [module, slots] of s.layers) {
    if (!slots.A) throw missing(f, 'lora_A.weight', module, slots.B ? 'lora_B.weight' : 'lora_B.bias');
    if (!slots.B) throw missing(f, 'lora_B.weight', module, 'lora_A.weight');
    const r = fromPattern(rankPattern, module, rank);
    const a = fromPattern(alphaPattern, module, alpha);
    const { A, B } = slots;
    const where = r === rank ? `r = ${rank} in ${CONFIG_NAME}` : `r = ${r} from rank_pattern in ${CONFIG_NAME}`;
    if (A.shape.length !== 2 || A.shape[0] !== r || A.shape[1] < 1)
      throw invalidRangeText(`shape [r, in] with ${where}`, `${A.name} in ${f}`, shapeText(A.shape));
    if (B.shape.length !== 2 || B.shape[1] !== r || B.shape[0] < 1)
      throw invalidRangeText(`shape [out, r] with ${where}`, `${B.name} in ${f}`, shapeText(B.shape));
    const out = B.shape[0];
    if (slots.loraBias) {
      if (!loraBias) throw invalidRange('true (the adapter file has lora_B.bias tensors)', c.name('lora_bias'), c.config.lora_bias ?? false);
      if (slots.loraBias.shape.length !== 1 || slots.loraBias.shape[0] !== out)
        throw invalidRangeText(`shape [out] = [${out}]`, `${slots.loraBias.name} in ${f}`, shapeText(slots.loraBias.shape));
    }
    layers.push({ module, A, B, loraBias: slots.loraBias, rank: r, alpha: a, scale: lora.scaling(a, r, { rslora }), out, in: A.shape[1] });
  }
  return { rank, alpha, rslora, scale: lora.scaling(alpha, rank, { rslora }), fanInFanOut, layers };
}

interface VeraPlan {
  rank: number;
  seed: bigint;
  saveProjection: boolean;
  fanInFanOut: boolean;
  maxOut: number;
  /** Known from vera_A when saved, else from baseShapes (undefined when neither). */
  maxIn?: number;
  layers: Array<{ module: string; lambdaD: TensorEntry; lambdaB: TensorEntry; out: number }>;
}

function planVera(s: Scan): VeraPlan {
  const c = s.reader;
  const rank = c.positiveInt('r', 256);
  const seedValue = c.config.projection_prng_key ?? 0;
  if (typeof seedValue !== 'number' || !Number.isSafeInteger(seedValue)) throw invalidType('a non-negative integer', c.name('projection_prng_key'), seedValue);
  if (seedValue < 0) throw invalidRange('a non-negative integer', c.name('projection_prng_key'), seedValue);
  const saveProjection = c.bool('save_projection', true);
  const fanInFanOut = c.bool('fan_in_fan_out', false);
  c.oneOf('bias', ['none', 'all', 'vera_only'], 'none');
  c.probability('vera_dropout');
  c.number('d_initial', 0.1);
  c.targets();
  const f = s.files.weights;
  const layers: VeraPlan['layers'] = [];
  for (const [module, slots] of s.layers) {
    if (!slots.lambdaB) throw missing(f, 'vera_lambda_b', module, 'vera_lambda_d');
    if (!slots.lambdaD) throw missing(f, 'vera_lambda_d', module, 'vera_lambda_b');
    if (slots.lambdaD.shape.length !== 1 || slots.lambdaD.shape[0] !== rank)
      throw invalidRangeText(`shape [r] with r = ${rank} in ${CONFIG_NAME}`, `${slots.lambdaD.name} in ${f}`, shapeText(slots.lambdaD.shape));
    if (slots.lambdaB.shape.length !== 1 || slots.lambdaB.shape[0] < 1)
      throw invalidRangeText('shape [out] with out >= 1', `${slots.lambdaB.name} in ${f}`, shapeText(slots.lambdaB.shape));
    layers.push({ module, lambdaD: slots.lambdaD, lambdaB: slots.lambdaB, out: slots.lambdaB.shape[0] });
  }
  const maxOut = Math.max(...layers.map((l) => l.out));
  let maxIn: number | undefined;
  if (s.projA || s.projB) {
    if (!s.projA) throw invalidRangeText('base_model.vera_A beside base_model.vera_B', f, 'no such key');
    if (!s.projB) throw invalidRangeText('base_model.vera_B beside base_model.vera_A', f, 'no such key');
    const { projA: A, projB: B } = s;
    if (A.shape.length !== 2 || A.shape[0] !== rank || A.shape[1] < 1)
      throw invalidRangeText(`shape [r, max in] with r = ${rank} in ${CONFIG_NAME}`, `${A.name} in ${f}`, shapeText(A.shape));
    if (B.shape.length !== 2 || B.shape[1] !== rank || B.shape[0] < maxOut)
      throw invalidRangeText(
        `shape [max out, r] with r = ${rank} and max out >= ${maxOut} (the longest vera_lambda_b)`,
        `${B.name} in ${f}`,
        shapeText(B.shape),
      );
    maxIn = A.shape[1];
  } else if (saveProjection) {
    throw invalidRangeText('base_model.vera_A and base_model.vera_B (save_projection is true)', f, 'neither key');
  }
  return { rank, seed: BigInt(seedValue), saveProjection, fanInFanOut, maxOut, maxIn, layers };
}

// ---- describe (headers only) --------------------------------------------------------------

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

export interface AdapterSummary {
  kind: 'lora' | 'vera';
  dir: string;
  config: PeftConfig;
  rank: number;
  alpha?: number;
  scale?: number;
  rslora?: boolean;
  seed?: bigint;
  saveProjection?: boolean;
  /** VeRA: the stored projections' shapes, or null when regenerated from the seed. */
  projections?: { A: number[]; B: number[] } | null;
  targetModules: string[] | string | null;
  baseModel: string | null;
  fanInFanOut: boolean;
  layers: AdapterLayerSummary[];
  biases: string[];
  modulesToSave: string[];
  /** Elements of the trainable tensors (adapters, trained biases, modules_to_save; not VeRA's frozen projections). */
  trainableParameters: number;
  /** The file's stored dtype(s). */
  dtypes: string[];
  bytes: { config: number; weights: number };
}

const sizeOf = (shape: readonly number[]) => shape.reduce((a, b) => a * b, 1);

/** What an adapter directory holds, from adapter_config.json and the safetensors header only. */
export function describeAdapter(dir: string): AdapterSummary {
  const s = scan(dir);
  try {
    const c = s.reader;
    const common = {
      dir: s.files.dir,
      config: c.config,
      targetModules: c.targets(),
      baseModel: typeof c.config.base_model_name_or_path === 'string' ? c.config.base_model_name_or_path : null,
      biases: [...s.biases.keys()],
      modulesToSave: [...s.modulesToSave.keys()],
      dtypes: [...new Set(s.file.entries.map((e) => e.dtype))],
      bytes: { config: statSync(s.files.config).size, weights: statSync(s.files.weights).size },
    };
    const extra = sumSizes([...s.biases.values(), ...s.modulesToSave.values()]);
    if (s.kind === 'lora') {
      const p = planLora(s);
      return {
        kind: 'lora',
        ...common,
        rank: p.rank,
        alpha: p.alpha,
        scale: p.scale,
        rslora: p.rslora,
        fanInFanOut: p.fanInFanOut,
        layers: p.layers.map((l) => ({
          module: l.module,
          shapes: {
            'lora_A.weight': [...l.A.shape],
            'lora_B.weight': [...l.B.shape],
            ...(l.loraBias ? { 'lora_B.bias': [...l.loraBias.shape] } : {}),
          },
          out: l.out,
          in: l.in,
          rank: l.rank,
          alpha: l.alpha,
          scale: l.scale,
        })),
        trainableParameters: sumSizes(p.layers.flatMap((l) => [l.A, l.B, ...(l.loraBias ? [l.loraBias] : [])])) + extra,
      };
    }
    const p = planVera(s);
    return {
      kind: 'vera',
      ...common,
      rank: p.rank,
      seed: p.seed,
      saveProjection: p.saveProjection,
      projections: s.projA && s.projB ? { A: [...s.projA.shape], B: [...s.projB.shape] } : null,
      fanInFanOut: p.fanInFanOut,
      layers: p.layers.map((l) => ({
        module: l.module,
        shapes: { vera_lambda_d: [...l.lambdaD.shape], vera_lambda_b: [...l.lambdaB.shape] },
        out: l.out,
        rank: p.rank,
      })),
      trainableParameters: sumSizes(p.layers.flatMap((l) => [l.lambdaD, l.lambdaB])) + extra,
    };
  } finally {
    s.file.close();
  }
}

function sumSizes(entries: readonly TensorEntry[]): number {
  return entries.reduce((n, e) => n + sizeOf(e.shape), 0);
}

// ---- loading ------------------------------------------------------------------------------

/** Reads a tensor as float32 (converting BF16 / F16). */
function readF32(file: SafetensorsFile, name: string): Tensor {
  const t = file.read(name);
  if (t.dtype === 'float32') return t;
  const f = t.astype('float32');
  t.dispose();
  return f;
}

function disposer(tensors: () => Iterable<Tensor>) {
  return function dispose(): void {
    for (const t of tensors()) t.dispose();
  };
}

/**
 * Loads a PEFT LoRA or VeRA adapter directory (adapter_config.json + adapter_model.safetensors).
 * Every tensor is validated against the config (ranks, rank_pattern / alpha_pattern, shapes) and
 * loaded as float32. VeRA saved without its projections needs `options.baseShapes` (see the top
 * of this file).
 */
export function loadAdapter(dir: string, options?: LoadOptions): Adapter {
  if (options !== undefined && (typeof options !== 'object' || options === null)) throw invalidType('an options object', 'options', options);
  const baseShapes = options?.baseShapes;
  if (baseShapes !== undefined && !(baseShapes instanceof Map)) throw invalidType('a Map of module paths to [out, in]', 'options.baseShapes', baseShapes);
  const s = scan(dir);
  const loaded: Tensor[] = [];
  const read = (e: TensorEntry) => {
    const t = readF32(s.file, e.name);
    loaded.push(t);
    return t;
  };
  try {
    const biases = new Map([...s.biases].map(([k, e]) => [k, read(e)] as const));
    const modulesToSave = new Map([...s.modulesToSave].map(([k, e]) => [k, read(e)] as const));
    const dispose = disposer(() => loaded);
    // AdapterCommon's fields, the same for both methods.
    const common = (fanInFanOut: boolean) => ({
      config: s.reader.config,
      dir: s.files.dir,
      dtype: s.dtype,
      fanInFanOut,
      biases,
      modulesToSave,
      dispose,
      [Symbol.dispose]: dispose,
    });
    if (s.kind === 'lora') {
      const p = planLora(s);
      const layers = new Map<string, LoraLayerWeights>();
      for (const l of p.layers) {
        const w: LoraLayerWeights = { A: read(l.A), B: read(l.B), rank: l.rank, alpha: l.alpha, scale: l.scale };
        if (l.loraBias) w.loraBias = read(l.loraBias);
        layers.set(l.module, w);
      }
      const adapter: LoraAdapter = {
        kind: 'lora',
        ...common(p.fanInFanOut),
        rank: p.rank,
        alpha: p.alpha,
        rslora: p.rslora,
        scale: p.scale,
        layers,
      };
      return adapter;
    }
    const p = planVera(s);
    const layers = new Map<string, VeraLayerWeights>();
    for (const l of p.layers) layers.set(l.module, { lambdaD: read(l.lambdaD), lambdaB: read(l.lambdaB) });
    let projections: VeraProjectionPair;
    if (s.projA && s.projB) {
      projections = { A: read(s.projA), B: read(s.projB) };
      if (baseShapes) checkVeraBaseShapes(p, baseShapes, s.projA.shape[1]);
    } else {
      const maxIn = veraMaxIn(p, baseShapes, s.files.config);
      const pair = peftVeraProjections(p.seed, p.rank, maxIn, p.maxOut);
      loaded.push(pair.A, pair.B);
      projections = pair;
    }
    const adapter: VeraAdapter = {
      kind: 'vera',
      ...common(p.fanInFanOut),
      rank: p.rank,
      seed: p.seed,
      saveProjection: Boolean(s.projA),
      projections,
      layers,
    };
    return adapter;
  } catch (e) {
    for (const t of loaded) t.dispose();
    throw e;
  } finally {
    s.file.close();
  }
}

function baseShapeOf(baseShapes: LoadOptions['baseShapes'], module: string): [number, number] | undefined {
  const v = baseShapes?.get(module);
  if (v === undefined) return undefined;
  const name = `options.baseShapes.get(${JSON.stringify(module)})`;
  if (!Array.isArray(v) || v.length !== 2 || !v.every((d) => Number.isSafeInteger(d) && d >= 1))
    throw invalidType('a base weight shape [out, in] of positive integers', name, v);
  return [v[0], v[1]];
}

/** PEFT's max in: the largest in over the adapted layers of the base model. */
function veraMaxIn(p: VeraPlan, baseShapes: LoadOptions['baseShapes'], configFile: string): number {
  const detail =
    `${configFile} has save_projection false, so vera_A [r, max in] is regenerated from projection_prng_key ${p.seed}, ` +
    'and PEFT sizes it by the largest in features over the adapted layers of the base model, which the adapter file does not record';
  if (!baseShapes) throw invalidType('a Map from each adapted module to its base weight shape [out, in]', 'options.baseShapes', baseShapes, detail);
  let maxIn = 0;
  for (const l of p.layers) {
    const shape = baseShapeOf(baseShapes, l.module);
    if (!shape) throw invalidRangeText(`an entry for every adapted module (${detail})`, 'options.baseShapes', `none for ${JSON.stringify(l.module)}`);
    if (shape[0] !== l.out)
      throw invalidRangeText(`[out, in] with out = ${l.out} (the length of its vera_lambda_b)`, `options.baseShapes.get(${JSON.stringify(l.module)})`, shapeText(shape));
    maxIn = Math.max(maxIn, shape[1]);
  }
  return maxIn;
}

function checkVeraBaseShapes(p: VeraPlan, baseShapes: NonNullable<LoadOptions['baseShapes']>, maxIn: number): void {
  for (const l of p.layers) {
    const shape = baseShapeOf(baseShapes, l.module);
    if (shape && (shape[0] !== l.out || shape[1] > maxIn))
      throw invalidRangeText(
        `[out, in] with out = ${l.out} (its vera_lambda_b) and in <= ${maxIn} (vera_A's columns)`,
        `options.baseShapes.get(${JSON.stringify(l.module)})`,
        shapeText(shape),
      );
  }
}

// ---- using an adapter: layers, merge ----------------------------------------------------

function checkAdapter(adapter: unknown, kind?: 'lora' | 'vera'): Adapter {
  const a = adapter as Adapter;
  if (typeof adapter !== 'object' || adapter === null || (a.kind !== 'lora' && a.kind !== 'vera') || !(a.layers instanceof Map))
    throw invalidType('an adapter from peft.loadAdapter', 'adapter', adapter);
  if (kind && a.kind !== kind) throw invalidRange(`a ${kind === 'lora' ? 'LoRA' : 'VeRA'} adapter`, 'adapter', `${a.kind === 'lora' ? 'LoRA' : 'VeRA'} adapter`);
  return a;
}

function layerOf<T>(layers: Map<string, T>, module: unknown): T {
  if (typeof module !== 'string') throw invalidType('a module path', 'modulePath', module);
  const layer = layers.get(module);
  if (layer === undefined) {
    const names = [...layers.keys()];
    const list = names.slice(0, 4).map((n) => JSON.stringify(n)).join(', ') + (names.length > 4 ? `, … (${names.length} in all)` : '');
    throw invalidRange(`one of the adapter's modules (${list})`, 'modulePath', module);
  }
  return layer;
}

/** A new [cols, rows] tensor holding t's transpose (float32 or 16-bit storage). */
function transpose(t: Tensor): Tensor {
  const [rows, cols] = t.shape as [number, number];
  const out = Tensor.empty([cols, rows], t.dtype, 'cpu');
  const src = t.storage(), dst = out.storage();
  for (let i = 0; i < rows; i++) for (let j = 0; j < cols; j++) dst[j * rows + i] = src[i * cols + j];
  return out;
}

function checkWeight(W: unknown, expected: readonly number[], labels: string, module: string, name = 'W'): Tensor {
  if (!(W instanceof Tensor)) throw invalidType('a Tensor', name, W);
  const s = W.shape;
  if (s.length !== 2 || s[0] !== expected[0] || s[1] !== expected[1])
    throw invalidRangeText(`shape ${labels} = ${shapeText(expected)} (the base weight of ${module})`, name, shapeText(s));
  return W;
}

export interface LayerOptions {
  /** Dropout while training (default: the config's lora_dropout / vera_dropout). */
  dropout?: number;
  /** LoRA only: 'lora' (default), 'lora-fa' or 'delta-lora'. */
  variant?: LoraVariant;
  seed?: number;
}

/**
 * The bias a layer of `module` has under the adapter: the adapter's trained bias (bias "all" /
 * "lora_only" / "vera_only") in place of `baseBias`, plus scale · lora_B.bias (lora_bias). A new
 * float32 tensor, or undefined when the adapter leaves the bias as it is.
 */
export function mergedBias(adapter: Adapter, module: string, baseBias?: Tensor): Tensor | undefined {
  const a = checkAdapter(adapter);
  const trained = a.biases.get(module);
  const loraBias = a.kind === 'lora' ? a.layers.get(module)?.loraBias : undefined;
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
    const scale = (a as LoraAdapter).layers.get(module)!.scale;
    const o = out.storage() as Float32Array, lb = loraBias.storage() as Float32Array;
    for (let i = 0; i < o.length; i++) o[i] = o[i] + scale * lb[i];
  }
  return out;
}

/**
 * A LoraLinear for `module` using the adapter's A, B and scale (shared, not copied: training the
 * layer updates the adapter, which saveAdapter then writes). `weight` is the base weight as the
 * checkpoint stores it: [out, in], or [in, out] with fan_in_fan_out (then transposed into a copy).
 * A trained bias or lora_B.bias is folded into the layer's bias (a new tensor).
 */
export function loraLayer(adapter: LoraAdapter, module: string, weight: Tensor, bias?: Tensor, opts?: LayerOptions): LoraLinear {
  const a = checkAdapter(adapter, 'lora') as LoraAdapter;
  const l = layerOf(a.layers, module);
  const [out, inDim] = [l.B.shape[0], l.A.shape[1]];
  const W = a.fanInFanOut
    ? transpose(checkWeight(weight, [inDim, out], '[in, out]', module, 'weight'))
    : checkWeight(weight, [out, inDim], '[out, in]', module, 'weight');
  const o = opts ?? {};
  return new LoraLinear({
    weight: W,
    bias: mergedBias(a, module, bias) ?? bias,
    rank: l.rank,
    alpha: l.alpha,
    rslora: a.rslora,
    A: l.A,
    B: l.B,
    variant: o.variant,
    // Delta-LoRA refuses dropout (the paper removes it): the config's lora_dropout is for the others.
    dropout: o.dropout ?? (o.variant !== 'delta-lora' && typeof a.config.lora_dropout === 'number' ? a.config.lora_dropout : 0),
    seed: o.seed,
  });
}

/** A VeraLinear for `module` using the adapter's shared projections and λd, λb (shared, not copied). */
export function veraLayer(adapter: VeraAdapter, module: string, weight: Tensor, bias?: Tensor, opts?: Omit<LayerOptions, 'variant'>): VeraLinear {
  const a = checkAdapter(adapter, 'vera') as VeraAdapter;
  const l = layerOf(a.layers, module);
  const out = l.lambdaB.size;
  if (!(weight instanceof Tensor)) throw invalidType('a Tensor', 'weight', weight);
  const maxIn = a.projections.A.shape[1];
  const s = weight.shape;
  const inDim = a.fanInFanOut ? s[0] : s[1];
  if (s.length !== 2 || (a.fanInFanOut ? s[1] : s[0]) !== out || !(inDim >= 1 && inDim <= maxIn))
    throw invalidRangeText(
      `shape ${a.fanInFanOut ? '[in, out]' : '[out, in]'} with out = ${out} and in <= ${maxIn} (the base weight of ${module})`,
      'weight',
      shapeText(s),
    );
  const o = opts ?? {};
  return new VeraLinear({
    weight: a.fanInFanOut ? transpose(weight) : weight,
    bias: mergedBias(a, module, bias) ?? bias,
    projections: a.projections,
    lambdaD: l.lambdaD,
    lambdaB: l.lambdaB,
    dropout: o.dropout ?? (typeof a.config.vera_dropout === 'number' ? a.config.vera_dropout : 0),
    seed: o.seed,
  });
}

/**
 * W ← W + delta for the adapter's layer `module`, in place: float32 or bfloat16 W (bfloat16
 * rounds once, to nearest). W is the base weight as stored: [out, in], or [in, out] with
 * fan_in_fan_out (the delta is transposed; W is never copied). `safe`: refuse a non-finite result
 * and leave W untouched.
 */
export function mergeWeight(adapter: Adapter, module: string, W: Tensor, opts?: { safe?: boolean }): void {
  const a = checkAdapter(adapter);
  const safe = opts?.safe ?? false;
  if (a.kind === 'lora') {
    const l = layerOf(a.layers, module);
    const [out, inDim] = [l.B.shape[0], l.A.shape[1]];
    if (!a.fanInFanOut) {
      checkWeight(W, [out, inDim], '[out, in]', module);
      lora.merge(W, l.A, l.B, l.scale, { safe });
      return;
    }
    // W [in, out] += s·(B A)ᵀ = s·Aᵀ Bᵀ: lora.merge with Bᵀ [r, out] as "A" and Aᵀ [in, r] as "B".
    checkWeight(W, [inDim, out], '[in, out]', module);
    const At = transpose(l.A), Bt = transpose(l.B);
    try {
      lora.merge(W, Bt, At, l.scale, { safe });
    } finally {
      At.dispose();
      Bt.dispose();
    }
    return;
  }
  const l = layerOf(a.layers, module);
  const out = l.lambdaB.size;
  const maxIn = a.projections.A.shape[1];
  if (!(W instanceof Tensor)) throw invalidType('a Tensor', 'W', W);
  const s = W.shape;
  const inDim = a.fanInFanOut ? s[0] : s[1];
  if (s.length !== 2 || (a.fanInFanOut ? s[1] : s[0]) !== out || !(inDim >= 1 && inDim <= maxIn))
    throw invalidRangeText(
      `shape ${a.fanInFanOut ? '[in, out]' : '[out, in]'} with out = ${out} and in <= ${maxIn} (the base weight of ${module})`,
      'W',
      shapeText(s),
    );
  if (!a.fanInFanOut) {
    vera.merge(W, a.projections, l.lambdaD, l.lambdaB, { safe });
    return;
  }
  // W [in, out] += ((λb ⊙ B)(λd ⊙ A))ᵀ = (λd ⊙ A)ᵀ (λb ⊙ B)ᵀ, with A, B the layer's slices.
  const r = l.lambdaD.size;
  const dA = Tensor.empty([inDim, r], 'float32', 'cpu'); // (λd ⊙ A[:, :in])ᵀ
  const bB = Tensor.empty([r, out], 'float32', 'cpu'); // (λb ⊙ B[:out, :])ᵀ
  try {
    const A = a.projections.A.storage() as Float32Array, B = a.projections.B.storage() as Float32Array;
    const ld = l.lambdaD.storage() as Float32Array, lb = l.lambdaB.storage() as Float32Array;
    const da = dA.storage() as Float32Array, bb = bB.storage() as Float32Array;
    for (let j = 0; j < r; j++) for (let i = 0; i < inDim; i++) da[i * r + j] = ld[j] * A[j * maxIn + i];
    for (let o = 0; o < out; o++) for (let j = 0; j < r; j++) bb[j * out + o] = lb[o] * B[o * r + j];
    lora.merge(W, bB, dA, 1, { safe });
  } finally {
    dA.dispose();
    bB.dispose();
  }
}

/**
 * PEFT's VeRA projections for a seed (torch's MT19937 uniform_, bit for bit): use these instead of
 * vera.projections (Philox) when the adapter is to be saved with save_projection false.
 */
export function veraProjections(opts: { seed: number | bigint; rank: number; maxIn: number; maxOut: number }): VeraProjectionPair {
  if (typeof opts !== 'object' || opts === null) throw invalidType('an options object { seed, rank, maxIn, maxOut }', 'options', opts);
  for (const k of ['rank', 'maxIn', 'maxOut'] as const) {
    const v = opts[k];
    if (typeof v !== 'number' || !Number.isSafeInteger(v)) throw invalidType('a positive integer', `options.${k}`, v);
    if (v < 1) throw invalidRange('a positive integer', `options.${k}`, v);
  }
  return peftVeraProjections(checkSeedValue(opts.seed, 'options.seed'), opts.rank, opts.maxIn, opts.maxOut);
}

function checkSeedValue(seed: unknown, name: string): bigint {
  if (typeof seed === 'bigint') {
    if (seed < 0n || seed >= 2n ** 64n) throw invalidRange('an integer in [0, 2^64)', name, seed);
    return seed;
  }
  if (typeof seed !== 'number' || !Number.isSafeInteger(seed)) throw invalidType('a non-negative integer', name, seed);
  if (seed < 0) throw invalidRange('a non-negative integer', name, seed);
  return BigInt(seed);
}

// ---- saving -------------------------------------------------------------------------------

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

/** PEFT 0.14's LoraConfig fields with their defaults (what a default LoraConfig saves). */
function loraDefaults(): PeftConfig {
  return {
    alpha_pattern: {},
    auto_mapping: null,
    base_model_name_or_path: null,
    bias: 'none',
    eva_config: null,
    exclude_modules: null,
    fan_in_fan_out: false,
    inference_mode: true,
    init_lora_weights: true,
    layer_replication: null,
    layers_pattern: null,
    layers_to_transform: null,
    loftq_config: {},
    lora_alpha: 8,
    lora_bias: false,
    lora_dropout: 0,
    megatron_config: null,
    megatron_core: 'megatron.core',
    modules_to_save: null,
    peft_type: 'LORA',
    r: 8,
    rank_pattern: {},
    revision: null,
    target_modules: null,
    task_type: null,
    use_dora: false,
    use_rslora: false,
  };
}

/** PEFT 0.14's VeraConfig fields with their defaults. */
function veraDefaults(): PeftConfig {
  return {
    auto_mapping: null,
    base_model_name_or_path: null,
    bias: 'none',
    d_initial: 0.1,
    fan_in_fan_out: false,
    inference_mode: true,
    init_weights: true,
    layers_pattern: null,
    layers_to_transform: null,
    modules_to_save: null,
    peft_type: 'VERA',
    projection_prng_key: 0,
    r: 256,
    revision: null,
    save_projection: true,
    target_modules: null,
    task_type: null,
    vera_dropout: 0,
  };
}

/** Config keys PEFT types as float: written with a ".0" when integral, as Python's json does. */
const FLOAT_KEYS = new Set(['lora_dropout', 'vera_dropout', 'd_initial']);

/** Python's repr of a float, as json.dumps writes it. */
function pythonFloat(n: number): string {
  if (Number.isNaN(n)) return 'NaN';
  if (!Number.isFinite(n)) return n > 0 ? 'Infinity' : '-Infinity';
  const [mantissa, expText] = n.toExponential().split('e');
  const exp = Number(expText);
  if (exp < -4 || exp >= 16) return `${mantissa}e${exp < 0 ? '-' : '+'}${String(Math.abs(exp)).padStart(2, '0')}`;
  const s = String(n);
  return s.includes('.') ? s : `${s}.0`;
}

/** json.dumps(value, indent=2, sort_keys=True) with ensure_ascii, as PEFT writes adapter_config.json. */
export function pythonJson(value: unknown, indent = '', key?: string): string {
  if (value === null || value === undefined) return 'null';
  if (typeof value === 'boolean') return value ? 'true' : 'false';
  if (typeof value === 'number') return key !== undefined && FLOAT_KEYS.has(key) ? pythonFloat(value) : Number.isInteger(value) ? String(value) : pythonFloat(value);
  if (typeof value === 'bigint') return String(value);
  if (typeof value === 'string') return JSON.stringify(value).replace(/[\u007f-\uffff]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
  const inner = `${indent}  `;
  if (Array.isArray(value)) {
    if (value.length === 0) return '[]';
    return `[\n${value.map((v) => inner + pythonJson(v, inner)).join(',\n')}\n${indent}]`;
  }
  const keys = Object.keys(value as object).filter((k) => (value as Record<string, unknown>)[k] !== undefined).sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  if (keys.length === 0) return '{}';
  const items = keys.map((k) => `${inner}${pythonJson(k)}: ${pythonJson((value as Record<string, unknown>)[k], inner, k)}`);
  return `{\n${items.join(',\n')}\n${indent}}`;
}

function layerEntries<T>(layers: unknown, name: string): Array<[string, T]> {
  const list = layers instanceof Map ? [...layers.entries()] : typeof layers === 'object' && layers !== null ? Object.entries(layers) : null;
  if (!list) throw invalidType('a Map (or object) of module paths to layer weights', name, layers);
  if (list.length === 0) throw invalidRange('at least one layer', name, layers);
  for (const [k] of list) if (typeof k !== 'string' || k === '' || k.startsWith(MODULE_PREFIX)) throw invalidRange(`a module path without the ${JSON.stringify(MODULE_PREFIX)} prefix`, `a key of ${name}`, k);
  return list as Array<[string, T]>;
}

function tensorArg(t: unknown, name: string, dims?: number): Tensor {
  if (!(t instanceof Tensor)) throw invalidType('a Tensor', name, t);
  t.storage(name);
  if (t.device !== 'cpu') throw invalidRange('a tensor on cpu', name, t);
  if (t.dtype === 'int32') throw invalidType('a float32, bfloat16 or float16 Tensor', name, t, 'dtype is int32');
  if (dims !== undefined && t.shape.length !== dims) throw invalidRange(`a ${dims}-D tensor`, name, t);
  return t;
}

/** The most common value (first seen on ties). */
function mode(values: readonly number[]): number {
  const counts = new Map<number, number>();
  for (const v of values) counts.set(v, (counts.get(v) ?? 0) + 1);
  let best = values[0], n = 0;
  for (const [v, c] of counts) if (c > n) [best, n] = [v, c];
  return best;
}

/** Integral within rounding (alpha recovered from a scale) → the integer. */
function tidy(x: number): number {
  const r = Math.round(x);
  return Math.abs(x - r) <= 1e-9 * Math.max(1, Math.abs(x)) ? r : x;
}

function defaultTargets(modules: readonly string[]): string[] {
  return [...new Set(modules.map((m) => m.slice(m.lastIndexOf('.') + 1)))].sort();
}

/**
 * Writes `adapter` as PEFT does: adapter_config.json (a loaded config's keys kept, the fields the
 * tensors determine updated) and adapter_model.safetensors with PEFT's key names, both atomically.
 */
export function saveAdapter(dir: string, adapter: LoraAdapterInput | VeraAdapterInput | Adapter, opts?: SaveOptions): void {
  if (typeof dir !== 'string' || dir === '') throw invalidType('a directory path', 'dir', dir);
  if (typeof adapter !== 'object' || adapter === null || (adapter.kind !== 'lora' && adapter.kind !== 'vera'))
    throw invalidType("an adapter ({ kind: 'lora' | 'vera', layers, ... })", 'adapter', adapter);
  if (opts !== undefined && (typeof opts !== 'object' || opts === null)) throw invalidType('an options object', 'options', opts);
  const o = opts ?? {};
  const baseConfig = adapter.config;
  if (baseConfig !== undefined && (typeof baseConfig !== 'object' || baseConfig === null || Array.isArray(baseConfig)))
    throw invalidType('a config object', 'adapter.config', baseConfig);
  const dtype = o.dtype ?? adapter.dtype ?? 'float32';
  if (!(dtype in DTYPE_TO_SAFETENSORS)) throw invalidRange("'float32', 'bfloat16' or 'float16'", 'options.dtype', dtype);
  if (o.extraConfig !== undefined && (typeof o.extraConfig !== 'object' || o.extraConfig === null || Array.isArray(o.extraConfig)))
    throw invalidType('an object of config keys', 'options.extraConfig', o.extraConfig);
  if (o.targetModules !== undefined && typeof o.targetModules !== 'string' && !(Array.isArray(o.targetModules) && o.targetModules.every((t) => typeof t === 'string')))
    throw invalidType('a list of module names or a regex string', 'options.targetModules', o.targetModules);
  if (o.baseModel !== undefined && typeof o.baseModel !== 'string') throw invalidType('a string', 'options.baseModel', o.baseModel);

  const tensors: Array<{ name: string; tensor: Tensor }> = [];
  const modules: string[] = [];
  let config: PeftConfig;
  if (adapter.kind === 'lora') {
    config = { ...loraDefaults(), ...(baseConfig ? structuredClone(baseConfig) : {}) };
    const layers = layerEntries<LoraLayerInput>(adapter.layers, 'adapter.layers');
    const rslora = adapter.rslora ?? (typeof config.use_rslora === 'boolean' ? config.use_rslora : false);
    const plan = layers.map(([module, l]) => {
      if (typeof l !== 'object' || l === null) throw invalidType('layer weights { A, B }', `adapter.layers[${JSON.stringify(module)}]`, l);
      const A = tensorArg(l.A, `adapter.layers[${JSON.stringify(module)}].A`, 2);
      const B = tensorArg(l.B, `adapter.layers[${JSON.stringify(module)}].B`, 2);
      const r = A.shape[0];
      if (r < 1 || B.shape[1] !== r) throw invalidRangeText(`shape [out, r] with r = ${r} (A's rows)`, `adapter.layers[${JSON.stringify(module)}].B`, shapeText(B.shape));
      const loraBias = l.loraBias === undefined ? undefined : tensorArg(l.loraBias, `adapter.layers[${JSON.stringify(module)}].loraBias`, 1);
      if (loraBias && loraBias.size !== B.shape[0])
        throw invalidRangeText(`shape [out] = [${B.shape[0]}]`, `adapter.layers[${JSON.stringify(module)}].loraBias`, shapeText(loraBias.shape));
      const alpha =
        typeof l.alpha === 'number' ? l.alpha : typeof l.scale === 'number' ? tidy(l.scale * (rslora ? Math.sqrt(r) : r)) : undefined;
      return { module, A, B, loraBias, r, alpha };
    });
    const rank = adapter.rank ?? mode(plan.map((p) => p.r));
    const alpha = adapter.alpha ?? (plan.some((p) => p.alpha !== undefined) ? mode(plan.filter((p) => p.alpha !== undefined).map((p) => p.alpha as number)) : rank);
    config.peft_type = 'LORA';
    config.r = rank;
    config.lora_alpha = alpha;
    config.use_rslora = rslora;
    config.fan_in_fan_out = adapter.fanInFanOut ?? config.fan_in_fan_out ?? false;
    if (plan.some((p) => p.loraBias)) config.lora_bias = true;
    // rank_pattern / alpha_pattern: keep the config's when they still give every layer its rank
    // and alpha, else write one exact entry per layer that differs from r / lora_alpha.
    const want = plan.map((p) => ({ module: p.module, r: p.r, alpha: p.alpha ?? alpha }));
    const fits = () => {
      // PEFT tries the keys in file order, and the file's keys are sorted.
      const sorted = { ...config, rank_pattern: sortKeys(config.rank_pattern), alpha_pattern: sortKeys(config.alpha_pattern) };
      const reader = new ConfigReader(sorted, CONFIG_NAME);
      const rp = reader.pattern('rank_pattern', true), ap = reader.pattern('alpha_pattern', false);
      return want.every((w) => fromPattern(rp, w.module, rank) === w.r && fromPattern(ap, w.module, alpha) === w.alpha);
    };
    // Module names as keys (as PEFT users write them); anchored, escaped ones if a name is the
    // suffix of another's and would match it too.
    for (const key of [(m: string) => m, (m: string) => `^${escapeModule(m)}`]) {
      if (fits()) break;
      config.rank_pattern = Object.fromEntries(want.filter((w) => w.r !== rank).map((w) => [key(w.module), w.r]));
      config.alpha_pattern = Object.fromEntries(want.filter((w) => w.alpha !== alpha).map((w) => [key(w.module), w.alpha]));
    }
    if (!fits()) throw invalidRange('layers whose ranks and alphas rank_pattern / alpha_pattern can describe', 'adapter.layers', adapter.layers);
    for (const p of plan) {
      modules.push(p.module);
      tensors.push({ name: `${MODULE_PREFIX}${p.module}.lora_A.weight`, tensor: p.A });
      tensors.push({ name: `${MODULE_PREFIX}${p.module}.lora_B.weight`, tensor: p.B });
      if (p.loraBias) tensors.push({ name: `${MODULE_PREFIX}${p.module}.lora_B.bias`, tensor: p.loraBias });
    }
  } else {
    config = { ...veraDefaults(), ...(baseConfig ? structuredClone(baseConfig) : {}) };
    const layers = layerEntries<VeraLayerWeights>(adapter.layers, 'adapter.layers');
    const proj = adapter.projections;
    if (typeof proj !== 'object' || proj === null) throw invalidType('projections { A, B }', 'adapter.projections', proj);
    const A = tensorArg(proj.A, 'adapter.projections.A', 2);
    const B = tensorArg(proj.B, 'adapter.projections.B', 2);
    const [r, maxIn] = A.shape as [number, number];
    if (B.shape[1] !== r) throw invalidRangeText(`shape [max out, r] with r = ${r} (A's rows)`, 'adapter.projections.B', shapeText(B.shape));
    const maxOut = B.shape[0];
    for (const [module, l] of layers) {
      const name = `adapter.layers[${JSON.stringify(module)}]`;
      if (typeof l !== 'object' || l === null) throw invalidType('layer weights { lambdaD, lambdaB }', name, l);
      const lambdaD = tensorArg(l.lambdaD, `${name}.lambdaD`, 1);
      const lambdaB = tensorArg(l.lambdaB, `${name}.lambdaB`, 1);
      if (lambdaD.size !== r) throw invalidRangeText(`shape [r] = [${r}] (the projections' rank)`, `${name}.lambdaD`, shapeText(lambdaD.shape));
      if (lambdaB.size > maxOut) throw invalidRangeText(`shape [out] with out <= ${maxOut} (vera_B's rows)`, `${name}.lambdaB`, shapeText(lambdaB.shape));
      modules.push(module);
      tensors.push({ name: `${MODULE_PREFIX}${module}.vera_lambda_b`, tensor: lambdaB });
      tensors.push({ name: `${MODULE_PREFIX}${module}.vera_lambda_d`, tensor: lambdaD });
    }
    const saveProjection = o.saveProjection ?? (adapter as VeraAdapterInput).saveProjection ?? (typeof config.save_projection === 'boolean' ? config.save_projection : true);
    const seed = checkSeedValue((adapter as VeraAdapterInput).seed ?? config.projection_prng_key ?? 0, 'adapter.seed');
    if (!saveProjection) {
      // PEFT will regenerate the projections from the seed: refuse to save ones it would not get back.
      const theirs = peftVeraProjections(seed, r, maxIn, maxOut);
      try {
        if (!sameValues(theirs.A, A) || !sameValues(theirs.B, B))
          throw invalidRange(
            `projections equal to PEFT's for projection_prng_key ${seed} (torch's MT19937 stream, as peft.veraProjections makes them)`,
            'adapter.projections',
            adapter.projections,
            "PEFT regenerates vera_A / vera_B from the seed when save_projection is false; lowrank's vera.projections draws from Philox and differs: save with saveProjection true",
          );
      } finally {
        theirs.A.dispose();
        theirs.B.dispose();
      }
    } else {
      tensors.push({ name: 'base_model.vera_A', tensor: A });
      tensors.push({ name: 'base_model.vera_B', tensor: B });
    }
    config.peft_type = 'VERA';
    config.r = r;
    config.projection_prng_key = seed <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(seed) : seed;
    config.save_projection = saveProjection;
    config.fan_in_fan_out = adapter.fanInFanOut ?? config.fan_in_fan_out ?? false;
    if ((adapter as VeraAdapterInput).dInitial !== undefined) config.d_initial = (adapter as VeraAdapterInput).dInitial;
  }

  // Trained biases: PEFT's state dict has an adapted module's bias under base_layer.
  const adapted = new Set(modules);
  const biases = adapter.biases ?? new Map<string, Tensor>();
  if (!(biases instanceof Map)) throw invalidType('a Map of module paths to bias tensors', 'adapter.biases', biases);
  for (const [module, b] of biases) {
    tensorArg(b, `adapter.biases.get(${JSON.stringify(module)})`, 1);
    tensors.push({ name: `${MODULE_PREFIX}${module}${adapted.has(module) ? '.base_layer' : ''}.bias`, tensor: b });
  }
  if (biases.size > 0 && config.bias === 'none') config.bias = 'all';
  const saved = adapter.modulesToSave ?? new Map<string, Tensor>();
  if (!(saved instanceof Map)) throw invalidType('a Map of tensor names to tensors', 'adapter.modulesToSave', saved);
  for (const [name, t] of saved) {
    tensorArg(t, `adapter.modulesToSave.get(${JSON.stringify(name)})`);
    tensors.push({ name: `${MODULE_PREFIX}${name}`, tensor: t });
  }
  if (saved.size > 0 && (config.modules_to_save === null || config.modules_to_save === undefined))
    config.modules_to_save = [...new Set([...saved.keys()].map((n) => n.slice(0, n.lastIndexOf('.'))))].sort();

  if (o.targetModules !== undefined) config.target_modules = o.targetModules;
  else if (config.target_modules === null || config.target_modules === undefined) config.target_modules = defaultTargets(modules);
  if (o.baseModel !== undefined) config.base_model_name_or_path = o.baseModel;
  config.inference_mode = true; // as PeftModel.save_pretrained stores it
  if (o.extraConfig) Object.assign(config, structuredClone(o.extraConfig));

  const names = new Set<string>();
  for (const t of tensors) {
    if (names.has(t.name)) throw invalidRange('distinct tensor names', 'adapter', t.name, 'two tensors would be saved under this key');
    names.add(t.name);
  }
  // The config must still describe the tensors (extraConfig may have changed r or the patterns).
  checkSavedConfig(config, tensors);

  mkdirSync(dir, { recursive: true });
  const converted: Tensor[] = [];
  try {
    const entries: WriteEntry[] = tensors.map(({ name, tensor }) => {
      if (tensor.dtype === dtype) return { name, tensor };
      const c = tensor.astype(dtype);
      converted.push(c);
      return { name, tensor: c };
    });
    writeSafetensors(path.join(dir, WEIGHTS_NAME), entries, { format: 'pt' });
  } finally {
    for (const c of converted) c.dispose();
  }
  writeFileAtomic(path.join(dir, CONFIG_NAME), pythonJson(config));
}

/** A module path as a rank_pattern key matching only itself (dots escaped). */
function escapeModule(module: string): string {
  return module.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

function sortKeys(v: unknown): unknown {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return v;
  return Object.fromEntries(Object.entries(v).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}

function sameValues(a: Tensor, b: Tensor): boolean {
  if (a.shape.length !== b.shape.length || a.shape.some((d, i) => d !== b.shape[i])) return false;
  const x = a.toFloat32Array(), y = b.toFloat32Array();
  for (let i = 0; i < x.length; i++) if (!Object.is(x[i], y[i])) return false;
  return true;
}

function checkSavedConfig(config: PeftConfig, tensors: ReadonlyArray<{ name: string; tensor: Tensor }>): void {
  const c = new ConfigReader(config, `the ${CONFIG_NAME} being saved`);
  const kind = config.peft_type;
  if (kind === 'LORA') {
    const r = c.positiveInt('r', 8);
    c.number('lora_alpha', 8);
    if (c.bool('use_dora', false)) throw invalidRange('false', c.name('use_dora'), true, 'DoRA adapters are not supported');
    const rp = c.pattern('rank_pattern', true);
    c.pattern('alpha_pattern', false);
    for (const { name, tensor } of tensors) {
      if (!name.endsWith('.lora_A.weight')) continue;
      const module = name.slice(MODULE_PREFIX.length, -'.lora_A.weight'.length);
      const want = fromPattern(rp, module, r);
      if (tensor.shape[0] !== want) throw invalidRangeText(`shape [r, in] with r = ${want} (from the config being saved)`, `the lora_A of ${module}`, shapeText(tensor.shape));
    }
  } else if (kind === 'VERA') {
    const r = c.positiveInt('r', 256);
    for (const { name, tensor } of tensors)
      if (name.endsWith('.vera_lambda_d') && tensor.shape[0] !== r)
        throw invalidRangeText(`shape [r] with r = ${r} (from the config being saved)`, `the vera_lambda_d of ${name.slice(MODULE_PREFIX.length, -'.vera_lambda_d'.length)}`, shapeText(tensor.shape));
  } else {
    throw invalidRange('"LORA" or "VERA"', c.name('peft_type'), kind);
  }
}
