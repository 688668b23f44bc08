// Every CPU kernel path (LOWRANK_ISA / setIsa: avx512, avx2, scalar) runs the whole LoRA
// family correctly, and the paths agree with each other within 1e-5 relative.
import { spawnSync } from 'node:child_process';
import { afterAll, describe, expect, it } from 'vitest';
import { backends, lora, tensor } from '../lib/index.js';
import { native } from '../lib/native.js';
import { dropoutFactors, loraBackwardRef, loraForwardRef, mergeRef, randomF32, relErr } from './helpers/reference.js';
import { ALL_ISAS, supportedIsas } from './helpers/isa.js';

const ALL = ALL_ISAS;
const supported = supportedIsas();
const unsupported = ALL.filter((isa) => !supported.includes(isa));

afterAll(() => {
  native()._setIsa('');
});

// (T, in, out, r, dropout): tails of every tile and vector width, K blocks with a remainder.
const cases: Array<[number, number, number, number, number]> = [
  [1, 45, 37, 1, 0],
  [7, 130, 97, 8, 0.25],
  [33, 257, 45, 64, 0],
  [50, 600, 70, 16, 0.1],
];

function run(isa: string, [T, I, O, R, p]: [number, number, number, number, number], seed: number) {
  expect(native()._setIsa(isa as 'avx512')).toBe(isa);
  const xv = randomF32(T * I, seed),
    Wv = randomF32(O * I, seed + 1, 0.1),
    Av = randomF32(R * I, seed + 2, 0.1);
  const Bv = randomF32(O * R, seed + 3),
    bv = randomF32(O, seed + 4),
    dyv = randomF32(T * O, seed + 5);
  const x = tensor(xv, [T, I]),
    W = tensor(Wv, [O, I]),
    A = tensor(Av, [R, I]),
    B = tensor(Bv, [O, R]);
  const bias = tensor(bv, [O]),
    dy = tensor(dyv, [T, O]);
  const dropout = p > 0 ? { p, seed: 99n } : undefined;
  const { y, saved } = lora.forward(x, W, A, B, { scale: 0.75, bias, dropout });
  const { dx, dA, dB } = lora.backward(dy, saved);
  const merged = W.clone();
  lora.merge(merged, A, B, 0.75);
  const mask = p > 0 ? dropoutFactors(99n, p, T * I) : null;
  return {
    got: { y: y.toFloat32Array(), dx: dx.toFloat32Array(), dA: dA!.toFloat32Array(), dB: dB.toFloat32Array(), W: merged.toFloat32Array() },
    ref: {
      y: loraForwardRef(xv, Wv, bv, Av, Bv, 0.75, mask, T, I, O, R).y,
      ...loraBackwardRef(dyv, xv, Wv, Av, Bv, 0.75, mask, T, I, O, R),
      W: mergeRef(Wv, Av, Bv, 0.75, O, I, R),
    },
  };
}

describe('kernel paths', () => {
  it.skipIf(unsupported.length === 0)(`skips what this CPU cannot run (${unsupported.join(', ') || 'none'})`, () => {
    console.log(`kernel paths not supported on this CPU, not tested here: ${unsupported.join(', ')}`);
    expect(supported.length).toBeGreaterThan(0);
  });

  it.each(cases)('T=%i in=%i out=%i r=%i p=%f: every path matches float64 and the others', (...c) => {
    const results = supported.map((isa) => ({ isa, ...run(isa, c, 100) }));
    for (const { isa, got, ref } of results) {
      for (const k of ['y', 'dx', 'dA', 'dB', 'W'] as const) {
        const e = relErr(got[k], ref[k]);
        expect(e, `${isa} ${k} vs float64`).toBeLessThan(1e-5);
      }
    }
    const first = results[0];
    for (const other of results.slice(1))
      for (const k of ['y', 'dx', 'dA', 'dB', 'W'] as const)
        expect(relErr(other.got[k], first.got[k]), `${other.isa} vs ${first.isa} ${k}`).toBeLessThan(1e-5);
  });
});

describe('LOWRANK_ISA', () => {
  it.each(supported)('LOWRANK_ISA=%s picks that path at load time', (isa) => {
    const root = new URL('..', import.meta.url).pathname;
    const script = `console.log(require('node-gyp-build')(${JSON.stringify(root)}).backends().cpu.isa)`;
    const r = spawnSync(process.execPath, ['-e', script], {
      cwd: root,
      env: { ...process.env, LOWRANK_ISA: isa },
      encoding: 'utf8',
    });
    expect(r.stderr).toBe('');
    expect(r.stdout.trim()).toBe(isa);
  });
});

describe('cache-derived blocking', () => {
  const root = new URL('..', import.meta.url).pathname;
  const cpuOf = (env: Record<string, string>) => {
    const script = `console.log(JSON.stringify(require('node-gyp-build')(${JSON.stringify(root)}).backends().cpu))`;
    const r = spawnSync(process.execPath, ['-e', script], { cwd: root, env: { ...process.env, ...env }, encoding: 'utf8' });
    expect(r.stderr).toBe('');
    return JSON.parse(r.stdout) as ReturnType<typeof backends>['cpu'];
  };

  it.each(supported)('%s: the caches are read, and kc, mc, nc fit the kernel geometry and the caches', (isa) => {
    const cpu = cpuOf({ LOWRANK_ISA: isa });
    expect(cpu.caches.l1d).toBeGreaterThan(0);
    expect(cpu.caches.l2).toBeGreaterThan(cpu.caches.l1d);
    const b = cpu.blocking;
    expect(b.mc % b.mr).toBe(0);
    expect(b.nc % b.nr).toBe(0);
    expect(b.kc).toBeGreaterThanOrEqual(64);
    if (b.rule === 'derived') {
      expect((b.mr + b.nr) * b.kc * 4).toBeLessThanOrEqual(cpu.caches.l1d); // the micro-panels in L1d
      expect(b.mc * b.kc * 4).toBeLessThanOrEqual(cpu.caches.l2); // A's block in L2
    }
  });

  it('LOWRANK_KC / LOWRANK_MC / LOWRANK_NC override the blocking (rounded to the kernel multiples), and results stay right', () => {
    const cpu = cpuOf({ LOWRANK_KC: '100', LOWRANK_MC: '50', LOWRANK_NC: '70' });
    const b = cpu.blocking;
    expect(b.rule).toBe('env');
    expect(b.kc).toBe(100);
    expect(b.mc).toBe(Math.floor(50 / b.mr) * b.mr || b.mr);
    expect(b.nc).toBe(Math.floor(70 / b.nr) * b.nr || b.nr);
    // a product over several blocks in every dimension against the float64 reference
    const script = `
      const { linear, tensor } = await import(${JSON.stringify(new URL('../dist/index.js', import.meta.url).href)});
      const T = 131, I = 333, O = 97;
      const x = Float32Array.from({ length: T * I }, (_, i) => Math.sin(i)), W = Float32Array.from({ length: O * I }, (_, i) => Math.cos(i * 0.7));
      const y = linear.forward(tensor(x, [T, I]), tensor(W, [O, I])).y.toFloat32Array();
      let err = 0, scale = 0;
      for (let t = 0; t < T; t++) for (let o = 0; o < O; o++) {
        let s = 0, a = 0;
        for (let i = 0; i < I; i++) { s += x[t * I + i] * W[o * I + i]; a += Math.abs(x[t * I + i] * W[o * I + i]); }
        err = Math.max(err, Math.abs(y[t * O + o] - s)); scale = Math.max(scale, a);
      }
      console.log(err / scale);`;
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], {
      cwd: root,
      env: { ...process.env, LOWRANK_KC: '100', LOWRANK_MC: '50', LOWRANK_NC: '70' },
      encoding: 'utf8',
    });
    expect(r.stderr).toBe('');
    expect(Number(r.stdout)).toBeLessThan(1e-6);
  });
});

describe("the bench's OpenBLAS peer (loaded at run time, never linked)", () => {
  it('computes a·bᵀ when libopenblas is installed, else says why not', () => {
    const m = 7,
      n = 5,
      k = 33;
    const a = randomF32(m * k, 90),
      b = randomF32(n * k, 91),
      c = new Float32Array(m * n).fill(NaN);
    const r = native()._openblasSgemm({ m, n, k, a, b, c, threads: 1 });
    if (typeof r === 'string') {
      console.log(`test/11-isa: OpenBLAS peer not checked: ${r}`);
      expect(r).toMatch(/libopenblas/);
      return;
    }
    const ref = new Float64Array(m * n);
    for (let i = 0; i < m; i++) for (let j = 0; j < n; j++) for (let p = 0; p < k; p++) ref[i * n + j] += a[i * k + p] * b[j * k + p];
    expect(relErr(c, ref)).toBeLessThan(1e-5);
  });
});
