// Argument checks shared by the ops. Each throws through lib/errors.ts, naming the argument.
// The same checks (and messages) serve both devices: operand() accepts the dtypes an op takes
// on the tensor's device and hands back what its native entry point reads there.
import { invalidRange, invalidRangeText, invalidType } from '../errors.js';
import { type NativeDeviceBlock, settle } from '../native.js';
import { checkSeed, type Device, type DType, formatShape, holdAll, type Storage, Tensor } from '../tensor.js';

/**
 * What an op accepts for a tensor argument, by device:
 * - 'float32': adapter parameters, their gradients, the saved xa and u, λ: float32 everywhere;
 * - 'weight': the base weight W: float32 or bfloat16 on the CPU, any dtype on CUDA;
 * - 'activation': x, the base bias and dy: float32 on the CPU, any dtype on CUDA.
 */
export type OperandKind = 'float32' | 'weight' | 'activation';

const ALL: readonly DType[] = ['float32', 'bfloat16', 'float16'];
const ACCEPTS: Record<OperandKind, Record<Device, readonly DType[]>> = {
  float32: { cpu: ['float32'], cuda: ['float32'] },
  weight: { cpu: ['float32', 'bfloat16'], cuda: ALL },
  activation: { cpu: ['float32'], cuda: ALL },
};

/** The native dtype codes. */
export const DTYPE_CODE: Readonly<Record<DType, number>> = Object.freeze({ float32: 0, bfloat16: 1, float16: 2 });

/** A tensor as a native entry point reads it: host storage (CPU) or a device block (CUDA), and its dtype code. */
export interface Operand {
  data: Storage | NativeDeviceBlock;
  dtype: number;
}

/**
 * The argument object of an op seen by its CPU entry point: operand() filled its tensor fields
 * with host arrays there (the CUDA entry point takes the same object with device blocks).
 */
export type OnHost<T> = { [K in keyof T]: T[K] extends Operand['data'] | null ? never : T[K] };

/**
 * Runs an op on its device, given the op's two native entry points: the CUDA one queues the work
 * on the device's stream and returns; the CPU one runs it now.
 */
export function runOn<T>(device: Device, args: T, cuda: (args: T) => void, cpu: (args: OnHost<T>) => void): void {
  if (device === 'cuda') cuda(args);
  else cpu(args as OnHost<T>);
}

function dtypeList(dtypes: readonly DType[]): string {
  return dtypes.length === 1 ? dtypes[0] : `${dtypes.slice(0, -1).join(', ')} or ${dtypes[dtypes.length - 1]}`;
}

/** A live tensor of a dtype `kind` accepts on the tensor's device; returns it. */
export function checked(t: unknown, name: string, kind: OperandKind): Tensor {
  if (!(t instanceof Tensor)) throw invalidType('a Tensor', name, t);
  if (t.disposed) throw invalidType('a live Tensor', name, t, 'it was disposed');
  const accepts = ACCEPTS[kind][t.device];
  if (!accepts.includes(t.dtype)) throw invalidType(`a ${dtypeList(accepts)} Tensor`, name, t, `dtype is ${t.dtype}`);
  return t;
}

/** checked(), then what the native entry point of the tensor's device reads. */
export function operand(t: unknown, name: string, kind: OperandKind): Operand {
  const c = checked(t, name, kind);
  return { data: c.device === 'cuda' ? c.deviceHandle(name) : c.storage(name), dtype: DTYPE_CODE[c.dtype] };
}

/** A live float32 tensor on the CPU; returns its storage. */
export function f32(t: unknown, name: string): Float32Array {
  return checked(t, name, 'float32').storage(name) as Float32Array;
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
export function upstream(dy: unknown, leading: readonly number[], out: number, device: Device): Operand {
  const t = checked(dy, 'dy', 'activation');
  shapeIs(t, 'dy', [...leading, out], [...leading.map((_, i) => `x.shape[${i}]`), 'out']);
  if (t.device !== device) throw invalidRange(`a tensor on ${device} (like the saved state)`, 'dy', t);
  return operand(t, 'dy', 'activation');
}

/** The optional base bias [out] (float32 on the CPU, any dtype on CUDA), or null. */
export function biasOf(bias: Tensor | undefined, out: number): Operand | null {
  if (bias === undefined) return null;
  const b = operand(bias, 'options.bias', 'activation');
  shapeIs(bias, 'options.bias', [out], ['out']);
  return b;
}

/**
 * All tensors among `tensors` on one device (no silent copies between devices); returns that
 * device. Values that are not tensors are left to the type checks.
 */
export function sameDevice(tensors: ReadonlyArray<readonly [unknown, string]>): Device {
  const present = tensors.filter((e): e is readonly [Tensor, string] => e[0] instanceof Tensor);
  if (present.length === 0) return 'cpu';
  const [first, firstName] = present[0];
  for (const [t, name] of present) {
    if (t.device !== first.device) throw invalidRange(`a tensor on ${first.device} (like ${firstName})`, name, t);
  }
  return first.device;
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

/** A weight W (float32 or bfloat16 on the CPU, any dtype on CUDA) as the native fields W and wDtype. */
export function weight(t: unknown, name: string): { W: Operand['data']; wDtype: number } {
  const w = operand(t, name, 'weight');
  return { W: w.data, wDtype: w.dtype };
}

/** The fields every forward passes to native code: x, W, the optional bias and y, each with its dtype code. */
export function forwardFields(x: Operand, W: { W: Operand['data']; wDtype: number }, bias: Operand | null, y: Operand) {
  return { x: x.data, xDtype: x.dtype, ...W, bias: bias?.data ?? null, biasDtype: bias?.dtype ?? 0, y: y.data, yDtype: y.dtype };
}

/** A fresh output tensor as its native fields: the block or storage, and its dtype code. */
export function output(t: Tensor): Operand {
  return operand(t, 'output', t.dtype === 'float32' ? 'float32' : 'activation');
}

/**
 * Awaits native work running off the event loop while `tensors` are held: a dispose()
 * meanwhile cannot hand their buffers to another tensor. Rejections carry the caller's stack.
 * (The CUDA ops queue their work on the device and return; they never come here.)
 */
export async function awaitHolding(pending: Promise<void>, tensors: ReadonlyArray<Tensor | null | undefined>): Promise<void> {
  const release = holdAll(tensors);
  try {
    await settle(pending);
  } finally {
    release();
  }
}
