// Every op on CUDA tensors. Without a usable device: the one native export per op runs host
// tensors now and off the event loop, refuses tensors of two devices and anything that is not
// a tensor with an error naming the op and the field, the ops route tensors that claim CUDA to
// the device path, and `--device cuda` on the command line
// refuses with the runtime's reason. With a device: each op at awkward shapes (T ∈ {1, 7, 33},
// in ≠ out, neither a multiple of 16, r ∈ {1, 8}) on fresh random inputs against the CPU —
// float32 inputs within 1e-4 (split-TF32 products), bfloat16 inputs within 2e-2 of the CPU on
// the same rounded values — dropout masks equal to the CPU's, AdamW bit for bit, merge and
// unmerge, Delta-LoRA, VeRA, LoRA-FA's projected gradient, the layers, and the CLI on CUDA.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, expectTypeOf, it } from 'vitest';
import {
  backends,
  deltaLora,
  Linear,
  linear,
  LoraLinear,
  lora,
  optim,
  randn,
  Tensor,
  tensor,
  vera,
  VeraLinear,
  zeros,
  type DType,
} from '../lib/index.js';
import { type DeviceMemory, native, type OpArgs, type OpName } from '../lib/native.js';
import { errorOf, randomF32, relErr, sameBits, thrown } from './helpers/reference.js';
import { parseSafetensors, safetensorsBytes, toBf16Bits, type FixtureTensor } from './helpers/safetensors-fixture.js';

const cuda = backends().cuda;
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

// ---- the op boundary: one export per op, tensors as { data, dtype } on one device ----------

describe("the op boundary refuses tensors that are not one device's memory", () => {
  const T = 3,
    I = 5,
    O = 4,
    R = 2,
    MAX_IN = 6,
    MAX_OUT = 7;
  const f = (n: number) => ({ data: new Float32Array(n), dtype: 0 });
  const h = (n: number, dtype: number) => ({ data: new Uint16Array(n), dtype });
  const scalars = { scale: 0.5, p: 0, seed: 1n };
  type Entry = OpName;
  /** Each op on both devices with valid dimensions and scalars, host tensors, and its first two tensor fields. */
  const cases: Array<[Entry, Record<string, unknown>, string, string]> = [
    [
      'loraForward',
      { t: T, in: I, out: O, r: R, x: f(T * I), W: f(O * I), bias: f(O), A: f(R * I), B: f(O * R), y: f(T * O), xa: f(T * R), ...scalars },
      'x',
      'W',
    ],
    [
      'loraBackward',
      {
        t: T,
        in: I,
        out: O,
        r: R,
        dy: f(T * O),
        x: f(T * I),
        W: f(O * I),
        A: f(R * I),
        B: f(O * R),
        xa: f(T * R),
        dx: f(T * I),
        dA: f(R * I),
        dB: f(O * R),
        ...scalars,
      },
      'dy',
      'x',
    ],
    ['loraFaProjectGrad', { in: I, out: O, r: R, A: f(R * I), dB: f(O * R), scale: 0.5 }, 'A', 'dB'],
    ['loraMerge', { in: I, out: O, r: R, W: f(O * I), A: f(R * I), B: f(O * R), scale: 0.5, safe: true }, 'W', 'A'],
    [
      'veraForward',
      {
        t: T,
        in: I,
        out: O,
        r: R,
        maxIn: MAX_IN,
        maxOut: MAX_OUT,
        x: f(T * I),
        W: f(O * I),
        bias: null,
        A: f(R * MAX_IN),
        B: f(MAX_OUT * R),
        lambdaD: f(R),
        lambdaB: f(O),
        y: f(T * O),
        u: f(T * R),
        p: 0,
        seed: 1n,
      },
      'x',
      'W',
    ],
    [
      'veraBackward',
      {
        t: T,
        in: I,
        out: O,
        r: R,
        maxIn: MAX_IN,
        maxOut: MAX_OUT,
        dy: f(T * O),
        W: f(O * I),
        A: f(R * MAX_IN),
        B: f(MAX_OUT * R),
        lambdaD: f(R),
        lambdaB: f(O),
        u: f(T * R),
        dx: null,
        dLambdaD: f(R),
        dLambdaB: f(O),
        p: 0,
        seed: 1n,
      },
      'dy',
      'W',
    ],
    [
      'veraMerge',
      {
        in: I,
        out: O,
        r: R,
        maxIn: MAX_IN,
        maxOut: MAX_OUT,
        W: h(O * I, 1),
        A: f(R * MAX_IN),
        B: f(MAX_OUT * R),
        lambdaD: f(R),
        lambdaB: f(O),
        sign: -1,
        safe: false,
      },
      'W',
      'A',
    ],
    [
      'deltaLoraUpdate',
      { out: O, in: I, r: R, W: h(O * I, 1), A0: f(R * I), B0: f(O * R), A1: f(R * I), B1: f(O * R), lambda: 2, scale: 0.5 },
      'W',
      'A0',
    ],
    [
      'adamwStep',
      {
        params: [f(4)],
        grads: [f(4)],
        m: [f(4)],
        v: [f(4)],
        group: [0],
        lr: [1e-3],
        beta1: [0.9],
        beta2: [0.999],
        eps: [1e-8],
        weightDecay: [0],
        step: [1],
      },
      'params[0]',
      'grads[0]',
    ],
    ['linearForward', { t: T, in: I, out: O, x: f(T * I), W: h(O * I, 1), bias: null, y: f(T * O) }, 'x', 'W'],
    ['linearBackward', { t: T, in: I, out: O, dy: f(T * O), x: f(T * I), W: f(O * I), dx: f(T * I), dW: f(O * I), db: null }, 'dy', 'x'],
    ['convert', { src: f(6), dst: h(6, 2) }, 'src', 'dst'],
    ['fill', { dst: f(6), value: 1.5 }, 'dst', ''],
    ['addInto', { dst: f(6), src: f(6) }, 'dst', 'src'],
    ['reluForward', { x: f(6), y: f(6) }, 'x', 'y'],
    ['reluBackward', { x: f(6), dy: f(6), dx: f(6) }, 'x', 'dy'],
    ['geluForward', { x: f(6), y: f(6) }, 'x', 'y'],
    ['geluBackward', { x: f(6), dy: f(6), dx: f(6) }, 'x', 'dy'],
    ['tanhForward', { x: f(6), y: f(6) }, 'x', 'y'],
    ['tanhBackward', { x: f(6), dy: f(6), dx: f(6) }, 'x', 'dy'],
    ['add', { a: f(6), b: f(6), out: f(6), alpha: 0.5 }, 'a', 'b'],
    ['scale', { x: f(6), y: f(6), alpha: 2 }, 'x', 'y'],
  ];
  const isTensor = (v: unknown) => typeof v === 'object' && v !== null && 'data' in v;
  const tensorFields = (args: Record<string, unknown>) =>
    Object.keys(args).filter((k) => isTensor(args[k]) || (Array.isArray(args[k]) && isTensor((args[k] as unknown[])[0])));
  const call =
    (name: Entry, args: Record<string, unknown>, async = false) =>
    () =>
      (native()[name] as (a: unknown, async?: boolean) => unknown)(args, async);
  /** `args` with tensor field `key` (or its first entry) replaced by `value`. */
  const replaced = (args: Record<string, unknown>, key: string, value: unknown) => {
    const k = key.replace(/\[0\]$/, '');
    return { ...args, [k]: Array.isArray(args[k]) ? [value] : value };
  };
  /** A stand-in device block: tagged like cudaAlloc's, no memory behind it, never run on. */
  const block = (bytes: number) => ({ data: native()._testDeviceBlock({ bytes }), dtype: 0 });
  const cudaRefusal = (name: string) =>
    cuda.compiled ? `${name}: a test block stands in for device memory and is never run on` : `${name}: CUDA backend not compiled in`;

  it('every op of the op table is exported once, and no cuda* op entry point remains', () => {
    const n = native() as unknown as Record<string, unknown>;
    for (const [name] of cases) expect(typeof n[name], name).toBe('function');
    for (const name of ['veraProjections', 'fillRandom']) expect(typeof n[name], name).toBe('function');
    for (const gone of ['cudaLoraForward', 'cudaConvert', 'cudaFill', 'cudaAddInto', 'cudaAdamwStep', 'cudaVeraMerge'])
      expect(n[gone], gone).toBeUndefined();
  });

  it.each(cases)('%s: runs on host memory, now and off the event loop', async (name, args) => {
    expect(call(name, args)()).toBeUndefined();
    const pending = call(name, args, true)();
    expect(pending).toBeInstanceOf(Promise);
    await expect(pending).resolves.toBeUndefined();
  });

  it.each(cases.filter((c) => c[3] !== ''))(
    '%s: a device block among host tensors is a RangeError naming both fields and their devices',
    (name, args, first, second) => {
      const bad = replaced(args, first, block(1 << 16));
      expect(errorOf(call(name, bad))).toEqual({
        cls: 'RangeError',
        message: `${name}: every tensor must be on one device, but ${first} is on cuda and ${second} on cpu`,
      });
    },
  );

  it.each(cases)('%s: device blocks alone are refused from the one dispatch (no CUDA here, or a stand-in block)', (name, args) => {
    const bad = Object.fromEntries(
      Object.entries(args).map(([k, v]) => [
        k,
        !tensorFields(args).includes(k) ? v : Array.isArray(v) ? v.map(() => block(1 << 16)) : block(1 << 16),
      ]),
    );
    expect(errorOf(call(name, bad))).toEqual({ cls: 'RangeError', message: cudaRefusal(name) });
  });

  it.each(cases)('%s: plain objects, numbers and undefined in a tensor field are TypeErrors naming the field', (name, args, first) => {
    for (const [value, message] of [
      [{}, `${name}: expected a dtype code for ${first}.dtype but received undefined`],
      [7, `Expected a tensor { data, dtype } for ${first} but received 7`],
      [undefined, `Expected a tensor { data, dtype } for ${first} but received undefined`],
      [new Float32Array(4), `Expected a tensor { data, dtype } for ${first} but received a typed array (host memory)`],
      [{ data: {}, dtype: 0 }, `Expected a typed array or a live CUDA tensor for ${first}.data but received an object`],
      [{ data: new Uint16Array(64), dtype: 0 }, `native argument '${first}' has the wrong typed-array class`],
    ] as const) {
      expect(errorOf(call(name, replaced(args, first, value)))).toEqual({ cls: 'TypeError', message });
    }
  });

  it.each(cases)('%s: a missing field and an unknown field are TypeErrors naming the op and the field', (name, args) => {
    const [firstKey] = Object.keys(args);
    const missing = Object.fromEntries(Object.entries(args).filter(([k]) => k !== firstKey));
    expect(errorOf(call(name, missing))).toEqual({ cls: 'TypeError', message: `${name}: missing native argument '${firstKey}'` });
    expect(errorOf(call(name, { ...args, extra: 1 }))).toEqual({ cls: 'TypeError', message: `${name}: unknown native argument 'extra'` });
  });

  it('bad dimensions, dtype codes and element counts are RangeErrors; the layer-vs-projection check comes before any tensor', () => {
    const [, forward] = cases[0];
    expect(errorOf(call('loraForward', { ...forward, t: 0 }))).toEqual({
      cls: 'RangeError',
      message: 'loraForward: every dimension must be positive',
    });
    expect(errorOf(call('loraForward', { ...forward, x: { ...f(T * I), dtype: 9 } }))).toEqual({
      cls: 'RangeError',
      message: 'loraForward: expected 0 (float32), 1 (bfloat16), 2 (float16) or 3 (int32) for x.dtype but received 9',
    });
    expect(errorOf(call('loraForward', { ...forward, x: { data: new Int32Array(T * I), dtype: 3 } }))).toEqual({
      cls: 'TypeError',
      message: 'loraForward: x must be float32 on cpu but is int32',
    });
    expect(errorOf(call('loraForward', { ...forward, x: f(T * I + 1) }))).toEqual({
      cls: 'RangeError',
      message: `loraForward: x has ${T * I + 1} elements but its shape needs ${T * I}`,
    });
    const [, merge] = cases.find(([n]) => n === 'veraMerge')!;
    expect(errorOf(call('veraMerge', { ...merge, in: MAX_IN + 1 }))).toEqual({
      cls: 'RangeError',
      message: "veraMerge: the layer's in exceeds the projections' maxIn",
    });
    expect(errorOf(call('veraMerge', { ...merge, sign: 0 }))).toEqual({
      cls: 'RangeError',
      message: 'veraMerge: sign must be 1 (merge) or -1 (unmerge)',
    });
    expect(errorOf(call('loraForward', { ...forward, t: 2 ** 40, in: 2 ** 40 }))).toEqual({
      cls: 'RangeError',
      message: 'loraForward: the dimensions overflow',
    });
    expect(errorOf(() => (native().loraForward as (a?: unknown) => void)())).toEqual({
      cls: 'TypeError',
      message: 'native call expects an argument object',
    });
    const [, backward] = cases[1];
    expect(errorOf(call('loraBackward', { ...backward, x: null }))).toEqual({
      cls: 'RangeError',
      message: 'loraBackward: dA needs x, and x is kept only for dA',
    });
  });

  it('AdamW: lists of different lengths and a group index out of range are RangeErrors; each tensor is named by its index', () => {
    const [, adamw] = cases.find(([n]) => n === 'adamwStep')!;
    expect(errorOf(call('adamwStep', { ...adamw, grads: [] }))).toEqual({
      cls: 'RangeError',
      message: 'adamwStep: expected grads to hold 1 tensors (one per parameter) but it holds 0',
    });
    expect(errorOf(call('adamwStep', { ...adamw, group: [1] }))).toEqual({
      cls: 'RangeError',
      message: 'adamwStep: group[0] is not the index of a group',
    });
    expect(errorOf(call('adamwStep', { ...adamw, m: [f(3)] }))).toEqual({
      cls: 'RangeError',
      message: 'adamwStep: m[0] has 3 elements but its shape needs 4',
    });
    expect(errorOf(call('adamwStep', { ...adamw, grads: [{}] }))).toEqual({
      cls: 'TypeError',
      message: 'adamwStep: expected a dtype code for grads[0].dtype but received undefined',
    });
  });

  it('one mapping of native errors: RangeError and TypeError keep their class on the sync and the async path', async () => {
    const [, merge] = cases.find(([n]) => n === 'loraMerge')!;
    const huge = {
      ...merge,
      W: { data: new Float32Array(O * I).fill(3e38), dtype: 0 },
      A: { data: new Float32Array(R * I).fill(1e19), dtype: 0 },
      B: { data: new Float32Array(O * R).fill(1e19), dtype: 0 },
    };
    const message = /^Expected a finite merged weight for W but received (-?Infinity|NaN) at W\[0, 0\]; W was left unchanged$/;
    const sync = thrown(call('loraMerge', huge));
    expect(sync).toBeInstanceOf(RangeError);
    expect((sync as Error).message).toMatch(message);
    const rejected = await (call('loraMerge', huge, true)() as Promise<void>).catch((e: unknown) => e);
    expect(rejected).toBeInstanceOf(RangeError);
    expect((rejected as Error).message).toMatch(message);
    // LoRA-FA's projection fails inside the kernel when A Aᵀ cannot be factored, on both paths.
    const project = { in: I, out: O, r: R, A: { data: new Float32Array(R * I).fill(NaN), dtype: 0 }, dB: f(O * R), scale: 1 };
    expect(thrown(call('loraFaProjectGrad', project))).toBeInstanceOf(RangeError);
    await expect(call('loraFaProjectGrad', project, true)() as Promise<void>).rejects.toBeInstanceOf(RangeError);
    // A TypeError from unpacking is thrown at the call, async or not.
    expect(thrown(call('loraMerge', { ...merge, safe: 1 }))).toBeInstanceOf(TypeError);
    expect(thrown(call('loraMerge', { ...merge, safe: 1 }, true))).toBeInstanceOf(TypeError);
  });

  it('int32 tensors are stored, copied and filled, and convert to no other dtype', () => {
    const src = Int32Array.from([1, -2, 3, 2 ** 31 - 1]),
      dst = new Int32Array(4);
    native().convert({ src: { data: src, dtype: 3 }, dst: { data: dst, dtype: 3 } });
    expect(Array.from(dst)).toEqual(Array.from(src));
    native().fill({ dst: { data: dst, dtype: 3 }, value: -7 });
    expect(Array.from(dst)).toEqual([-7, -7, -7, -7]);
    expect(errorOf(() => native().convert({ src: { data: src, dtype: 3 }, dst: f(4) }))).toEqual({
      cls: 'RangeError',
      message: 'convert: int32 does not convert to float32',
    });
    expect(errorOf(() => native().convert({ src: f(4), dst: { data: dst, dtype: 3 } }))).toEqual({
      cls: 'RangeError',
      message: 'convert: float32 does not convert to int32',
    });
    expect(errorOf(() => native().convert({ src: { data: new Float32Array(4), dtype: 3 }, dst: { data: dst, dtype: 3 } }))).toEqual({
      cls: 'TypeError',
      message: "native argument 'src' has the wrong typed-array class",
    });
    expect(errorOf(() => native().addInto({ dst: { data: dst, dtype: 3 }, src: { data: src, dtype: 3 } }))).toEqual({
      cls: 'TypeError',
      message: 'addInto: dst must be float32 on cpu but is int32',
    });
  });

  it("softmaxCrossEntropy: labels are an int32 tensor of t elements; their values are the kernel's to check", async () => {
    const labels = (v: number[]) => ({ data: Int32Array.from(v), dtype: 3 });
    const args = { t: 2, c: 3, logits: f(6), labels: labels([0, 2]), loss: f(1), dlogits: null };
    expect(native().softmaxCrossEntropy(args)).toBeUndefined();
    await expect(native().softmaxCrossEntropy({ ...args, dlogits: f(6) }, true)).resolves.toBeUndefined();
    expect(errorOf(() => native().softmaxCrossEntropy({ ...args, labels: f(2) }))).toEqual({
      cls: 'TypeError',
      message: 'softmaxCrossEntropy: labels must be int32 on cpu but is float32',
    });
    expect(errorOf(() => native().softmaxCrossEntropy({ ...args, labels: labels([0, 1, 2]) }))).toEqual({
      cls: 'RangeError',
      message: 'softmaxCrossEntropy: labels has 3 elements but its shape needs 2',
    });
    expect(errorOf(() => native().softmaxCrossEntropy({ ...args, labels: labels([0, 3]) }))).toEqual({
      cls: 'RangeError',
      message: 'Expected an integer in [0, 3) for labels[1] but received 3',
    });
    expect(errorOf(call('softmaxCrossEntropy', { ...args, loss: block(64) }))).toEqual({
      cls: 'RangeError',
      message: 'softmaxCrossEntropy: every tensor must be on one device, but logits is on cpu and loss on cuda',
    });
  });

  it('CPU-only ops refuse device blocks', () => {
    const r = 2,
      maxIn = 3,
      maxOut = 4;
    expect(errorOf(() => native().veraProjections({ r, maxIn, maxOut, seed: 1n, A: block(64), B: block(64) }))).toEqual({
      cls: 'RangeError',
      message: 'veraProjections: runs on the CPU only but received CUDA tensors',
    });
  });

  it('typings: device memory is branded, so a host array cannot reach a device call; one call holds one kind of memory', () => {
    const host = { data: new Float32Array(4), dtype: 0 };
    const dev = { data: native()._testDeviceBlock({ bytes: 16 }), dtype: 0 };
    expectTypeOf(host.data).not.toMatchTypeOf<DeviceMemory>();
    expectTypeOf<OpArgs<DeviceMemory>['addInto']['dst']['data']>().toEqualTypeOf<DeviceMemory>();
    // @ts-expect-error a Float32Array is not device memory
    const wrong: OpArgs<DeviceMemory>['fill'] = { dst: host, value: 0 };
    expect(wrong.dst).toBe(host);
    // @ts-expect-error one call's tensors are all host or all device memory
    const mixed = () => native().addInto({ dst: dev, src: host });
    // host arrays of different classes (a float32 and a bfloat16 tensor) are one kind of memory
    expectTypeOf(native().convert).toBeCallableWith({ src: host, dst: { data: new Uint16Array(4), dtype: 1 } });
    expect(errorOf(mixed).cls).toBe('RangeError');
  });
});

// ---- the ops route CUDA tensors to the device path -----------------------------------------

describe('the ops take the CUDA path for tensors on cuda', () => {
  // Stand-ins: tensors that claim CUDA over host arrays (the internal constructor). An op must
  // ask them for their device blocks, never read them as host memory.
  const fakes: Tensor[] = [];
  const fake = (shape: number[], dtype: DType = 'float32') => {
    const n = shape.reduce((a, b) => a * b, 1);
    const t = new Tensor(dtype === 'float32' ? randomF32(n, fakes.length + 1) : new Uint16Array(n), shape, dtype, 'cuda');
    fakes.push(t);
    return t;
  };
  afterAll(() => fakes.forEach((t) => t.dispose()));
  const T = 3,
    I = 5,
    O = 4,
    R = 2;
  const notDevice = (name: string, t: Tensor) => ({
    cls: 'RangeError',
    message: `Expected a tensor in CUDA memory for ${name} but received ${t.describe()}`,
  });

  it('lora, vera, deltaLora, linear and AdamW ask for device blocks', () => {
    const x = fake([T, I]),
      W = fake([O, I]),
      A = fake([R, I]),
      B = fake([O, R]);
    expect(errorOf(() => lora.forward(x, W, A, B, { scale: 1 }))).toEqual(notDevice('x', x));
    expect(errorOf(() => lora.merge(W, A, B, 1))).toEqual(notDevice('W', W));
    expect(errorOf(() => deltaLora.update(W, { A, B }, { A, B }, { scale: 1 }))).toEqual(notDevice('W', W));
    expect(errorOf(() => linear.forward(x, W))).toEqual(notDevice('x', x));
    const proj = { A: fake([R, I + 1]), B: fake([O + 1, R]) };
    expect(errorOf(() => vera.forward(x, W, proj, fake([R]), fake([O])))).toEqual(notDevice('x', x));
    const p = fake([O, R]);
    expect(errorOf(() => new optim.AdamW([{ param: p, grad: fake([O, R]) }]))).toEqual(notDevice('groups[0].param', p));
  });

  it('on CUDA, x may be bfloat16 or float16 where the CPU takes float32 only; A, B, λ must be float32 on both', () => {
    const W = fake([O, I]),
      B = fake([O, R]);
    const x16 = fake([T, I], 'float16');
    expect(errorOf(() => lora.forward(x16, W, fake([R, I]), B, { scale: 1 }))).toEqual(notDevice('x', x16)); // accepted: it gets as far as the block
    const x = tensor(randomF32(T * I, 1), [T, I]);
    expect(
      errorOf(() =>
        lora.forward(
          x.astype('float16'),
          tensor(randomF32(O * I, 2), [O, I]),
          tensor(randomF32(R * I, 3), [R, I]),
          tensor(randomF32(O * R, 4), [O, R]),
          { scale: 1 },
        ),
      ),
    ).toEqual({
      cls: 'TypeError',
      message: `Expected a float32 Tensor for x but received Tensor(float16, [${T}, ${I}], cpu) (dtype is float16)`,
    });
  });
});

// ---- the command line without a device -----------------------------------------------------

describe('--device cuda on the command line', () => {
  // A private build of lib/ (test 21 rebuilds dist/ while its own commands run).
  const tmp = mkdtempSync(path.join(os.tmpdir(), 'lowrank-cuda-cli-'));
  const dist = path.join(tmp, 'dist');
  afterAll(() => rmSync(tmp, { recursive: true, force: true }));
  beforeAll(() => {
    const tsc = path.join(root, 'node_modules', 'typescript', 'bin', 'tsc');
    const r = spawnSync(
      process.execPath,
      [tsc, '-p', 'tsconfig.json', '--outDir', dist, '--declaration', 'false', '--declarationMap', 'false', '--sourceMap', 'false'],
      { cwd: root, encoding: 'utf8' },
    );
    if (!existsSync(path.join(dist, 'cli', 'main.js'))) throw new Error(`tsc wrote no CLI:\n${r.stdout}${r.stderr}`);
    writeFileSync(path.join(tmp, 'package.json'), JSON.stringify({ type: 'module', version: '0.0.0' }));
    symlinkSync(path.join(root, 'node_modules'), path.join(tmp, 'node_modules'), 'dir');
  });
  const addon = path.join(root, 'build', 'Release', 'lowrank.node');
  const run = (script: string, args: string[]) => {
    const r = spawnSync(process.execPath, [path.join(dist, 'cli', script), ...args], {
      cwd: tmp,
      encoding: 'utf8',
      env: { ...process.env, LOWRANK_NATIVE: addon },
    });
    return { status: r.status, stdout: r.stdout, stderr: r.stderr };
  };

  it.skipIf(cuda.available)('refuses with the runtime reason, one line, exit status 1: merge, demo and npm start', () => {
    const refusal = `Expected an available device for --device but received "cuda" (CUDA is unavailable: ${cuda.reason})`;
    const cases: Array<[string, string[], string]> = [
      [
        'main.js',
        ['merge', '--base', 'base.safetensors', '--adapter', 'adapter', '--out', 'out.safetensors', '--device', 'cuda'],
        'lowrank merge',
      ],
      ['main.js', ['demo', '--synthetic', '--steps', '2', '--device', 'cuda'], 'lowrank demo'],
      ['demo-main.js', ['--synthetic', '--steps', '2', '--device', 'cuda'], 'lowrank demo'],
    ];
    for (const [script, args, prefix] of cases) {
      const r = run(script, args);
      expect(r.status, `${script} ${args.join(' ')}: ${r.stderr}`).toBe(1);
      expect(r.stderr).toBe(`${prefix}: ${refusal}\n`);
    }
  });

  it.skipIf(!cuda.available)(
    'merge --device cuda writes what the CPU merge writes; demo --device cuda runs',
    () => {
      const IN = 45,
        OUT = 37,
        R = 8;
      const base: FixtureTensor[] = [
        { name: 'model.layers.0.q_proj.weight', dtype: 'F32', shape: [OUT, IN], data: randomF32(OUT * IN, 1, 0.2) },
        { name: 'model.layers.0.k_proj.weight', dtype: 'BF16', shape: [OUT, IN], data: toBf16Bits(randomF32(OUT * IN, 2, 0.2)) },
        { name: 'model.norm.weight', dtype: 'F32', shape: [IN], data: randomF32(IN, 3) },
      ];
      writeFileSync(path.join(tmp, 'base.safetensors'), safetensorsBytes(base));
      const adapter = path.join(tmp, 'adapter');
      mkdirSync(adapter, { recursive: true });
      writeFileSync(
        path.join(adapter, 'adapter_config.json'),
        JSON.stringify({
          base_model_name_or_path: 'tiny',
          bias: 'none',
          fan_in_fan_out: false,
          inference_mode: true,
          lora_alpha: 16,
          lora_dropout: 0.0,
          peft_type: 'LORA',
          r: R,
          target_modules: ['q_proj', 'k_proj'],
          task_type: 'CAUSAL_LM',
          use_rslora: false,
        }),
      );
      writeFileSync(
        path.join(adapter, 'adapter_model.safetensors'),
        safetensorsBytes(
          ['q_proj', 'k_proj'].flatMap((m, i): FixtureTensor[] => [
            {
              name: `base_model.model.model.layers.0.${m}.lora_A.weight`,
              dtype: 'F32',
              shape: [R, IN],
              data: randomF32(R * IN, 10 + i, 0.2),
            },
            {
              name: `base_model.model.model.layers.0.${m}.lora_B.weight`,
              dtype: 'F32',
              shape: [OUT, R],
              data: randomF32(OUT * R, 20 + i, 0.2),
            },
          ]),
        ),
      );
      const outputs: Record<string, ReturnType<typeof parseSafetensors>> = {};
      for (const device of ['cpu', 'cuda']) {
        const out = path.join(tmp, `merged-${device}.safetensors`);
        const r = run('main.js', [
          'merge',
          '--base',
          'base.safetensors',
          '--adapter',
          'adapter',
          '--out',
          out,
          '--device',
          device,
          '--quiet',
        ]);
        expect(r.status, r.stderr).toBe(0);
        outputs[device] = parseSafetensors(out);
      }
      expect(relErr(outputs.cuda.f32('model.layers.0.q_proj.weight'), outputs.cpu.f32('model.layers.0.q_proj.weight'))).toBeLessThan(1e-4);
      expect(relErr(outputs.cuda.f32('model.layers.0.k_proj.weight'), outputs.cpu.f32('model.layers.0.k_proj.weight'))).toBeLessThan(2e-2);
      expect(outputs.cuda.bytes('model.norm.weight').equals(outputs.cpu.bytes('model.norm.weight'))).toBe(true);

      const demo = run('main.js', [
        'demo',
        '--synthetic',
        '--steps',
        '3',
        '--device',
        'cuda',
        '--quiet',
        '--out',
        path.join(tmp, 'demo.svg'),
      ]);
      expect(demo.status, demo.stderr).toBe(0);
      expect(existsSync(path.join(tmp, 'demo.svg'))).toBe(true);
    },
    180_000,
  );
});

// ---- with a device: every op against the CPU ------------------------------------------------

if (!cuda.available) console.log(`test/23-cuda-ops: device tests skipped: CUDA unavailable: ${cuda.reason}`);

describe.skipIf(!cuda.available)('CUDA ops agree with the CPU', () => {
  const TOL: Record<'float32' | 'bfloat16', number> = { float32: 1e-4, bfloat16: 2e-2 };
  const SHAPES = [1, 7, 33].flatMap((t) => [1, 8].map((r) => ({ t, in: t === 7 ? 70 : 45, out: t === 7 ? 19 : 37, r })));
  let seed = 1000;
  const live: Tensor[] = [];
  const keep = <T extends Tensor>(t: T) => (live.push(t), t);
  afterAll(() => live.forEach((t) => t.dispose()));

  const rnd = (shape: number[], std = 1) => keep(randn(shape, { seed: seed++, std }));
  /** The CPU float32 tensor of t's values rounded to `dtype` (what the device sees). */
  const rounded = (t: Tensor, dtype: DType) => keep(dtype === 'float32' ? t.clone() : t.astype(dtype).astype('float32'));
  /** t as `dtype` on the device. */
  const dev = (t: Tensor, dtype: DType = 'float32') => {
    const c = t.astype(dtype);
    const d = keep(c.to('cuda'));
    c.dispose();
    return d;
  };
  /** Every element finite (no NaN, no poison) and max|got − ref| / max|ref| within tol. */
  const close = (got: Tensor | undefined, ref: Tensor | undefined, tol: number, label: string) => {
    expect(got, label).toBeDefined();
    expect(got!.device, label).toBe('cuda');
    const g = got!.toFloat32Array(),
      r = ref!.toFloat32Array();
    expect(g.every(Number.isFinite), `${label}: non-finite values`).toBe(true);
    expect(relErr(g, r), label).toBeLessThanOrEqual(tol);
  };

  it.each(SHAPES)(
    'LoRA forward + backward, T=$t in=$in out=$out r=$r, float32 and bfloat16, dropout 0 and 0.3',
    ({ t, in: I, out: O, r: R }) => {
      for (const dtype of ['float32', 'bfloat16'] as const)
        for (const p of [0, 0.3]) {
          const x = rnd([t, I]),
            W = rnd([O, I], 0.2),
            A = rnd([R, I], 0.3),
            B = rnd([O, R], 0.3),
            bias = rnd([O]),
            dy = rnd([t, O]);
          const opts = (b: Tensor) => ({ scale: 0.75, bias: b, dropout: { p, seed: 77 } });
          const cpu = lora.forward(rounded(x, dtype), rounded(W, dtype), A, B, opts(rounded(bias, dtype)));
          const cg = lora.backward(rounded(dy, dtype), cpu.saved);
          const gpu = lora.forward(dev(x, dtype), dev(W, dtype), dev(A), dev(B), opts(dev(bias, dtype)));
          expect(gpu.y.dtype).toBe(dtype);
          const gg = lora.backward(dev(dy, dtype), gpu.saved);
          expect(gg.dx.dtype).toBe(dtype);
          const label = `${dtype} p=${p}`;
          close(gpu.y, cpu.y, TOL[dtype], `${label} y`);
          close(gpu.saved.xa, cpu.saved.xa, TOL[dtype], `${label} xa`);
          close(gg.dx, cg.dx, TOL[dtype], `${label} dx`);
          close(gg.dA, cg.dA, TOL[dtype], `${label} dA`);
          close(gg.dB, cg.dB, TOL[dtype], `${label} dB`);
          expect(gpu.saved.bytes).toBe(t * I * (dtype === 'float32' ? 4 : 2) + t * R * 4); // x as given, and xa
          for (const v of [cpu.y, gpu.y, cg.dx, cg.dA!, cg.dB, gg.dx, gg.dA!, gg.dB]) keep(v);
          cpu.saved.dispose();
          gpu.saved.dispose();
        }
    },
  );

  it.each(SHAPES)('LoRA-FA with the projected gradient, T=$t r=$r: dB and dx; only xa is kept', ({ t, in: I, out: O, r: R }) => {
    const x = rnd([t, I]),
      W = rnd([O, I], 0.2),
      A = rnd([R, I], 0.3),
      B = rnd([O, R], 0.3),
      dy = rnd([t, O]);
    const opts = { scale: 2, frozenA: true, dropout: { p: 0.3, seed: 5 } };
    const cpu = lora.forward(x, W, A, B, opts);
    const cg = lora.backward(dy, cpu.saved, { projectGradB: true });
    const gpu = lora.forward(dev(x), dev(W), dev(A), dev(B), opts);
    expect(gpu.saved.bytes).toBe(t * R * 4);
    const gg = lora.backward(dev(dy), gpu.saved, { projectGradB: true });
    expect(gg.dA).toBeUndefined();
    close(gg.dB, cg.dB, 1e-3, 'projected dB'); // an r × r solve on top of the products
    close(gg.dx, cg.dx, TOL.float32, 'dx');
    for (const v of [cpu.y, gpu.y, cg.dx, cg.dB, gg.dx, gg.dB]) keep(v);
    cpu.saved.dispose();
    gpu.saved.dispose();
  });

  it('forwardAsync and backwardAsync on CUDA give what forward and backward give', async () => {
    const x = dev(rnd([7, 45])),
      W = dev(rnd([37, 45], 0.2)),
      A = dev(rnd([8, 45])),
      B = dev(rnd([37, 8])),
      dy = dev(rnd([7, 37]));
    const opts = { scale: 0.5, dropout: { p: 0.3, seed: 9 } };
    const a = lora.forward(x, W, A, B, opts),
      b = await lora.forwardAsync(x, W, A, B, opts);
    expect(sameBits(a.y.toFloat32Array(), b.y.toFloat32Array())).toBe(true);
    const ga = lora.backward(dy, a.saved),
      gb = await lora.backwardAsync(dy, b.saved);
    for (const [k, got, want] of [
      ['dx', gb.dx, ga.dx],
      ['dA', gb.dA, ga.dA],
      ['dB', gb.dB, ga.dB],
    ] as const)
      close(got, want, 1e-6, k);
    for (const v of [a.y, b.y, ga.dx, ga.dA!, ga.dB, gb.dx, gb.dA!, gb.dB]) keep(v);
    a.saved.dispose();
    b.saved.dispose();
  });

  it.each(SHAPES)('merge, unmerge and safe merge, out=$out in=$in r=$r, float32 and bfloat16 W', ({ in: I, out: O, r: R }) => {
    for (const dtype of ['float32', 'bfloat16'] as const) {
      const W0 = rnd([O, I], 0.2),
        A = rnd([R, I], 0.3),
        B = rnd([O, R], 0.3);
      const cpuW = keep(W0.astype(dtype)),
        gpuW = dev(W0, dtype),
        before = keep(W0.astype(dtype));
      lora.merge(cpuW, A, B, 1.5);
      lora.merge(gpuW, dev(A), dev(B), 1.5, { safe: true });
      close(gpuW, cpuW, TOL[dtype], `${dtype} merged`);
      lora.unmerge(gpuW, dev(A), dev(B), 1.5);
      close(gpuW, before, dtype === 'float32' ? 1e-5 : TOL.bfloat16, `${dtype} unmerged`);
    }
    // A merge that overflows: the CPU's error, W untouched.
    const big = keep(tensor(new Float32Array(O * I).fill(3e38), [O, I])),
      ones = keep(tensor(new Float32Array(R * I).fill(1), [R, I])),
      onesB = keep(tensor(new Float32Array(O * R).fill(1), [O, R]));
    const cpuError = errorOf(() => lora.merge(big.clone(), ones, onesB, 1e38, { safe: true }));
    const Wd = dev(big);
    expect(errorOf(() => lora.merge(Wd, dev(ones), dev(onesB), 1e38, { safe: true }))).toEqual(cpuError);
    expect(cpuError.message).toMatch(/^Expected a finite merged weight for W but received Infinity at W\[0, 0\]; W was left unchanged$/);
    expect(sameBits(Wd.toFloat32Array(), big.toFloat32Array())).toBe(true);
  });

  it.each(SHAPES)('Delta-LoRA update, out=$out in=$in r=$r, float32 and bfloat16 W', ({ in: I, out: O, r: R }) => {
    for (const dtype of ['float32', 'bfloat16'] as const) {
      const W0 = rnd([O, I], 0.2),
        A0 = rnd([R, I], 0.3),
        B0 = rnd([O, R], 0.3),
        A1 = rnd([R, I], 0.3),
        B1 = rnd([O, R], 0.3);
      const cpuW = keep(W0.astype(dtype)),
        gpuW = dev(W0, dtype);
      deltaLora.update(cpuW, { A: A0, B: B0 }, { A: A1, B: B1 }, { lambda: 2, scale: 0.5 });
      deltaLora.update(gpuW, { A: dev(A0), B: dev(B0) }, { A: dev(A1), B: dev(B1) }, { lambda: 2, scale: 0.5 });
      close(gpuW, cpuW, TOL[dtype], `${dtype} W after the update`);
    }
  });

  it.each(SHAPES)(
    'VeRA forward, backward and merge, T=$t in=$in out=$out r=$r, float32 and bfloat16, dropout 0.3',
    ({ t, in: I, out: O, r: R }) => {
      const proj = vera.projections({ rank: R, maxIn: I + 11, maxOut: O + 5, seed: 3 });
      const projD = vera.projections({ rank: R, maxIn: I + 11, maxOut: O + 5, seed: 3, device: 'cuda' });
      for (const t of [proj.A, proj.B, projD.A, projD.B]) keep(t);
      expect(sameBits(projD.A.toFloat32Array(), proj.A.toFloat32Array())).toBe(true);
      for (const dtype of ['float32', 'bfloat16'] as const) {
        const x = rnd([t, I]),
          W = rnd([O, I], 0.2),
          ld = rnd([R], 0.5),
          lb = rnd([O], 0.5),
          bias = rnd([O]),
          dy = rnd([t, O]);
        const opts = (b: Tensor) => ({ bias: b, dropout: { p: 0.3, seed: 11 } });
        const cpu = vera.forward(rounded(x, dtype), rounded(W, dtype), proj, ld, lb, opts(rounded(bias, dtype)));
        const cg = vera.backward(rounded(dy, dtype), cpu.saved);
        const gpu = vera.forward(dev(x, dtype), dev(W, dtype), projD, dev(ld), dev(lb), opts(dev(bias, dtype)));
        const gg = vera.backward(dev(dy, dtype), gpu.saved);
        expect([gpu.y.dtype, gg.dx.dtype]).toEqual([dtype, dtype]);
        close(gpu.y, cpu.y, TOL[dtype], `${dtype} y`);
        close(gpu.saved.u, cpu.saved.u, TOL[dtype], `${dtype} u`);
        close(gg.dx, cg.dx, TOL[dtype], `${dtype} dx`);
        close(gg.dLambdaD, cg.dLambdaD, TOL[dtype], `${dtype} dLambdaD`);
        close(gg.dLambdaB, cg.dLambdaB, TOL[dtype], `${dtype} dLambdaB`);
        for (const v of [cpu.y, gpu.y, cg.dx, cg.dLambdaD, cg.dLambdaB, gg.dx, gg.dLambdaD, gg.dLambdaB]) keep(v);
        cpu.saved.dispose();
        gpu.saved.dispose();
        const cpuW = keep(W.astype(dtype)),
          gpuW = dev(W, dtype);
        vera.merge(cpuW, proj, ld, lb);
        vera.merge(gpuW, projD, dev(ld), dev(lb), { safe: true });
        close(gpuW, cpuW, TOL[dtype], `${dtype} merged`);
        vera.unmerge(gpuW, projD, dev(ld), dev(lb));
        close(gpuW, rounded(W, dtype), dtype === 'float32' ? 1e-5 : TOL.bfloat16, `${dtype} unmerged`);
      }
    },
  );

  it.each(SHAPES)('linear forward and backward, T=$t in=$in out=$out, float32 and bfloat16 activations', ({ t, in: I, out: O }) => {
    for (const dtype of ['float32', 'bfloat16'] as const) {
      const x = rnd([t, I]),
        W = rnd([O, I], 0.2),
        bias = rnd([O]),
        dy = rnd([t, O]);
      const cpu = linear.forward(rounded(x, dtype), W, { bias: rounded(bias, dtype) });
      const cg = linear.backward(rounded(dy, dtype), cpu.saved);
      const gpu = linear.forward(dev(x, dtype), dev(W), { bias: dev(bias, dtype) });
      expect(gpu.y.dtype).toBe(dtype);
      const gg = linear.backward(dev(dy, dtype), gpu.saved);
      close(gpu.y, cpu.y, TOL[dtype], `${dtype} y`);
      close(gg.dx, cg.dx, TOL[dtype], `${dtype} dx`);
      close(gg.dW, cg.dW, TOL[dtype], `${dtype} dW`);
      close(gg.db, cg.db, TOL[dtype], `${dtype} db`);
      for (const v of [cpu.y, gpu.y, cg.dx, cg.dW, cg.db!, gg.dx, gg.dW, gg.db!]) keep(v);
    }
  });

  it('AdamW on CUDA equals the CPU bit for bit over 5 steps (two groups, weight decay)', () => {
    const shapes = [[37, 8], [8, 45], [1], [33]];
    const params = shapes.map((s) => rnd(s, 0.5));
    const cpuP = params.map((p) => keep(p.clone())),
      gpuP = params.map((p) => dev(p));
    const cpuG = shapes.map((s) => keep(zeros(s))),
      gpuG = shapes.map((s) => keep(zeros(s, { device: 'cuda' })));
    const groups = (P: Tensor[], G: Tensor[]) => [
      { params: [0, 1].map((i) => ({ param: P[i], grad: G[i] })), lr: 1e-2, weightDecay: 0.1 },
      { params: [2, 3].map((i) => ({ param: P[i], grad: G[i] })), lr: 3e-3, betas: [0.8, 0.99] as [number, number], eps: 1e-6 },
    ];
    const cpuOpt = new optim.AdamW(groups(cpuP, cpuG)),
      gpuOpt = new optim.AdamW(groups(gpuP, gpuG));
    try {
      for (let step = 0; step < 5; step++) {
        shapes.forEach((s, i) => {
          const g = randomF32(
            s.reduce((a, b) => a * b, 1),
            500 + 10 * step + i,
          );
          cpuG[i].storage().set(g);
          native().cudaUpload({ block: gpuG[i].deviceHandle(), src: g });
        });
        cpuOpt.step();
        gpuOpt.step();
        shapes.forEach((_, i) => {
          expect(sameBits(gpuP[i].toFloat32Array(), cpuP[i].toFloat32Array()), `step ${step + 1}, param ${i}`).toBe(true);
          const cs = cpuOpt.state(cpuP[i])!,
            gs = gpuOpt.state(gpuP[i])!;
          expect(gs.m.device).toBe('cuda');
          expect(sameBits(gs.m.toFloat32Array(), cs.m.toFloat32Array()), `step ${step + 1}, m ${i}`).toBe(true);
          expect(sameBits(gs.v.toFloat32Array(), cs.v.toFloat32Array()), `step ${step + 1}, v ${i}`).toBe(true);
        });
      }
      gpuOpt.zeroGrad();
      for (const g of gpuG) expect(g.toFloat32Array().every((v) => v === 0)).toBe(true);
    } finally {
      cpuOpt.dispose();
      gpuOpt.dispose();
    }
  });

  it('the layers train on CUDA: LoraLinear (lora, lora-fa, delta-lora), VeraLinear and Linear give the CPU gradients', () => {
    const T = 7,
      I = 45,
      O = 37;
    const x = rnd([T, I]),
      W = rnd([O, I], 0.2),
      bias = rnd([O]),
      dy = rnd([T, O]);
    const projections = {
      cpu: vera.projections({ rank: 8, maxIn: I, maxOut: O, seed: 4 }),
      cuda: vera.projections({ rank: 8, maxIn: I, maxOut: O, seed: 4, device: 'cuda' }),
    };
    for (const p of Object.values(projections)) for (const t of [p.A, p.B]) keep(t);
    type Layer = {
      forward(x: Tensor): Tensor;
      backward(dy: Tensor): Tensor;
      parameters(): Array<{ name: string; param: Tensor; grad: Tensor }>;
      dispose(): void;
    };
    const make: Array<[string, (w: Tensor, b: Tensor) => Layer]> = [
      ['lora', (w, b) => new LoraLinear({ weight: w, bias: b, rank: 8, seed: 3, dropout: 0.3 })],
      ['lora-fa', (w, b) => new LoraLinear({ weight: w, bias: b, rank: 8, seed: 3, variant: 'lora-fa', projectGradB: true })],
      ['delta-lora', (w, b) => new LoraLinear({ weight: w, bias: b, rank: 8, seed: 3, variant: 'delta-lora' })],
      ['vera', (w, b) => new VeraLinear({ weight: w, bias: b, projections: projections[w.device], dropout: 0.3, seed: 2 })],
      ['linear', (w, b) => new Linear({ weight: w, bias: b })],
    ];
    for (const [name, build] of make) {
      const cpu = build(keep(W.clone()), keep(bias.clone())),
        gpu = build(dev(W), dev(bias));
      const y = [keep(cpu.forward(x)), keep(gpu.forward(dev(x)))];
      close(y[1], y[0], TOL.float32, `${name} y`);
      const dx = [keep(cpu.backward(dy)), keep(gpu.backward(dev(dy)))];
      close(dx[1], dx[0], TOL.float32, `${name} dx`);
      const [pc, pg] = [cpu.parameters(), gpu.parameters()];
      pg.forEach((p, i) => {
        expect(p.param.device).toBe('cuda');
        close(p.grad, pc[i].grad, name === 'lora-fa' ? 1e-3 : TOL.float32, `${name} ${p.name} grad`);
      });
      cpu.dispose();
      gpu.dispose();
    }
  });

  it('A, B and λ must be float32 on CUDA too: a TypeError naming the argument', () => {
    const x = dev(rnd([7, 45]), 'bfloat16'),
      W = dev(rnd([37, 45]), 'bfloat16'),
      A = dev(rnd([8, 45]), 'bfloat16'),
      B = dev(rnd([37, 8]));
    expect(errorOf(() => lora.forward(x, W, A, B, { scale: 1 }))).toEqual({
      cls: 'TypeError',
      message: 'Expected a float32 Tensor for A but received Tensor(bfloat16, [8, 45], cuda) (dtype is bfloat16)',
    });
    const proj = vera.projections({ rank: 8, maxIn: 45, maxOut: 37, seed: 1, device: 'cuda' });
    for (const t of [proj.A, proj.B]) keep(t);
    const ld = dev(rnd([8]), 'float16');
    expect(errorOf(() => vera.forward(x, W, proj, ld, dev(rnd([37]))))).toEqual({
      cls: 'TypeError',
      message: 'Expected a float32 Tensor for lambdaD but received Tensor(float16, [8], cuda) (dtype is float16)',
    });
    expect(errorOf(() => lora.forward(x, W, B, B, { scale: 1 })).cls).toBe('RangeError'); // shapes still checked
  });
});
