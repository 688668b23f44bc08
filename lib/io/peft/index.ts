// PEFT adapter directories (README.md, Files), read and written exactly as Hugging Face PEFT does:
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
// Each method is one module (lora.ts, vera.ts: its keys, shapes, checks, load, save and merge) and
// one row of METHODS below, keyed by peft_type; config.ts reads and writes adapter_config.json and
// adapter.ts holds what the methods share.
import { mkdirSync, statSync } from 'node:fs';
import path from 'node:path';
import { FLOAT_DTYPES } from '../../dtype.js';
import { invalidRange, invalidType } from '../../errors.js';
import type { LoraLinear } from '../../layers/lora-linear.js';
import type { VeraLinear } from '../../layers/vera-linear.js';
import type { Tensor } from '../../tensor.js';
import { writeSafetensors, type TensorEntry, type WriteEntry } from '../safetensors.js';
import {
  biasOf,
  readF32,
  scan,
  sumSizes,
  tensorArg,
  type AdapterCommon,
  type LayerOptions,
  type LoadOptions,
  type MethodSummary,
  type PeftMethod,
  type SaveOptions,
  type SavedTensor,
  type Scan,
} from './adapter.js';
import {
  adapterFiles,
  CONFIG_NAME,
  ConfigReader,
  finishConfig,
  MODULE_PREFIX,
  parseConfigFile,
  WEIGHTS_NAME,
  writeConfig,
  type PeftConfig,
} from './config.js';
import * as lora from './lora.js';
import type { LoraAdapter, LoraAdapterInput } from './lora.js';
import * as vera from './vera.js';
import type { VeraAdapter, VeraAdapterInput } from './vera.js';

export { CONFIG_NAME, MODULE_PREFIX, pythonJson, readConfig, WEIGHTS_NAME, type PeftConfig } from './config.js';
export type { AdapterLayerSummary, LayerOptions, LoadOptions, SaveOptions } from './adapter.js';
export type { LoraAdapter, LoraAdapterInput, LoraLayerInput, LoraLayerWeights } from './lora.js';
export type { VeraAdapter, VeraAdapterInput, VeraLayerWeights } from './vera.js';
export { veraProjections } from './vera.js';

export type Adapter = LoraAdapter | VeraAdapter;

type Method = PeftMethod<Adapter, LoraAdapterInput | VeraAdapterInput>;

/** The methods lowrank reads and writes, by adapter_config.json's peft_type: a new method is a module and a row. */
const METHODS: ReadonlyMap<string, Method> = new Map<string, Method>([
  [lora.LORA.peftType, lora.LORA],
  [vera.VERA.peftType, vera.VERA],
]);

/** The same methods by the kind of their adapter objects ('lora', 'vera'). */
const BY_KIND: ReadonlyMap<string, Method> = new Map([...METHODS.values()].map((m) => [m.kind, m]));
/** '"LORA" or "VERA"', for the errors naming peft_type. */
const PEFT_TYPES = [...METHODS.keys()].map((t) => JSON.stringify(t)).join(' or ');

/** The method of a config's peft_type. */
function methodOf(c: ConfigReader): Method {
  const peftType = c.config.peft_type;
  if (typeof peftType !== 'string') throw invalidType(PEFT_TYPES, c.name('peft_type'), peftType);
  const m = METHODS.get(peftType);
  if (!m)
    throw invalidRange(
      PEFT_TYPES,
      c.name('peft_type'),
      peftType,
      `lowrank reads ${[...METHODS.values()].map((x) => x.label).join(' and ')} adapters`,
    );
  return m;
}

/** The adapter directory's files and config, and its tensors sorted by its method. */
function open(dir: string): { scan: Scan; method: Method } {
  const files = adapterFiles(dir);
  const reader = new ConfigReader(parseConfigFile(files.config), files.config);
  const method = methodOf(reader);
  return { scan: scan(files, reader, method), method };
}

// ---- describe (headers only) --------------------------------------------------------------

/** Besides the method's fields (rank, alpha, scale, rslora; VeRA: seed, saveProjection, projections). */
export interface AdapterSummary extends MethodSummary {
  kind: 'lora' | 'vera';
  dir: string;
  config: PeftConfig;
  targetModules: string[] | string | null;
  baseModel: string | null;
  biases: string[];
  modulesToSave: string[];
  /** Elements of the trainable tensors (adapters, trained biases, modules_to_save; not VeRA's frozen projections). */
  trainableParameters: number;
  /** The file's stored dtype(s). */
  dtypes: string[];
  bytes: { config: number; weights: number };
}

/** What an adapter directory holds, from adapter_config.json and the safetensors header only. */
export function describeAdapter(dir: string): AdapterSummary {
  const { scan: s, method } = open(dir);
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
    const { summary, trainable } = method.describe(s);
    return { kind: method.kind, ...common, ...summary, trainableParameters: trainable + extra };
  } finally {
    s.file.close();
  }
}

// ---- loading ------------------------------------------------------------------------------

function disposer(tensors: () => Iterable<Tensor>) {
  return function dispose(): void {
    for (const t of tensors()) t.dispose();
  };
}

/**
 * Loads a PEFT LoRA or VeRA adapter directory (adapter_config.json + adapter_model.safetensors).
 * Every tensor is validated against the config (ranks, rank_pattern / alpha_pattern, shapes) and
 * loaded as float32. VeRA saved without its projections needs `options.baseShapes` (see
 * vera.ts).
 */
export function loadAdapter(dir: string, options?: LoadOptions): Adapter {
  if (options !== undefined && (typeof options !== 'object' || options === null))
    throw invalidType('an options object', 'options', options);
  const baseShapes = options?.baseShapes;
  if (baseShapes !== undefined && !(baseShapes instanceof Map))
    throw invalidType('a Map of module paths to [out, in]', 'options.baseShapes', baseShapes);
  const { scan: s, method } = open(dir);
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
    // AdapterCommon's fields but fan_in_fan_out (the method reads it with its other keys).
    const common: Omit<AdapterCommon, 'fanInFanOut'> = {
      config: s.reader.config,
      dir: s.files.dir,
      dtype: s.dtype,
      biases,
      modulesToSave,
      dispose,
      [Symbol.dispose]: dispose,
    };
    return method.load(s, read, (t) => loaded.push(t), common, { baseShapes });
  } catch (e) {
    for (const t of loaded) t.dispose();
    throw e;
  } finally {
    s.file.close();
  }
}

// ---- using an adapter: layers, merge ----------------------------------------------------

function checkAdapter(adapter: unknown, kind?: Adapter['kind']): Adapter {
  const a = adapter as Adapter;
  if (typeof adapter !== 'object' || adapter === null || !BY_KIND.has(a.kind) || !(a.layers instanceof Map))
    throw invalidType('an adapter from peft.loadAdapter', 'adapter', adapter);
  if (kind && a.kind !== kind)
    throw invalidRange(`a ${BY_KIND.get(kind)!.label} adapter`, 'adapter', `${BY_KIND.get(a.kind)!.label} adapter`);
  return a;
}

/**
 * The bias a layer of `module` has under the adapter: the adapter's trained bias (bias "all" /
 * "lora_only" / "vera_only") in place of `baseBias`, plus scale · lora_B.bias (lora_bias). A new
 * float32 tensor, or undefined when the adapter leaves the bias as it is.
 */
export function mergedBias(adapter: Adapter, module: string, baseBias?: Tensor): Tensor | undefined {
  return biasOf(checkAdapter(adapter), module, baseBias);
}

/**
 * A LoraLinear for `module` using the adapter's A, B and scale (shared, not copied: training the
 * layer updates the adapter, which saveAdapter then writes). `weight` is the base weight as the
 * checkpoint stores it: [out, in], or [in, out] with fan_in_fan_out (then transposed into a copy).
 * A trained bias or lora_B.bias is folded into the layer's bias (a new tensor).
 */
export function loraLayer(adapter: LoraAdapter, module: string, weight: Tensor, bias?: Tensor, opts?: LayerOptions): LoraLinear {
  return lora.layer(checkAdapter(adapter, 'lora') as LoraAdapter, module, weight, bias, opts);
}

/** A VeraLinear for `module` using the adapter's shared projections and λd, λb (shared, not copied). */
export function veraLayer(
  adapter: VeraAdapter,
  module: string,
  weight: Tensor,
  bias?: Tensor,
  opts?: Omit<LayerOptions, 'variant'>,
): VeraLinear {
  return vera.layer(checkAdapter(adapter, 'vera') as VeraAdapter, module, weight, bias, opts);
}

/**
 * W ← W + delta for the adapter's layer `module`, in place: float32 or bfloat16 W (bfloat16
 * rounds once, to nearest). W is the base weight as stored: [out, in], or [in, out] with
 * fan_in_fan_out (the delta is transposed; W is never copied). `safe`: refuse a non-finite result
 * and leave W untouched.
 */
export function mergeWeight(adapter: Adapter, module: string, W: Tensor, opts?: { safe?: boolean }): void {
  const a = checkAdapter(adapter);
  BY_KIND.get(a.kind)!.mergeWeight(a, module, W, opts?.safe ?? false);
}

// ---- saving -------------------------------------------------------------------------------

/**
 * Writes `adapter` as PEFT does: adapter_config.json (a loaded config's keys kept, the fields the
 * tensors determine updated) and adapter_model.safetensors with PEFT's key names, both atomically.
 */
export function saveAdapter(dir: string, adapter: LoraAdapterInput | VeraAdapterInput | Adapter, opts?: SaveOptions): void {
  if (typeof dir !== 'string' || dir === '') throw invalidType('a directory path', 'dir', dir);
  if (typeof adapter !== 'object' || adapter === null || !BY_KIND.has(adapter.kind))
    throw invalidType(`an adapter ({ kind: ${[...BY_KIND.keys()].map((k) => `'${k}'`).join(' | ')}, layers, ... })`, 'adapter', adapter);
  if (opts !== undefined && (typeof opts !== 'object' || opts === null)) throw invalidType('an options object', 'options', opts);
  const o = opts ?? {};
  const baseConfig = adapter.config;
  if (baseConfig !== undefined && (typeof baseConfig !== 'object' || baseConfig === null || Array.isArray(baseConfig)))
    throw invalidType('a config object', 'adapter.config', baseConfig);
  const dtype = o.dtype ?? adapter.dtype ?? 'float32';
  if (!(FLOAT_DTYPES as readonly unknown[]).includes(dtype))
    throw invalidRange("'float32', 'bfloat16' or 'float16'", 'options.dtype', dtype);
  if (o.extraConfig !== undefined && (typeof o.extraConfig !== 'object' || o.extraConfig === null || Array.isArray(o.extraConfig)))
    throw invalidType('an object of config keys', 'options.extraConfig', o.extraConfig);
  if (
    o.targetModules !== undefined &&
    typeof o.targetModules !== 'string' &&
    !(Array.isArray(o.targetModules) && o.targetModules.every((t) => typeof t === 'string'))
  )
    throw invalidType('a list of module names or a regex string', 'options.targetModules', o.targetModules);
  if (o.baseModel !== undefined && typeof o.baseModel !== 'string') throw invalidType('a string', 'options.baseModel', o.baseModel);

  const { config, tensors, modules } = BY_KIND.get(adapter.kind)!.save(adapter, o);

  // Trained biases: PEFT's state dict has an adapted module's bias under base_layer.
  const adapted = new Set(modules);
  const biases = adapter.biases ?? new Map<string, Tensor>();
  if (!(biases instanceof Map)) throw invalidType('a Map of module paths to bias tensors', 'adapter.biases', biases);
  for (const [module, b] of biases) {
    tensorArg(b, `adapter.biases.get(${JSON.stringify(module)})`, 1);
    tensors.push({ name: `${MODULE_PREFIX}${module}${adapted.has(module) ? '.base_layer' : ''}.bias`, tensor: b });
  }
  const saved = adapter.modulesToSave ?? new Map<string, Tensor>();
  if (!(saved instanceof Map)) throw invalidType('a Map of tensor names to tensors', 'adapter.modulesToSave', saved);
  for (const [name, t] of saved) {
    tensorArg(t, `adapter.modulesToSave.get(${JSON.stringify(name)})`);
    tensors.push({ name: `${MODULE_PREFIX}${name}`, tensor: t });
  }
  finishConfig(config, modules, biases, saved, o);

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
  writeConfig(dir, config);
}

function checkSavedConfig(config: PeftConfig, tensors: readonly SavedTensor[]): void {
  const c = new ConfigReader(config, `the ${CONFIG_NAME} being saved`);
  const m = typeof config.peft_type === 'string' ? METHODS.get(config.peft_type) : undefined;
  if (!m) throw invalidRange(PEFT_TYPES, c.name('peft_type'), config.peft_type);
  m.checkSaved(c, tensors);
}
