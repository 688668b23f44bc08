// Every op on CUDA tensors. Without a usable device: each CUDA entry point refuses host memory
// (and anything else that is not a live device block) with a TypeError naming the field, the
// ops route tensors that claim CUDA to the device path, and `--device cuda` on the command line
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
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { backends, deltaLora, Linear, linear, LoraLinear, lora, optim, randn, Tensor, tensor, vera, VeraLinear, zeros, type DType } from '../lib/index.js';
import { native, type Native } from '../lib/native.js';
import { errorOf, randomF32, relErr, sameBits } from './helpers/reference.js';
import { parseSafetensors, safetensorsBytes, toBf16Bits, type FixtureTensor } from './helpers/safetensors-fixture.js';

const cuda = backends().cuda;
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

// ---- the entry points, without device memory ---------------------------------------------

describe('CUDA entry points refuse what is not device memory', () => {
  const T = 3, I = 5, O = 4, R = 2, MAX_IN = 6, MAX_OUT = 7;
  const f = (n: number) => new Float32Array(n);
  const scalars = { scale: 0.5, p: 0, seed: 1n };
  type Entry = keyof Native & `cuda${string}`;
  /** Each entry point with valid dimensions, scalars and dtype codes, host arrays for every tensor, and its first tensor field. */
  const cases: Array<[Entry, Record<string, unknown>, string]> = [
    ['cudaLoraForward', { t: T, in: I, out: O, r: R, x: f(T * I), xDtype: 0, W: f(O * I), wDtype: 0, bias: f(O), biasDtype: 0, A: f(R * I), B: f(O * R), y: f(T * O), yDtype: 0, xa: f(T * R), ...scalars }, 'x'],
    ['cudaLoraBackward', { t: T, in: I, out: O, r: R, dy: f(T * O), dyDtype: 0, x: f(T * I), xDtype: 0, W: f(O * I), wDtype: 0, A: f(R * I), B: f(O * R), xa: f(T * R), dx: f(T * I), dxDtype: 0, dA: f(R * I), dB: f(O * R), ...scalars }, 'dy'],
    ['cudaLoraFaProjectGrad', { in: I, out: O, r: R, A: f(R * I), dB: f(O * R), scale: 0.5 }, 'A'],
    ['cudaLoraMerge', { in: I, out: O, r: R, W: f(O * I), wDtype: 0, A: f(R * I), B: f(O * R), scale: 0.5, safe: true }, 'W'],
    ['cudaVeraForward', { t: T, in: I, out: O, r: R, maxIn: MAX_IN, maxOut: MAX_OUT, x: f(T * I), xDtype: 0, W: f(O * I), wDtype: 0, bias: null, biasDtype: 0, A: f(R * MAX_IN), B: f(MAX_OUT * R), lambdaD: f(R), lambdaB: f(O), y: f(T * O), yDtype: 0, u: f(T * R), p: 0, seed: 1n }, 'x'],
    ['cudaVeraBackward', { t: T, in: I, out: O, r: R, maxIn: MAX_IN, maxOut: MAX_OUT, dy: f(T * O), dyDtype: 0, W: f(O * I), wDtype: 0, A: f(R * MAX_IN), B: f(MAX_OUT * R), lambdaD: f(R), lambdaB: f(O), u: f(T * R), dx: null, dxDtype: 0, dLambdaD: f(R), dLambdaB: f(O), p: 0, seed: 1n }, 'dy'],
    ['cudaVeraMerge', { in: I, out: O, r: R, maxIn: MAX_IN, maxOut: MAX_OUT, W: f(O * I), wDtype: 1, A: f(R * MAX_IN), B: f(MAX_OUT * R), lambdaD: f(R), lambdaB: f(O), sign: -1, safe: false }, 'W'],
    ['cudaDeltaLoraUpdate', { out: O, in: I, r: R, W: f(O * I), wDtype: 2, A0: f(R * I), B0: f(O * R), A1: f(R * I), B1: f(O * R), lambda: 2, scale: 0.5 }, 'W'],
    ['cudaAdamwStep', { params: [f(4)], grads: [f(4)], m: [f(4)], v: [f(4)], n: [4], group: [0], lr: [1e-3], beta1: [0.9], beta2: [0.999], eps: [1e-8], weightDecay: [0], step: [1] }, 'params[0]'],
    ['cudaLinearForward', { t: T, in: I, out: O, x: f(T * I), xDtype: 1, W: f(O * I), wDtype: 0, bias: null, biasDtype: 0, y: f(T * O), yDtype: 1 }, 'x'],
    ['cudaLinearBackward', { t: T, in: I, out: O, dy: f(T * O), dyDtype: 0, x: f(T * I), xDtype: 0, W: f(O * I), wDtype: 0, dx: f(T * I), dxDtype: 0, dW: f(O * I), db: null }, 'dy'],
  ];
  const tensorFields = (args: Record<string, unknown>) =>
    Object.keys(args).filter((k) => ArrayBuffer.isView(args[k]) || (Array.isArray(args[k]) && ArrayBuffer.isView((args[k] as unknown[])[0])));
  const call = (name: Entry, args: Record<string, unknown>) => () => (native()[name] as (a: unknown) => unknown)(args);

  it.each(cases)('%s: host memory is a TypeError naming the first tensor field', (name, args, first) => {
    expect(errorOf(call(name, args))).toEqual({ cls: 'TypeError', message: `Expected a live CUDA tensor for ${first} but received a typed array (host memory)` });
  });

  it.each(cases)('%s: plain objects, numbers and missing fields are TypeErrors naming the field', (name, args, first) => {
    for (const [value, text] of [
      [{}, 'an object'],
      [7, '7'],
      [undefined, 'undefined'],
    ] as const) {
      const bad = Object.fromEntries(Object.entries(args).map(([k, v]) => [k, tensorFields(args).includes(k) ? (Array.isArray(v) ? [value] : value) : v]));
      expect(errorOf(call(name, bad))).toEqual({ cls: 'TypeError', message: `Expected a live CUDA tensor for ${first} but received ${text}` });
    }
  });

  it('bad dimensions and dtype codes are RangeErrors before any tensor field is read', () => {
    const [, forward] = cases[0];
    expect(errorOf(call('cudaLoraForward', { ...forward, t: 0 }))).toEqual({ cls: 'RangeError', message: 'cudaLoraForward: every dimension must be positive' });
    expect(errorOf(call('cudaLoraForward', { ...forward, xDtype: 3 }))).toEqual({
      cls: 'RangeError',
      message: 'cudaLoraForward: expected 0 (float32), 1 (bfloat16) or 2 (float16) for xDtype but received 3',
    });
    const [, merge] = cases.find(([n]) => n === 'cudaVeraMerge')!;
    expect(errorOf(call('cudaVeraMerge', { ...merge, in: MAX_IN + 1 }))).toEqual({ cls: 'RangeError', message: "cudaVeraMerge: the layer's in exceeds the projections' maxIn" });
    expect(errorOf(call('cudaVeraMerge', { ...merge, sign: 0 }))).toEqual({ cls: 'RangeError', message: 'cudaVeraMerge: sign must be 1 (merge) or -1 (unmerge)' });
    expect(errorOf(call('cudaLoraForward', { ...forward, t: 2 ** 40, in: 2 ** 40 }))).toEqual({ cls: 'RangeError', message: 'cudaLoraForward: the dimensions overflow' });
    expect(errorOf(() => (native().cudaLoraForward as (a?: unknown) => void)())).toEqual({ cls: 'TypeError', message: 'native call expects an argument object' });
  });

  it('AdamW: lists of different lengths and a group index out of range are RangeErrors; each tensor is named by its index', () => {
    const [, adamw] = cases.find(([n]) => n === 'cudaAdamwStep')!;
    expect(errorOf(call('cudaAdamwStep', { ...adamw, n: [] }))).toEqual({ cls: 'RangeError', message: 'cudaAdamwStep: expected sizes.Length() == count but got 0 vs 1' });
    expect(errorOf(call('cudaAdamwStep', { ...adamw, grads: [{}] }))).toEqual({ cls: 'TypeError', message: 'Expected a live CUDA tensor for params[0] but received a typed array (host memory)' });
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
  const T = 3, I = 5, O = 4, R = 2;
  const notDevice = (name: string, t: Tensor) => ({ cls: 'RangeError', message: `Expected a tensor in CUDA memory for ${name} but received ${t.describe()}` });

  it('lora, vera, deltaLora, linear and AdamW ask for device blocks', () => {
    const x = fake([T, I]), W = fake([O, I]), A = fake([R, I]), B = fake([O, R]);
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
    const W = fake([O, I]), B = fake([O, R]);
    const x16 = fake([T, I], 'float16');
    expect(errorOf(() => lora.forward(x16, W, fake([R, I]), B, { scale: 1 }))).toEqual(notDevice('x', x16)); // accepted: it gets as far as the block
    const x = tensor(randomF32(T * I, 1), [T, I]);
    expect(errorOf(() => lora.forward(x.astype('float16'), tensor(randomF32(O * I, 2), [O, I]), tensor(randomF32(R * I, 3), [R, I]), tensor(randomF32(O * R, 4), [O, R]), { scale: 1 }))).toEqual({
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
    const r = spawnSync(process.execPath, [tsc, '-p', 'tsconfig.json', '--outDir', dist, '--declaration', 'false', '--declarationMap', 'false', '--sourceMap', 'false'], { cwd: root, encoding: 'utf8' });
    if (!existsSync(path.join(dist, 'cli', 'main.js'))) throw new Error(`tsc wrote no CLI:\n${r.stdout}${r.stderr}`);
    writeFileSync(path.join(tmp, 'package.json'), JSON.stringify({ type: 'module', version: '0.0.0' }));
    symlinkSync(path.join(root, 'node_modules'), path.join(tmp, 'node_modules'), 'dir');
  });
  const addon = path.join(root, 'build', 'Release', 'lowrank.node');
  const run = (script: string, args: string[]) => {
    const r = spawnSync(process.execPath, [path.join(dist, 'cli', script), ...args], { cwd: tmp, encoding: 'utf8', env: { ...process.env, LOWRANK_NATIVE: addon } });
    return { status: r.status, stdout: r.stdout, stderr: r.stderr };
  };

  it.skipIf(cuda.available)('refuses with the runtime reason, one line, exit status 1: merge, demo and npm start', () => {
    const refusal = `Expected an available device for --device but received "cuda" (CUDA is unavailable: ${cuda.reason})`;
    const cases: Array<[string, string[], string]> = [
      ['main.js', ['merge', '--base', 'base.safetensors', '--adapter', 'adapter', '--out', 'out.safetensors', '--device', 'cuda'], 'lowrank merge'],
      ['main.js', ['demo', '--steps', '2', '--device', 'cuda'], 'lowrank demo'],
      ['demo-main.js', ['--steps', '2', '--device', 'cuda'], 'lowrank demo'],
    ];
    for (const [script, args, prefix] of cases) {
      const r = run(script, args);
      expect(r.status, `${script} ${args.join(' ')}: ${r.stderr}`).toBe(1);
      expect(r.stderr).toBe(`${prefix}: ${refusal}\n`);
    }
  });

  it.skipIf(!cuda.available)('merge --device cuda writes what the CPU merge writes; demo --device cuda runs', () => {
    const IN = 45, OUT = 37, R = 8;
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
        base_model_name_or_path: 'tiny', bias: 'none', fan_in_fan_out: false, inference_mode: true, lora_alpha: 16, lora_dropout: 0.0,
        peft_type: 'LORA', r: R, target_modules: ['q_proj', 'k_proj'], task_type: 'CAUSAL_LM', use_rslora: false,
      }),
    );
    writeFileSync(
      path.join(adapter, 'adapter_model.safetensors'),
      safetensorsBytes(
        ['q_proj', 'k_proj'].flatMap((m, i): FixtureTensor[] => [
          { name: `base_model.model.model.layers.0.${m}.lora_A.weight`, dtype: 'F32', shape: [R, IN], data: randomF32(R * IN, 10 + i, 0.2) },
          { name: `base_model.model.model.layers.0.${m}.lora_B.weight`, dtype: 'F32', shape: [OUT, R], data: randomF32(OUT * R, 20 + i, 0.2) },
        ]),
      ),
    );
    const outputs: Record<string, ReturnType<typeof parseSafetensors>> = {};
    for (const device of ['cpu', 'cuda']) {
      const out = path.join(tmp, `merged-${device}.safetensors`);
      const r = run('main.js', ['merge', '--base', 'base.safetensors', '--adapter', 'adapter', '--out', out, '--device', device, '--quiet']);
      expect(r.status, r.stderr).toBe(0);
      outputs[device] = parseSafetensors(out);
    }
    expect(relErr(outputs.cuda.f32('model.layers.0.q_proj.weight'), outputs.cpu.f32('model.layers.0.q_proj.weight'))).toBeLessThan(1e-4);
    expect(relErr(outputs.cuda.f32('model.layers.0.k_proj.weight'), outputs.cpu.f32('model.layers.0.k_proj.weight'))).toBeLessThan(2e-2);
    expect(outputs.cuda.bytes('model.norm.weight').equals(outputs.cpu.bytes('model.norm.weight'))).toBe(true);

    const demo = run('main.js', ['demo', '--steps', '3', '--device', 'cuda', '--quiet', '--out', path.join(tmp, 'demo.svg')]);
    expect(demo.status, demo.stderr).toBe(0);
    expect(existsSync(path.join(tmp, 'demo.svg'))).toBe(true);
  }, 180_000);
});

// ---- with a device: every op against the CPU ------------------------------------------------

if (!cuda.available) console.log(`test/23-cuda-ops: device tests skipped: CUDA unavailable: ${cuda.reason}`);

describe.skipIf(!cuda.available)('CUDA ops agree with the CPU', () => {
  const TOL: Record<'float32' | 'bfloat16', number> = { float32: 1e-4, bfloat16: 2e-2 };
  const SHAPES = [1, 7, 33].flatMap((t) =>
    [1, 8].map((r) => ({ t, in: t === 7 ? 70 : 45, out: t === 7 ? 19 : 37, r })),
  );
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
    const g = got!.toFloat32Array(), r = ref!.toFloat32Array();
    expect(g.every(Number.isFinite), `${label}: non-finite values`).toBe(true);
    expect(relErr(g, r), label).toBeLessThanOrEqual(tol);
  };

  it.each(SHAPES)('LoRA forward + backward, T=$t in=$in out=$out r=$r, float32 and bfloat16, dropout 0 and 0.3', ({ t, in: I, out: O, r: R }) => {
    for (const dtype of ['float32', 'bfloat16'] as const)
      for (const p of [0, 0.3]) {
        const x = rnd([t, I]), W = rnd([O, I], 0.2), A = rnd([R, I], 0.3), B = rnd([O, R], 0.3), bias = rnd([O]), dy = rnd([t, O]);
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
  });

  it.each(SHAPES)('LoRA-FA with the projected gradient, T=$t r=$r: dB and dx; only xa is kept', ({ t, in: I, out: O, r: R }) => {
    const x = rnd([t, I]), W = rnd([O, I], 0.2), A = rnd([R, I], 0.3), B = rnd([O, R], 0.3), dy = rnd([t, O]);
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
    const x = dev(rnd([7, 45])), W = dev(rnd([37, 45], 0.2)), A = dev(rnd([8, 45])), B = dev(rnd([37, 8])), dy = dev(rnd([7, 37]));
    const opts = { scale: 0.5, dropout: { p: 0.3, seed: 9 } };
    const a = lora.forward(x, W, A, B, opts), b = await lora.forwardAsync(x, W, A, B, opts);
    expect(sameBits(a.y.toFloat32Array(), b.y.toFloat32Array())).toBe(true);
    const ga = lora.backward(dy, a.saved), gb = await lora.backwardAsync(dy, b.saved);
    for (const [k, got, want] of [['dx', gb.dx, ga.dx], ['dA', gb.dA, ga.dA], ['dB', gb.dB, ga.dB]] as const) close(got, want, 1e-6, k);
    for (const v of [a.y, b.y, ga.dx, ga.dA!, ga.dB, gb.dx, gb.dA!, gb.dB]) keep(v);
    a.saved.dispose();
    b.saved.dispose();
  });

  it.each(SHAPES)('merge, unmerge and safe merge, out=$out in=$in r=$r, float32 and bfloat16 W', ({ in: I, out: O, r: R }) => {
    for (const dtype of ['float32', 'bfloat16'] as const) {
      const W0 = rnd([O, I], 0.2), A = rnd([R, I], 0.3), B = rnd([O, R], 0.3);
      const cpuW = keep(W0.astype(dtype)), gpuW = dev(W0, dtype), before = keep(W0.astype(dtype));
      lora.merge(cpuW, A, B, 1.5);
      lora.merge(gpuW, dev(A), dev(B), 1.5, { safe: true });
      close(gpuW, cpuW, TOL[dtype], `${dtype} merged`);
      lora.unmerge(gpuW, dev(A), dev(B), 1.5);
      close(gpuW, before, dtype === 'float32' ? 1e-5 : TOL.bfloat16, `${dtype} unmerged`);
    }
    // A merge that overflows: the CPU's error, W untouched.
    const big = keep(tensor(new Float32Array(O * I).fill(3e38), [O, I])), ones = keep(tensor(new Float32Array(R * I).fill(1), [R, I])), onesB = keep(tensor(new Float32Array(O * R).fill(1), [O, R]));
    const cpuError = errorOf(() => lora.merge(big.clone(), ones, onesB, 1e38, { safe: true }));
    const Wd = dev(big);
    expect(errorOf(() => lora.merge(Wd, dev(ones), dev(onesB), 1e38, { safe: true }))).toEqual(cpuError);
    expect(cpuError.message).toMatch(/^Expected a finite merged weight for W but received Infinity at W\[0, 0\]; W was left unchanged$/);
    expect(sameBits(Wd.toFloat32Array(), big.toFloat32Array())).toBe(true);
  });

  it.each(SHAPES)('Delta-LoRA update, out=$out in=$in r=$r, float32 and bfloat16 W', ({ in: I, out: O, r: R }) => {
    for (const dtype of ['float32', 'bfloat16'] as const) {
      const W0 = rnd([O, I], 0.2), A0 = rnd([R, I], 0.3), B0 = rnd([O, R], 0.3), A1 = rnd([R, I], 0.3), B1 = rnd([O, R], 0.3);
      const cpuW = keep(W0.astype(dtype)), gpuW = dev(W0, dtype);
      deltaLora.update(cpuW, { A: A0, B: B0 }, { A: A1, B: B1 }, { lambda: 2, scale: 0.5 });
      deltaLora.update(gpuW, { A: dev(A0), B: dev(B0) }, { A: dev(A1), B: dev(B1) }, { lambda: 2, scale: 0.5 });
      close(gpuW, cpuW, TOL[dtype], `${dtype} W after the update`);
    }
  });

  it.each(SHAPES)('VeRA forward, backward and merge, T=$t in=$in out=$out r=$r, float32 and bfloat16, dropout 0.3', ({ t, in: I, out: O, r: R }) => {
    const proj = vera.projections({ rank: R, maxIn: I + 11, maxOut: O + 5, seed: 3 });
    const projD = vera.projections({ rank: R, maxIn: I + 11, maxOut: O + 5, seed: 3, device: 'cuda' });
    keep(proj.A), keep(proj.B), keep(projD.A), keep(projD.B);
    expect(sameBits(projD.A.toFloat32Array(), proj.A.toFloat32Array())).toBe(true);
    for (const dtype of ['float32', 'bfloat16'] as const) {
      const x = rnd([t, I]), W = rnd([O, I], 0.2), ld = rnd([R], 0.5), lb = rnd([O], 0.5), bias = rnd([O]), dy = rnd([t, O]);
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
      const cpuW = keep(W.astype(dtype)), gpuW = dev(W, dtype);
      vera.merge(cpuW, proj, ld, lb);
      vera.merge(gpuW, projD, dev(ld), dev(lb), { safe: true });
      close(gpuW, cpuW, TOL[dtype], `${dtype} merged`);
      vera.unmerge(gpuW, projD, dev(ld), dev(lb));
      close(gpuW, rounded(W, dtype), dtype === 'float32' ? 1e-5 : TOL.bfloat16, `${dtype} unmerged`);
    }
  });

  it.each(SHAPES)('linear forward and backward, T=$t in=$in out=$out, float32 and bfloat16 activations', ({ t, in: I, out: O }) => {
    for (const dtype of ['float32', 'bfloat16'] as const) {
      const x = rnd([t, I]), W = rnd([O, I], 0.2), bias = rnd([O]), dy = rnd([t, O]);
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
    const cpuP = params.map((p) => keep(p.clone())), gpuP = params.map((p) => dev(p));
    const cpuG = shapes.map((s) => keep(zeros(s))), gpuG = shapes.map((s) => keep(zeros(s, { device: 'cuda' })));
    const groups = (P: Tensor[], G: Tensor[]) => [
      { params: [0, 1].map((i) => ({ param: P[i], grad: G[i] })), lr: 1e-2, weightDecay: 0.1 },
      { params: [2, 3].map((i) => ({ param: P[i], grad: G[i] })), lr: 3e-3, betas: [0.8, 0.99] as [number, number], eps: 1e-6 },
    ];
    const cpuOpt = new optim.AdamW(groups(cpuP, cpuG)), gpuOpt = new optim.AdamW(groups(gpuP, gpuG));
    try {
      for (let step = 0; step < 5; step++) {
        shapes.forEach((s, i) => {
          const g = randomF32(s.reduce((a, b) => a * b, 1), 500 + 10 * step + i);
          cpuG[i].storage().set(g);
          native().cudaUpload({ block: gpuG[i].deviceHandle(), src: g });
        });
        cpuOpt.step();
        gpuOpt.step();
        shapes.forEach((_, i) => {
          expect(sameBits(gpuP[i].toFloat32Array(), cpuP[i].toFloat32Array()), `step ${step + 1}, param ${i}`).toBe(true);
          const cs = cpuOpt.state(cpuP[i])!, gs = gpuOpt.state(gpuP[i])!;
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
    const T = 7, I = 45, O = 37;
    const x = rnd([T, I]), W = rnd([O, I], 0.2), bias = rnd([O]), dy = rnd([T, O]);
    const projections = { cpu: vera.projections({ rank: 8, maxIn: I, maxOut: O, seed: 4 }), cuda: vera.projections({ rank: 8, maxIn: I, maxOut: O, seed: 4, device: 'cuda' }) };
    for (const p of Object.values(projections)) keep(p.A), keep(p.B);
    type Layer = { forward(x: Tensor): Tensor; backward(dy: Tensor): Tensor; parameters(): Array<{ name: string; param: Tensor; grad: Tensor }>; dispose(): void };
    const make: Array<[string, (w: Tensor, b: Tensor) => Layer]> = [
      ['lora', (w, b) => new LoraLinear({ weight: w, bias: b, rank: 8, seed: 3, dropout: 0.3 })],
      ['lora-fa', (w, b) => new LoraLinear({ weight: w, bias: b, rank: 8, seed: 3, variant: 'lora-fa', projectGradB: true })],
      ['delta-lora', (w, b) => new LoraLinear({ weight: w, bias: b, rank: 8, seed: 3, variant: 'delta-lora' })],
      ['vera', (w, b) => new VeraLinear({ weight: w, bias: b, projections: projections[w.device], dropout: 0.3, seed: 2 })],
      ['linear', (w, b) => new Linear({ weight: w, bias: b })],
    ];
    for (const [name, build] of make) {
      const cpu = build(keep(W.clone()), keep(bias.clone())), gpu = build(dev(W), dev(bias));
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
    const x = dev(rnd([7, 45]), 'bfloat16'), W = dev(rnd([37, 45]), 'bfloat16'), A = dev(rnd([8, 45]), 'bfloat16'), B = dev(rnd([37, 8]));
    expect(errorOf(() => lora.forward(x, W, A, B, { scale: 1 }))).toEqual({
      cls: 'TypeError',
      message: 'Expected a float32 Tensor for A but received Tensor(bfloat16, [8, 45], cuda) (dtype is bfloat16)',
    });
    const proj = vera.projections({ rank: 8, maxIn: 45, maxOut: 37, seed: 1, device: 'cuda' });
    keep(proj.A), keep(proj.B);
    const ld = dev(rnd([8]), 'float16');
    expect(errorOf(() => vera.forward(x, W, proj, ld, dev(rnd([37]))))).toEqual({
      cls: 'TypeError',
      message: 'Expected a float32 Tensor for lambdaD but received Tensor(float16, [8], cuda) (dtype is float16)',
    });
    expect(errorOf(() => lora.forward(x, W, B, B, { scale: 1 })).cls).toBe('RangeError'); // shapes still checked
  });
});
