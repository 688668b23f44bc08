// THE table of tensor dtypes: each one's name, bytes per element, native code (the `dtype` of
// a tensor at the native boundary, native/core/dtype.h), safetensors name and host array class.
// int32 (indices, token ids, offsets) is stored, copied, saved and loaded, but the float ops
// refuse it (lib/ops/check.ts) and it never converts to or from a float dtype natively.

/** The public tensor dtypes. */
export type DType = FloatDType | 'int32';
/** The floating-point dtypes: the ones the ops compute with and convert between. */
export type FloatDType = 'float32' | 'bfloat16' | 'float16';

export interface DTypeInfo {
  readonly name: DType;
  /** Bytes per element. */
  readonly bytes: 2 | 4;
  /** The code native code reads (native/core/dtype.h DType). */
  readonly code: 0 | 1 | 2 | 3;
  /** The dtype's name in a safetensors header. */
  readonly safetensors: 'F32' | 'BF16' | 'F16' | 'I32';
  /** The typed array that holds its elements (values, or raw bits for bfloat16 / float16). */
  readonly host: Float32ArrayConstructor | Uint16ArrayConstructor | Int32ArrayConstructor;
}

// `host` is looked up when read (a getter), so it is always the global constructor of the moment.
export const DTYPE_INFO: Readonly<Record<DType, DTypeInfo>> = Object.freeze({
  float32: Object.freeze({
    name: 'float32',
    bytes: 4,
    code: 0,
    safetensors: 'F32',
    get host() {
      return Float32Array;
    },
  }),
  bfloat16: Object.freeze({
    name: 'bfloat16',
    bytes: 2,
    code: 1,
    safetensors: 'BF16',
    get host() {
      return Uint16Array;
    },
  }),
  float16: Object.freeze({
    name: 'float16',
    bytes: 2,
    code: 2,
    safetensors: 'F16',
    get host() {
      return Uint16Array;
    },
  }),
  int32: Object.freeze({
    name: 'int32',
    bytes: 4,
    code: 3,
    safetensors: 'I32',
    get host() {
      return Int32Array;
    },
  }),
} as const);

/** The public tensor dtypes, in code order. */
export const DTYPES: readonly DType[] = Object.freeze(['float32', 'bfloat16', 'float16', 'int32'] as const);

/** The floating-point dtypes, in code order. */
export const FLOAT_DTYPES: readonly FloatDType[] = Object.freeze(['float32', 'bfloat16', 'float16'] as const);

/** Whether a dtype is a floating-point one. */
export function isFloatDType(dtype: DType): dtype is FloatDType {
  return dtype !== 'int32';
}

/** The native code of a dtype. */
export function dtypeCode(dtype: DType): number {
  return DTYPE_INFO[dtype].code;
}

/** Bytes per element of a dtype. */
export function dtypeBytes(dtype: DType): number {
  return DTYPE_INFO[dtype].bytes;
}

/** Fresh host storage for n elements of a dtype. */
export function hostArray(dtype: DType, n: number): Float32Array | Uint16Array | Int32Array {
  return new DTYPE_INFO[dtype].host(n);
}

/** A host array of a dtype's class over `buffer` (all of it). */
export function hostView(dtype: DType, buffer: ArrayBuffer): Float32Array | Uint16Array | Int32Array {
  return new DTYPE_INFO[dtype].host(buffer);
}

/** The float dtype a safetensors dtype name stores, or undefined (integers and unknown names). */
export function floatDTypeOfSafetensors(name: string): FloatDType | undefined {
  return FLOAT_DTYPES.find((d) => DTYPE_INFO[d].safetensors === name);
}

/** A dtype's name in a safetensors header. */
export function safetensorsName(dtype: DType): DTypeInfo['safetensors'] {
  return DTYPE_INFO[dtype].safetensors;
}
