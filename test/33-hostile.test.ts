// Hostile use of the op and tensor layer: each defect class of issue 14 as its reproducer, and
// what must happen instead (no crash; the right result, or a TypeError / RangeError naming the
// argument). Teardown and detached-buffer cases run in child processes, so a crash shows as a
// signal or an abort status instead of taking the test runner down.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { deltaLora, linear, LoraLinear, lora, nn, randn, safetensors, tensor, Tensor, vera, VeraLinear, zeros } from '../lib/index.js';
import { native } from '../lib/native.js';
import { errorOf, randomF32, sameBits } from './helpers/reference.js';
import { type FixtureTensor, safetensorsBytes } from './helpers/safetensors-fixture.js';

const INDEX = path.resolve('dist/index.js');
const scratch = mkdtempSync(path.join(os.tmpdir(), 'lowrank-hostile-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

/** Runs `source` (an ES module; LOWRANK is the library's path) in a fresh node. */
function child(name: string, source: string, nodeArgs: string[] = []) {
  const file = path.join(scratch, `${name}.mjs`);
  writeFileSync(file, `const LOWRANK = ${JSON.stringify(INDEX)};\n${source}`);
  const r = spawnSync(process.execPath, [...nodeArgs, file], { encoding: 'utf8', timeout: 60_000 });
  return { status: r.status, signal: r.signal, stdout: r.stdout, stderr: r.stderr };
}

/** A worker that loops lora.forwardAsync on 1024² inputs; `exitInside` makes it call process.exit() with an op pending. */
const WORKER = (exitInside: boolean) => `
const { parentPort } = require('node:worker_threads');
import(${JSON.stringify(INDEX)}).then(async ({ lora, randn }) => {
  const n = 1024;
  const x = randn([n, n], { seed: 1 }), W = randn([n, n], { seed: 2 }), A = randn([16, n], { seed: 3 }), B = randn([n, 16], { seed: 4 });
  parentPort.postMessage('ready');
  for (let i = 0; ; i++) {
    const pending = lora.forwardAsync(x, W, A, B, { scale: 1 });
    if (${exitInside} && i === 1) process.exit(0);
    (await pending).y.dispose();
  }
});`;

describe('environment teardown with async work in flight', () => {
  const cases: [string, string, number][] = [
    [
      'worker.terminate() while its forwardAsync runs',
      `w.on('message', () => setTimeout(() => w.terminate().then(() => console.log('terminated')), 100));`,
      0,
    ],
    ['process.exit(0) in the main thread while a worker op runs', `w.on('message', () => setTimeout(() => process.exit(0), 100));`, 0],
    ['process.exit() inside the worker with its op pending', `w.on('exit', (code) => console.log('worker exit', code));`, 0],
  ];
  it.each(cases)('%s: no abort', (title, main, status) => {
    const exitInside = title.includes('inside the worker');
    const r = child(
      `teardown-${cases.findIndex((c) => c[0] === title)}`,
      `import { Worker } from 'node:worker_threads';
const w = new Worker(${JSON.stringify(WORKER(exitInside))}, { eval: true });
${main}`,
    );
    expect({ status: r.status, signal: r.signal, stderr: r.stderr }).toEqual({ status, signal: null, stderr: '' });
    if (title.startsWith('worker.terminate')) expect(r.stdout).toContain('terminated');
    if (exitInside) expect(r.stdout).toContain('worker exit 0');
  });

  it('a worker that alone loaded lowrank and asked for the backends, terminated, five times: no crash at exit', () => {
    // When only a worker had loaded the addon, its end unloaded the library (with the CUDA
    // runtime linked into it, in CUDA builds) and the process crashed at exit.
    for (let i = 0; i < 5; i++) {
      const r = child(
        `worker-only-${i}`,
        `import { Worker } from 'node:worker_threads';
const w = new Worker(${JSON.stringify(`import(${JSON.stringify(INDEX)}).then((m) => require('node:worker_threads').parentPort.postMessage(String(m.backends().cuda.available)));`)}, { eval: true });
w.on('message', async () => {
  await w.terminate();
  // the library stays mapped (pinned) after the only environment that loaded it ended
  const maps = (await import('node:fs')).readFileSync('/proc/self/maps', 'utf8');
  console.log(maps.includes('lowrank.node') ? 'pinned' : 'unloaded');
  process.exitCode = 3;
});`,
      );
      expect({ status: r.status, signal: r.signal, stderr: r.stderr, out: r.stdout.trim() }).toEqual({
        status: 3,
        signal: null,
        stderr: '',
        out: 'pinned',
      });
    }
  });

  it('process.exit(0) in the main thread with its own async ops pending: no abort', () => {
    const r = child(
      'teardown-main',
      `const { lora, randn } = await import(LOWRANK);
const n = 1024;
const x = randn([n, n], { seed: 1 }), W = randn([n, n], { seed: 2 }), A = randn([16, n], { seed: 3 }), B = randn([n, 16], { seed: 4 });
for (let i = 0; i < 4; i++) void lora.forwardAsync(x, W, A, B, { scale: 1 });
setTimeout(() => process.exit(0), 20);`,
    );
    expect(r.stderr).toBe('');
    expect(r.signal).toBeNull();
    expect(r.status).toBe(0);
  });
});

describe('a borrowed buffer detached while an async op uses it', () => {
  it.each(['forwardAsync (x detached)', 'mergeAsync (W detached)'])('%s: no crash; the op finishes on memory it held', (which) => {
    const r = child(
      `detach-${which.split(' ')[0]}`,
      `const { lora, randn, tensor } = await import(LOWRANK);
const n = 1024;
const a = new Float32Array(n * n).map((_, i) => Math.sin(i) * 0.5);
const copy = a.slice();
const x = tensor(a, [n, n]);
const W = randn([n, n], { seed: 2 }), A = randn([16, n], { seed: 3 }), B = randn([n, 16], { seed: 4 });
let pending, expected;
if (${JSON.stringify(which)}.startsWith('forward')) {
  expected = lora.forward(tensor(copy, [n, n]), W, A, B, { scale: 1 }).y.toFloat32Array();
  pending = [1, 2, 3].map(() => lora.forwardAsync(x, W, A, B, { scale: 1 }));
} else {
  pending = [lora.mergeAsync(x, A, B, 0.5)];
}
structuredClone(a.buffer, { transfer: [a.buffer] }); // detaches a: its memory now belongs to a clone nobody keeps
globalThis.gc();
const junk = []; for (let i = 0; i < 40; i++) junk.push(new Float32Array(n * n).fill(i)); // would reuse freed memory
const results = await Promise.all(pending);
if (expected) for (const r of results) { const y = r.y.toFloat32Array(); if (y.some((v, i) => v !== expected[i])) throw new Error('wrong result'); }
console.log('ok', a.length, junk.length);`,
      ['--expose-gc'],
    );
    expect(r.stderr).toBe('');
    expect(r.signal).toBeNull();
    expect(r.status).toBe(0);
    expect(r.stdout.trim()).toBe('ok 0 40'); // a is detached (length 0) afterwards
  });
});

describe("views after their base's dispose()", () => {
  it('a view refuses every use once its base is disposed, and the buffer handed on is never written', () => {
    const b = randn([64, 64], { seed: 1 });
    const v = b.reshape([64, 64]);
    const A = randn([4, 64], { seed: 2 }),
      B = randn([64, 4], { seed: 3 });
    b.dispose();
    expect(v.disposed).toBe(true);
    const other = randn([64, 64], { seed: 4 }); // receives b's pooled buffer
    const before = other.toFloat32Array();
    expect(errorOf(() => lora.merge(v, A, B, 1))).toEqual({
      cls: 'TypeError',
      message: 'Expected a live Tensor for W but received Tensor(float32, [64, 64], cpu, disposed) (its base tensor was disposed)',
    });
    expect(() => v.toFloat32Array()).toThrow(TypeError);
    expect(() => v.reshape([4096])).toThrow(TypeError);
    expect(sameBits(other.toFloat32Array(), before)).toBe(true);
    v.dispose(); // still safe
    for (const t of [A, B, other]) t.dispose();
  });

  it('disposing a view frees nothing: the base and its other views keep working', () => {
    const values = randomF32(33 * 7, 5);
    const b = tensor(values, [33, 7]).clone();
    const v1 = b.reshape([7, 33]),
      v2 = b.reshape([231]);
    v1.dispose();
    expect(b.disposed).toBe(false);
    expect(sameBits(v2.toFloat32Array(), values)).toBe(true);
    b.dispose();
    expect(v2.disposed).toBe(true);
  });

  it.each(['forwardAsync', 'mergeAsync'])(
    'the base disposed while %s reads or writes through a view: the buffer is recycled only after it settles',
    async (op) => {
      const T = 64,
        I = 96,
        O = 80,
        R = 8;
      const xv = randomF32(T * I, 6),
        Wv = randomF32(O * I, 7, 0.1),
        Av = randomF32(R * I, 8, 0.1),
        Bv = randomF32(O * R, 9);
      const base = tensor(op === 'forwardAsync' ? xv : Wv, op === 'forwardAsync' ? [T * I] : [O * I]).clone(); // pooled
      const view = base.reshape(op === 'forwardAsync' ? [T, I] : [O, I]);
      const W = tensor(Wv, [O, I]),
        A = tensor(Av, [R, I]),
        B = tensor(Bv, [O, R]);
      if (op === 'forwardAsync') {
        const expected = lora.forward(tensor(xv, [T, I]), W, A, B, { scale: 0.5 }).y.toFloat32Array();
        const pending = lora.forwardAsync(view, W, A, B, { scale: 0.5 });
        base.dispose();
        const other = randn([T * I], { seed: 10 }); // must not receive the buffer the op still reads
        const before = other.toFloat32Array();
        const { y } = await pending;
        expect(sameBits(y.toFloat32Array(), expected)).toBe(true);
        expect(sameBits(other.toFloat32Array(), before)).toBe(true);
      } else {
        const pending = lora.mergeAsync(view, A, B, 0.5);
        base.dispose();
        const other = randn([O * I], { seed: 11 }); // must not receive the buffer the op still writes
        const before = other.toFloat32Array();
        await pending;
        expect(sameBits(other.toFloat32Array(), before)).toBe(true);
      }
    },
  );
});

describe('an op that writes an argument another argument aliases', () => {
  const O = 6,
    I = 9;
  /** W [O, I] with fresh values, its values, and a check that it is unchanged. */
  function weightOf(seed: number) {
    const W = tensor(randomF32(O * I, seed, 0.5), [O, I]).clone();
    const before = W.toFloat32Array();
    return { W, unchanged: () => sameBits(W.toFloat32Array(), before) };
  }
  const refusal = (read: string, written: string) =>
    `Expected a tensor that shares no memory with ${written} (which the op writes) for ${read} but received `;

  it.each([
    ['lora.merge(W, W, B)', (W: Tensor) => lora.merge(W, W, randn([O, O], { seed: 1 }), 0.7), 'A'],
    ['lora.merge(W, view of W, B)', (W: Tensor) => lora.merge(W, W.reshape([O, I]), randn([O, O], { seed: 1 }), 0.7), 'A'],
    ['lora.unmerge(W, A, W as B)', (W: Tensor) => lora.unmerge(W, randn([I, I], { seed: 2 }), W.reshape([O, I]), 0.7), 'B'],
    [
      'deltaLora.update with after.A === W',
      (W: Tensor) =>
        deltaLora.update(
          W,
          { A: randn([O, I], { seed: 3 }), B: randn([O, O], { seed: 4 }) },
          { A: W, B: randn([O, O], { seed: 5 }) },
          { scale: 1 },
        ),
      'after.A',
    ],
    [
      'vera.merge with proj.A === W',
      (W: Tensor) => vera.merge(W, { A: W, B: randn([O, O], { seed: 6 }) }, randn([O], { seed: 7 }), randn([O], { seed: 8 })),
      'proj.A',
    ],
  ] as const)('%s: a RangeError naming both, W unchanged', (_, call, read) => {
    const { W, unchanged } = weightOf(11);
    const e = errorOf(() => call(W));
    expect(e.cls).toBe('RangeError');
    expect(e.message.startsWith(refusal(read, 'W'))).toBe(true);
    expect(e.message).toMatch(new RegExp(`\\(it shares memory with W; pass a copy: ${read.replace('.', '\\.')}\\.clone\\(\\)\\)$`));
    expect(unchanged()).toBe(true);
    W.dispose();
  });

  it('mergeAsync rejects the same way, before any work is queued', async () => {
    const { W, unchanged } = weightOf(12);
    await expect(lora.mergeAsync(W, W, randn([O, O], { seed: 1 }), 0.7)).rejects.toThrow(RangeError);
    expect(unchanged()).toBe(true);
  });

  it('two borrowed arrays over one buffer that overlap are caught too (by TypeScript, and by the native boundary)', () => {
    const buffer = new Float32Array(O * I + 2 * I).map((_, i) => Math.cos(i));
    const W = tensor(buffer.subarray(0, O * I), [O, I]),
      A = tensor(buffer.subarray(O * I - I, O * I + I), [2, I]); // shares W's last row
    const before = buffer.slice();
    expect(errorOf(() => lora.merge(W, A, randn([O, 2], { seed: 1 }), 1)).message).toMatch(
      /^Expected a tensor that shares no memory with W/,
    );
    expect(
      errorOf(() =>
        native().loraMerge({
          W: { data: W.storage(), dtype: 0 },
          A: { data: A.storage(), dtype: 0 },
          B: { data: new Float32Array(O * 2).fill(1), dtype: 0 },
          out: O,
          in: I,
          r: 2,
          scale: 1,
          safe: false,
        }),
      ),
    ).toEqual({ cls: 'RangeError', message: 'loraMerge: A shares memory with W, which the op writes; pass a copy of A' });
    expect(sameBits(buffer, before)).toBe(true);
    // apart, they are fine
    const A2 = tensor(buffer.subarray(O * I, O * I + 2 * I), [2, I]);
    lora.merge(W, A2, randn([O, 2], { seed: 1 }), 1);
  });

  it('element-wise ops may write over an input exactly, and give the right result', () => {
    const v = randomF32(33, 13);
    const x = tensor(v, [33]).clone();
    expect(nn.addInto(x, x)).toBe(x);
    expect(Array.from(x.toFloat32Array())).toEqual(Array.from(v, (a) => Math.fround(a + a)));
    const y = tensor(v, [33]).clone();
    nn.add(y, y, { alpha: 0.5, out: y });
    expect(Array.from(y.toFloat32Array())).toEqual(Array.from(v, (a) => Math.fround(a + Math.fround(0.5 * a))));
    const z = tensor(v, [33]).clone();
    nn.scale(z, 3, { out: z });
    expect(Array.from(z.toFloat32Array())).toEqual(Array.from(v, (a) => Math.fround(3 * a)));
    // a partial overlap is not element-wise-safe: refused
    const buf = new Float32Array(34).map((_, i) => i + 0.5);
    const a = tensor(buf.subarray(0, 33), [33]),
      shifted = tensor(buf.subarray(1, 34), [33]);
    expect(errorOf(() => nn.scale(a, 2, { out: shifted }))).toMatchObject({ cls: 'RangeError' });
    expect(
      errorOf(() => native().scale({ x: { data: buf.subarray(0, 33), dtype: 0 }, y: { data: buf.subarray(1, 34), dtype: 0 }, alpha: 2 })),
    ).toEqual({ cls: 'RangeError', message: 'scale: x shares memory with y, which the op writes; pass a copy of x' });
  });
});

describe('finite doubles beyond float32 range', () => {
  const x = tensor(randomF32(7 * 5, 20), [7, 5]),
    W = tensor(randomF32(3 * 5, 21), [3, 5]),
    A = tensor(randomF32(2 * 5, 22), [2, 5]),
    B = zeros([3, 2]);
  it.each([1e39, -1e39, 1e300, Number.MAX_VALUE])('scale %d is a RangeError naming the argument, everywhere', (big) => {
    const message = (name: string) => `Expected a finite number within float32 range for ${name} but received ${String(big)}`;
    expect(errorOf(() => lora.forward(x, W, A, B, { scale: big }))).toEqual({ cls: 'RangeError', message: message('options.scale') });
    const Wc = W.clone();
    expect(errorOf(() => lora.merge(Wc, A, B, big))).toEqual({ cls: 'RangeError', message: message('scale') });
    expect(errorOf(() => deltaLora.update(Wc, { A, B }, { A: A.clone(), B: B.clone() }, { scale: big }))).toEqual({
      cls: 'RangeError',
      message: message('options.scale'),
    });
    expect(errorOf(() => new LoraLinear({ weight: W, rank: 2, alpha: big }))).toEqual({
      cls: 'RangeError',
      message: message('options.alpha'),
    });
    expect(errorOf(() => nn.scale(x, big))).toEqual({ cls: 'RangeError', message: message('alpha') });
    expect(sameBits(Wc.toFloat32Array(), W.toFloat32Array())).toBe(true);
  });

  it('deltaLora.update: λ·scale beyond float32 range is refused (each alone is in range)', () => {
    expect(errorOf(() => deltaLora.update(W.clone(), { A, B }, { A: A.clone(), B: B.clone() }, { lambda: 1e20, scale: 1e20 }))).toEqual({
      cls: 'RangeError',
      message:
        'Expected a number whose product with options.lambda (100000000000000000000) is within float32 range for options.scale but received 100000000000000000000',
    });
  });

  it('the native boundary refuses them too, naming the op and the field (NaN and ±Infinity stay values a fill may take)', () => {
    const t = new Float32Array(4);
    expect(errorOf(() => native().fill({ dst: { data: t, dtype: 0 }, value: 1e39 }))).toEqual({
      cls: 'RangeError',
      message: "fill: value must lie in float32's range",
    });
    expect(errorOf(() => native().scale({ x: { data: t, dtype: 0 }, y: { data: new Float32Array(4), dtype: 0 }, alpha: 1e39 }))).toEqual({
      cls: 'RangeError',
      message: "scale: alpha = 1e+39 is outside float32's range",
    });
    const big = new Int32Array(3);
    native().fill({ dst: { data: big, dtype: 3 }, value: -485303338 }); // an int32 beyond 2^24: exact (the value crosses as a double)
    expect(Array.from(big)).toEqual([-485303338, -485303338, -485303338]);
    native().fill({ dst: { data: t, dtype: 0 }, value: -Infinity });
    expect(Array.from(t)).toEqual([-Infinity, -Infinity, -Infinity, -Infinity]);
    expect(Math.fround(3.4028234663852886e38)).toBe(3.4028234663852886e38); // the largest float32 itself is fine
    const y = nn.scale(tensor([1, -1], [2]), 3.4028234663852886e38);
    expect(Array.from(y.toFloat32Array())).toEqual([3.4028234663852886e38, -3.4028234663852886e38]);
  });
});

describe('options are taken as given, or refused', () => {
  const W = tensor(randomF32(8 * 6, 30), [8, 6]);
  const B = randn([8, 2], { seed: 31 });
  it.each([
    [
      'A: null with B given',
      () => new LoraLinear({ weight: W, rank: 2, A: null as never, B }),
      'TypeError',
      'Expected a value (or no A at all) for options.A but received null',
    ],
    [
      'B: null with A given',
      () => new LoraLinear({ weight: W, rank: 2, A: randn([2, 6]), B: null as never }),
      'TypeError',
      'Expected a value (or no B at all) for options.B but received null',
    ],
    [
      'A alone',
      () => new LoraLinear({ weight: W, rank: 2, A: randn([2, 6]) }),
      'TypeError',
      'Expected a Tensor (options.A was given: pass A and B together, or neither) for options.B but received undefined',
    ],
    [
      'seed "1"',
      () => new LoraLinear({ weight: W, rank: 2, seed: '1' as never }),
      'TypeError',
      'Expected a non-negative integer or bigint for options.seed but received "1"',
    ],
    [
      'seed true',
      () => new LoraLinear({ weight: W, rank: 2, seed: true as never }),
      'TypeError',
      'Expected a non-negative integer or bigint for options.seed but received true',
    ],
    [
      'seed [1]',
      () => new LoraLinear({ weight: W, rank: 2, seed: [1] as never }),
      'TypeError',
      'Expected a non-negative integer or bigint for options.seed but received [1]',
    ],
    [
      'startStep -1',
      () => new LoraLinear({ weight: W, rank: 2, variant: 'delta-lora', delta: { startStep: -1 } }),
      'RangeError',
      'Expected a non-negative integer for options.delta.startStep but received -1',
    ],
    [
      'startStep 0.5',
      () => new LoraLinear({ weight: W, rank: 2, variant: 'delta-lora', delta: { startStep: 0.5 } }),
      'TypeError',
      'Expected a non-negative integer for options.delta.startStep but received 0.5',
    ],
    [
      'startStep 2^64',
      () => new LoraLinear({ weight: W, rank: 2, variant: 'delta-lora', delta: { startStep: 2 ** 64 } }),
      'TypeError',
      'Expected a non-negative integer for options.delta.startStep but received 18446744073709552000',
    ],
    [
      'init with A and B',
      () => new LoraLinear({ weight: W, rank: 2, A: randn([2, 6]), B, init: 'gaussian' }),
      'RangeError',
      'Expected no init when options.A and options.B are given (they are the starting values) for options.init but received "gaussian"',
    ],
    [
      'an unknown init',
      () => new LoraLinear({ weight: W, rank: 2, init: 'xavier' as never }),
      'TypeError',
      `Expected 'kaiming' or 'gaussian' for options.init but received "xavier"`,
    ],
    [
      'A of the wrong shape',
      () => new LoraLinear({ weight: W, rank: 2, A: randn([3, 6]), B }),
      'RangeError',
      'Expected shape [rank, in] = [2, 6] for options.A but received [3, 6]',
    ],
    [
      'B of the wrong dtype',
      () => new LoraLinear({ weight: W, rank: 2, A: randn([2, 6]), B: B.astype('bfloat16') }),
      'TypeError',
      `Expected a float32 Tensor for options.B but received Tensor(bfloat16, [8, 2], cpu) (dtype is bfloat16)`,
    ],
    [
      'a bias of the wrong shape',
      () => new LoraLinear({ weight: W, rank: 2, bias: randn([7]) }),
      'RangeError',
      'Expected shape [out] = [8] for options.bias but received [7]',
    ],
    [
      'an A that is the weight',
      () => new LoraLinear({ weight: W, rank: 8, A: W.reshape([8, 6]), B: randn([8, 8]) }),
      'RangeError',
      'Expected a tensor that shares no memory with options.weight (which the op writes) for options.A but received Tensor(float32, [8, 6], cpu) (it shares memory with options.weight; pass a copy: A.clone())',
    ],
    [
      "null in an op's options",
      () => lora.forward(randn([3, 6]), W, randn([2, 6]), B, { scale: 1, bias: null as never }),
      'TypeError',
      'Expected a value (or no bias at all) for options.bias but received null',
    ],
  ] as const)('LoraLinear / lora: %s', (_, make, cls, message) => {
    expect(errorOf(make)).toEqual({ cls, message });
  });

  it('a disposed tensor is refused at construction, naming the option', () => {
    const A = randn([2, 6]);
    A.dispose();
    expect(errorOf(() => new LoraLinear({ weight: W, rank: 2, A, B }))).toEqual({
      cls: 'TypeError',
      message: 'Expected a live Tensor for options.A but received Tensor(float32, [2, 6], cpu, disposed) (it was disposed)',
    });
  });

  it('VeraLinear validates its tensors at construction', () => {
    const proj = vera.projections({ rank: 4, maxIn: 6, maxOut: 8, seed: 1 });
    expect(errorOf(() => new VeraLinear({ weight: W, projections: proj, lambdaD: randn([3]), lambdaB: randn([8]) }))).toEqual({
      cls: 'RangeError',
      message: 'Expected shape [r] = [4] for options.lambdaD but received [3]',
    });
    expect(errorOf(() => new VeraLinear({ weight: W, projections: proj, lambdaD: randn([4]) }))).toEqual({
      cls: 'TypeError',
      message:
        'Expected a Tensor (options.lambdaD was given: pass lambdaD and lambdaB together, or neither) for options.lambdaB but received undefined',
    });
    expect(errorOf(() => new VeraLinear({ weight: randn([9, 6]), projections: proj }))).toMatchObject({ cls: 'RangeError' });
    new VeraLinear({ weight: W, projections: proj }).dispose();
  });
});

describe('valid input that used to be refused, and engine errors that were not ours', () => {
  it('a LoraLinear seed of 2^34 (or any below 2^64) trains with dropout: the derived seeds do not overflow', () => {
    for (const seed of [2 ** 34, 2 ** 53 - 1, (1n << 64n) - 1n]) {
      const layer = new LoraLinear({ weight: tensor(randomF32(5 * 4, 40), [5, 4]), rank: 2, seed, dropout: 0.1 });
      const y = layer.forward(tensor(randomF32(3 * 4, 41), [3, 4]));
      expect(y.shape).toEqual([3, 5]);
      expect(y.toFloat32Array().every(Number.isFinite)).toBe(true);
      layer.dispose();
    }
  });

  it('LoRA-FA projectGradB with r > in gives finite gradients (PEFT inverts A Aᵀ + 1e-8·I; it need not be positive definite)', () => {
    const T = 4,
      I = 3,
      O = 8,
      R = 8;
    const { saved } = lora.forward(
      randn([T, I], { seed: 1 }),
      randn([O, I], { seed: 2 }),
      randn([R, I], { seed: 3 }),
      randn([O, R], { seed: 4 }),
      {
        scale: 1,
        frozenA: true,
      },
    );
    const g = lora.backward(randn([T, O], { seed: 5 }), saved, { projectGradB: true });
    expect(g.dB.toFloat32Array().every(Number.isFinite)).toBe(true);
  });

  it('a result beyond 2^32 - 1 elements is a RangeError naming the output, not an engine error', () => {
    expect(errorOf(() => linear.forward(randn([1 << 17, 1]), randn([1 << 16, 1])))).toEqual({
      cls: 'RangeError',
      message: 'Expected a result of at most 4294967295 elements for the output but received [131072, 65536] (8589934592 elements)',
    });
  });

  it.each([
    ['linear.backward', () => linear.backward(randn([2, 3]), undefined as never), 'linear.forward'],
    ['lora.backward', () => lora.backward(randn([2, 3]), undefined as never), 'lora.forward'],
    ['vera.backward', () => vera.backward(randn([2, 3]), undefined as never), 'vera.forward'],
  ])('%s without its saved state: a TypeError naming saved', (_, call, from) => {
    expect(errorOf(call)).toEqual({ cls: 'TypeError', message: `Expected the saved state from ${from} for saved but received undefined` });
  });

  it('a missing safetensors file is a RangeError naming path (with the system code kept)', () => {
    const e = (() => {
      try {
        safetensors.readSafetensors(path.join(scratch, 'nope.safetensors'));
      } catch (err) {
        return err as NodeJS.ErrnoException;
      }
    })();
    expect(e).toBeInstanceOf(RangeError);
    expect(e?.code).toBe('ENOENT');
    expect(e?.message).toMatch(
      /^Expected a readable safetensors file for path but received ".*nope\.safetensors" \(ENOENT: no such file or directory\)$/,
    );
  });
});

describe.skipIf(process.platform === 'win32')('a signal during lowrank merge', () => {
  const N = 1024,
    TENSORS = 40; // 160 MiB of float32: long enough to be caught mid-write
  const dir = path.join(scratch, 'signal-base'),
    adapter = path.join(scratch, 'signal-adapter');
  const names = Array.from({ length: TENSORS }, (_, i) => `model.layers.${i}.self_attn.q_proj.weight`);
  function fixtures(): void {
    if (existsSync(dir)) return;
    mkdirSync(dir, { recursive: true });
    mkdirSync(adapter, { recursive: true });
    const v = new Float32Array(N * N).map((_, i) => ((i * 2654435761) >>> 20) * 1e-4);
    writeFileSync(
      path.join(dir, 'model.safetensors'),
      safetensorsBytes(names.map((name) => ({ name, dtype: 'F32', shape: [N, N], data: v }))),
    );
    writeFileSync(
      path.join(adapter, 'adapter_config.json'),
      JSON.stringify({ peft_type: 'LORA', r: 4, lora_alpha: 8, target_modules: ['q_proj'] }),
    );
    const a = randomF32(4 * N, 50, 0.02),
      b = randomF32(N * 4, 51, 0.02);
    writeFileSync(
      path.join(adapter, 'adapter_model.safetensors'),
      safetensorsBytes(
        names.flatMap((n): FixtureTensor[] => {
          const m = `base_model.model.${n.replace(/\.weight$/, '')}`;
          return [
            { name: `${m}.lora_A.weight`, dtype: 'F32', shape: [4, N], data: a },
            { name: `${m}.lora_B.weight`, dtype: 'F32', shape: [N, 4], data: b },
          ];
        }),
      ),
    );
  }

  it.each([
    ['SIGTERM', 143],
    ['SIGINT', 130],
  ] as const)(
    '%s mid-merge: the temporary file is deleted, nothing appears under the final name, exit status %i',
    async (signal, status) => {
      fixtures();
      const outDir = path.join(scratch, `signal-out-${signal}`);
      mkdirSync(outDir, { recursive: true });
      const out = path.join(outDir, 'merged.safetensors');
      const child = spawn(process.execPath, [
        path.resolve('dist/cli/main.js'),
        'merge',
        '--base',
        dir,
        '--adapter',
        adapter,
        '--out',
        out,
        '--json',
      ]);
      let stderr = '';
      child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      const exited = new Promise<{ code: number | null; sig: NodeJS.Signals | null }>((resolve) =>
        child.on('exit', (code, sig) => resolve({ code, sig })),
      );
      // wait for the temporary file, then signal
      const deadline = Date.now() + 30_000;
      while (!readdirSync(outDir).some((f) => f.endsWith('.tmp')) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 2));
      expect(readdirSync(outDir).some((f) => f.endsWith('.tmp'))).toBe(true);
      child.kill(signal);
      const { code, sig } = await exited;
      expect({ code, sig, stderr: stderr.trim() }).toEqual({
        code: status,
        sig: null,
        stderr: `lowrank merge: stopped by ${signal}; its temporary files were deleted`,
      });
      expect(readdirSync(outDir)).toEqual([]);
    },
  );
});
