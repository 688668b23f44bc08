#!/usr/bin/env node
// npm run prebuild: a CPU-only prebuild with prebuildify (--strip) into
// prebuilds/<platform>-<arch>/, which node-gyp-build loads when no local build exists. It is
// tagged with this Node's ABI, not as Node-API only: native/addon/marshal.cc uses V8 for the
// backing stores of typed arrays.
// It builds in a temporary copy of the sources so the local build/ (possibly with CUDA) is
// left alone.
import { cpSync, mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fail, findNodeGyp, log, nodeHeadersEnv, root, run } from './toolchain.mjs';

const gyp = findNodeGyp();
if (!gyp) fail('node-gyp was not found (it ships with npm); install it with `npm i -g node-gyp`');
const work = mkdtempSync(path.join(os.tmpdir(), 'lowrank-prebuild-'));
try {
  for (const entry of ['package.json', 'binding.gyp', 'native'])
    cpSync(path.join(root, entry), path.join(work, entry), { recursive: true });
  symlinkSync(path.join(root, 'node_modules'), path.join(work, 'node_modules'), 'dir');
  const ok = run(
    process.execPath,
    [path.join(root, 'node_modules', 'prebuildify', 'bin.js'), '--strip', '--target', `node@${process.versions.node}`],
    { cwd: work, env: { ...nodeHeadersEnv(), PREBUILD_NODE_GYP: gyp } },
  );
  if (!ok) fail('prebuildify failed (see the output above)');
  rmSync(path.join(root, 'prebuilds'), { recursive: true, force: true });
  cpSync(path.join(work, 'prebuilds'), path.join(root, 'prebuilds'), { recursive: true });
  log(`prebuilds/ written: ${path.join('prebuilds', `${process.platform}-${process.arch}`)}`);
} finally {
  rmSync(work, { recursive: true, force: true });
}
