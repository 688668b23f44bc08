// VeRA in a PEFT adapter directory (peft_type "VERA"):
//   base_model.model.<module>.vera_lambda_d [r]      base_model.model.<module>.vera_lambda_b [out]
//   base_model.vera_A [r, max in]  base_model.vera_B [max out, r]   (save_projection: true)
//
// With save_projection false, PEFT regenerates vera_A [r, max in] and vera_B [max out, r] from
// projection_prng_key (torch's MT19937, see ../torch-random.ts), sized by the largest in / out over
// the adapted layers of the BASE MODEL. max out is the longest vera_lambda_b, but nothing in the
// adapter records a layer's in features, so loadAdapter then needs `baseShapes` (the base weight
// shape [out, in] of each adapted module) and says so when it is missing.
import { invalidRange, invalidRangeText, invalidType } from '../../errors.js';
import { VeraLinear } from '../../layers/vera-linear.js';
import * as lora from '../../ops/lora.js';
import * as vera from '../../ops/vera.js';
import type { VeraProjectionPair } from '../../ops/vera.js';
import { Tensor } from '../../tensor.js';
import type { TensorEntry } from '../safetensors.js';
import { peftVeraProjections } from '../torch-random.js';
import { positiveInt } from '../../validate.js';
import {
  biasOf,
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
  type LoadOptions,
  type PeftMethod,
  type SavedTensor,
  type Scan,
} from './adapter.js';
import { CONFIG_NAME, configFrom, MODULE_PREFIX, type PeftConfig } from './config.js';

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

const PROJ_A = 'base_model.vera_A';
const PROJ_B = 'base_model.vera_B';

// ---- reading ------------------------------------------------------------------------------

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

function plan(s: Scan): VeraPlan {
  const c = s.reader;
  const rank = c.positiveInt('r', 256);
  const seedValue = c.config.projection_prng_key ?? 0;
  if (typeof seedValue !== 'number' || !Number.isSafeInteger(seedValue))
    throw invalidType('a non-negative integer', c.name('projection_prng_key'), seedValue);
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
      throw invalidRangeText(
        `shape [r] with r = ${rank} in ${CONFIG_NAME}`,
        `${slots.lambdaD.name} in ${f}`,
        shapeText(slots.lambdaD.shape),
      );
    if (slots.lambdaB.shape.length !== 1 || slots.lambdaB.shape[0] < 1)
      throw invalidRangeText('shape [out] with out >= 1', `${slots.lambdaB.name} in ${f}`, shapeText(slots.lambdaB.shape));
    layers.push({ module, lambdaD: slots.lambdaD, lambdaB: slots.lambdaB, out: slots.lambdaB.shape[0] });
  }
  const maxOut = Math.max(...layers.map((l) => l.out));
  let maxIn: number | undefined;
  const A = s.shared.get(PROJ_A),
    B = s.shared.get(PROJ_B);
  if (A || B) {
    if (!A) throw invalidRangeText('base_model.vera_A beside base_model.vera_B', f, 'no such key');
    if (!B) throw invalidRangeText('base_model.vera_B beside base_model.vera_A', f, 'no such key');
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

function baseShapeOf(baseShapes: LoadOptions['baseShapes'], module: string): [number, number] | undefined {
  const v = baseShapes?.get(module);
  if (v === undefined) return undefined;
  const name = `options.baseShapes.get(${JSON.stringify(module)})`;
  if (!Array.isArray(v) || v.length !== 2 || !v.every((d) => Number.isSafeInteger(d) && d >= 1))
    throw invalidType('a base weight shape [out, in] of positive integers', name, v);
  return [v[0], v[1]];
}

/** PEFT's max in: the largest in over the adapted layers of the base model. */
function maxInOf(p: VeraPlan, baseShapes: LoadOptions['baseShapes'], configFile: string): number {
  const detail =
    `${configFile} has save_projection false, so vera_A [r, max in] is regenerated from projection_prng_key ${p.seed}, ` +
    'and PEFT sizes it by the largest in features over the adapted layers of the base model, which the adapter file does not record';
  if (!baseShapes)
    throw invalidType('a Map from each adapted module to its base weight shape [out, in]', 'options.baseShapes', baseShapes, detail);
  let maxIn = 0;
  for (const l of p.layers) {
    const shape = baseShapeOf(baseShapes, l.module);
    if (!shape)
      throw invalidRangeText(`an entry for every adapted module (${detail})`, 'options.baseShapes', `none for ${JSON.stringify(l.module)}`);
    if (shape[0] !== l.out)
      throw invalidRangeText(
        `[out, in] with out = ${l.out} (the length of its vera_lambda_b)`,
        `options.baseShapes.get(${JSON.stringify(l.module)})`,
        shapeText(shape),
      );
    maxIn = Math.max(maxIn, shape[1]);
  }
  return maxIn;
}

function checkBaseShapes(p: VeraPlan, baseShapes: NonNullable<LoadOptions['baseShapes']>, maxIn: number): void {
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

// ---- saving -------------------------------------------------------------------------------

/** PEFT 0.14's VeraConfig fields with their defaults. */
function defaults(): PeftConfig {
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

function checkSeedValue(seed: unknown, name: string): bigint {
  if (typeof seed === 'bigint') {
    if (seed < 0n || seed >= 2n ** 64n) throw invalidRange('an integer in [0, 2^64)', name, seed);
    return seed;
  }
  if (typeof seed !== 'number' || !Number.isSafeInteger(seed)) throw invalidType('a non-negative integer', name, seed);
  if (seed < 0) throw invalidRange('a non-negative integer', name, seed);
  return BigInt(seed);
}

function sameValues(a: Tensor, b: Tensor): boolean {
  if (a.shape.length !== b.shape.length || a.shape.some((d, i) => d !== b.shape[i])) return false;
  const x = a.toFloat32Array(),
    y = b.toFloat32Array();
  for (let i = 0; i < x.length; i++) if (!Object.is(x[i], y[i])) return false;
  return true;
}

function save(
  adapter: VeraAdapterInput | VeraAdapter,
  o: { saveProjection?: boolean },
): { config: PeftConfig; tensors: SavedTensor[]; modules: string[] } {
  const config = configFrom(defaults(), adapter.config);
  const layers = layerEntries<VeraLayerWeights>(adapter.layers, 'adapter.layers');
  const proj = adapter.projections;
  if (typeof proj !== 'object' || proj === null) throw invalidType('projections { A, B }', 'adapter.projections', proj);
  const A = tensorArg(proj.A, 'adapter.projections.A', 2);
  const B = tensorArg(proj.B, 'adapter.projections.B', 2);
  const [r, maxIn] = A.shape as [number, number];
  if (B.shape[1] !== r) throw invalidRangeText(`shape [max out, r] with r = ${r} (A's rows)`, 'adapter.projections.B', shapeText(B.shape));
  const maxOut = B.shape[0];
  const tensors: SavedTensor[] = [];
  const modules: string[] = [];
  for (const [module, l] of layers) {
    const name = `adapter.layers[${JSON.stringify(module)}]`;
    if (typeof l !== 'object' || l === null) throw invalidType('layer weights { lambdaD, lambdaB }', name, l);
    const lambdaD = tensorArg(l.lambdaD, `${name}.lambdaD`, 1);
    const lambdaB = tensorArg(l.lambdaB, `${name}.lambdaB`, 1);
    if (lambdaD.size !== r)
      throw invalidRangeText(`shape [r] = [${r}] (the projections' rank)`, `${name}.lambdaD`, shapeText(lambdaD.shape));
    if (lambdaB.size > maxOut)
      throw invalidRangeText(`shape [out] with out <= ${maxOut} (vera_B's rows)`, `${name}.lambdaB`, shapeText(lambdaB.shape));
    modules.push(module);
    tensors.push({ name: `${MODULE_PREFIX}${module}.vera_lambda_b`, tensor: lambdaB });
    tensors.push({ name: `${MODULE_PREFIX}${module}.vera_lambda_d`, tensor: lambdaD });
  }
  const input = adapter as VeraAdapterInput;
  const saveProjection =
    o.saveProjection ?? input.saveProjection ?? (typeof config.save_projection === 'boolean' ? config.save_projection : true);
  const seed = checkSeedValue(input.seed ?? config.projection_prng_key ?? 0, 'adapter.seed');
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
    tensors.push({ name: PROJ_A, tensor: A });
    tensors.push({ name: PROJ_B, tensor: B });
  }
  config.peft_type = 'VERA';
  config.r = r;
  config.projection_prng_key = seed <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(seed) : seed;
  config.save_projection = saveProjection;
  config.fan_in_fan_out = adapter.fanInFanOut ?? config.fan_in_fan_out ?? false;
  if (input.dInitial !== undefined) config.d_initial = input.dInitial;
  return { config, tensors, modules };
}

// ---- using an adapter ---------------------------------------------------------------------

/** The base weight of `module` as stored ([out, in], or [in, out] with fan_in_fan_out), checked; returns its in. */
function checkWeight(a: VeraAdapter, l: VeraLayerWeights, module: string, W: unknown, name: string): number {
  const out = l.lambdaB.size;
  const maxIn = a.projections.A.shape[1];
  if (!(W instanceof Tensor)) throw invalidType('a Tensor', name, W);
  const s = W.shape;
  const inDim = a.fanInFanOut ? s[0] : s[1];
  if (s.length !== 2 || (a.fanInFanOut ? s[1] : s[0]) !== out || !(inDim >= 1 && inDim <= maxIn))
    throw invalidRangeText(
      `shape ${a.fanInFanOut ? '[in, out]' : '[out, in]'} with out = ${out} and in <= ${maxIn} (the base weight of ${module})`,
      name,
      shapeText(s),
    );
  return inDim;
}

/**
 * The two factors of a fan_in_fan_out layer's delta, W [in, out] += ((λb ⊙ B)(λd ⊙ A))ᵀ =
 * (λd ⊙ A)ᵀ (λb ⊙ B)ᵀ with A, B the layer's slices: `bB` = (λb ⊙ B[:out, :])ᵀ [r, out] and
 * `dA` = (λd ⊙ A[:, :in])ᵀ [in, r], new float32 tensors on the host, so that
 * lora.merge(W, bB, dA, 1) merges it (on any device once moved).
 */
export function transposedFactors(a: VeraAdapter, l: VeraLayerWeights, inDim: number): { bB: Tensor; dA: Tensor } {
  const r = l.lambdaD.size,
    out = l.lambdaB.size,
    maxIn = a.projections.A.shape[1];
  const dA = Tensor.empty([inDim, r], 'float32', 'cpu');
  const bB = Tensor.empty([r, out], 'float32', 'cpu');
  const A = a.projections.A.storage() as Float32Array,
    B = a.projections.B.storage() as Float32Array;
  const ld = l.lambdaD.storage() as Float32Array,
    lb = l.lambdaB.storage() as Float32Array;
  const da = dA.storage() as Float32Array,
    bb = bB.storage() as Float32Array;
  for (let j = 0; j < r; j++) for (let i = 0; i < inDim; i++) da[i * r + j] = ld[j] * A[j * maxIn + i];
  for (let o = 0; o < out; o++) for (let j = 0; j < r; j++) bb[j * out + o] = lb[o] * B[o * r + j];
  return { bB, dA };
}

// ---- the method ---------------------------------------------------------------------------

export const VERA: PeftMethod<VeraAdapter, VeraAdapterInput> = {
  peftType: 'VERA',
  kind: 'vera',
  label: 'VeRA',
  keys: `keys of a PEFT VeRA adapter (${MODULE_PREFIX}<module>.vera_lambda_d, .vera_lambda_b, .bias, base_model.vera_A, base_model.vera_B)`,
  layerKey: '<module>.vera_lambda_b',
  sharedKeys: [PROJ_A, PROJ_B],

  checkConfig() {},

  slotOf(rest, unexpected) {
    if (rest.endsWith('.vera_lambda_d') && rest.length > '.vera_lambda_d'.length)
      return [rest.slice(0, -'.vera_lambda_d'.length), 'lambdaD'];
    if (rest.endsWith('.vera_lambda_b') && rest.length > '.vera_lambda_b'.length)
      return [rest.slice(0, -'.vera_lambda_b'.length), 'lambdaB'];
    if (/(^|\.)vera_/.test(rest)) throw unexpected();
    return undefined;
  },

  describe(s) {
    const p = plan(s);
    const A = s.shared.get(PROJ_A),
      B = s.shared.get(PROJ_B);
    return {
      summary: {
        rank: p.rank,
        seed: p.seed,
        saveProjection: p.saveProjection,
        projections: A && B ? { A: [...A.shape], B: [...B.shape] } : null,
        fanInFanOut: p.fanInFanOut,
        layers: p.layers.map((l) => ({
          module: l.module,
          shapes: { vera_lambda_d: [...l.lambdaD.shape], vera_lambda_b: [...l.lambdaB.shape] },
          out: l.out,
          rank: p.rank,
        })),
      },
      trainable: sumSizes(p.layers.flatMap((l) => [l.lambdaD, l.lambdaB])),
    };
  },

  load(s, read, own, common, options) {
    const p = plan(s);
    const layers = new Map<string, VeraLayerWeights>();
    for (const l of p.layers) layers.set(l.module, { lambdaD: read(l.lambdaD), lambdaB: read(l.lambdaB) });
    const A = s.shared.get(PROJ_A),
      B = s.shared.get(PROJ_B);
    let projections: VeraProjectionPair;
    if (A && B) {
      projections = { A: read(A), B: read(B) };
      if (options.baseShapes) checkBaseShapes(p, options.baseShapes, A.shape[1]);
    } else {
      const maxIn = maxInOf(p, options.baseShapes, s.files.config);
      const pair = peftVeraProjections(p.seed, p.rank, maxIn, p.maxOut);
      own(pair.A);
      own(pair.B);
      projections = pair;
    }
    return {
      kind: 'vera',
      ...common,
      fanInFanOut: p.fanInFanOut,
      rank: p.rank,
      seed: p.seed,
      saveProjection: Boolean(A),
      projections,
      layers,
    };
  },

  save,

  checkSaved(c, tensors) {
    const r = c.positiveInt('r', 256);
    for (const { name, tensor } of tensors)
      if (name.endsWith('.vera_lambda_d') && tensor.shape[0] !== r)
        throw invalidRangeText(
          `shape [r] with r = ${r} (from the config being saved)`,
          `the vera_lambda_d of ${name.slice(MODULE_PREFIX.length, -'.vera_lambda_d'.length)}`,
          shapeText(tensor.shape),
        );
  },

  mergeWeight(a, module, W, safe) {
    const l = layerOf(a.layers, module);
    const inDim = checkWeight(a, l, module, W, 'W');
    if (!a.fanInFanOut) {
      vera.merge(W, a.projections, l.lambdaD, l.lambdaB, { safe });
      return;
    }
    const { bB, dA } = transposedFactors(a, l, inDim);
    try {
      lora.merge(W, bB, dA, 1, { safe });
    } finally {
      dA.dispose();
      bB.dispose();
    }
  },
};

/** veraLayer (index.ts) for a checked adapter: a VeraLinear sharing the projections and λd, λb. */
export function layer(a: VeraAdapter, module: string, weight: Tensor, bias?: Tensor, opts?: Omit<LayerOptions, 'variant'>): VeraLinear {
  const l = layerOf(a.layers, module);
  checkWeight(a, l, module, weight, 'weight');
  const o = opts ?? {};
  return new VeraLinear({
    weight: a.fanInFanOut ? transpose(weight) : weight,
    bias: biasOf(a, module, bias) ?? bias,
    projections: a.projections,
    lambdaD: l.lambdaD,
    lambdaB: l.lambdaB,
    dropout: o.dropout ?? (typeof a.config.vera_dropout === 'number' ? a.config.vera_dropout : 0),
    seed: o.seed,
  });
}

/**
 * PEFT's VeRA projections for a seed (torch's MT19937 uniform_, bit for bit): use these instead of
 * vera.projections (Philox) when the adapter is to be saved with save_projection false.
 */
export function veraProjections(opts: { seed: number | bigint; rank: number; maxIn: number; maxOut: number }): VeraProjectionPair {
  if (typeof opts !== 'object' || opts === null) throw invalidType('an options object { seed, rank, maxIn, maxOut }', 'options', opts);
  for (const k of ['rank', 'maxIn', 'maxOut'] as const) positiveInt(opts[k], `options.${k}`);
  return peftVeraProjections(checkSeedValue(opts.seed, 'options.seed'), opts.rank, opts.maxIn, opts.maxOut);
}
