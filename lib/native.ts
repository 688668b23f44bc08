// The one typed description of what lowrank.node exports, and its loader. Nothing outside
// lib/ should call these directly: the public functions validate first.
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

type F32 = Float32Array;
type Seed = bigint;

export interface NativeLoraDims {
  t: number;
  in: number;
  out: number;
  r: number;
}

/** VeRA: the layer's dimensions and the shared projections' (A [r, maxIn], B [maxOut, r]). */
export interface NativeVeraDims extends NativeLoraDims {
  maxIn: number;
  maxOut: number;
}

/** A weight: float32 values (wDtype 0) or bfloat16 bits (wDtype 1). */
export interface NativeWeight {
  W: F32 | Uint16Array;
  wDtype: number;
}

export interface NativeCudaDevice {
  index: number;
  name: string;
  computeCapability: string;
  memoryBytes: number;
  multiprocessors: number;
}

export interface NativeBackends {
  cpu: { isa: 'avx512' | 'avx2' | 'scalar'; threads: number };
  cuda: {
    compiled: boolean;
    available: boolean;
    reason?: string;
    runtimeVersion: number;
    driverVersion: number;
    devices: NativeCudaDevice[];
  };
}

export interface NativeGemmTerm {
  a: F32;
  lda: number;
  ta: boolean;
  b: F32;
  ldb: number;
  tb: boolean;
  k: number;
  alpha: number;
  aDropout?: { p: number; seed: Seed };
}

/** A block of device memory from cudaAlloc: an opaque External, freed by cudaFree or the collector. */
export type NativeDeviceBlock = object;

/** Host memory a device copy reads or writes: any typed array, by its bytes. */
export type NativeHostBytes = Float32Array | Uint16Array | Uint8Array | Int8Array | Int16Array | Uint32Array | Int32Array | Float64Array;

type Block = NativeDeviceBlock;

/** A weight on the device: its block and dtype code (0 float32, 1 bfloat16, 2 float16). */
export interface NativeDeviceWeight {
  W: Block;
  wDtype: number;
}

/** Async-capable calls take `async = true` and then return a Promise. */
/** AdamW's arguments, with tensors as T (host arrays or device blocks). */
type AdamwStepArgs<T> = {
  params: T[];
  grads: T[];
  m: T[];
  v: T[];
  group: number[];
  lr: number[];
  beta1: number[];
  beta2: number[];
  eps: number[];
  weightDecay: number[];
  step: number[];
};

type Call<A> = {
  (args: A, async?: false): void;
  (args: A, async: true): Promise<void>;
};

export interface Native {
  backends(): NativeBackends;
  setThreads(n: number): number;
  setIsa(name: '' | 'avx512' | 'avx2' | 'scalar'): string;
  convert: Call<{ src: F32 | Uint16Array; srcDtype: number; dst: F32 | Uint16Array; dstDtype: number }>;
  fillRandom: Call<{ out: F32; seed: Seed; normal: boolean; a: number; b: number }>;
  philox(args: { counter: Uint32Array; key: Uint32Array; out: Uint32Array }): void;
  dropoutMask(args: { out: Uint8Array; offset: number; p: number; seed: Seed }): void;
  gemm(args: {
    m: number;
    n: number;
    terms: NativeGemmTerm[];
    c: F32;
    ldc: number;
    beta: number;
    bias: F32 | null;
    reference: boolean;
  }): void;
  loraForward: Call<
    NativeLoraDims & NativeWeight & { x: F32; bias: F32 | null; A: F32; B: F32; y: F32; xa: F32; scale: number; p: number; seed: Seed }
  >;
  loraBackward: Call<
    NativeLoraDims &
      NativeWeight & {
      dy: F32;
      x: F32 | null;
      A: F32;
      B: F32;
      xa: F32;
      dx: F32 | null;
      dA: F32 | null;
      dB: F32;
      scale: number;
      p: number;
      seed: Seed;
    }
  >;
  loraMerge: Call<NativeWeight & { A: F32; B: F32; out: number; in: number; r: number; scale: number; safe: boolean }>;
  deltaLoraUpdate: Call<NativeWeight & { A0: F32; B0: F32; A1: F32; B1: F32; out: number; in: number; r: number; lambda: number; scale: number }>;
  /** One fused AdamW step: tensor i belongs to group[i]; the other number arrays hold one entry per group. */
  adamwStep: Call<AdamwStepArgs<F32>>;
  veraProjections: Call<{ A: F32; B: F32; r: number; maxIn: number; maxOut: number; seed: Seed }>;
  veraForward: Call<
    NativeVeraDims &
      NativeWeight & { x: F32; bias: F32 | null; A: F32; B: F32; lambdaD: F32; lambdaB: F32; y: F32; u: F32; p: number; seed: Seed }
  >;
  veraBackward: Call<
    NativeVeraDims &
      NativeWeight & {
      dy: F32;
      A: F32;
      B: F32;
      lambdaD: F32;
      lambdaB: F32;
      u: F32;
      dx: F32 | null;
      dLambdaD: F32;
      dLambdaB: F32;
      p: number;
      seed: Seed;
    }
  >;
  veraMerge: Call<
    NativeWeight & {
      A: F32;
      B: F32;
      lambdaD: F32;
      lambdaB: F32;
      out: number;
      in: number;
      r: number;
      maxIn: number;
      maxOut: number;
      sign: 1 | -1;
      safe: boolean;
    }
  >;
  probePeak(seconds: number): { gflops: number; isa: 'avx512' | 'avx2' | 'scalar' };
  probeBandwidth(bytes: number, rounds: number): number;
  loraFaProjectGrad: Call<{ A: F32; dB: F32; out: number; in: number; r: number; scale: number }>;
  linearForward: Call<NativeWeight & { x: F32; bias: F32 | null; y: F32; t: number; in: number; out: number }>;
  linearBackward: Call<
    NativeWeight & { dy: F32; x: F32; dx: F32 | null; dW: F32 | null; db: F32 | null; t: number; in: number; out: number }
  >;
  cudaDropoutMask(args: { out: Uint8Array; offset: number; p: number; seed: Seed }): void;
  cudaLoraMergeHost(args: { W: F32; A: F32; B: F32; out: number; in: number; r: number; scale: number }): void;
  /** Device memory of `bytes` bytes from the caching allocator. */
  cudaAlloc(args: { bytes: number }): NativeDeviceBlock;
  /** Returns the block to the cache (stream-ordered); idempotent. */
  cudaFree(args: { block: NativeDeviceBlock }): void;
  /** Copies `src`'s bytes into the block at byte `offset` (default 0); returns once `src` may be reused. */
  cudaUpload(args: { block: NativeDeviceBlock; src: NativeHostBytes; offset?: number }): void;
  /** Fills `dst` with the block's bytes from byte `offset` (default 0), after every queued op. */
  cudaDownload: Call<{ block: NativeDeviceBlock; dst: NativeHostBytes; offset?: number }>;
  /** Device to device, the first `bytes` bytes, stream-ordered. */
  cudaCopy(args: { dst: NativeDeviceBlock; src: NativeDeviceBlock; bytes: number }): void;
  /** n elements from srcDtype to dstDtype (0 float32, 1 bfloat16, 2 float16), round-to-nearest-even. */
  cudaFill(args: { block: NativeDeviceBlock; dtype: number; value: number; n: number }): void;
  cudaAddInto(args: { dst: NativeDeviceBlock; src: NativeDeviceBlock; n: number }): void;
  cudaConvert(args: { src: NativeDeviceBlock; srcDtype: number; dst: NativeDeviceBlock; dstDtype: number; n: number }): void;
  cudaSynchronize(): void;
  /** The caching allocator's bytes: handed out, held for reuse, and the most ever handed out. */
  cudaMemory(): { allocated: number; cached: number; peak: number };
  cudaEmptyCache(): void;
  /** Allows single-TF32 float32 products; returns the previous setting. */
  cudaSetTf32(allow: boolean): boolean;

  // The ops on CUDA tensors: the CPU entry points' dimensions and scalars, device blocks in
  // place of typed arrays, and a dtype code (0 float32, 1 bfloat16, 2 float16) beside each
  // activation or weight (x, W, bias, y, dy, dx). Adapter tensors and gradients are float32.
  // Each call queues its work on the backend's stream and returns (a safe merge waits).
  cudaLoraForward(
    args: NativeLoraDims &
      NativeDeviceWeight & {
      x: Block;
      xDtype: number;
      bias: Block | null;
      biasDtype: number;
      A: Block;
      B: Block;
      y: Block;
      yDtype: number;
      xa: Block;
      scale: number;
      p: number;
      seed: Seed;
    },
  ): void;
  cudaLoraBackward(
    args: NativeLoraDims &
      NativeDeviceWeight & {
      dy: Block;
      dyDtype: number;
      x: Block | null;
      xDtype: number;
      A: Block;
      B: Block;
      xa: Block;
      dx: Block | null;
      dxDtype: number;
      dA: Block | null;
      dB: Block;
      scale: number;
      p: number;
      seed: Seed;
    },
  ): void;
  cudaLoraFaProjectGrad(args: { A: Block; dB: Block; out: number; in: number; r: number; scale: number }): void;
  cudaLoraMerge(args: NativeDeviceWeight & { A: Block; B: Block; out: number; in: number; r: number; scale: number; safe: boolean }): void;
  cudaVeraForward(
    args: NativeVeraDims &
      NativeDeviceWeight & {
      x: Block;
      xDtype: number;
      bias: Block | null;
      biasDtype: number;
      A: Block;
      B: Block;
      lambdaD: Block;
      lambdaB: Block;
      y: Block;
      yDtype: number;
      u: Block;
      p: number;
      seed: Seed;
    },
  ): void;
  cudaVeraBackward(
    args: NativeVeraDims &
      NativeDeviceWeight & {
      dy: Block;
      dyDtype: number;
      A: Block;
      B: Block;
      lambdaD: Block;
      lambdaB: Block;
      u: Block;
      dx: Block | null;
      dxDtype: number;
      dLambdaD: Block;
      dLambdaB: Block;
      p: number;
      seed: Seed;
    },
  ): void;
  cudaVeraMerge(
    args: NativeDeviceWeight & {
      A: Block;
      B: Block;
      lambdaD: Block;
      lambdaB: Block;
      out: number;
      in: number;
      r: number;
      maxIn: number;
      maxOut: number;
      sign: 1 | -1;
      safe: boolean;
    },
  ): void;
  cudaDeltaLoraUpdate(
    args: NativeDeviceWeight & { A0: Block; B0: Block; A1: Block; B1: Block; out: number; in: number; r: number; lambda: number; scale: number },
  ): void;
  /** adamwStep on device blocks; n[i] is the element count of tensor i. */
  cudaAdamwStep(args: AdamwStepArgs<Block> & { n: number[] }): void;
  cudaLinearForward(
    args: NativeDeviceWeight & { x: Block; xDtype: number; bias: Block | null; biasDtype: number; y: Block; yDtype: number; t: number; in: number; out: number },
  ): void;
  cudaLinearBackward(
    args: NativeDeviceWeight & {
      dy: Block;
      dyDtype: number;
      x: Block;
      xDtype: number;
      dx: Block | null;
      dxDtype: number;
      dW: Block | null;
      db: Block | null;
      t: number;
      in: number;
      out: number;
    },
  ): void;
}

/** The package root (where package.json, build/ and prebuilds/ live). */
export const packageRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

let cached: Native | undefined;

function errorText(e: unknown): string {
  return e instanceof Error ? e.message.split('\n')[0] : String(e);
}

function load(): Native {
  const require = createRequire(import.meta.url);
  const tried: string[] = [];
  const explicit = process.env.LOWRANK_NATIVE;
  if (explicit) {
    try {
      return require(path.resolve(explicit)) as Native;
    } catch (e) {
      tried.push(`LOWRANK_NATIVE=${explicit}: ${errorText(e)}`);
    }
  }
  try {
    const nodeGypBuild = require('node-gyp-build') as (dir: string) => unknown;
    return nodeGypBuild(packageRoot) as Native;
  } catch (e) {
    tried.push(`node-gyp-build in ${packageRoot} (prebuilds/${process.platform}-${process.arch}/, build/Release/, build/Debug/): ${errorText(e)}`);
  }
  // node-gyp-build says only "not found" when a file exists but fails to load; load the local
  // builds directly so the dynamic loader's own reason shows.
  for (const rel of ['build/Release/lowrank.node', 'build/Debug/lowrank.node']) {
    const file = path.join(packageRoot, rel);
    if (!existsSync(file)) {
      tried.push(`${rel}: no such file`);
      continue;
    }
    try {
      return require(file) as Native;
    } catch (e) {
      tried.push(`${rel}: ${errorText(e)}`);
    }
  }
  throw new Error(
    [
      'lowrank: the native module could not be loaded. Tried:',
      ...tried.map((t) => `  - ${t}`),
      'To fix: run `npm rebuild lowrank` (or `npm run build` in a clone); the build needs a C++17',
      'compiler, make and python3, and nvcc + cmake for the optional CUDA backend.',
      'Set LOWRANK_NATIVE=/path/to/lowrank.node to load a specific binary.',
    ].join('\n'),
  );
}

/** The loaded native module (loaded on first use). */
export function native(): Native {
  cached ??= load();
  return cached;
}

/**
 * Awaits a native Promise. A rejection is rethrown as the same error class carrying this
 * call's JavaScript stack (errors cross the thread boundary as text only).
 */
export async function settle(pending: Promise<void>): Promise<void> {
  const site = new Error(); // captured synchronously, at the API call
  try {
    await pending;
  } catch (e) {
    if (!(e instanceof Error)) throw e;
    const Ctor = e instanceof RangeError ? RangeError : e instanceof TypeError ? TypeError : Error;
    const err = new Ctor(e.message);
    err.stack = `${Ctor.name}: ${e.message}\n${(site.stack ?? '').split('\n').slice(2).join('\n')}`;
    throw err;
  }
}
