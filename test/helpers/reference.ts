// The test oracle: plain float64 arithmetic and an independent Philox4x32-10, written from
// README.md and the documented definitions (native/core/philox.h's comments), never from the
// native kernels. Everything here is deliberately the slowest obvious version.

// ---- inputs --------------------------------------------------------------------------------

/** mulberry32: a small seeded PRNG so test inputs never depend on lowrank's own generator. */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** n values ~ N(0, std²) (Box-Muller over mulberry32), rounded to float32; never all zeros. */
export function randomF32(n: number, seed: number, std = 1): Float32Array {
  const next = mulberry32(seed);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i += 2) {
    const u1 = (next() * 4294967296 + 0.5) / 4294967296;
    const u2 = next();
    const radius = Math.sqrt(-2 * Math.log(u1)) * std;
    out[i] = radius * Math.cos(2 * Math.PI * u2);
    if (i + 1 < n) out[i + 1] = radius * Math.sin(2 * Math.PI * u2);
  }
  return out;
}

/** n values uniform in [lo, hi), rounded to float32. */
export function uniformF32(n: number, seed: number, lo = -1, hi = 1): Float32Array {
  const next = mulberry32(seed);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = lo + (hi - lo) * next();
  return out;
}

// ---- comparisons ---------------------------------------------------------------------------

type Num = ArrayLike<number>;

/** max|got - ref| / max|ref| (max|got - ref| when ref is all zeros); NaN anywhere gives Infinity. */
export function relErr(got: Num, ref: Num): number {
  if (got.length !== ref.length) throw new Error(`relErr: length ${got.length} vs ${ref.length}`);
  let err = 0;
  let scale = 0;
  for (let i = 0; i < ref.length; i++) {
    const d = Math.abs(got[i] - ref[i]);
    if (Number.isNaN(d)) return Infinity;
    if (d > err) err = d;
    const a = Math.abs(ref[i]);
    if (a > scale) scale = a;
  }
  return scale === 0 ? err : err / scale;
}

export function maxAbs(v: Num): number {
  let m = 0;
  for (let i = 0; i < v.length; i++) m = Math.max(m, Math.abs(v[i]));
  return m;
}

/** True when the two arrays hold the same bytes (so -0 vs 0 and NaN payloads count). */
export function sameBits(a: Float32Array, b: Float32Array): boolean {
  if (a.length !== b.length) return false;
  const ua = new Uint32Array(a.buffer, a.byteOffset, a.length);
  const ub = new Uint32Array(b.buffer, b.byteOffset, b.length);
  for (let i = 0; i < ua.length; i++) if (ua[i] !== ub[i]) return false;
  return true;
}

// ---- float64 matrix products (row-major) ----------------------------------------------------

/** C[m, n] = A[m, k] · B[n, k]ᵀ. */
export function matmulNT(a: Num, b: Num, m: number, n: number, k: number): Float64Array {
  const c = new Float64Array(m * n);
  for (let i = 0; i < m; i++)
    for (let j = 0; j < n; j++) {
      let s = 0;
      for (let p = 0; p < k; p++) s += a[i * k + p] * b[j * k + p];
      c[i * n + j] = s;
    }
  return c;
}

/** C[m, n] = A[m, k] · B[k, n]. */
export function matmulNN(a: Num, b: Num, m: number, n: number, k: number): Float64Array {
  const c = new Float64Array(m * n);
  for (let i = 0; i < m; i++)
    for (let p = 0; p < k; p++) {
      const av = a[i * k + p];
      for (let j = 0; j < n; j++) c[i * n + j] += av * b[p * n + j];
    }
  return c;
}

/** C[m, n] = A[k, m]ᵀ · B[k, n]. */
export function matmulTN(a: Num, b: Num, m: number, n: number, k: number): Float64Array {
  const c = new Float64Array(m * n);
  for (let p = 0; p < k; p++)
    for (let i = 0; i < m; i++) {
      const av = a[p * m + i];
      for (let j = 0; j < n; j++) c[i * n + j] += av * b[p * n + j];
    }
  return c;
}

/** Elementwise v ⊙ mask (mask null: a copy). */
function applyMask(v: Num, mask: Num | null): Float64Array {
  const out = Float64Array.from(v);
  if (mask) for (let i = 0; i < out.length; i++) out[i] *= mask[i];
  return out;
}

// ---- LoRA (README.md, LoRA) -------------------------------------------------------------------

/**
 * y = x Wᵀ + bias + s · (D(x) Aᵀ) Bᵀ and xa = D(x) Aᵀ. `mask` holds D's factor per element of x
 * (0 or 1/(1-p)), or null for no dropout.
 */
export function loraForwardRef(
  x: Num,
  W: Num,
  bias: Num | null,
  A: Num,
  B: Num,
  scale: number,
  mask: Num | null,
  T: number,
  inDim: number,
  out: number,
  r: number,
): { y: Float64Array; xa: Float64Array } {
  const dx = applyMask(x, mask);
  const xa = matmulNT(dx, A, T, r, inDim);
  const base = matmulNT(x, W, T, out, inDim);
  const ad = matmulNT(xa, B, T, out, r);
  const y = new Float64Array(T * out);
  for (let t = 0; t < T; t++)
    for (let o = 0; o < out; o++) y[t * out + o] = base[t * out + o] + (bias ? bias[o] : 0) + scale * ad[t * out + o];
  return { y, xa };
}

/** dB = s·dyᵀ xa; g = s·dy B; dA = gᵀ D(x); dx = dy W + D(g A). */
export function loraBackwardRef(
  dy: Num,
  x: Num,
  W: Num,
  A: Num,
  B: Num,
  scale: number,
  mask: Num | null,
  T: number,
  inDim: number,
  out: number,
  r: number,
): { dx: Float64Array; dA: Float64Array; dB: Float64Array } {
  const Dx = applyMask(x, mask);
  const xa = matmulNT(Dx, A, T, r, inDim);
  const dB = matmulTN(dy, xa, out, r, T).map((v) => v * scale);
  const g = matmulNN(dy, B, T, r, out).map((v) => v * scale);
  const dA = matmulTN(g, Dx, r, inDim, T);
  const base = matmulNN(dy, W, T, inDim, out);
  const gA = applyMask(matmulNN(g, A, T, inDim, r), mask);
  const dx = base.map((v, i) => v + gA[i]);
  return { dx, dA, dB };
}

/** W + s · B A in float64. */
export function mergeRef(W: Num, A: Num, B: Num, scale: number, out: number, inDim: number, r: number): Float64Array {
  const ba = matmulNN(B, A, out, inDim, r);
  return ba.map((v, i) => W[i] + scale * v);
}

// ---- Philox4x32-10 (Salmon et al. 2011), independent of the C++ ----------------------------

const M0 = 0xd2511f53;
const M1 = 0xcd9e8d57;
const W0 = 0x9e3779b9;
const W1 = 0xbb67ae85;

/** High 32 bits of the 64-bit product of two uint32, via 16-bit halves (every partial exact in a double). */
function mulhi32(a: number, b: number): number {
  const al = a & 0xffff;
  const ah = a >>> 16;
  const bl = b & 0xffff;
  const bh = b >>> 16;
  const ll = al * bl;
  const lh = al * bh;
  const hl = ah * bl;
  const hh = ah * bh;
  const mid = (ll >>> 16) + (lh & 0xffff) + (hl & 0xffff); // < 3·2^16
  return (hh + (lh >>> 16) + (hl >>> 16) + Math.floor(mid / 65536)) >>> 0;
}

/** Philox4x32 with 10 rounds: counter (c0..c3), key (k0, k1) -> four uint32 words. */
export function philox4x32(ctr: readonly number[], key: readonly number[]): [number, number, number, number] {
  let [c0, c1, c2, c3] = ctr.map((v) => v >>> 0);
  let [k0, k1] = key.map((v) => v >>> 0);
  for (let round = 0; round < 10; round++) {
    const hi0 = mulhi32(M0, c0);
    const lo0 = Math.imul(M0, c0) >>> 0;
    const hi1 = mulhi32(M1, c2);
    const lo1 = Math.imul(M1, c2) >>> 0;
    [c0, c1, c2, c3] = [(hi1 ^ c1 ^ k0) >>> 0, lo1, (hi0 ^ c3 ^ k1) >>> 0, lo0];
    k0 = (k0 + W0) >>> 0;
    k1 = (k1 + W1) >>> 0;
  }
  return [c0, c1, c2, c3];
}

/** The word of element `index` of stream `seed`: word index & 3 of block (index >> 2 as 64 bits: lo, hi, 0, 0), key (seed lo, seed hi). */
export function philoxWord(seed: bigint, index: number): number {
  const block = Math.floor(index / 4);
  const lo = block % 4294967296;
  const hi = Math.floor(block / 4294967296);
  const key = [Number(seed & 0xffffffffn), Number((seed >> 32n) & 0xffffffffn)];
  return philox4x32([lo, hi, 0, 0], key)[index % 4];
}

/** floor(p · 2^32), capped at 2^32 - 1. */
export function dropoutThreshold(p: number): number {
  return Math.min(Math.floor(p * 4294967296), 4294967295);
}

/** Whether element `index` survives inverted dropout with probability p. */
export function dropoutKeep(seed: bigint, p: number, index: number): boolean {
  if (!(p > 0)) return true;
  return philoxWord(seed, index) >= dropoutThreshold(p);
}

/** The kept-value multiplier, float32(1 / (1 - p)). */
export function dropoutScale(p: number): number {
  return p > 0 ? Math.fround(1 / (1 - p)) : 1;
}

/** The keep mask (1 kept, 0 dropped) of elements offset .. offset + n - 1, by blocks of four words. */
export function dropoutMaskRef(seed: bigint, p: number, offset: number, n: number): Uint8Array {
  const out = new Uint8Array(n);
  if (!(p > 0)) return out.fill(1);
  const threshold = dropoutThreshold(p);
  const key = [Number(seed & 0xffffffffn), Number((seed >> 32n) & 0xffffffffn)];
  let cachedBlock = -1;
  let words: number[] = [];
  for (let i = 0; i < n; i++) {
    const index = offset + i;
    const block = Math.floor(index / 4);
    if (block !== cachedBlock) {
      words = philox4x32([block % 4294967296, Math.floor(block / 4294967296), 0, 0], key);
      cachedBlock = block;
    }
    out[i] = words[index % 4] >= threshold ? 1 : 0;
  }
  return out;
}

/** D's factor per element 0 .. n - 1 (0 dropped, float32(1/(1-p)) kept), for the LoRA references. */
export function dropoutFactors(seed: bigint, p: number, n: number): Float64Array {
  const keep = dropoutMaskRef(seed, p, 0, n);
  const s = dropoutScale(p);
  return Float64Array.from(keep, (k) => (k ? s : 0));
}

// ---- bfloat16 / float16 (round to nearest, ties to even), from the IEEE definitions --------

const f32buf = new Float32Array(1);
const u32buf = new Uint32Array(f32buf.buffer);

export function f32Bits(v: number): number {
  f32buf[0] = v;
  return u32buf[0];
}

export function f32FromBits(u: number): number {
  u32buf[0] = u >>> 0;
  return f32buf[0];
}

/** Rounds a finite |v| to the nearest multiple of `ulp`, ties to an even multiple (exact for the powers of two used). */
function roundToMultiple(v: number, ulp: number): number {
  const q = v / ulp; // exact: ulp is a power of two and v has few enough bits
  const f = Math.floor(q);
  const rem = q - f;
  if (rem > 0.5) return (f + 1) * ulp;
  if (rem < 0.5) return f * ulp;
  return (f % 2 === 0 ? f : f + 1) * ulp;
}

/** The value of the bfloat16 nearest to float32 v (ties to even), as a number. NaN stays NaN. */
export function bf16Value(v: number): number {
  const x = Math.fround(v);
  if (Number.isNaN(x) || !Number.isFinite(x) || x === 0) return x;
  const a = Math.abs(x);
  // bfloat16 keeps 8 significant bits; below 2^-126 its spacing is 2^-133 (like float32's subnormals).
  const e = Math.max(Math.floor(Math.log2(a)), -126);
  let exp = e;
  if (2 ** exp > a) exp -= 1; // log2 rounding guard
  if (2 ** (exp + 1) <= a) exp += 1;
  const ulp = 2 ** (Math.max(exp, -126) - 7);
  const r = roundToMultiple(a, ulp);
  const maxBf16 = (2 - 2 ** -7) * 2 ** 127;
  const out = r > maxBf16 ? Infinity : r;
  return x < 0 ? -out : out;
}

/** The value of the float16 nearest to float32 v (ties to even), as a number. NaN stays NaN. */
export function f16Value(v: number): number {
  const x = Math.fround(v);
  if (Number.isNaN(x) || !Number.isFinite(x) || x === 0) return x;
  const a = Math.abs(x);
  let exp = Math.floor(Math.log2(a));
  if (2 ** exp > a) exp -= 1;
  if (2 ** (exp + 1) <= a) exp += 1;
  const ulp = 2 ** (Math.max(exp, -14) - 10); // subnormals below 2^-14 have spacing 2^-24
  const r = roundToMultiple(a, ulp);
  const out = r > 65504 ? Infinity : r;
  return x < 0 ? -out : out;
}

/** float16 bits of a float16-representable value (or ±Inf / NaN). */
export function f16Bits(value: number): number {
  if (Number.isNaN(value)) return 0x7e00;
  const sign = value < 0 || Object.is(value, -0) ? 0x8000 : 0;
  const a = Math.abs(value);
  if (a === Infinity) return sign | 0x7c00;
  if (a === 0) return sign;
  if (a < 2 ** -14) return sign | Math.round(a / 2 ** -24);
  let exp = Math.floor(Math.log2(a));
  if (2 ** exp > a) exp -= 1;
  if (2 ** (exp + 1) <= a) exp += 1;
  const mant = Math.round((a / 2 ** exp - 1) * 1024);
  return sign | ((exp + 15) << 10) | mant;
}

/** bfloat16 bits of a bfloat16-representable value: the top half of its float32 bits. */
export function bf16Bits(value: number): number {
  return f32Bits(value) >>> 16;
}

// ---- finite differences ------------------------------------------------------------------

/**
 * Central differences of f at a few coordinates of each input array, against the analytic
 * gradient: [name, the array the tensors wrap (changed in place and restored), gradient].
 * f must be linear in each array (then a large step is exact up to float32 rounding).
 * Returns the failures as messages; an empty list means every coordinate agreed within tol.
 */
export function centralDifferenceErrors(
  f: () => number,
  inputs: ReadonlyArray<readonly [string, Float32Array, Float32Array]>,
  { h = 0.5, coords = 5, tol = 1e-3 } = {},
): string[] {
  const failures: string[] = [];
  let coord = 17;
  for (const [name, values, grad] of inputs) {
    const gscale = maxAbs(grad);
    if (!(gscale > 0)) failures.push(`${name}: gradient is all zeros`);
    for (let n = 0; n < Math.min(coords, values.length); n++) {
      coord = (coord * 7919 + 13) % values.length;
      const old = values[coord];
      values[coord] = old + h;
      const up = values[coord] - old;
      const lp = f();
      values[coord] = old - h;
      const down = old - values[coord];
      const lm = f();
      values[coord] = old;
      const fd = (lp - lm) / (up + down);
      if (!(Math.abs(fd - grad[coord]) / gscale < tol)) failures.push(`${name}[${coord}]: fd ${fd} vs ${grad[coord]}`);
    }
  }
  return failures;
}

// ---- errors ----------------------------------------------------------------------------------

/** Calls `fn` and returns what it threw; fails the test when it returns normally. */
export function thrown(fn: () => unknown): unknown {
  try {
    fn();
  } catch (e) {
    return e;
  }
  throw new Error('expected the call to throw, but it returned normally');
}

/** The exact class (TypeError, RangeError, ...) and full message of what `fn` throws. */
export function errorOf(fn: () => unknown): { cls: string; message: string } {
  const e = thrown(fn);
  if (!(e instanceof Error)) return { cls: typeof e, message: String(e) };
  return { cls: e.constructor.name, message: e.message };
}

// ---- activations (README.md, Building blocks) ---------------------------------------------------

/** erf in double: its Maclaurin series below 3, the asymptotic erfc series above. */
export function erf(x: number): number {
  const a = Math.abs(x);
  if (a < 3) {
    let term = x,
      sum = x;
    for (let n = 1; n < 80; n++) {
      term *= (-x * x) / n;
      sum += term / (2 * n + 1);
    }
    return (2 / Math.sqrt(Math.PI)) * sum;
  }
  const z = 1 / (2 * a * a);
  const erfc = (Math.exp(-a * a) / (a * Math.sqrt(Math.PI))) * (1 - z + 3 * z * z - 15 * z ** 3 + 105 * z ** 4);
  return Math.sign(x) * (1 - erfc);
}

/** The activations and their derivatives in double: relu (NaN kept by the op, not here), exact GELU, tanh. */
export const ACTIVATION_REF: Record<'relu' | 'gelu' | 'tanh', { f: (x: number) => number; df: (x: number) => number }> = {
  relu: { f: (x) => Math.max(x, 0), df: (x) => (x > 0 ? 1 : 0) },
  gelu: {
    f: (x) => 0.5 * x * (1 + erf(x / Math.SQRT2)),
    df: (x) => 0.5 * (1 + erf(x / Math.SQRT2)) + (x * Math.exp(-0.5 * x * x)) / Math.sqrt(2 * Math.PI),
  },
  tanh: { f: Math.tanh, df: (x) => 1 - Math.tanh(x) ** 2 },
};
