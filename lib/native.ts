// The one typed description of what lowrank.node exports, and its loader. Nothing outside
// lib/ should call these directly: the public functions validate first.
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

type F32 = Float32Array;
type Seed = bigint;

declare const deviceBrand: unique symbol;

/**
 * A block of device memory from cudaAlloc: an opaque External, freed by cudaFree or the
 * collector. Branded, so that a host array (or any other object) cannot stand in for one.
 */
export type DeviceMemory = object & { readonly [deviceBrand]: 'cuda' };
/** Host memory of a tensor: float32 values, bfloat16 / float16 bits, or int32 values. */
export type HostMemory = F32 | Uint16Array | Int32Array;
/** Where a tensor's elements live. */
export type Memory = HostMemory | DeviceMemory;

/** A tensor at the native boundary: its memory and its dtype code (lib/dtype.ts). */
export interface NativeTensor<M extends Memory = Memory> {
  data: M;
  dtype: number;
}

/** Host memory a device copy reads or writes: any typed array, by its bytes. */
export type NativeHostBytes = Float32Array | Uint16Array | Uint8Array | Int8Array | Int16Array | Uint32Array | Int32Array | Float64Array;

export interface NativeCudaDevice {
  index: number;
  name: string;
  computeCapability: string;
  memoryBytes: number;
  multiprocessors: number;
}

export interface NativeBackends {
  cpu: {
    isa: 'avx512' | 'avx2' | 'scalar';
    threads: number;
    /** The data caches the CPU reports, in bytes (L1d and L2 per core, L3 in all), and where they were read. */
    caches: { l1d: number; l2: number; l3: number; source: 'sysfs' | 'sysconf' | 'default' };
    /**
     * The packed product's blocking for the current ISA's micro-kernel (mr x nr): kc steps of the
     * inner dimension per block, mc rows of A per block, nc columns of B per panel; `rule` says
     * whether it is a measured choice for these caches, derived from them, or set by LOWRANK_KC /
     * LOWRANK_MC / LOWRANK_NC.
     */
    blocking: { mr: number; nr: number; kc: number; mc: number; nc: number; rule: 'tuned' | 'derived' | 'env' };
  };
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

type Dropout = { p: number; seed: Seed };

/**
 * Every op's arguments with its tensors in memory M (the fields of native/core/ops/*.h, by
 * their JS names). One call's tensors are all host or all device memory.
 */
export interface OpArgs<M extends Memory> {
  loraForward: NativeLoraDims & Dropout & { x: T<M>; W: T<M>; bias: T<M> | null; A: T<M>; B: T<M>; y: T<M>; xa: T<M>; scale: number };
  loraBackward: NativeLoraDims &
    Dropout & { dy: T<M>; x: T<M> | null; W: T<M>; A: T<M>; B: T<M>; xa: T<M>; dx: T<M> | null; dA: T<M> | null; dB: T<M>; scale: number };
  loraFaProjectGrad: { in: number; out: number; r: number; A: T<M>; dB: T<M>; scale: number };
  loraMerge: { in: number; out: number; r: number; W: T<M>; A: T<M>; B: T<M>; scale: number; safe: boolean };
  veraForward: NativeVeraDims &
    Dropout & { x: T<M>; W: T<M>; bias: T<M> | null; A: T<M>; B: T<M>; lambdaD: T<M>; lambdaB: T<M>; y: T<M>; u: T<M> };
  veraBackward: NativeVeraDims &
    Dropout & {
      dy: T<M>;
      W: T<M>;
      A: T<M>;
      B: T<M>;
      lambdaD: T<M>;
      lambdaB: T<M>;
      u: T<M>;
      dx: T<M> | null;
      dLambdaD: T<M>;
      dLambdaB: T<M>;
    };
  veraMerge: Omit<NativeVeraDims, 't'> & { W: T<M>; A: T<M>; B: T<M>; lambdaD: T<M>; lambdaB: T<M>; sign: 1 | -1; safe: boolean };
  /** CPU only. */
  veraProjections: { r: number; maxIn: number; maxOut: number; seed: Seed; A: T<M>; B: T<M> };
  deltaLoraUpdate: { out: number; in: number; r: number; W: T<M>; A0: T<M>; B0: T<M>; A1: T<M>; B1: T<M>; lambda: number; scale: number };
  /** One fused AdamW step: tensor i belongs to group[i]; the number arrays after it hold one entry per group. */
  adamwStep: {
    params: T<M>[];
    grads: T<M>[];
    m: T<M>[];
    v: T<M>[];
    group: number[];
    lr: number[];
    beta1: number[];
    beta2: number[];
    eps: number[];
    weightDecay: number[];
    step: number[];
  };
  linearForward: { t: number; in: number; out: number; x: T<M>; W: T<M>; bias: T<M> | null; y: T<M> };
  linearBackward: { t: number; in: number; out: number; dy: T<M>; x: T<M>; W: T<M>; dx: T<M> | null; dW: T<M> | null; db: T<M> | null };
  /** dst = src in dst's dtype (same element count). */
  convert: { src: T<M>; dst: T<M> };
  fill: { dst: T<M>; value: number };
  /** float32 dst += src. */
  addInto: { dst: T<M>; src: T<M> };
  /** float32 y = f(x); y may alias x. */
  reluForward: { x: T<M>; y: T<M> };
  /** float32 dx = dy ⊙ f'(x); dx may alias dy. */
  reluBackward: { x: T<M>; dy: T<M>; dx: T<M> };
  geluForward: { x: T<M>; y: T<M> };
  geluBackward: { x: T<M>; dy: T<M>; dx: T<M> };
  tanhForward: { x: T<M>; y: T<M> };
  tanhBackward: { x: T<M>; dy: T<M>; dx: T<M> };
  /** float32 out = a + alpha·b; out may alias a or b. */
  add: { a: T<M>; b: T<M>; out: T<M>; alpha: number };
  /** float32 y = alpha·x; y may alias x. */
  scale: { x: T<M>; y: T<M>; alpha: number };
  /** logits [t, c] float32, labels [t] int32 in [0, c), loss [1]; dlogits [t, c] when wanted. */
  softmaxCrossEntropy: { t: number; c: number; logits: T<M>; labels: T<M>; loss: T<M>; dlogits: T<M> | null };
  /** q [n, d], p [rows, d] (rows >= n) float32, loss [1]; dq [n, d], dp [rows, d] when wanted. */
  infoNce: {
    n: number;
    d: number;
    rows: number;
    q: T<M>;
    p: T<M>;
    scale: number;
    symmetric: boolean;
    normalize: boolean;
    loss: T<M>;
    dq: T<M> | null;
    dp: T<M> | null;
  };
  /**
   * scores [rows, cols] float32, 1 <= k <= cols: each row's k largest scores, best first (ties by
   * the lower column, NaN last): indices [rows, k] int32, values [rows, k] float32.
   */
  topk: { rows: number; cols: number; k: number; scores: T<M>; indices: T<M>; values: T<M> };
  /** CPU only. */
  fillRandom: { out: T<M>; seed: Seed; normal: boolean; a: number; b: number };
}

type T<M extends Memory> = NativeTensor<M>;

/** The names of the ops (one native export each, native/core/ops.def). */
export type OpName = keyof OpArgs<Memory>;

/**
 * An op's native entry point: its arguments with every tensor in one kind of memory (all host
 * arrays, of whatever class each dtype needs, or all device blocks); `async` returns a Promise
 * (CPU: the work runs off the event loop; CUDA: queued, already resolved).
 */
export interface Op<K extends OpName> {
  (args: OpArgs<HostMemory>[K], async?: false): void;
  (args: OpArgs<HostMemory>[K], async: true): Promise<void>;
  (args: OpArgs<DeviceMemory>[K], async?: false): void;
  (args: OpArgs<DeviceMemory>[K], async: true): Promise<void>;
}

export type Ops = { [K in OpName]: Op<K> };

type Call<A> = {
  (args: A, async?: false): void;
  (args: A, async: true): Promise<void>;
};

export interface Native extends Ops {
  backends(): NativeBackends;
  setThreads(n: number): number;
  _setIsa(name: '' | 'avx512' | 'avx2' | 'scalar'): string;
  /** Bench peer: c[m, n] = a[m, k] · b[n, k]ᵀ by OpenBLAS's cblas_sgemm (loaded at run time), or why it is missing. */
  _openblasSgemm(args: {
    m: number;
    n: number;
    k: number;
    a: Float32Array;
    b: Float32Array;
    c: Float32Array;
    threads: number;
  }): string | undefined;
  _philox(args: { counter: Uint32Array; key: Uint32Array; out: Uint32Array }): void;
  _dropoutMask(args: { out: Uint8Array; offset: number; p: number; seed: Seed }): void;
  _gemm(args: {
    m: number;
    n: number;
    terms: NativeGemmTerm[];
    c: F32;
    ldc: number;
    beta: number;
    bias: F32 | null;
    reference: boolean;
  }): void;
  probePeak(seconds: number): { gflops: number; isa: 'avx512' | 'avx2' | 'scalar' };
  probeBandwidth(bytes: number, rounds: number): number;
  _cudaDropoutMask(args: { out: Uint8Array; offset: number; p: number; seed: Seed }): void;
  _cudaLoraMergeHost(args: { W: F32; A: F32; B: F32; out: number; in: number; r: number; scale: number }): void;
  /** Device memory of `bytes` bytes from the caching allocator. */
  cudaAlloc(args: { bytes: number }): DeviceMemory;
  /** Returns the block to the cache (stream-ordered); idempotent. */
  cudaFree(args: { block: DeviceMemory }): void;
  /** Copies `src`'s bytes into the block at byte `offset` (default 0); returns once `src` may be reused. */
  cudaUpload(args: { block: DeviceMemory; src: NativeHostBytes; offset?: number }): void;
  /** Fills `dst` with the block's bytes from byte `offset` (default 0), after every queued op. */
  cudaDownload: Call<{ block: DeviceMemory; dst: NativeHostBytes; offset?: number }>;
  /** Device to device, the first `bytes` bytes, stream-ordered. */
  cudaCopy(args: { dst: DeviceMemory; src: DeviceMemory; bytes: number }): void;
  cudaSynchronize(): void;
  /** The caching allocator's bytes: handed out, held for reuse, and the most ever handed out. */
  cudaMemory(): { allocated: number; cached: number; peak: number };
  cudaEmptyCache(): void;
  /** Allows single-TF32 float32 products; returns the previous setting. */
  cudaSetTf32(allow: boolean): boolean;
  /** Test hook: a tagged device block of `bytes` bytes with no memory behind it; every op refuses to run on it. */
  _testDeviceBlock(args: { bytes: number }): DeviceMemory;
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
    tried.push(
      `node-gyp-build in ${packageRoot} (prebuilds/${process.platform}-${process.arch}/, build/Release/, build/Debug/): ${errorText(e)}`,
    );
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
