#!/usr/bin/env node
// Builds the native addon at install time.
//
//   node scripts/build-native.mjs [--force]
//
// 1. Unless --force: when a prebuild in prebuilds/ loads on this machine, use it and stop.
// 2. LOWRANK_CUDA=auto (default) | 1 | 0. With auto, when nvcc and cmake are found the addon is
//    built with the CUDA backend through CMakeLists.txt + cmake-js; if that build fails, a
//    CPU-only build follows with a warning. With 1, a failed CUDA build is an error. With 0,
//    or when nvcc is not found, the CPU-only build runs (binding.gyp + node-gyp).
// 3. Writes build/lowrank-build.json describing what was built.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { fail, findNodeGyp, log, nodeHeadersEnv, root, run, which } from './toolchain.mjs';

const require = createRequire(import.meta.url);
const force = process.argv.includes('--force');
const mode = (process.env.LOWRANK_CUDA ?? 'auto').toLowerCase();
const jobs = String(Math.max(1, os.availableParallelism?.() ?? os.cpus().length));

function findNvcc() {
  if (process.env.CUDACXX && existsSync(process.env.CUDACXX)) return process.env.CUDACXX;
  const onPath = which('nvcc');
  if (onPath) return onPath;
  for (const base of [process.env.CUDA_PATH, process.env.CUDA_HOME, '/usr/local/cuda']) {
    if (base && existsSync(path.join(base, 'bin', 'nvcc'))) return path.join(base, 'bin', 'nvcc');
  }
  return null;
}

function prebuildLoads() {
  if (!existsSync(path.join(root, 'prebuilds'))) return false;
  const probe = `require(${JSON.stringify(require.resolve('node-gyp-build'))})(${JSON.stringify(root)}).backends()`;
  const r = spawnSync(process.execPath, ['-e', probe], {
    cwd: root,
    env: { ...process.env, PREBUILDS_ONLY: '1' },
    stdio: 'ignore',
  });
  return r.status === 0;
}

function buildCpu() {
  const gyp = findNodeGyp();
  if (!gyp) fail('node-gyp was not found (it ships with npm); install it with `npm i -g node-gyp`');
  return run(process.execPath, [gyp, 'rebuild', '--jobs', jobs], { env: nodeHeadersEnv() });
}

function buildCuda(nvcc) {
  const cmakeJs = require.resolve('cmake-js/bin/cmake-js');
  return run(process.execPath, [cmakeJs, 'compile', '--parallel', jobs, '--CDLOWRANK_CUDA=ON', `--CDCMAKE_CUDA_COMPILER=${nvcc}`]);
}

function record(info) {
  mkdirSync(path.join(root, 'build'), { recursive: true });
  writeFileSync(path.join(root, 'build', 'lowrank-build.json'), `${JSON.stringify(info, null, 2)}\n`);
}

if (!['auto', '0', '1'].includes(mode)) fail(`Expected auto, 0 or 1 for LOWRANK_CUDA but received '${mode}'`);

if (!force && prebuildLoads()) {
  log('a prebuild in prebuilds/ loads on this machine; nothing to compile');
  process.exit(0);
}

rmSync(path.join(root, 'build'), { recursive: true, force: true });
const nvcc = mode === '0' ? null : findNvcc();
const cmake = which('cmake');
let cuda = false;
let reason = '';
if (mode === '0') {
  reason = 'LOWRANK_CUDA=0';
} else if (!nvcc) {
  reason = 'nvcc not found (looked at CUDACXX, PATH, CUDA_PATH, CUDA_HOME, /usr/local/cuda)';
} else if (!cmake) {
  reason = 'nvcc found but cmake is not on PATH (the CUDA build goes through CMake)';
} else {
  log(`building with the CUDA backend (nvcc: ${nvcc})`);
  cuda = buildCuda(nvcc);
  if (!cuda) reason = 'the CUDA build failed (see the compiler output above)';
}
if (!cuda) {
  if (mode === '1') fail(`LOWRANK_CUDA=1 but the CUDA backend could not be built: ${reason}`);
  if (nvcc) log(`WARNING: building without CUDA: ${reason}`);
  else log(`building for the CPU only: ${reason}`);
  rmSync(path.join(root, 'build'), { recursive: true, force: true });
  if (!buildCpu()) fail('the native build failed; a C++17 compiler, make and python3 are needed');
}
record({ cuda, reason: cuda ? undefined : reason, nvcc, mode, builtAt: new Date().toISOString() });
log(`built build/Release/lowrank.node (CUDA backend: ${cuda ? 'compiled in' : 'not compiled'})`);
