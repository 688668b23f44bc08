// THE table of storage dtypes: each one's name, bytes per element, native code (the `dtype` of
// a tensor at the native boundary, native/core/dtype.h), safetensors name and host array class.
// int32 is stored and copied (indices, token ids, offsets) but is not yet a public tensor dtype.

/** The public tensor dtypes. */
export type DType = 'float32' | 'bfloat16' | 'float16';
/** Every dtype the native side stores, int32 included. */
export type StorageDType = DType | 'int32';

export interface DTypeInfo {
  readonly name: StorageDType;
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
export const DTYPE_INFO: Readonly<Record<StorageDType, DTypeInfo>> = Object.freeze({
  float32: Object.freeze({ name: 'float32', bytes: 4, code: 0, safetensors: 'F32', get host() { return Float32Array; } }),
  bfloat16: Object.freeze({ name: 'bfloat16', bytes: 2, code: 1, safetensors: 'BF16', get host() { return Uint16Array; } }),
  float16: Object.freeze({ name: 'float16', bytes: 2, code: 2, safetensors: 'F16', get host() { return Uint16Array; } }),
  int32: Object.freeze({ name: 'int32', bytes: 4, code: 3, safetensors: 'I32', get host() { return Int32Array; } }),
} as const);

/** The public tensor dtypes, in code order. */
export const DTYPES: readonly DType[] = Object.freeze(['float32', 'bfloat16', 'float16'] as const);

/** The native code of a dtype. */
export function dtypeCode(dtype: StorageDType): number {
  return DTYPE_INFO[dtype].code;
}

/** Bytes per element of a dtype. */
export function dtypeBytes(dtype: StorageDType): number {
  return DTYPE_INFO[dtype].bytes;
}

/** Fresh host storage for n elements of a dtype. */
export function hostArray(dtype: StorageDType, n: number): Float32Array | Uint16Array | Int32Array {
  return new DTYPE_INFO[dtype].host(n);
}
