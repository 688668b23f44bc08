// adapter_config.json (README.md, Files), read and written as Hugging Face PEFT does: every key is
// kept, known or not (a loaded config saves back with its unknown keys), typed reads check the
// keys a method uses and name the key and the file, and the file is written as
// json.dumps(config, indent=2, sort_keys=True) with no trailing newline.
import { existsSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { invalidRange, invalidRangeText, invalidType } from '../../errors.js';
import type { Tensor } from '../../tensor.js';
import { writeFileAtomic } from '../atomic.js';

export const CONFIG_NAME = 'adapter_config.json';
export const WEIGHTS_NAME = 'adapter_model.safetensors';
/** The prefix of every module key in a PEFT adapter file (PeftModel.base_model.model). */
export const MODULE_PREFIX = 'base_model.model.';

/** adapter_config.json as parsed: every key kept, known or not. */
export type PeftConfig = Record<string, unknown>;

// ---- reading ------------------------------------------------------------------------------

/** Resolves `dir` (or a file inside it) to the adapter directory and its two files. */
export function adapterFiles(dir: unknown): { dir: string; config: string; weights: string } {
  if (typeof dir !== 'string' || dir === '') throw invalidType('a path to a PEFT adapter directory', 'dir', dir);
  let d = path.resolve(dir);
  if (existsSync(d) && statSync(d).isFile() && (path.basename(d) === CONFIG_NAME || path.basename(d) === WEIGHTS_NAME)) d = path.dirname(d);
  if (!existsSync(d)) throw invalidRange('a PEFT adapter directory', 'dir', dir, 'no such file or directory');
  if (!statSync(d).isDirectory())
    throw invalidRange(`a PEFT adapter directory (with ${CONFIG_NAME} and ${WEIGHTS_NAME})`, 'dir', dir, 'it is a file');
  const config = path.join(d, CONFIG_NAME);
  const weights = path.join(d, WEIGHTS_NAME);
  if (!existsSync(config)) throw invalidRange(`a PEFT adapter directory with ${CONFIG_NAME}`, 'dir', dir, `${config} does not exist`);
  if (!existsSync(weights)) {
    const bin = path.join(d, 'adapter_model.bin');
    const hint = existsSync(bin)
      ? `; it has adapter_model.bin, a pickle lowrank does not read: re-save it in Python with safe_serialization=True`
      : '';
    throw invalidRange(`a PEFT adapter directory with ${WEIGHTS_NAME}`, 'dir', dir, `${weights} does not exist${hint}`);
  }
  return { dir: d, config, weights };
}

/** Reads and parses adapter_config.json (any JSON object; fields are checked by the loader). */
export function readConfig(dir: string): PeftConfig {
  const files = adapterFiles(dir);
  return parseConfigFile(files.config);
}

export function parseConfigFile(file: string): PeftConfig {
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
export class ConfigReader {
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
      if (typeof n !== 'number' || (integers && !Number.isSafeInteger(n)))
        throw invalidType(integers ? 'a positive integer' : 'a finite number', where, n);
      if (integers ? n < 1 : !Number.isFinite(n)) throw invalidRange(integers ? 'a positive integer' : 'a finite number', where, n);
      let re: RegExp;
      try {
        // PEFT's get_pattern_key: re.match(rf"(^|.*\.){key}$", module), anchored at the start only.
        re = new RegExp(`^(?:(?:^|.*\\.)${k}$)`);
      } catch (e) {
        throw invalidRangeText(
          'a module-name regular expression',
          `a key of ${key} in ${this.file}`,
          `${JSON.stringify(k)} (${(e as Error).message})`,
        );
      }
      return [re, k, n];
    });
  }

  /** target_modules: a list of names, one regex string, or null. */
  targets(): string[] | string | null {
    const v = this.config.target_modules;
    if (v === undefined || v === null) return null;
    if (typeof v === 'string') return v;
    if (Array.isArray(v) && v.every((s) => typeof s === 'string')) return v;
    throw invalidType('a list of module names, a regex string or null', this.name('target_modules'), v);
  }
}

/** The first pattern matching `module` (PEFT's order: the file's key order), else `fallback`. */
export function fromPattern(patterns: Array<[RegExp, string, number]>, module: string, fallback: number): number {
  for (const [re, , n] of patterns) if (re.test(module)) return n;
  return fallback;
}

// ---- writing ------------------------------------------------------------------------------

/** What saveAdapter's options set in every method's config. */
export interface ConfigOptions {
  baseModel?: string;
  targetModules?: string[] | string;
  extraConfig?: Record<string, unknown>;
}

/** A method's defaults under a loaded config's keys (copied: the adapter's config is not changed). */
export function configFrom(defaults: PeftConfig, loaded: PeftConfig | undefined): PeftConfig {
  return { ...defaults, ...(loaded ? structuredClone(loaded) : {}) };
}

/**
 * The config fields every method's saved adapter sets besides its own: bias and modules_to_save
 * when there are trained biases and saved tensors, target_modules (the option, a loaded config's,
 * else the last name of each adapted module), base_model_name_or_path, inference_mode, and
 * extraConfig last.
 */
export function finishConfig(
  config: PeftConfig,
  modules: readonly string[],
  biases: ReadonlyMap<string, Tensor>,
  saved: ReadonlyMap<string, Tensor>,
  o: ConfigOptions,
): void {
  if (biases.size > 0 && config.bias === 'none') config.bias = 'all';
  if (saved.size > 0 && (config.modules_to_save === null || config.modules_to_save === undefined))
    config.modules_to_save = [...new Set([...saved.keys()].map((n) => n.slice(0, n.lastIndexOf('.'))))].sort();
  if (o.targetModules !== undefined) config.target_modules = o.targetModules;
  else if (config.target_modules === null || config.target_modules === undefined) config.target_modules = defaultTargets(modules);
  if (o.baseModel !== undefined) config.base_model_name_or_path = o.baseModel;
  config.inference_mode = true; // as PeftModel.save_pretrained stores it
  if (o.extraConfig) Object.assign(config, structuredClone(o.extraConfig));
}

function defaultTargets(modules: readonly string[]): string[] {
  return [...new Set(modules.map((m) => m.slice(m.lastIndexOf('.') + 1)))].sort();
}

/** Writes adapter_config.json into `dir`, atomically. */
export function writeConfig(dir: string, config: PeftConfig): void {
  writeFileAtomic(path.join(dir, CONFIG_NAME), pythonJson(config));
}

/** A module path as a rank_pattern key matching only itself (dots escaped). */
export function escapeModule(module: string): string {
  return module.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

export function sortKeys(v: unknown): unknown {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return v;
  return Object.fromEntries(Object.entries(v).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
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
  if (typeof value === 'number')
    return key !== undefined && FLOAT_KEYS.has(key) ? pythonFloat(value) : Number.isInteger(value) ? String(value) : pythonFloat(value);
  if (typeof value === 'bigint') return String(value);
  if (typeof value === 'string')
    return JSON.stringify(value).replace(/[\u007f-\uffff]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
  const inner = `${indent}  `;
  if (Array.isArray(value)) {
    if (value.length === 0) return '[]';
    return `[\n${value.map((v) => inner + pythonJson(v, inner)).join(',\n')}\n${indent}]`;
  }
  const keys = Object.keys(value)
    .filter((k) => (value as Record<string, unknown>)[k] !== undefined)
    .sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  if (keys.length === 0) return '{}';
  const items = keys.map((k) => `${inner}${pythonJson(k)}: ${pythonJson((value as Record<string, unknown>)[k], inner, k)}`);
  return `{\n${items.join(',\n')}\n${indent}}`;
}
