// Argument checks on tensors shared by the ops (the plain value checks are lib/validate.ts).
// Each throws through lib/errors.ts, naming the argument. The same checks (and messages) serve
// both devices: operand() accepts the dtypes an op takes on the tensor's device and hands back
// the tensor as the native boundary reads it, { data, dtype }.
import { dtypeCode, FLOAT_DTYPES, type DType, type FloatDType } from '../dtype.js';
import { invalidRange, invalidRangeText, invalidType } from '../errors.js';
import type { DeviceMemory, NativeTensor } from '../native.js';
import { type Device, formatShape, Tensor } from '../tensor.js';

/**
 * What an op accepts for a tensor argument, by device:
 * - 'float32': adapter parameters, their gradients, the saved xa and u, λ: float32 everywhere;
 * - 'weight': the base weight W: float32 or bfloat16 on the CPU, any float dtype on CUDA;
 * - 'activation': x, the base bias and dy: float32 on the CPU, any float dtype on CUDA.
 * No float operand takes int32: an int32 tensor fails these checks like any other dtype an op
 * refuses; index tensors (labels) are checked by indices().
 */
export type OperandKind = 'float32' | 'weight' | 'activation';

const ALL = FLOAT_DTYPES;
const ACCEPTS: Record<OperandKind, Record<Device, readonly FloatDType[]>> = {
  float32: { cpu: ['float32'], cuda: ['float32'] },
  weight: { cpu: ['float32', 'bfloat16'], cuda: ALL },
  activation: { cpu: ['float32'], cuda: ALL },
};

function dtypeList(dtypes: readonly DType[]): string {
  return dtypes.length === 1 ? dtypes[0] : `${dtypes.slice(0, -1).join(', ')} or ${dtypes[dtypes.length - 1]}`;
}

/** A live tensor of a dtype `kind` accepts on the tensor's device; returns it. */
export function checked(t: unknown, name: string, kind: OperandKind): Tensor {
  if (!(t instanceof Tensor)) throw invalidType('a Tensor', name, t);
  t.checkLive(name);
  const accepts = ACCEPTS[kind][t.device];
  if (!(accepts as readonly DType[]).includes(t.dtype)) throw invalidType(`a ${dtypeList(accepts)} Tensor`, name, t, `dtype is ${t.dtype}`);
  return t;
}

/** A live tensor of any dtype; returns it. */
export function live(t: unknown, name: string): Tensor {
  if (!(t instanceof Tensor)) throw invalidType('a Tensor', name, t);
  t.checkLive(name);
  return t;
}

/**
 * A live int32 tensor of `n` elements (class labels, row indices); returns it. Its values are
 * checked by the op on the tensor's device, never read here.
 */
export function indices(t: unknown, name: string, dims: readonly number[], labels: readonly string[]): Tensor {
  const c = live(t, name);
  if (c.dtype !== 'int32') throw invalidType('an int32 Tensor', name, c, `dtype is ${c.dtype}`);
  shapeIs(c, name, dims, labels);
  return c;
}

/** A tensor of the same shape as `like` (named `likeName` in the message). */
export function sameShape(t: Tensor, name: string, like: Tensor, likeName: string): void {
  const s = t.shape,
    l = like.shape;
  if (s.length === l.length && s.every((d, i) => d === l[i])) return;
  throw invalidRangeText(`a shape of ${formatShape(l)} (like ${likeName})`, name, formatShape(s));
}

/** checked(), then the tensor as the native boundary reads it on its device: { data, dtype }. */
export function operand(t: unknown, name: string, kind: OperandKind): NativeTensor {
  return nativeOf(checked(t, name, kind), name);
}

/** A live tensor as the native boundary reads it: its host storage or device block, and its dtype code. */
export function nativeOf(t: Tensor, name: string): NativeTensor {
  return { data: t.device === 'cuda' ? t.deviceHandle(name) : t.storage(name), dtype: dtypeCode(t.dtype) };
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
export function upstream(dy: unknown, leading: readonly number[], out: number, device: Device): NativeTensor {
  const t = checked(dy, 'dy', 'activation');
  shapeIs(t, 'dy', [...leading, out], [...leading.map((_, i) => `x.shape[${i}]`), 'out']);
  if (t.device !== device) throw invalidRange(`a tensor on ${device} (like the saved state)`, 'dy', t);
  return operand(t, 'dy', 'activation');
}

/** The optional base bias [out] (float32 on the CPU, any dtype on CUDA), or null. */
export function biasOf(bias: Tensor | undefined, out: number): NativeTensor | null {
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

/** A weight W (float32 or bfloat16 on the CPU, any dtype on CUDA). */
export function weight(t: unknown, name: string): NativeTensor {
  return operand(t, name, 'weight');
}

/** A fresh output tensor as the native boundary reads it. */
export function output(t: Tensor): NativeTensor {
  return nativeOf(t, 'output');
}

// ---- aliasing ------------------------------------------------------------------------------

/** The memory a tensor's storage covers, for overlap checks: a host buffer's bytes, or a whole device block. */
export interface Region {
  buffer: ArrayBufferLike | DeviceMemory;
  begin: number;
  end: number;
  name: string;
}

/** The region of a live tensor (a CUDA tensor's views share its block). */
export function regionOf(t: Tensor, name: string): Region {
  if (t.device === 'cuda') {
    const s = t.deviceStorage(name);
    return { buffer: s.handle, begin: 0, end: s.bytes, name };
  }
  const storage = t.storage(name);
  return { buffer: storage.buffer, begin: storage.byteOffset, end: storage.byteOffset + storage.byteLength, name };
}

/** Whether two regions share a byte. */
export function overlapping(a: Region, b: Region): boolean {
  return a.buffer === b.buffer && a.begin < b.end && b.begin < a.end;
}

/**
 * What an op writes shares no memory with what else it reads or writes (an in-place op whose
 * input aliases its output would read values it already overwrote), else a RangeError naming
 * both. `exact`: an element-wise op, for which the very same memory (same region) is fine.
 * Absent optional tensors (null, undefined) are skipped; the tensors are checked live.
 */
export function apart(
  written: ReadonlyArray<readonly [Tensor | null | undefined, string]>,
  others: ReadonlyArray<readonly [Tensor | null | undefined, string]>,
  exact = false,
): void {
  const present = (list: typeof written) => list.filter((e): e is readonly [Tensor, string] => e[0] instanceof Tensor);
  const w = present(written).map(([t, name]) => ({ t, r: regionOf(t, name) }));
  const o = present(others).map(([t, name]) => ({ t, r: regionOf(t, name) }));
  w.forEach((a, i) => {
    for (const b of [...w.slice(i + 1), ...o]) {
      if (!overlapping(a.r, b.r)) continue;
      if (exact && a.r.begin === b.r.begin && a.r.end === b.r.end && !w.includes(b)) continue;
      throw invalidRange(
        `a tensor that shares no memory with ${a.r.name} (which the op writes)`,
        b.r.name,
        b.t,
        `it shares memory with ${a.r.name}; pass a copy: ${b.r.name.replace(/^options\./, '')}.clone()`,
      );
    }
  });
}
