// torch's CPU random generator, bit for bit, for what PEFT draws with it: VeRA's shared projections
// when an adapter is saved without them (`save_projection: false`; README.md, Files).
//
// torch.Generator('cpu').manual_seed(seed) (CPUGeneratorImpl, at::mt19937 in
// ATen/core/MT19937RNGEngine.h) keeps the seed as a uint64 (a negative Python int is taken
// modulo 2^64) and initialises the standard MT19937 with init_genrand(seed & 0xffffffff):
// state[0] = seed mod 2^32, state[j] = 1812433253 · (state[j−1] ^ (state[j−1] >> 30)) + j
// (mod 2^32). CPUGeneratorImpl::random() is the next tempered 32-bit word.
//
// Tensor.uniform_(from, to) on a CPU float32 tensor (ATen/native/cpu/DistributionTemplates.h,
// uniform_kernel, and transformation::uniform_real in ATen/core/TransformationHelper.h) takes per
// element, in row-major order, the next word w and computes, with from and to rounded to float32:
//   x = (w & 0xFFFFFF) · 2^-24                       (exact)
//   v = float32(x · float32(to − from) + from)       (one rounding: the compiler fuses it into an FMA)
//   v = (v == float32(to)) ? float32(from) : v      (recent torch, 2.13 included, keeps [from, to))
// These are the formulas above with two details to pin down: d = to − from is itself rounded to
// float32 (float arithmetic in torch; a float64 difference disagrees with torch on a third to
// two thirds of the elements of an asymmetric range), and the clamp. x · d is exact in float64
// (24 × 24 bits), so float32(x · d + from) evaluated in float64 equals the fused result except
// where the float64 sum lands exactly on a float32 midpoint, which uniform_ below resolves with
// the sum's exact error term. For from = −to (VeRA) d = 2·to exactly, the sum is exact in float64
// and the clamp can never fire: the recipe as written is exact there.
//
// Checked against torch 2.13.0+cpu (test/19 holds its values): identical on CPUs where torch
// dispatches its AVX2 or AVX-512 kernels. On CPUs without AVX2 (or with
// ATEN_CPU_CAPABILITY=default) torch's DEFAULT kernel does not fuse and rounds twice,
// float32(float32(x · d) + from), which differs in about half the elements; pass
// { fusedMultiplyAdd: false } to reproduce those files.
import { invalidRange, invalidType } from '../errors.js';
import { checkShape, Tensor } from '../tensor.js';

const N = 624;
const M = 397;
const MATRIX_A = 0x9908b0df;
const UPPER = 0x80000000;
const LOWER = 0x7fffffff;

/** Converts a seed as torch's manual_seed does: a uint64, negative values modulo 2^64. */
function checkTorchSeed(seed: unknown, name: string): bigint {
  let s: bigint;
  if (typeof seed === 'bigint') s = seed;
  else if (typeof seed === 'number') {
    if (!Number.isSafeInteger(seed)) throw invalidRange('a safe integer or a bigint', name, seed);
    s = BigInt(seed);
  } else throw invalidType('an integer or a bigint', name, seed);
  if (s < -(1n << 63n) || s >= 1n << 64n) throw invalidRange('an integer in [-2^63, 2^64)', name, seed);
  return BigInt.asUintN(64, s);
}

/** torch.Generator('cpu').manual_seed(seed): MT19937 seeded with init_genrand(seed & 0xffffffff). */
export class TorchCpuGenerator {
  /** The seed as torch stores it (Generator.initial_seed()): a uint64. */
  readonly seed: bigint;
  readonly #state = new Uint32Array(N);
  #next = N;

  constructor(seed: number | bigint) {
    this.seed = checkTorchSeed(seed, 'seed');
    const mt = this.#state;
    mt[0] = Number(this.seed & 0xffffffffn);
    for (let j = 1; j < N; j++) {
      const prev = mt[j - 1];
      mt[j] = Math.imul(1812433253, prev ^ (prev >>> 30)) + j;
    }
  }

  #twist(): void {
    const mt = this.#state;
    for (let i = 0; i < N; i++) {
      const y = (mt[i] & UPPER) | (mt[(i + 1) % N] & LOWER);
      mt[i] = mt[(i + M) % N] ^ (y >>> 1) ^ (y & 1 ? MATRIX_A : 0);
    }
    this.#next = 0;
  }

  /** The next 32-bit word (CPUGeneratorImpl::random()), as a number in [0, 2^32). */
  nextUint32(): number {
    if (this.#next >= N) this.#twist();
    let y = this.#state[this.#next++];
    y ^= y >>> 11;
    y ^= (y << 7) & 0x9d2c5680;
    y ^= (y << 15) & 0xefc60000;
    y ^= y >>> 18;
    return y >>> 0;
  }
}

const f32 = new Float32Array(1);
const bits = new Int32Array(f32.buffer);

/** The float32 next to `v` (a float32 value) towards +∞ (up) or −∞. */
function nextFloat32(v: number, up: boolean): number {
  if (v === 0) return up ? 2 ** -149 : -(2 ** -149);
  f32[0] = v;
  bits[0] += v > 0 === up ? 1 : -1;
  return f32[0];
}

/**
 * @internal float32(p + f) rounded once from the exact sum of two doubles (what a float32 FMA
 * returns when p = x·d exactly): Math.fround(p + f) except where p + f lands on a float32 midpoint.
 */
export function _roundSumToFloat32(p: number, f: number): number {
  const s = p + f;
  const r = Math.fround(s);
  if (r === s) return r; // the exact sum is within half a float64 ulp of a float32: r
  // The exact error of s (Knuth's TwoSum); s rounds correctly unless it is a float32 midpoint.
  const pp = s - f;
  const e = p - pp + (f - (s - pp));
  if (e === 0) return r;
  const other = nextFloat32(r, s > r);
  if (s - r !== other - s) return r;
  return e > 0 === other > r ? other : r;
}

export interface UniformOptions {
  /**
   * true (default): torch's AVX2 / AVX-512 kernels, one rounding of x·(to − from) + from.
   * false: torch's DEFAULT (non-FMA) kernel, float32(float32(x·(to − from)) + from).
   */
  fusedMultiplyAdd?: boolean;
}

const FLOAT32_MAX = 3.4028234663852886e38;

/**
 * Fills `out` (row-major) as torch's CPU float32 uniform_(from, to) does with `gen`: one word per
 * element, x = (w & 0xFFFFFF) · 2^-24, value = float32(x · float32(to − from) + from), a value
 * rounded up to `to` replaced by `from` (see the top of this file).
 */
export function uniform_(gen: TorchCpuGenerator, out: Float32Array, from: number, to: number, options?: UniformOptions): void {
  if (!(gen instanceof TorchCpuGenerator)) throw invalidType('a TorchCpuGenerator', 'gen', gen);
  if (!(out instanceof Float32Array)) throw invalidType('a Float32Array', 'out', out);
  if (typeof from !== 'number') throw invalidType('a finite number', 'from', from);
  if (typeof to !== 'number') throw invalidType('a finite number', 'to', to);
  const f = Math.fround(from);
  const t = Math.fround(to);
  if (!Number.isFinite(f)) throw invalidRange('a number within float32 range', 'from', from);
  if (!Number.isFinite(t)) throw invalidRange('a number within float32 range', 'to', to);
  if (!(f <= t)) throw invalidRange(`a number >= from (${from})`, 'to', to, "torch's uniform_ draws from [from, to)");
  const d = Math.fround(t - f);
  if (!(d <= FLOAT32_MAX)) throw invalidRange(`a number with to − from within float32 range (from is ${from})`, 'to', to);
  if (options !== undefined && (typeof options !== 'object' || options === null))
    throw invalidType('an options object', 'options', options);
  const fused = options?.fusedMultiplyAdd ?? true;
  if (typeof fused !== 'boolean') throw invalidType('a boolean', 'options.fusedMultiplyAdd', fused);
  const scale = 2 ** -24;
  for (let i = 0; i < out.length; i++) {
    const x = (gen.nextUint32() & 0xffffff) * scale;
    const v = fused ? _roundSumToFloat32(x * d, f) : Math.fround(Math.fround(x * d) + f);
    out[i] = v === t ? f : v;
  }
}

/** The bound PEFT's _kaiming_init computes: math.sqrt(3.0) * (math.sqrt(2) / math.sqrt(fan_in)) = √(6 / fan_in). */
export function _kaimingBound(fanIn: number): number {
  return Math.sqrt(3) * (Math.SQRT2 / Math.sqrt(fanIn));
}

function checkDim(v: unknown, name: string): number {
  if (typeof v !== 'number') throw invalidType('a positive integer', name, v);
  if (!Number.isSafeInteger(v) || v < 1) throw invalidRange('a positive integer', name, v);
  return v;
}

/**
 * PEFT's VeRA projections when save_projection is false (peft/tuners/vera/model.py,
 * _init_vera_A_vera_B): one generator seeded with projection_prng_key draws vera_A [r, maxIn],
 * then vera_B [maxOut, r], each `_kaiming_init`: uniform_(−bound, bound) with
 * bound = √3 · (√2 / √fan_in), fan_in = size(1): maxIn for A, r for B (PEFT's √(6 / fan_in),
 * computed in PEFT's order so the float64 bound is the same to the last bit).
 */
export function peftVeraProjections(
  seed: number | bigint,
  rank: number,
  maxIn: number,
  maxOut: number,
  options?: UniformOptions,
): { A: Tensor; B: Tensor } {
  const gen = new TorchCpuGenerator(seed);
  const r = checkDim(rank, 'rank');
  const inDim = checkDim(maxIn, 'maxIn');
  const outDim = checkDim(maxOut, 'maxOut');
  const shapeA = checkShape([r, inDim], '[rank, maxIn]');
  const shapeB = checkShape([outDim, r], '[maxOut, rank]');
  const A = Tensor.empty(shapeA, 'float32', 'cpu');
  const B = Tensor.empty(shapeB, 'float32', 'cpu');
  try {
    const a = _kaimingBound(inDim);
    uniform_(gen, A.storage() as Float32Array, -a, a, options);
    const b = _kaimingBound(r);
    uniform_(gen, B.storage() as Float32Array, -b, b, options);
  } catch (e) {
    A.dispose();
    B.dispose();
    throw e;
  }
  return { A, B };
}
