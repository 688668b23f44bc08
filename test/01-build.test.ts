// What was built and what this machine offers: backends(), the build record, prebuilds, and
// the loader's failure message.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { transformWithOxc } from 'vite';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { backends, type Backends } from '../lib/index.js';
import { native, packageRoot } from '../lib/native.js';

/** The micro-kernel sets lib/native.ts declares for backends().cpu.isa. */
const ISAS = ['avx512', 'avx2', 'scalar'];

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

function findNvcc(): string | null {
  for (const dir of (process.env.PATH ?? '').split(path.delimiter)) {
    if (dir && existsSync(path.join(dir, 'nvcc'))) return path.join(dir, 'nvcc');
  }
  return existsSync('/usr/local/cuda/bin/nvcc') ? '/usr/local/cuda/bin/nvcc' : null;
}

interface BuildRecord {
  cuda: boolean;
  reason?: string;
  nvcc: string | null;
  mode: string;
}

const recordPath = path.join(root, 'build', 'lowrank-build.json');
const record: BuildRecord | null = existsSync(recordPath) ? (JSON.parse(readFileSync(recordPath, 'utf8')) as BuildRecord) : null;

describe('backends()', () => {
  it('describes the CPU backend', () => {
    const b = backends();
    expect(ISAS).toContain(b.cpu.isa);
    expect(Number.isInteger(b.cpu.threads)).toBe(true);
    expect(b.cpu.threads).toBeGreaterThanOrEqual(1);
  });

  it('describes the CUDA backend, with a reason when it is unavailable', () => {
    const { cuda } = backends();
    expect(typeof cuda.compiled).toBe('boolean');
    expect(typeof cuda.available).toBe('boolean');
    expect(Array.isArray(cuda.devices)).toBe(true);
    if (!cuda.compiled) expect(cuda.available).toBe(false);
    if (cuda.available) {
      expect(cuda.reason).toBeUndefined();
      expect(cuda.devices.length).toBeGreaterThanOrEqual(1);
      for (const d of cuda.devices) {
        expect(typeof d.name).toBe('string');
        expect(d.computeCapability).toMatch(/^\d+\.\d+$/);
        expect(d.memoryBytes).toBeGreaterThan(0);
      }
    } else {
      expect(typeof cuda.reason).toBe('string');
      expect(cuda.reason!.length).toBeGreaterThan(0);
      expect(cuda.devices).toEqual([]);
    }
  });

  // This machine has no GPU: a build with or without CUDA must say so, not crash.
  const hasGpu = existsSync('/dev/nvidia0');
  it.skipIf(hasGpu)(`reports CUDA unavailable on a machine without a GPU${hasGpu ? ' (skipped: /dev/nvidia0 exists)' : ''}`, () => {
    const { cuda } = backends();
    expect(cuda.available).toBe(false);
    expect(cuda.reason).toMatch(/\S/);
    expect(cuda.devices).toEqual([]);
  });

  it('is a fresh object on every call (callers may not mutate the module state)', () => {
    const a = backends();
    (a.cpu as { threads: number }).threads = -5;
    expect(backends().cpu.threads).toBeGreaterThanOrEqual(1);
  });
});

describe('the build', () => {
  const nvcc = findNvcc();
  const skipReason =
    nvcc === null
      ? 'nvcc not found on PATH or at /usr/local/cuda/bin/nvcc'
      : process.env.LOWRANK_CUDA === '0'
        ? 'LOWRANK_CUDA=0 in the environment'
        : record?.mode === '0'
          ? 'build/lowrank-build.json says this build ran with LOWRANK_CUDA=0 (a deliberate CPU-only build)'
          : null;

  it.skipIf(skipReason !== null)(
    `compiled the CUDA backend in because nvcc is present${skipReason ? ` (skipped: ${skipReason})` : ''}`,
    () => {
      const { cuda } = backends();
      expect(cuda.compiled, `nvcc at ${nvcc} but the loaded build has no CUDA backend; build record: ${JSON.stringify(record)}`).toBe(true);
    },
  );

  it.skipIf(record === null)(`matches build/lowrank-build.json${record === null ? ' (skipped: no build/lowrank-build.json)' : ''}`, () => {
    expect(record!.cuda).toBe(backends().cuda.compiled);
    if (!record!.cuda) expect(record!.reason).toMatch(/\S/);
  });

  it('loads the native module with every documented export', () => {
    const n = native();
    for (const name of [
      'backends',
      'setThreads',
      'convert',
      'fillRandom',
      '_philox',
      '_dropoutMask',
      '_gemm',
      'loraForward',
      'loraBackward',
      'loraMerge',
      '_cudaDropoutMask',
      '_cudaLoraMergeHost',
    ] as const) {
      expect(typeof n[name], name).toBe('function');
    }
    expect(packageRoot).toBe(root);
  });
});

describe('prebuilds', () => {
  const dir = path.join(root, 'prebuilds', `${process.platform}-${process.arch}`);
  const files = existsSync(dir) ? readdirSync(dir).filter((f) => f.endsWith('.node')) : [];

  it.skipIf(files.length === 0)(
    `the prebuild loads on its own and is CPU-only${files.length === 0 ? ' (skipped: no prebuilds/ (run npm run prebuild))' : ''}`,
    () => {
      const require = createRequire(import.meta.url);
      const probe = `const b = require(${JSON.stringify(require.resolve('node-gyp-build'))})(${JSON.stringify(root)}).backends(); console.log(JSON.stringify(b));`;
      const r = spawnSync(process.execPath, ['-e', probe], {
        cwd: root,
        env: { ...process.env, PREBUILDS_ONLY: '1', LOWRANK_NATIVE: '' },
        encoding: 'utf8',
      });
      expect(r.status, r.stderr).toBe(0);
      const b = JSON.parse(r.stdout.trim()) as Backends;
      expect(ISAS).toContain(b.cpu.isa);
      expect(b.cuda.compiled).toBe(false);
      expect(b.cuda.available).toBe(false);
    },
  );
});

// The real lib/native.ts, transpiled (not rewritten) into a directory with no build/ and no
// node_modules, so every way of loading fails and the one message must list them all.
describe('the loader', () => {
  let tmp = '';
  beforeAll(async () => {
    tmp = mkdtempSync(path.join(os.tmpdir(), 'lowrank-loader-'));
    mkdirSync(path.join(tmp, 'lib'));
    writeFileSync(path.join(tmp, 'package.json'), '{"type":"module"}\n');
    const src = readFileSync(path.join(root, 'lib', 'native.ts'), 'utf8');
    const js = await transformWithOxc(src, 'native.ts');
    writeFileSync(path.join(tmp, 'lib', 'native.js'), js.code);
    writeFileSync(path.join(tmp, 'not-a-module.node'), 'this is not an ELF file\n');
  });
  afterAll(() => {
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  });

  function loadIn(env: Record<string, string>): { status: number | null; message: string } {
    const script = `import { native } from ${JSON.stringify(path.join(tmp, 'lib', 'native.js'))};
try { native(); console.log(JSON.stringify('loaded')); process.exit(0); }
catch (e) { console.log(JSON.stringify(e.message)); process.exit(3); }`;
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], {
      cwd: tmp,
      env: { ...process.env, ...env },
      encoding: 'utf8',
    });
    return { status: r.status, message: r.stdout.trim() ? (JSON.parse(r.stdout.trim()) as string) : r.stderr };
  }

  it('fails with one message listing each thing tried and how to fix it', () => {
    const { status, message } = loadIn({ LOWRANK_NATIVE: '/nonexistent/x.node' });
    expect(status).toBe(3);
    const lines = message.split('\n');
    expect(lines[0]).toBe('lowrank: the native module could not be loaded. Tried:');
    expect(lines[1]).toMatch(/^ {2}- LOWRANK_NATIVE=\/nonexistent\/x\.node: Cannot find module '\/nonexistent\/x\.node'/);
    expect(lines[2]).toMatch(new RegExp(`^  - node-gyp-build in ${tmp.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} \\(prebuilds/`));
    expect(lines[3]).toBe('  - build/Release/lowrank.node: no such file');
    expect(lines[4]).toBe('  - build/Debug/lowrank.node: no such file');
    expect(message).toContain('To fix: run `npm rebuild lowrank`');
    expect(message).toContain('Set LOWRANK_NATIVE=/path/to/lowrank.node to load a specific binary.');
  });

  it("shows the dynamic loader's own reason for a file that is not a module", () => {
    const bad = path.join(tmp, 'not-a-module.node');
    const { status, message } = loadIn({ LOWRANK_NATIVE: bad });
    expect(status).toBe(3);
    expect(message).toContain(`  - LOWRANK_NATIVE=${bad}: `);
    expect(message).toMatch(/invalid ELF header|file too short/);
  });

  it('loads the real build through LOWRANK_NATIVE', () => {
    const built = path.join(root, 'build', 'Release', 'lowrank.node');
    if (!existsSync(built)) throw new Error(`${built} is missing: build the addon first`);
    const { status, message } = loadIn({ LOWRANK_NATIVE: built });
    expect(message).toBe('loaded');
    expect(status).toBe(0);
  });
});
