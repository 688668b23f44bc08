// Argument checks shared by the ops. Each throws through lib/errors.ts, naming the argument.
import { invalidRange, invalidRangeText, invalidType } from '../errors.js';
import { settle } from '../native.js';
import { checkSeed, formatShape, holdAll, Tensor } from '../tensor.js';

/** A live float32 tensor; returns its storage. */
export function f32(t: unknown, name: string): Float32Array {
  if (!(t instanceof Tensor)) throw invalidType('a Tensor', name, t);
  const storage = t.storage(name);
  if (t.dtype !== 'float32') throw invalidType('a float32 Tensor', name, t, `dtype is ${t.dtype}`);
  return storage as Float32Array;
}

/** A tensor whose shape is exactly `dims` (a label per dimension for the message). */
export function shapeIs(t: Tensor, name: string, dims: readonly number[], labels: readonly string[]): void {
  const s = t.shape;
  if (s.length === dims.length && s.every((d, i) => d === dims[i])) return;
  throw invalidRangeText(`shape [${labels.join(', ')}] = ${formatShape(dims)}`, name, formatShape(s));
}

/** x [..., in] for a weight of `inDim` columns: its rows T (>= 1) and leading dimensions. */
export function rowsOf(x: Tensor, inDim: number): { t: number; leading: number[] } {
  if (x.shape.length < 1 || x.shape[x.shape.length - 1] !== inDim)
    throw invalidRange(`a tensor [..., in] with in = ${inDim} (W's columns)`, 'x', x);
  const t = x.size / inDim;
  if (t < 1) throw invalidRange('at least one row', 'x', x);
  return { t, leading: x.shape.slice(0, -1) };
}

/**
 * The upstream gradient dy [...leading, out] of a saved forward: float32, x's leading
 * dimensions, on the saved state's device. Returns its storage.
 */
export function upstream(dy: unknown, leading: readonly number[], out: number, device: Tensor['device']): Float32Array {
  const storage = f32(dy, 'dy');
  const t = dy as Tensor;
  shapeIs(t, 'dy', [...leading, out], [...leading.map((_, i) => `x.shape[${i}]`), 'out']);
  if (t.device !== device) throw invalidRange(`a tensor on ${device} (like the saved state)`, 'dy', t);
  return storage;
}

/** The optional base bias [out] (float32): its storage, or null. */
export function biasOf(bias: Tensor | undefined, out: number): Float32Array | null {
  if (bias === undefined) return null;
  const storage = f32(bias, 'options.bias');
  shapeIs(bias, 'options.bias', [out], ['out']);
  return storage;
}

/** All tensors on one device (no silent copies between devices). */
export function sameDevice(tensors: ReadonlyArray<readonly [Tensor | undefined, string]>): void {
  const [first, firstName] = tensors[0];
  for (const [t, name] of tensors) {
    if (t && first && t.device !== first.device)
      throw invalidRange(`a tensor on ${first.device} (like ${firstName})`, name, t);
  }
}

export function finite(v: unknown, name: string): number {
  if (typeof v !== 'number') throw invalidType('a finite number', name, v);
  if (!Number.isFinite(v)) throw invalidRange('a finite number', name, v);
  return v;
}

export function options<T extends object>(v: unknown, name: string): Partial<T> {
  if (v === undefined) return {};
  if (typeof v !== 'object' || v === null) throw invalidType('an options object', name, v);
  return v as Partial<T>;
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

export function bool(v: unknown, name: string, fallback: boolean): boolean {
  if (v === undefined) return fallback;
  if (typeof v !== 'boolean') throw invalidType('a boolean', name, v);
  return v;
}

/** A live float32 or bfloat16 tensor (a weight); returns its storage and the native dtype code. */
export function weight(t: unknown, name: string): { W: Float32Array | Uint16Array; wDtype: number } {
  if (!(t instanceof Tensor)) throw invalidType('a Tensor', name, t);
  const storage = t.storage(name);
  if (t.dtype === 'float32') return { W: storage, wDtype: 0 };
  if (t.dtype === 'bfloat16') return { W: storage, wDtype: 1 };
  throw invalidType('a float32 or bfloat16 Tensor', name, t, `dtype is ${t.dtype}`);
}

/**
 * Awaits native work running off the event loop while `tensors` are held: a dispose()
 * meanwhile cannot hand their buffers to another tensor. Rejections carry the caller's stack.
 */
export async function awaitHolding(pending: Promise<void>, tensors: ReadonlyArray<Tensor | null | undefined>): Promise<void> {
  const release = holdAll(tensors);
  try {
    await settle(pending);
  } finally {
    release();
  }
}
