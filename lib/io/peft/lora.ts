// LoRA in a PEFT adapter directory (peft_type "LORA"):
//   base_model.model.<module>.lora_A.weight [r, in]   base_model.model.<module>.lora_B.weight [out, r]
//   base_model.model.<module>.lora_B.bias [out]       (lora_bias: true)
// r and lora_alpha per layer from rank_pattern / alpha_pattern (PEFT's regex keys, file order);
// DoRA (use_dora, lora_magnitude_vector) and LoRA on embeddings are refused.
import { invalidRange, invalidRangeText, invalidType } from '../../errors.js';
import { LoraLinear } from '../../layers/lora-linear.js';
import * as lora from '../../ops/lora.js';
import type { Tensor } from '../../tensor.js';
import type { TensorEntry } from '../safetensors.js';
import {
  biasOf,
  checkWeight,
  layerEntries,
  layerOf,
  missing,
  shapeText,
  sumSizes,
  tensorArg,
  transpose,
  type AdapterCommon,
  type AdapterInputCommon,
  type LayerOptions,
  type PeftMethod,
  type SavedTensor,
  type Scan,
} from './adapter.js';
import { CONFIG_NAME, ConfigReader, configFrom, escapeModule, fromPattern, MODULE_PREFIX, sortKeys, type PeftConfig } from './config.js';

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

// ---- reading ------------------------------------------------------------------------------

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

/** A layer tensor's suffix and its slot. */
const LAYER_KEYS = [
  ['.lora_A.weight', 'A'],
  ['.lora_B.weight', 'B'],
  ['.lora_B.bias', 'loraBias'],
] as const;

function plan(s: Scan): LoraPlan {
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
      if (!loraBias)
        throw invalidRange('true (the adapter file has lora_B.bias tensors)', c.name('lora_bias'), c.config.lora_bias ?? false);
      if (slots.loraBias.shape.length !== 1 || slots.loraBias.shape[0] !== out)
        throw invalidRangeText(`shape [out] = [${out}]`, `${slots.loraBias.name} in ${f}`, shapeText(slots.loraBias.shape));
    }
    layers.push({ module, A, B, loraBias: slots.loraBias, rank: r, alpha: a, scale: lora.scaling(a, r, { rslora }), out, in: A.shape[1] });
  }
  return { rank, alpha, rslora, scale: lora.scaling(alpha, rank, { rslora }), fanInFanOut, layers };
}

// ---- saving -------------------------------------------------------------------------------

/** PEFT 0.14's LoraConfig fields with their defaults (what a default LoraConfig saves). */
function defaults(): PeftConfig {
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

/** The most common value (first seen on ties). */
function mode(values: readonly number[]): number {
  const counts = new Map<number, number>();
  for (const v of values) counts.set(v, (counts.get(v) ?? 0) + 1);
  let best = values[0],
    n = 0;
  for (const [v, c] of counts) if (c > n) [best, n] = [v, c];
  return best;
}

/** Integral within rounding (alpha recovered from a scale) → the integer. */
function tidy(x: number): number {
  const r = Math.round(x);
  return Math.abs(x - r) <= 1e-9 * Math.max(1, Math.abs(x)) ? r : x;
}

function save(adapter: LoraAdapterInput | LoraAdapter): { config: PeftConfig; tensors: SavedTensor[]; modules: string[] } {
  const config = configFrom(defaults(), adapter.config);
  const layers = layerEntries<LoraLayerInput>(adapter.layers, 'adapter.layers');
  const rslora = adapter.rslora ?? (typeof config.use_rslora === 'boolean' ? config.use_rslora : false);
  const plan = layers.map(([module, l]) => {
    const name = `adapter.layers[${JSON.stringify(module)}]`;
    if (typeof l !== 'object' || l === null) throw invalidType('layer weights { A, B }', name, l);
    const A = tensorArg(l.A, `${name}.A`, 2);
    const B = tensorArg(l.B, `${name}.B`, 2);
    const r = A.shape[0];
    if (r < 1 || B.shape[1] !== r) throw invalidRangeText(`shape [out, r] with r = ${r} (A's rows)`, `${name}.B`, shapeText(B.shape));
    const loraBias = l.loraBias === undefined ? undefined : tensorArg(l.loraBias, `${name}.loraBias`, 1);
    if (loraBias && loraBias.size !== B.shape[0])
      throw invalidRangeText(`shape [out] = [${B.shape[0]}]`, `${name}.loraBias`, shapeText(loraBias.shape));
    const alpha =
      typeof l.alpha === 'number' ? l.alpha : typeof l.scale === 'number' ? tidy(l.scale * (rslora ? Math.sqrt(r) : r)) : undefined;
    return { module, A, B, loraBias, r, alpha };
  });
  const rank = adapter.rank ?? mode(plan.map((p) => p.r));
  const alpha =
    adapter.alpha ??
    (plan.some((p) => p.alpha !== undefined) ? mode(plan.filter((p) => p.alpha !== undefined).map((p) => p.alpha as number)) : rank);
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
    const rp = reader.pattern('rank_pattern', true),
      ap = reader.pattern('alpha_pattern', false);
    return want.every((w) => fromPattern(rp, w.module, rank) === w.r && fromPattern(ap, w.module, alpha) === w.alpha);
  };
  // Module names as keys (as PEFT users write them); anchored, escaped ones if a name is the
  // suffix of another's and would match it too.
  for (const key of [(m: string) => m, (m: string) => `^${escapeModule(m)}`]) {
    if (fits()) break;
    config.rank_pattern = Object.fromEntries(want.filter((w) => w.r !== rank).map((w) => [key(w.module), w.r]));
    config.alpha_pattern = Object.fromEntries(want.filter((w) => w.alpha !== alpha).map((w) => [key(w.module), w.alpha]));
  }
  if (!fits())
    throw invalidRange('layers whose ranks and alphas rank_pattern / alpha_pattern can describe', 'adapter.layers', adapter.layers);
  const tensors: SavedTensor[] = [];
  for (const p of plan) {
    tensors.push({ name: `${MODULE_PREFIX}${p.module}.lora_A.weight`, tensor: p.A });
    tensors.push({ name: `${MODULE_PREFIX}${p.module}.lora_B.weight`, tensor: p.B });
    if (p.loraBias) tensors.push({ name: `${MODULE_PREFIX}${p.module}.lora_B.bias`, tensor: p.loraBias });
  }
  return { config, tensors, modules: plan.map((p) => p.module) };
}

// ---- the method ---------------------------------------------------------------------------

export const LORA: PeftMethod<LoraAdapter, LoraAdapterInput> = {
  peftType: 'LORA',
  kind: 'lora',
  label: 'LoRA',
  keys: `keys of a PEFT LoRA adapter (${MODULE_PREFIX}<module>.lora_A.weight, .lora_B.weight, .lora_B.bias, .bias)`,
  layerKey: '<module>.lora_A.weight',
  sharedKeys: [],

  checkConfig(reader) {
    if (reader.bool('use_dora', false))
      throw invalidRange('false', reader.name('use_dora'), true, 'DoRA adapters (lora_magnitude_vector) are not supported');
  },

  slotOf(rest, unexpected) {
    for (const [suffix, slot] of LAYER_KEYS)
      if (rest.endsWith(suffix) && rest.length > suffix.length) return [rest.slice(0, -suffix.length), slot];
    if (/(^|\.)lora_embedding_[AB]$/.test(rest))
      throw unexpected('LoRA on embedding layers (lora_embedding_A / lora_embedding_B) is not supported');
    if (/(^|\.)lora_/.test(rest)) throw unexpected();
    return undefined;
  },

  describe(s) {
    const p = plan(s);
    return {
      summary: {
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
      },
      trainable: sumSizes(p.layers.flatMap((l) => [l.A, l.B, ...(l.loraBias ? [l.loraBias] : [])])),
    };
  },

  load(s, read, _own, common) {
    const p = plan(s);
    const layers = new Map<string, LoraLayerWeights>();
    for (const l of p.layers) {
      const w: LoraLayerWeights = { A: read(l.A), B: read(l.B), rank: l.rank, alpha: l.alpha, scale: l.scale };
      if (l.loraBias) w.loraBias = read(l.loraBias);
      layers.set(l.module, w);
    }
    return { kind: 'lora', ...common, fanInFanOut: p.fanInFanOut, rank: p.rank, alpha: p.alpha, rslora: p.rslora, scale: p.scale, layers };
  },

  save,

  checkSaved(c, tensors) {
    const r = c.positiveInt('r', 8);
    c.number('lora_alpha', 8);
    if (c.bool('use_dora', false)) throw invalidRange('false', c.name('use_dora'), true, 'DoRA adapters are not supported');
    const rp = c.pattern('rank_pattern', true);
    c.pattern('alpha_pattern', false);
    for (const { name, tensor } of tensors) {
      if (!name.endsWith('.lora_A.weight')) continue;
      const module = name.slice(MODULE_PREFIX.length, -'.lora_A.weight'.length);
      const want = fromPattern(rp, module, r);
      if (tensor.shape[0] !== want)
        throw invalidRangeText(
          `shape [r, in] with r = ${want} (from the config being saved)`,
          `the lora_A of ${module}`,
          shapeText(tensor.shape),
        );
    }
  },

  mergeWeight(a, module, W, safe) {
    const l = layerOf(a.layers, module);
    const [out, inDim] = [l.B.shape[0], l.A.shape[1]];
    if (!a.fanInFanOut) {
      checkWeight(W, [out, inDim], '[out, in]', module);
      lora.merge(W, l.A, l.B, l.scale, { safe });
      return;
    }
    // W [in, out] += s·(B A)ᵀ = s·Aᵀ Bᵀ: lora.merge with Bᵀ [r, out] as "A" and Aᵀ [in, r] as "B".
    checkWeight(W, [inDim, out], '[in, out]', module);
    const At = transpose(l.A),
      Bt = transpose(l.B);
    try {
      lora.merge(W, Bt, At, l.scale, { safe });
    } finally {
      At.dispose();
      Bt.dispose();
    }
  },
};

/**
 * loraLayer (index.ts) for a checked adapter: a LoraLinear for `module` sharing the adapter's A,
 * B and scale; `weight` as stored ([in, out] with fan_in_fan_out, transposed into a copy).
 */
export function layer(a: LoraAdapter, module: string, weight: Tensor, bias?: Tensor, opts?: LayerOptions): LoraLinear {
  const l = layerOf(a.layers, module);
  const [out, inDim] = [l.B.shape[0], l.A.shape[1]];
  const W = a.fanInFanOut
    ? transpose(checkWeight(weight, [inDim, out], '[in, out]', module, 'weight'))
    : checkWeight(weight, [out, inDim], '[out, in]', module, 'weight');
  const o = opts ?? {};
  return new LoraLinear({
    weight: W,
    bias: biasOf(a, module, bias) ?? bias,
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
