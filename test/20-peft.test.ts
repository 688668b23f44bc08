// PEFT adapter directories (README.md, Files): fixtures laid out exactly as PEFT writes them, built
// here from the format itself (adapter_config.json text + a safetensors file assembled byte by
// byte, independent of lowrank's writer and reader), loaded, checked against float64
// references, merged, saved and reloaded bit for bit; every error names its file and key.
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { LoraLinear, peft, tensor, vera } from '../lib/index.js';
import { peftVeraProjections } from '../lib/io/torch-random.js';
import { bf16Value, errorOf, matmulNN, matmulNT, randomF32, relErr } from './helpers/reference.js';
import { type FixtureTensor, fromBf16Bits, parseSafetensors, safetensorsBytes, toBf16Bits } from './helpers/safetensors-fixture.js';

const tmp = mkdtempSync(path.join(os.tmpdir(), 'lowrank-peft-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));
let dirCount = 0;
const newDir = (name: string) => {
  const d = path.join(tmp, `${++dirCount}-${name}`);
  mkdirSync(d, { recursive: true });
  return d;
};

// ---- the safetensors format, by hand ---------------------------------------------------------

const f32 = (n: number, seed: number, std = 1) => randomF32(n, seed, std);

/** Python's json.dumps(config, indent=2, sort_keys=True) for the fixture (strings, numbers, lists, objects). */
function pyJson(v: unknown, indent = ''): string {
  if (v === null) return 'null';
  if (typeof v === 'string' || typeof v === 'boolean') return JSON.stringify(v);
  if (typeof v === 'number') return Number.isInteger(v) ? String(v) : String(v);
  const inner = indent + '  ';
  if (Array.isArray(v)) return v.length ? `[\n${v.map((x) => inner + pyJson(x, inner)).join(',\n')}\n${indent}]` : '[]';
  const keys = Object.keys(v as object)
    .filter((k) => (v as Record<string, unknown>)[k] !== undefined)
    .sort();
  return keys.length
    ? `{\n${keys.map((k) => `${inner}${JSON.stringify(k)}: ${pyJson((v as Record<string, unknown>)[k], inner)}`).join(',\n')}\n${indent}}`
    : '{}';
}

// PEFT 0.14's LoraConfig and VeraConfig fields as save_pretrained writes them.
const LORA_CONFIG_KEYS = [
  'alpha_pattern',
  'auto_mapping',
  'base_model_name_or_path',
  'bias',
  'eva_config',
  'exclude_modules',
  'fan_in_fan_out',
  'inference_mode',
  'init_lora_weights',
  'layer_replication',
  'layers_pattern',
  'layers_to_transform',
  'loftq_config',
  'lora_alpha',
  'lora_bias',
  'lora_dropout',
  'megatron_config',
  'megatron_core',
  'modules_to_save',
  'peft_type',
  'r',
  'rank_pattern',
  'revision',
  'target_modules',
  'task_type',
  'use_dora',
  'use_rslora',
];
const VERA_CONFIG_KEYS = [
  'auto_mapping',
  'base_model_name_or_path',
  'bias',
  'd_initial',
  'fan_in_fan_out',
  'inference_mode',
  'init_weights',
  'layers_pattern',
  'layers_to_transform',
  'modules_to_save',
  'peft_type',
  'projection_prng_key',
  'r',
  'revision',
  'save_projection',
  'target_modules',
  'task_type',
  'vera_dropout',
];

function loraConfig(over: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    alpha_pattern: {},
    auto_mapping: null,
    base_model_name_or_path: 'tiny-llama',
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
    lora_alpha: 16,
    lora_bias: false,
    lora_dropout: 0.05,
    megatron_config: null,
    megatron_core: 'megatron.core',
    modules_to_save: null,
    peft_type: 'LORA',
    r: 4,
    rank_pattern: {},
    revision: null,
    target_modules: ['v_proj', 'q_proj'],
    task_type: 'CAUSAL_LM',
    use_dora: false,
    use_rslora: false,
    ...over,
  };
}

function veraConfig(over: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    auto_mapping: null,
    base_model_name_or_path: 'tiny-llama',
    bias: 'none',
    d_initial: 0.1,
    fan_in_fan_out: false,
    inference_mode: true,
    init_weights: true,
    layers_pattern: null,
    layers_to_transform: null,
    modules_to_save: null,
    peft_type: 'VERA',
    projection_prng_key: 1234,
    r: 4,
    revision: null,
    save_projection: true,
    target_modules: ['q_proj', 'v_proj'],
    task_type: 'CAUSAL_LM',
    vera_dropout: 0.0,
    ...over,
  };
}

function writeAdapter(dir: string, config: Record<string, unknown> | string, entries: FixtureTensor[]): string {
  writeFileSync(path.join(dir, 'adapter_config.json'), typeof config === 'string' ? config : pyJson(config));
  writeFileSync(path.join(dir, 'adapter_model.safetensors'), safetensorsBytes(entries));
  return dir;
}

// ---- the model: two attention projections of one layer ----------------------------------------

const IN = 24;
const Q = 'model.layers.0.self_attn.q_proj';
const V = 'model.layers.0.self_attn.v_proj';
const OUT: Record<string, number> = { [Q]: 16, [V]: 8 };
const R = 4;

interface LoraData {
  A: Float32Array;
  B: Float32Array;
  r: number;
}

function loraData(r: number, seed: number): Record<string, LoraData> {
  return {
    [Q]: { A: f32(r * IN, seed, 0.2), B: f32(OUT[Q] * r, seed + 1, 0.2), r },
    [V]: { A: f32(r * IN, seed + 2, 0.2), B: f32(OUT[V] * r, seed + 3, 0.2), r },
  };
}

function loraEntries(data: Record<string, LoraData>, dtype: 'F32' | 'BF16' = 'F32'): FixtureTensor[] {
  const enc = (v: Float32Array) => (dtype === 'F32' ? v : toBf16Bits(v));
  return Object.entries(data).flatMap(([m, d]) => [
    { name: `base_model.model.${m}.lora_A.weight`, dtype, shape: [d.r, IN], data: enc(d.A) },
    { name: `base_model.model.${m}.lora_B.weight`, dtype, shape: [OUT[m], d.r], data: enc(d.B) },
  ]);
}

/** W + s·B A (fifo: its transpose added to W [in, out]) in float64. */
function mergedRef(W: Float32Array, d: LoraData, out: number, s: number, fifo = false): Float64Array {
  const ba = matmulNN(d.B, d.A, out, IN, d.r);
  const res = Float64Array.from(W);
  for (let o = 0; o < out; o++) for (let i = 0; i < IN; i++) res[fifo ? i * out + o : o * IN + i] += s * ba[o * IN + i];
  return res;
}

/** y = x Wᵀ + b + s·(x Aᵀ) Bᵀ in float64. */
function loraRef(x: Float32Array, T: number, W: Float32Array, b: Float32Array | null, d: LoraData, out: number, s: number): Float64Array {
  const base = matmulNT(x, W, T, out, IN);
  const xa = matmulNT(x, d.A, T, d.r, IN);
  const ad = matmulNT(xa, d.B, T, out, d.r);
  return base.map((v, i) => v + (b ? b[i % out] : 0) + s * ad[i]);
}

/** Every element is the bfloat16 nearest to the float64 reference, or (float32 rounding of the sum) its neighbour at a near-tie. */
function nearestBf16(got: Float32Array, ref: Float64Array): string | null {
  for (let i = 0; i < ref.length; i++) {
    const want = bf16Value(ref[i]);
    if (Object.is(got[i], want)) continue;
    const tie = Math.abs(ref[i] - (got[i] + want) / 2) <= 1e-6 * Math.abs(ref[i]);
    if (!tie) return `element ${i}: ${got[i]} vs nearest bfloat16 ${want} of ${ref[i]}`;
  }
  return null;
}

const T = 5;
const x = f32(T * IN, 901);
const Wv: Record<string, Float32Array> = { [Q]: f32(OUT[Q] * IN, 902, 0.3), [V]: f32(OUT[V] * IN, 903, 0.3) };
const bias: Record<string, Float32Array> = { [Q]: f32(OUT[Q], 904), [V]: f32(OUT[V], 905) };

// ---- LoRA -----------------------------------------------------------------------------------

describe('LoRA adapter directory (q_proj and v_proj)', () => {
  const data = loraData(R, 10);
  const config = loraConfig({ peft_version: '0.99.0', my_extension: { note: 'kept', values: [1, 2.5] } });
  const dir = writeAdapter(newDir('lora'), config, loraEntries(data));

  it('loads config, rank, alpha, scale and both layers bit for bit', () => {
    using a = peft.loadAdapter(dir);
    expect(a.kind).toBe('lora');
    if (a.kind !== 'lora') return;
    expect([a.rank, a.alpha, a.scale, a.rslora, a.fanInFanOut, a.dtype]).toEqual([4, 16, 4, false, false, 'float32']);
    expect(a.config).toEqual(config);
    expect([...a.layers.keys()].sort()).toEqual([Q, V]);
    for (const m of [Q, V]) {
      const l = a.layers.get(m)!;
      expect([l.rank, l.alpha, l.scale]).toEqual([4, 16, 4]);
      expect(l.A.shape).toEqual([R, IN]);
      expect(l.B.shape).toEqual([OUT[m], R]);
      expect(l.A.toFloat32Array()).toEqual(data[m].A);
      expect(l.B.toFloat32Array()).toEqual(data[m].B);
    }
    expect(a.biases.size + a.modulesToSave.size).toBe(0);
  });

  it("peft.loraLayer's output equals the float64 reference (base bias kept)", () => {
    using a = peft.loadAdapter(dir) as peft.LoraAdapter;
    for (const m of [Q, V]) {
      const layer = peft.loraLayer(a, m, tensor(Wv[m], [OUT[m], IN]), tensor(bias[m], [OUT[m]]));
      expect(layer.scale).toBe(4);
      const y = layer.forward(tensor(x, [T, IN]), { training: false });
      expect(relErr(y.toFloat32Array(), loraRef(x, T, Wv[m], bias[m], data[m], OUT[m], 4))).toBeLessThan(1e-5);
      y.dispose();
    }
  });

  it('mergeWeight: float32 W equals W + s·B A within 1e-6 relative', () => {
    using a = peft.loadAdapter(dir);
    for (const m of [Q, V]) {
      const W = tensor(Wv[m].slice(), [OUT[m], IN]);
      peft.mergeWeight(a, m, W);
      expect(relErr(W.toFloat32Array(), mergedRef(Wv[m], data[m], OUT[m], 4))).toBeLessThan(1e-6);
    }
  });

  it('mergeWeight: bfloat16 W becomes the bfloat16 nearest to W + s·B A', () => {
    using a = peft.loadAdapter(dir);
    for (const m of [Q, V]) {
      const bits = toBf16Bits(Wv[m]);
      const W = tensor(bits.slice(), [OUT[m], IN], { dtype: 'bfloat16' }); // wrapped: merged in place
      peft.mergeWeight(a, m, W);
      expect(W.dtype).toBe('bfloat16');
      expect(nearestBf16(W.toFloat32Array(), mergedRef(fromBf16Bits(bits), data[m], OUT[m], 4))).toBeNull();
    }
  });

  it('describeAdapter reads only headers: shapes, scale, trainable parameters, bytes', () => {
    const s = peft.describeAdapter(dir);
    expect(s.kind).toBe('lora');
    expect(s.layers.map((l) => [l.module, l.shapes, l.scale])).toEqual([
      [Q, { 'lora_A.weight': [4, 24], 'lora_B.weight': [16, 4] }, 4],
      [V, { 'lora_A.weight': [4, 24], 'lora_B.weight': [8, 4] }, 4],
    ]);
    expect(s.trainableParameters).toBe(4 * 24 * 2 + 16 * 4 + 8 * 4);
    expect(s.targetModules).toEqual(['v_proj', 'q_proj']);
    expect(s.bytes.weights).toBe(readFileSync(path.join(dir, 'adapter_model.safetensors')).length);
  });

  it('save → load round trip: PEFT key names, the fixture bytes, unknown config keys kept', () => {
    using a = peft.loadAdapter(dir);
    const out = newDir('lora-saved');
    peft.saveAdapter(out, a);
    const saved = parseSafetensors(path.join(out, 'adapter_model.safetensors'));
    const fixture = parseSafetensors(path.join(dir, 'adapter_model.safetensors'));
    expect(saved.names).toEqual([
      `base_model.model.${Q}.lora_A.weight`,
      `base_model.model.${Q}.lora_B.weight`,
      `base_model.model.${V}.lora_A.weight`,
      `base_model.model.${V}.lora_B.weight`,
    ]);
    expect(saved.metadata).toEqual({ format: 'pt' });
    for (const n of saved.names) {
      expect(saved.header[n].dtype).toBe('F32');
      expect(saved.header[n].shape).toEqual(fixture.header[n].shape);
      expect(Buffer.compare(saved.bytes(n), fixture.bytes(n)), n).toBe(0);
    }
    const text = readFileSync(path.join(out, 'adapter_config.json'), 'utf8');
    const cfg = JSON.parse(text) as Record<string, unknown>;
    expect(Object.keys(cfg)).toEqual([...LORA_CONFIG_KEYS, 'my_extension', 'peft_version'].sort());
    expect(cfg).toEqual(config);
    // json.dumps(indent=2, sort_keys=True): sorted, two-space indent, no trailing newline, floats as Python writes them.
    expect(text.startsWith('{\n  "alpha_pattern": {},\n  "auto_mapping": null,\n')).toBe(true);
    expect(text).toContain('\n  "lora_dropout": 0.05,\n');
    expect(text).toContain('\n  "my_extension": {\n    "note": "kept",\n    "values": [\n      1,\n      2.5\n    ]\n  },\n');
    expect(text.endsWith('\n}')).toBe(true);
    using b = peft.loadAdapter(out);
    for (const m of [Q, V]) {
      const [la, lb] = [(a as peft.LoraAdapter).layers.get(m)!, (b as peft.LoraAdapter).layers.get(m)!];
      expect(Buffer.from(lb.A.toFloat32Array().buffer).equals(Buffer.from(la.A.toFloat32Array().buffer))).toBe(true);
      expect(Buffer.from(lb.B.toFloat32Array().buffer).equals(Buffer.from(la.B.toFloat32Array().buffer))).toBe(true);
    }
  });

  it('read-modify-write: extraConfig changes a field, unknown keys survive', () => {
    using a = peft.loadAdapter(dir);
    const out = newDir('lora-rmw');
    peft.saveAdapter(out, a, { extraConfig: { lora_dropout: 0, task_type: 'SEQ_CLS' }, baseModel: 'other/base' });
    const text = readFileSync(path.join(out, 'adapter_config.json'), 'utf8');
    const cfg = JSON.parse(text) as Record<string, unknown>;
    expect(cfg.my_extension).toEqual({ note: 'kept', values: [1, 2.5] });
    expect(cfg.peft_version).toBe('0.99.0');
    expect([cfg.task_type, cfg.base_model_name_or_path, cfg.lora_dropout]).toEqual(['SEQ_CLS', 'other/base', 0]);
    expect(text).toContain('"lora_dropout": 0.0,'); // a Python float stays a float
  });

  it('bfloat16 adapters load as float32 and save back as the same BF16 bytes', () => {
    const d = writeAdapter(newDir('lora-bf16'), loraConfig(), loraEntries(data, 'BF16'));
    using a = peft.loadAdapter(d) as peft.LoraAdapter;
    expect(a.dtype).toBe('bfloat16');
    expect(a.layers.get(Q)!.A.dtype).toBe('float32');
    expect(a.layers.get(Q)!.A.toFloat32Array()).toEqual(fromBf16Bits(toBf16Bits(data[Q].A)));
    const out = newDir('lora-bf16-saved');
    peft.saveAdapter(out, a);
    const saved = parseSafetensors(path.join(out, 'adapter_model.safetensors'));
    const fixture = parseSafetensors(path.join(d, 'adapter_model.safetensors'));
    for (const n of fixture.names) {
      expect(saved.header[n].dtype).toBe('BF16');
      expect(Buffer.compare(saved.bytes(n), fixture.bytes(n)), n).toBe(0);
    }
  });
});

describe('LoRA variants', () => {
  it('rsLoRA: scale = alpha / sqrt(r), in the layer and in the merge', () => {
    const data = loraData(R, 20);
    const dir = writeAdapter(newDir('rslora'), loraConfig({ use_rslora: true }), loraEntries(data));
    using a = peft.loadAdapter(dir) as peft.LoraAdapter;
    expect([a.rslora, a.scale, a.layers.get(Q)!.scale]).toEqual([true, 8, 8]);
    const W = tensor(Wv[Q].slice(), [OUT[Q], IN]);
    peft.mergeWeight(a, Q, W);
    expect(relErr(W.toFloat32Array(), mergedRef(Wv[Q], data[Q], OUT[Q], 8))).toBeLessThan(1e-6);
    const layer = peft.loraLayer(a, Q, tensor(Wv[Q], [OUT[Q], IN]));
    const y = layer.forward(tensor(x, [T, IN]), { training: false });
    expect(relErr(y.toFloat32Array(), loraRef(x, T, Wv[Q], null, data[Q], OUT[Q], 8))).toBeLessThan(1e-5);
  });

  it('rank_pattern / alpha_pattern give v_proj its own r and alpha (PEFT regex keys)', () => {
    const data: Record<string, LoraData> = {
      [Q]: { A: f32(R * IN, 31, 0.2), B: f32(OUT[Q] * R, 32, 0.2), r: R },
      [V]: { A: f32(2 * IN, 33, 0.2), B: f32(OUT[V] * 2, 34, 0.2), r: 2 },
    };
    const dir = writeAdapter(
      newDir('pattern'),
      loraConfig({ rank_pattern: { v_proj: 2 }, alpha_pattern: { 'self_attn\\.v_proj': 6 } }),
      loraEntries(data),
    );
    using a = peft.loadAdapter(dir) as peft.LoraAdapter;
    expect([a.layers.get(Q)!.rank, a.layers.get(Q)!.alpha, a.layers.get(Q)!.scale]).toEqual([4, 16, 4]);
    expect([a.layers.get(V)!.rank, a.layers.get(V)!.alpha, a.layers.get(V)!.scale]).toEqual([2, 6, 3]);
    const W = tensor(Wv[V].slice(), [OUT[V], IN]);
    peft.mergeWeight(a, V, W);
    expect(relErr(W.toFloat32Array(), mergedRef(Wv[V], data[V], OUT[V], 3))).toBeLessThan(1e-6);
    // saved and reloaded: the patterns still give each layer its rank and alpha
    const out = newDir('pattern-saved');
    peft.saveAdapter(out, a);
    using b = peft.loadAdapter(out) as peft.LoraAdapter;
    expect([b.layers.get(V)!.rank, b.layers.get(V)!.scale, b.layers.get(Q)!.scale]).toEqual([2, 3, 4]);
  });

  it('fan_in_fan_out (GPT-2 Conv1D): W stored [in, out] gets the transposed delta; the layer matches', () => {
    const data = loraData(R, 40);
    const dir = writeAdapter(newDir('fifo'), loraConfig({ fan_in_fan_out: true, target_modules: ['c_attn'] }), loraEntries(data));
    using a = peft.loadAdapter(dir) as peft.LoraAdapter;
    expect(a.fanInFanOut).toBe(true);
    const Wt = new Float32Array(IN * OUT[Q]); // [in, out]
    for (let o = 0; o < OUT[Q]; o++) for (let i = 0; i < IN; i++) Wt[i * OUT[Q] + o] = Wv[Q][o * IN + i];
    const W = tensor(Wt.slice(), [IN, OUT[Q]]);
    peft.mergeWeight(a, Q, W);
    expect(relErr(W.toFloat32Array(), mergedRef(Wt, data[Q], OUT[Q], 4, true))).toBeLessThan(1e-6);
    const layer = peft.loraLayer(a, Q, tensor(Wt, [IN, OUT[Q]]));
    const y = layer.forward(tensor(x, [T, IN]), { training: false });
    expect(relErr(y.toFloat32Array(), loraRef(x, T, Wv[Q], null, data[Q], OUT[Q], 4))).toBeLessThan(1e-5);
  });

  it('lora_bias and bias "all": trained biases replace the base bias, lora_B.bias adds scale·b', () => {
    const data = loraData(R, 50);
    const lb = f32(OUT[Q], 51),
      trained = f32(OUT[Q], 52),
      norm = f32(IN, 53);
    const entries: FixtureTensor[] = [
      ...loraEntries(data),
      { name: `base_model.model.${Q}.lora_B.bias`, dtype: 'F32', shape: [OUT[Q]], data: lb },
      { name: `base_model.model.${Q}.base_layer.bias`, dtype: 'F32', shape: [OUT[Q]], data: trained },
      { name: 'base_model.model.model.norm.bias', dtype: 'F32', shape: [IN], data: norm },
    ];
    const dir = writeAdapter(newDir('bias'), loraConfig({ bias: 'all', lora_bias: true }), entries);
    using a = peft.loadAdapter(dir) as peft.LoraAdapter;
    expect([...a.biases.keys()].sort()).toEqual(['model.layers.0.self_attn.q_proj', 'model.norm']);
    const merged = peft.mergedBias(a, Q, tensor(bias[Q], [OUT[Q]]))!;
    expect(
      relErr(
        merged.toFloat32Array(),
        Float64Array.from(trained, (t, i) => t + 4 * lb[i]),
      ),
    ).toBeLessThan(1e-7);
    expect(peft.mergedBias(a, V, tensor(bias[V], [OUT[V]]))).toBeUndefined();
    const layer = peft.loraLayer(a, Q, tensor(Wv[Q], [OUT[Q], IN]), tensor(bias[Q], [OUT[Q]]));
    const y = layer.forward(tensor(x, [T, IN]), { training: false });
    const bRef = Float32Array.from(trained, (t, i) => t + 4 * lb[i]);
    expect(relErr(y.toFloat32Array(), loraRef(x, T, Wv[Q], bRef, data[Q], OUT[Q], 4))).toBeLessThan(1e-5);
    // saved under the keys PEFT's state dict has: base_layer.bias for an adapted module
    const out = newDir('bias-saved');
    peft.saveAdapter(out, a);
    expect(parseSafetensors(path.join(out, 'adapter_model.safetensors')).names).toEqual(
      [
        `base_model.model.${Q}.base_layer.bias`,
        `base_model.model.${Q}.lora_A.weight`,
        `base_model.model.${Q}.lora_B.bias`,
        `base_model.model.${Q}.lora_B.weight`,
        `base_model.model.${V}.lora_A.weight`,
        `base_model.model.${V}.lora_B.weight`,
        'base_model.model.model.norm.bias',
      ].sort(),
    );
  });

  it('an adapter built in Node (LoraLinear layers) saves as PEFT would, byte for byte in the config', () => {
    const data = loraData(R, 60);
    // LoraLinear layers have A, B and scale (alpha 8 / r 4 = 2): alpha is recovered from the scale.
    const layers = new Map(
      [Q, V].map(
        (m) =>
          [
            m,
            new LoraLinear({
              weight: tensor(Wv[m], [OUT[m], IN]),
              rank: R,
              alpha: 8,
              A: tensor(data[m].A, [R, IN]),
              B: tensor(data[m].B, [OUT[m], R]),
            }),
          ] as const,
      ),
    );
    const out = newDir('from-node');
    peft.saveAdapter(out, { kind: 'lora', layers }, { baseModel: 'tiny' });
    expect(readFileSync(path.join(out, 'adapter_config.json'), 'utf8')).toBe(
      `{
  "alpha_pattern": {},
  "auto_mapping": null,
  "base_model_name_or_path": "tiny",
  "bias": "none",
  "eva_config": null,
  "exclude_modules": null,
  "fan_in_fan_out": false,
  "inference_mode": true,
  "init_lora_weights": true,
  "layer_replication": null,
  "layers_pattern": null,
  "layers_to_transform": null,
  "loftq_config": {},
  "lora_alpha": 8,
  "lora_bias": false,
  "lora_dropout": 0.0,
  "megatron_config": null,
  "megatron_core": "megatron.core",
  "modules_to_save": null,
  "peft_type": "LORA",
  "r": 4,
  "rank_pattern": {},
  "revision": null,
  "target_modules": [
    "q_proj",
    "v_proj"
  ],
  "task_type": null,
  "use_dora": false,
  "use_rslora": false
}`,
    );
    using a = peft.loadAdapter(out) as peft.LoraAdapter;
    expect(a.scale).toBe(2);
    expect(a.layers.get(V)!.B.toFloat32Array()).toEqual(data[V].B);
  });
});

// ---- VeRA -----------------------------------------------------------------------------------

// Independent of lib/io/torch-random.ts: MT19937 (init_genrand) and torch's CPU float32
// uniform_ (x = (word & 0xFFFFFF)·2^-24; float32(x·(to − from) + from), one rounding, exact in
// float64 here; `to` itself becomes `from`), with PEFT's _kaiming_init bound.
function mt19937(seed: number): () => number {
  const m = new Uint32Array(624);
  m[0] = seed >>> 0;
  for (let i = 1; i < 624; i++) m[i] = (Math.imul(1812433253, m[i - 1] ^ (m[i - 1] >>> 30)) + i) >>> 0;
  let k = 624;
  return () => {
    if (k === 624) {
      for (let i = 0; i < 624; i++) {
        const y = (m[i] & 0x80000000) | (m[(i + 1) % 624] & 0x7fffffff);
        m[i] = m[(i + 397) % 624] ^ (y >>> 1) ^ (y & 1 ? 0x9908b0df : 0);
      }
      k = 0;
    }
    let y = m[k++];
    y ^= y >>> 11;
    y ^= (y << 7) & 0x9d2c5680;
    y ^= (y << 15) & 0xefc60000;
    y ^= y >>> 18;
    return y >>> 0;
  };
}

function torchProjections(seed: number, r: number, maxIn: number, maxOut: number): { A: Float32Array; B: Float32Array } {
  const next = mt19937(seed);
  const fill = (n: number, fan: number) => {
    const bound = Math.sqrt(3) * (Math.sqrt(2) / Math.sqrt(fan));
    const from = Math.fround(-bound),
      to = Math.fround(bound),
      d = Math.fround(to - from);
    return Float32Array.from({ length: n }, () => {
      const v = Math.fround(((next() & 0xffffff) / 2 ** 24) * d + from);
      return v === to ? from : v;
    });
  };
  const A = fill(r * maxIn, maxIn);
  return { A, B: fill(maxOut * r, r) };
}

describe('VeRA adapter directory', () => {
  const MAXIN = IN,
    MAXOUT = OUT[Q];
  const lambda: Record<string, { d: Float32Array; b: Float32Array }> = {
    [Q]: { d: f32(R, 70), b: f32(OUT[Q], 71) },
    [V]: { d: f32(R, 72), b: f32(OUT[V], 73) },
  };
  const lambdaEntries: FixtureTensor[] = [Q, V].flatMap((m) => [
    { name: `base_model.model.${m}.vera_lambda_b`, dtype: 'F32' as const, shape: [OUT[m]], data: lambda[m].b },
    { name: `base_model.model.${m}.vera_lambda_d`, dtype: 'F32' as const, shape: [R], data: lambda[m].d },
  ]);

  /** W + (λb ⊙ B[:out])(λd ⊙ A[:, :in]) in float64 (transposed into W [in, out] with fifo). */
  function veraMergedRef(W: Float32Array, m: string, A: Float32Array, B: Float32Array, fifo = false): Float64Array {
    const out = OUT[m],
      res = Float64Array.from(W);
    for (let o = 0; o < out; o++)
      for (let i = 0; i < IN; i++) {
        let s = 0;
        for (let j = 0; j < R; j++) s += lambda[m].b[o] * B[o * R + j] * lambda[m].d[j] * A[j * MAXIN + i];
        res[fifo ? i * out + o : o * IN + i] += s;
      }
    return res;
  }

  function veraRef(m: string, A: Float32Array, B: Float32Array): Float64Array {
    const out = OUT[m];
    const y = matmulNT(x, Wv[m], T, out, IN);
    for (let t = 0; t < T; t++) {
      const u = Array.from({ length: R }, (_, j) => {
        let s = 0;
        for (let i = 0; i < IN; i++) s += x[t * IN + i] * A[j * MAXIN + i];
        return s * lambda[m].d[j];
      });
      for (let o = 0; o < out; o++) {
        let s = 0;
        for (let j = 0; j < R; j++) s += u[j] * B[o * R + j];
        y[t * out + o] += lambda[m].b[o] * s;
      }
    }
    return y;
  }

  it('the independent MT19937 is the standard one (known first words)', () => {
    expect(mt19937(5489)()).toBe(3499211612);
    expect(mt19937(0)()).toBe(2357136044); // torch.manual_seed(0); torch.rand(1) = 0.4963
  });

  describe('with saved projections (save_projection: true)', () => {
    const projA = f32(R * MAXIN, 74),
      projB = f32(MAXOUT * R, 75);
    const dir = writeAdapter(newDir('vera'), veraConfig({ unknown_future_field: [1, 2] }), [
      { name: 'base_model.vera_A', dtype: 'F32', shape: [R, MAXIN], data: projA },
      { name: 'base_model.vera_B', dtype: 'F32', shape: [MAXOUT, R], data: projB },
      ...lambdaEntries,
    ]);

    it('loads λd, λb and the projections bit for bit', () => {
      using a = peft.loadAdapter(dir) as peft.VeraAdapter;
      expect([a.kind, a.rank, a.seed, a.saveProjection]).toEqual(['vera', 4, 1234n, true]);
      expect(a.projections.A.toFloat32Array()).toEqual(projA);
      expect(a.projections.B.toFloat32Array()).toEqual(projB);
      expect(a.layers.get(V)!.lambdaB.toFloat32Array()).toEqual(lambda[V].b);
      expect(a.layers.get(V)!.lambdaD.toFloat32Array()).toEqual(lambda[V].d);
    });

    it("peft.veraLayer's output equals the float64 reference; mergeWeight equals W + delta", () => {
      using a = peft.loadAdapter(dir) as peft.VeraAdapter;
      for (const m of [Q, V]) {
        const layer = peft.veraLayer(a, m, tensor(Wv[m], [OUT[m], IN]));
        const y = layer.forward(tensor(x, [T, IN]), { training: false });
        expect(relErr(y.toFloat32Array(), veraRef(m, projA, projB))).toBeLessThan(1e-5);
        const W = tensor(Wv[m].slice(), [OUT[m], IN]);
        peft.mergeWeight(a, m, W);
        expect(relErr(W.toFloat32Array(), veraMergedRef(Wv[m], m, projA, projB))).toBeLessThan(1e-6);
        const Wb = tensor(toBf16Bits(Wv[m]), [OUT[m], IN], { dtype: 'bfloat16' });
        peft.mergeWeight(a, m, Wb);
        expect(nearestBf16(Wb.toFloat32Array(), veraMergedRef(fromBf16Bits(toBf16Bits(Wv[m])), m, projA, projB))).toBeNull();
      }
    });

    it('fan_in_fan_out: W [in, out] gets the transposed VeRA delta', () => {
      const d = writeAdapter(newDir('vera-fifo'), veraConfig({ fan_in_fan_out: true }), [
        { name: 'base_model.vera_A', dtype: 'F32', shape: [R, MAXIN], data: projA },
        { name: 'base_model.vera_B', dtype: 'F32', shape: [MAXOUT, R], data: projB },
        ...lambdaEntries,
      ]);
      using a = peft.loadAdapter(d);
      const out = OUT[V];
      const Wt = new Float32Array(IN * out);
      for (let o = 0; o < out; o++) for (let i = 0; i < IN; i++) Wt[i * out + o] = Wv[V][o * IN + i];
      const W = tensor(Wt.slice(), [IN, out]);
      peft.mergeWeight(a, V, W);
      expect(relErr(W.toFloat32Array(), veraMergedRef(Wt, V, projA, projB, true))).toBeLessThan(1e-6);
    });

    it('save → load: PEFT key names, config fields, bytes; unknown keys kept', () => {
      using a = peft.loadAdapter(dir);
      const out = newDir('vera-saved');
      peft.saveAdapter(out, a);
      const saved = parseSafetensors(path.join(out, 'adapter_model.safetensors'));
      const fixture = parseSafetensors(path.join(dir, 'adapter_model.safetensors'));
      expect(saved.names).toEqual([
        'base_model.model.model.layers.0.self_attn.q_proj.vera_lambda_b',
        'base_model.model.model.layers.0.self_attn.q_proj.vera_lambda_d',
        'base_model.model.model.layers.0.self_attn.v_proj.vera_lambda_b',
        'base_model.model.model.layers.0.self_attn.v_proj.vera_lambda_d',
        'base_model.vera_A',
        'base_model.vera_B',
      ]);
      for (const n of saved.names) expect(Buffer.compare(saved.bytes(n), fixture.bytes(n)), n).toBe(0);
      const cfg = JSON.parse(readFileSync(path.join(out, 'adapter_config.json'), 'utf8')) as Record<string, unknown>;
      expect(Object.keys(cfg)).toEqual([...VERA_CONFIG_KEYS, 'unknown_future_field'].sort());
      expect(cfg).toEqual(veraConfig({ unknown_future_field: [1, 2] }));
    });
  });

  describe('without saved projections (save_projection: false)', () => {
    const SEED = 1234;
    const dir = writeAdapter(newDir('vera-seed'), veraConfig({ save_projection: false }), lambdaEntries);
    const baseShapes = new Map<string, [number, number]>([
      [Q, [OUT[Q], IN]],
      [V, [OUT[V], IN]],
    ]);

    it('needs the base shapes for max in, and says why', () => {
      expect(errorOf(() => peft.loadAdapter(dir))).toEqual({
        cls: 'TypeError',
        message:
          `Expected a Map from each adapted module to its base weight shape [out, in] for options.baseShapes but received undefined ` +
          `(${path.join(dir, 'adapter_config.json')} has save_projection false, so vera_A [r, max in] is regenerated from projection_prng_key 1234, ` +
          'and PEFT sizes it by the largest in features over the adapted layers of the base model, which the adapter file does not record)',
      });
      expect(errorOf(() => peft.loadAdapter(dir, { baseShapes: new Map([[Q, [OUT[Q], IN]]]) })).message).toMatch(
        /^Expected an entry for every adapted module \(.*\) for options\.baseShapes but received none for "model\.layers\.0\.self_attn\.v_proj"$/,
      );
      expect(
        errorOf(() =>
          peft.loadAdapter(dir, {
            baseShapes: new Map([
              [Q, [OUT[Q], IN]],
              [V, [OUT[V] + 1, IN]],
            ]),
          }),
        ),
      ).toEqual({
        cls: 'RangeError',
        message: `Expected [out, in] with out = 8 (the length of its vera_lambda_b) for options.baseShapes.get("${V}") but received [9, 24]`,
      });
    });

    it("regenerates PEFT's projections (torch's MT19937) bit for bit, and merges with them", () => {
      using a = peft.loadAdapter(dir, { baseShapes }) as peft.VeraAdapter;
      expect(a.saveProjection).toBe(false);
      const ref = torchProjections(SEED, R, MAXIN, MAXOUT);
      expect(a.projections.A.shape).toEqual([R, MAXIN]);
      expect(a.projections.B.shape).toEqual([MAXOUT, R]);
      expect(a.projections.A.toFloat32Array()).toEqual(ref.A);
      expect(a.projections.B.toFloat32Array()).toEqual(ref.B);
      const W = tensor(Wv[Q].slice(), [OUT[Q], IN]);
      peft.mergeWeight(a, Q, W);
      expect(relErr(W.toFloat32Array(), veraMergedRef(Wv[Q], Q, ref.A, ref.B))).toBeLessThan(1e-6);
    });

    it('saves only the seed: no vera_A / vera_B keys; refuses projections PEFT would not regenerate', () => {
      using a = peft.loadAdapter(dir, { baseShapes });
      const out = newDir('vera-seed-saved');
      peft.saveAdapter(out, a);
      expect(parseSafetensors(path.join(out, 'adapter_model.safetensors')).names.filter((n) => !n.includes('lambda'))).toEqual([]);
      const cfg = JSON.parse(readFileSync(path.join(out, 'adapter_config.json'), 'utf8')) as Record<string, unknown>;
      expect([cfg.save_projection, cfg.projection_prng_key]).toEqual([false, SEED]);
      // lowrank's own vera.projections draw from Philox: PEFT could not regenerate them
      const philox = vera.projections({ rank: R, maxIn: MAXIN, maxOut: MAXOUT, seed: SEED });
      const layers = (a as peft.VeraAdapter).layers;
      const e = errorOf(() =>
        peft.saveAdapter(newDir('vera-philox'), { kind: 'vera', layers, projections: philox, seed: SEED, saveProjection: false }),
      );
      expect(e.cls).toBe('RangeError');
      expect(e.message).toMatch(
        /^Expected projections equal to PEFT's for projection_prng_key 1234 \(torch's MT19937 stream, as peft\.veraProjections makes them\) for adapter\.projections but received /,
      );
      // ... and with saveProjection true they are stored and reload bit for bit
      const kept = newDir('vera-philox-saved');
      peft.saveAdapter(kept, { kind: 'vera', layers, projections: philox, seed: SEED });
      using b = peft.loadAdapter(kept) as peft.VeraAdapter;
      expect(b.projections.A.toFloat32Array()).toEqual(philox.A.toFloat32Array());
      // peft.veraProjections gives the ones PEFT regenerates
      const theirs = peft.veraProjections({ seed: SEED, rank: R, maxIn: MAXIN, maxOut: MAXOUT });
      expect(theirs.A.toFloat32Array()).toEqual(peftVeraProjections(SEED, R, MAXIN, MAXOUT).A.toFloat32Array());
      expect(() =>
        peft.saveAdapter(newDir('vera-peft-seed'), { kind: 'vera', layers, projections: theirs, seed: SEED, saveProjection: false }),
      ).not.toThrow();
    });
  });
});

// ---- errors ---------------------------------------------------------------------------------

describe('errors name the file and the key', () => {
  const data = loraData(R, 80);
  const good = loraEntries(data);
  const fixture = (name: string, config: Record<string, unknown> | string, entries: FixtureTensor[] = good) =>
    writeAdapter(newDir(name), config, entries);
  const cfgFile = (d: string) => path.join(d, 'adapter_config.json');
  const stFile = (d: string) => path.join(d, 'adapter_model.safetensors');

  it('missing directory and files', () => {
    const none = path.join(tmp, 'does-not-exist');
    expect(errorOf(() => peft.loadAdapter(none))).toEqual({
      cls: 'RangeError',
      message: `Expected a PEFT adapter directory for dir but received ${JSON.stringify(none)} (no such file or directory)`,
    });
    const noConfig = newDir('no-config');
    writeFileSync(stFile(noConfig), safetensorsBytes(good));
    expect(errorOf(() => peft.loadAdapter(noConfig))).toEqual({
      cls: 'RangeError',
      message: `Expected a PEFT adapter directory with adapter_config.json for dir but received ${JSON.stringify(noConfig)} (${cfgFile(noConfig)} does not exist)`,
    });
    const onlyBin = newDir('only-bin');
    writeFileSync(cfgFile(onlyBin), pyJson(loraConfig()));
    writeFileSync(path.join(onlyBin, 'adapter_model.bin'), 'pickle');
    expect(errorOf(() => peft.loadAdapter(onlyBin))).toEqual({
      cls: 'RangeError',
      message:
        `Expected a PEFT adapter directory with adapter_model.safetensors for dir but received ${JSON.stringify(onlyBin)} ` +
        `(${stFile(onlyBin)} does not exist; it has adapter_model.bin, a pickle lowrank does not read: re-save it in Python with safe_serialization=True)`,
    });
  });

  it('the method table: a peft_type or kind outside it gives the same error everywhere', () => {
    const ia3 = fixture('ia3', loraConfig({ peft_type: 'IA3' }));
    const message = `Expected "LORA" or "VERA" for peft_type in ${cfgFile(ia3)} but received "IA3" (lowrank reads LoRA and VeRA adapters)`;
    expect(errorOf(() => peft.loadAdapter(ia3))).toEqual({ cls: 'RangeError', message });
    expect(errorOf(() => peft.describeAdapter(ia3))).toEqual({ cls: 'RangeError', message });
    expect(peft.readConfig(ia3).peft_type).toBe('IA3'); // readConfig reads any config
    // saving: the config written must still name a method of the table
    const layers = new Map([[Q, { A: tensor(data[Q].A, [R, IN]), B: tensor(data[Q].B, [OUT[Q], R]) }]]);
    expect(errorOf(() => peft.saveAdapter(newDir('ia3-save'), { kind: 'lora', layers }, { extraConfig: { peft_type: 'IA3' } }))).toEqual({
      cls: 'RangeError',
      message: 'Expected "LORA" or "VERA" for peft_type in the adapter_config.json being saved but received "IA3"',
    });
    const other = { kind: 'ia3', layers: new Map() } as unknown as peft.Adapter;
    expect(errorOf(() => peft.saveAdapter(newDir('ia3-kind'), other)).message).toMatch(
      /^Expected an adapter \(\{ kind: 'lora' \| 'vera', layers, \.\.\. \}\) for adapter but received /,
    );
    expect(errorOf(() => peft.mergeWeight(other, Q, tensor(new Float32Array(4), [2, 2]))).message).toMatch(
      /^Expected an adapter from peft\.loadAdapter for adapter but received /,
    );
    // each row's kind is checked by the functions of one method
    const veraLike = { kind: 'vera', layers: new Map() } as unknown as peft.LoraAdapter;
    expect(errorOf(() => peft.loraLayer(veraLike, Q, tensor(new Float32Array(4), [2, 2])))).toEqual({
      cls: 'RangeError',
      message: 'Expected a LoRA adapter for adapter but received "VeRA adapter"',
    });
  });

  it('bad JSON and bad config values', () => {
    const bad = fixture('bad-json', '{"peft_type": "LORA", "r": 4,');
    const e = errorOf(() => peft.loadAdapter(bad));
    expect(e.cls).toBe('RangeError');
    expect(e.message).toMatch(
      new RegExp(`^Expected a JSON object for ${cfgFile(bad).replace(/[.]/g, '\\.')} but received text that is not JSON \\(.+\\)$`),
    );
    const cases: Array<[Record<string, unknown>, string, string]> = [
      [
        loraConfig({ peft_type: 'IA3' }),
        'RangeError',
        'Expected "LORA" or "VERA" for peft_type in FILE but received "IA3" (lowrank reads LoRA and VeRA adapters)',
      ],
      [loraConfig({ peft_type: undefined }), 'TypeError', 'Expected "LORA" or "VERA" for peft_type in FILE but received undefined'],
      [loraConfig({ r: '4' }), 'TypeError', 'Expected a positive integer for r in FILE but received "4"'],
      [loraConfig({ r: 0 }), 'RangeError', 'Expected a positive integer for r in FILE but received 0'],
      [loraConfig({ lora_alpha: 'x' }), 'TypeError', 'Expected a finite number for lora_alpha in FILE but received "x"'],
      [loraConfig({ use_rslora: 1 }), 'TypeError', 'Expected a boolean for use_rslora in FILE but received 1'],
      [loraConfig({ bias: 'some' }), 'RangeError', 'Expected one of "none", "all", "lora_only" for bias in FILE but received "some"'],
      [
        loraConfig({ use_dora: true }),
        'RangeError',
        'Expected false for use_dora in FILE but received true (DoRA adapters (lora_magnitude_vector) are not supported)',
      ],
      [
        loraConfig({ rank_pattern: { v_proj: 'two' } }),
        'TypeError',
        'Expected a positive integer for rank_pattern["v_proj"] in FILE but received "two"',
      ],
    ];
    for (const [config, cls, message] of cases) {
      const d = fixture('bad-config', config);
      expect(errorOf(() => peft.loadAdapter(d))).toEqual({ cls, message: message.replace('FILE', cfgFile(d)) });
    }
  });

  it('missing tensors, shape mismatches, foreign keys', () => {
    const cases: Array<[FixtureTensor[], Record<string, unknown>, string, string]> = [
      [
        good.filter((e) => !e.name.endsWith(`${V}.lora_B.weight`)),
        loraConfig(),
        'RangeError',
        `Expected base_model.model.${V}.lora_B.weight beside .lora_A.weight for FILE but received no such key`,
      ],
      [
        good.filter((e) => !e.name.endsWith(`${Q}.lora_A.weight`)),
        loraConfig(),
        'RangeError',
        `Expected base_model.model.${Q}.lora_A.weight beside .lora_B.weight for FILE but received no such key`,
      ],
      [
        good,
        loraConfig({ r: 8 }),
        'RangeError',
        `Expected shape [r, in] with r = 8 in adapter_config.json for base_model.model.${Q}.lora_A.weight in FILE but received [4, 24]`,
      ],
      [
        good.map((e) => (e.name.endsWith(`${V}.lora_B.weight`) ? { ...e, shape: [(OUT[V] * R) / 2, 2] } : e)),
        loraConfig(),
        'RangeError',
        `Expected shape [out, r] with r = 4 in adapter_config.json for base_model.model.${V}.lora_B.weight in FILE but received [16, 2]`,
      ],
      [
        [...good, { name: 'lm_head.weight', dtype: 'F32', shape: [2], data: new Float32Array(2) }],
        loraConfig(),
        'RangeError',
        'Expected keys of a PEFT LoRA adapter (base_model.model.<module>.lora_A.weight, .lora_B.weight, .lora_B.bias, .bias) for a tensor name in FILE but received "lm_head.weight" (it does not start with "base_model.model.")',
      ],
      [
        [...good, { name: `base_model.model.${Q}.lora_B.bias`, dtype: 'F32', shape: [OUT[Q]], data: new Float32Array(OUT[Q]) }],
        loraConfig(),
        'RangeError',
        `Expected true (the adapter file has lora_B.bias tensors) for lora_bias in ${'CFG'} but received false`,
      ],
      [
        [...good, { name: `base_model.model.${Q}.step`, dtype: 'I64', shape: [1], data: new BigInt64Array(1) }],
        loraConfig(),
        'RangeError',
        `Expected a floating-point tensor (F32, BF16 or F16) for base_model.model.${Q}.step in FILE but received "I64"`,
      ],
      [
        [],
        loraConfig(),
        'RangeError',
        'Expected at least one adapted layer (<module>.lora_A.weight) for FILE but received 0 tensors and no such key',
      ],
    ];
    for (const [entries, config, cls, message] of cases) {
      const d = fixture('bad-tensors', config, entries);
      expect(errorOf(() => peft.loadAdapter(d))).toEqual({ cls, message: message.replace('FILE', stFile(d)).replace('CFG', cfgFile(d)) });
    }
    const lambdaBad = fixture('bad-vera', veraConfig({ save_projection: false }), [
      { name: `base_model.model.${Q}.vera_lambda_b`, dtype: 'F32', shape: [OUT[Q]], data: new Float32Array(OUT[Q]) },
      { name: `base_model.model.${Q}.vera_lambda_d`, dtype: 'F32', shape: [R + 1], data: new Float32Array(R + 1) },
    ]);
    expect(errorOf(() => peft.loadAdapter(lambdaBad))).toEqual({
      cls: 'RangeError',
      message: `Expected shape [r] with r = 4 in adapter_config.json for base_model.model.${Q}.vera_lambda_d in ${stFile(lambdaBad)} but received [5]`,
    });
    const noProj = fixture('vera-no-proj', veraConfig(), [
      { name: `base_model.model.${Q}.vera_lambda_b`, dtype: 'F32', shape: [OUT[Q]], data: new Float32Array(OUT[Q]) },
      { name: `base_model.model.${Q}.vera_lambda_d`, dtype: 'F32', shape: [R], data: new Float32Array(R) },
    ]);
    expect(errorOf(() => peft.loadAdapter(noProj))).toEqual({
      cls: 'RangeError',
      message: `Expected base_model.vera_A and base_model.vera_B (save_projection is true) for ${stFile(noProj)} but received neither key`,
    });
  });

  it('using an adapter: unknown module, wrong W shape', () => {
    using a = peft.loadAdapter(fixture('use', loraConfig()));
    expect(errorOf(() => peft.mergeWeight(a, 'model.layers.0.mlp.up_proj', tensor(new Float32Array(4), [2, 2])))).toEqual({
      cls: 'RangeError',
      message: `Expected one of the adapter's modules ("${Q}", "${V}") for modulePath but received "model.layers.0.mlp.up_proj"`,
    });
    expect(errorOf(() => peft.mergeWeight(a, Q, tensor(new Float32Array(IN * OUT[Q]), [IN, OUT[Q]])))).toEqual({
      cls: 'RangeError',
      message: `Expected shape [out, in] = [16, 24] (the base weight of ${Q}) for W but received [24, 16]`,
    });
    expect(errorOf(() => peft.saveAdapter(newDir('bad-save'), { kind: 'lora', layers: new Map() }))).toEqual({
      cls: 'RangeError',
      message: 'Expected at least one layer for adapter.layers but received a Map',
    });
  });

  it('saveAdapter refuses an int32 tensor by name', () => {
    const A = tensor(new Int32Array(R * IN), [R, IN]),
      B = tensor(new Float32Array(OUT[Q] * R), [OUT[Q], R]);
    expect(errorOf(() => peft.saveAdapter(newDir('int32-save'), { kind: 'lora', layers: new Map([[Q, { A, B }]]) }))).toEqual({
      cls: 'TypeError',
      message: `Expected a float32, bfloat16 or float16 Tensor for adapter.layers["${Q}"].A but received Tensor(int32, [${R}, ${IN}], cpu) (dtype is int32)`,
    });
    A.dispose();
    B.dispose();
  });
});

// ---- properties -------------------------------------------------------------------------------

describe('properties', () => {
  it('pythonJson (adapter_config.json text) parses back to the same value, sorted and indented', () => {
    fc.assert(
      fc.property(fc.jsonValue(), (v) => {
        const text = peft.pythonJson(v);
        const canonical = (x: unknown): unknown =>
          Array.isArray(x)
            ? x.map(canonical)
            : x && typeof x === 'object'
              ? Object.fromEntries(
                  Object.keys(x)
                    .sort()
                    .map((k) => [k, canonical((x as Record<string, unknown>)[k])]),
                )
              : x;
        expect(JSON.stringify(canonical(JSON.parse(text)))).toBe(JSON.stringify(canonical(v)));
        expect(/[^\x20-\x7e\n]/.test(text)).toBe(false); // ensure_ascii
      }),
      { numRuns: 300 },
    );
  });

  it('any adapter_config.json is loaded or refused with a TypeError / RangeError "Expected ..."', () => {
    const dir = newDir('fuzz');
    writeFileSync(path.join(dir, 'adapter_model.safetensors'), safetensorsBytes(loraEntries(loraData(R, 90))));
    const field = (good: fc.Arbitrary<unknown>) =>
      fc.oneof({ weight: 3, arbitrary: good }, { weight: 1, arbitrary: fc.jsonValue({ maxDepth: 2 }) });
    const config = fc.record(
      {
        peft_type: field(fc.constantFrom('LORA', 'VERA')),
        r: field(fc.constantFrom(4, 2, 8)),
        lora_alpha: field(fc.double({ min: -64, max: 64, noNaN: true })),
        use_rslora: field(fc.boolean()),
        fan_in_fan_out: field(fc.boolean()),
        bias: field(fc.constantFrom('none', 'all', 'lora_only')),
        lora_dropout: field(fc.double({ min: 0, max: 0.99, noNaN: true })),
        rank_pattern: field(fc.dictionary(fc.constantFrom('q_proj', 'v_proj', '(', '.*'), fc.constantFrom(4, 2, 0))),
        alpha_pattern: field(fc.dictionary(fc.constantFrom('q_proj', 'v_proj'), fc.double({ noNaN: true, noDefaultInfinity: true }))),
        target_modules: field(fc.array(fc.string())),
        save_projection: field(fc.boolean()),
        projection_prng_key: field(fc.nat()),
      },
      { requiredKeys: [] },
    );
    fc.assert(
      fc.property(config, (c) => {
        writeFileSync(path.join(dir, 'adapter_config.json'), JSON.stringify(c));
        try {
          peft
            .loadAdapter(dir, {
              baseShapes: new Map([
                [Q, [OUT[Q], IN]],
                [V, [OUT[V], IN]],
              ]),
            })
            .dispose();
          peft.describeAdapter(dir);
        } catch (e) {
          expect(e instanceof TypeError || e instanceof RangeError, String(e)).toBe(true);
          expect((e as Error).message).toMatch(/^Expected /);
        }
      }),
      { numRuns: 200 },
    );
  });
});
