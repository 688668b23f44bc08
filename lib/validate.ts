// The argument checks every public function shares. Each throws through lib/errors.ts
// ("Expected <what> for <name> but received <value>"), naming the argument. Checks that need
// a Tensor (dtype kinds, shapes of tensors, one device) are in lib/ops/check.ts.
import { randomBytes } from 'node:crypto';
import { invalidRange, invalidRangeText, invalidType } from './errors.js';

/** The most elements one tensor's storage may hold (the largest typed array). */
export const MAX_ELEMENTS = 2 ** 32 - 1;

export function formatShape(shape: readonly number[]): string {
  return `[${shape.join(', ')}]`;
}

/** The element count of a shape. */
export function sizeOf(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

/** An integer >= 1 (a dimension, a rank). */
export function positiveInt(v: unknown, name: string): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v)) throw invalidType('a positive integer', name, v);
  if (v < 1) throw invalidRange('a positive integer', name, v);
  return v;
}

/** The largest finite float32. */
export const FLOAT32_MAX = 3.4028234663852886e38;

/**
 * A finite number within float32's range: the one check of every float32 scalar the native ops
 * take (a larger finite double would become Infinity there, and Infinity · 0 NaN).
 */
/** An integer >= 0 (a count, a step number). */
export function nonNegativeInt(v: unknown, name: string): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v)) throw invalidType('a non-negative integer', name, v);
  if (v < 0) throw invalidRange('a non-negative integer', name, v);
  return v;
}

export function finite(v: unknown, name: string): number {
  if (typeof v !== 'number') throw invalidType('a finite number', name, v);
  if (!Number.isFinite(v)) throw invalidRange('a finite number', name, v);
  if (Math.abs(v) > FLOAT32_MAX) throw invalidRange('a finite number within float32 range', name, v);
  return v;
}

/** finite(v), or `fallback` when v is undefined. */
export function finiteF32(v: unknown, name: string, fallback: number): number {
  return v === undefined ? fallback : finite(v, name);
}

/** A finite number >= 0 within float32's range (learning rates, decays: what an update multiplies float32 values by). */
export function nonNegative(v: unknown, name: string): number {
  if (typeof v !== 'number') throw invalidType('a finite number >= 0', name, v);
  if (!(Number.isFinite(v) && v >= 0)) throw invalidRange('a finite number >= 0', name, v);
  if (v > FLOAT32_MAX) throw invalidRange('a finite number >= 0 within float32 range', name, v);
  return v;
}

/**
 * An options object (undefined: {}). An option is given or left out: one set to null is a
 * TypeError naming it, never read as "not given" (nor as a value).
 */
export function options<T extends object>(v: unknown, name: string): Partial<T> {
  if (v === undefined) return {};
  if (typeof v !== 'object' || v === null) throw invalidType('an options object', name, v);
  for (const [key, value] of Object.entries(v))
    if (value === null) throw invalidType(`a value (or no ${key} at all)`, `${name}.${key}`, value);
  return v;
}

export function bool(v: unknown, name: string, fallback: boolean): boolean {
  if (v === undefined) return fallback;
  if (typeof v !== 'boolean') throw invalidType('a boolean', name, v);
  return v;
}

/** Converts a seed option to the native 64-bit form; undefined draws a fresh random seed. */
export function checkSeed(seed: unknown, name: string): bigint {
  if (seed === undefined) return randomBytes(8).readBigUInt64LE(0);
  if (typeof seed === 'bigint') {
    if (seed < 0n || seed >= 1n << 64n) throw invalidRange('an integer in [0, 2^64)', name, seed);
    return seed;
  }
  if (typeof seed !== 'number') throw invalidType('a non-negative integer or bigint', name, seed);
  if (!Number.isSafeInteger(seed) || seed < 0) throw invalidRange('a non-negative safe integer', name, seed);
  return BigInt(seed);
}

export interface DropoutOption {
  /** Probability of dropping an element, in [0, 1). */
  p: number;
  /** Mask seed; the same seed gives the same mask on every backend. Random when omitted. */
  seed?: number | bigint;
}

export function dropout(v: unknown, name: string): { p: number; seed: bigint } {
  if (v === undefined) return { p: 0, seed: 0n };
  if (typeof v !== 'object' || v === null) throw invalidType('an object { p, seed }', name, v);
  const { p, seed } = v as DropoutOption;
  if (typeof p !== 'number') throw invalidType('a number in [0, 1)', `${name}.p`, p);
  if (!(p >= 0 && p < 1)) throw invalidRange('a number in [0, 1)', `${name}.p`, p);
  return { p, seed: checkSeed(seed, `${name}.seed`) };
}

/** An array of non-negative integers with at most MAX_ELEMENTS elements in all. */
export function checkShape(shape: unknown, name: string): number[] {
  if (!Array.isArray(shape)) throw invalidType('an array of non-negative integers', name, shape);
  for (let i = 0; i < shape.length; i++) {
    const d: unknown = shape[i];
    if (typeof d !== 'number') throw invalidType('a non-negative integer', `${name}[${i}]`, d);
    if (!Number.isSafeInteger(d) || d < 0) throw invalidRange('a non-negative integer', `${name}[${i}]`, d);
  }
  const n = sizeOf(shape as number[]);
  if (n > MAX_ELEMENTS)
    throw invalidRangeText(`a shape of at most ${MAX_ELEMENTS} elements`, name, `${formatShape(shape as number[])} (${n} elements)`);
  return [...(shape as number[])];
}
