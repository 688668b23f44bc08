// Tensors: a shape, a dtype, a device and storage. float32 is first-class; bfloat16 and
// float16 are storage formats (Uint16Array of raw bits) converted with round-to-nearest-even;
// int32 (indices, token ids) is stored, copied and moved, never computed with by the ops.
// A CPU float32 tensor made from a Float32Array, or an int32 one made from an Int32Array, wraps
// it without copying. A CUDA tensor's storage is a block of device memory (DeviceStorage); its
// copies and conversions run on the backend's one stream, and reading it back (toFloat32Array,
// toInt32Array, data, to('cpu')) waits for them.
import { type DType, dtypeBytes, dtypeCode, DTYPES, FLOAT_DTYPES, hostArray as hostStorage, isFloatDType } from './dtype.js';
import { describe, invalidRange, invalidRangeText, invalidType } from './errors.js';
import { type DeviceMemory, native, type NativeTensor } from './native.js';
import { holding, run } from './ops/run.js';
import { allocate, poolInfo, recycle } from './pool.js';
import { checkSeed, checkShape, finiteF32, FLOAT32_MAX, formatShape, MAX_ELEMENTS, sizeOf } from './validate.js';

export type { DType, FloatDType } from './dtype.js';
export { DTYPES, FLOAT_DTYPES } from './dtype.js';
export { checkSeed, checkShape, formatShape, MAX_ELEMENTS } from './validate.js';
export type Device = 'cpu' | 'cuda';
export type Shape = readonly number[];
/** Raw storage: float32 values, bfloat16 / float16 bit patterns, or int32 values. */
export type Storage = Float32Array | Uint16Array | Int32Array;

/** The storage of a CUDA tensor: a block of device memory from the native caching allocator. */
export interface DeviceStorage {
  readonly kind: 'cuda';
  /** The native block (an External); it returns to the cache on dispose() or collection. */
  readonly handle: DeviceMemory;
  /** Bytes of the block (the tensor's nbytes). */
  readonly bytes: number;
}

function isDevice(s: Storage | DeviceStorage): s is DeviceStorage {
  return !ArrayBuffer.isView(s);
}

/** A host array or device block with its dtype, as the native ops read it. */
function nativeTensor(data: Storage | DeviceMemory, dtype: DType): NativeTensor {
  return { data, dtype: dtypeCode(dtype) };
}

export interface TensorOptions {
  dtype?: DType;
  device?: Device;
}

export interface MemoryInfo {
  /** Live (not disposed, not collected) tensors on all devices. */
  numTensors: number;
  /** Bytes of their storage (views of another tensor's storage count nothing). */
  numBytes: number;
  cpu: { tensors: number; bytes: number; pooledBytes: number };
  /**
   * Live CUDA tensors and their bytes, and the native caching allocator's bytes: handed out
   * (allocatedBytes, rounded up to its block sizes), held for reuse (cachedBytes; see
   * emptyCache()) and the most ever handed out (peakBytes). Zeros without CUDA.
   */
  cuda: { tensors: number; bytes: number; allocatedBytes: number; cachedBytes: number; peakBytes: number };
}

const live = {
  cpu: { tensors: 0, bytes: 0 },
  cuda: { tensors: 0, bytes: 0 },
};

function release(device: Device, bytes: number): void {
  live[device].tensors -= 1;
  live[device].bytes -= bytes;
}

// A backstop for tensors dropped without dispose(): the count follows the collector.
const registry = new FinalizationRegistry<{ device: Device; bytes: number }>((held) => release(held.device, held.bytes));

/** Live tensors and their bytes per device (dispose() and garbage collection both release). */
export function memory(): MemoryInfo {
  const device = native().cudaMemory();
  return {
    numTensors: live.cpu.tensors + live.cuda.tensors,
    numBytes: live.cpu.bytes + live.cuda.bytes,
    cpu: { ...live.cpu, pooledBytes: poolInfo().bytes },
    cuda: { ...live.cuda, allocatedBytes: device.allocated, cachedBytes: device.cached, peakBytes: device.peak },
  };
}

/**
 * Gives the device memory that the CUDA caching allocator holds for reuse back to the driver
 * (after waiting for queued work). Disposed CUDA tensors' blocks are otherwise kept and handed
 * to later tensors. Does nothing when nothing is cached, and on machines without CUDA.
 */
export function emptyCache(): void {
  native().cudaEmptyCache();
}

// ---- device memory -------------------------------------------------------------------------

function allocateDevice(bytes: number, zeroed: boolean): DeviceStorage {
  const handle = native().cudaAlloc({ bytes });
  if (zeroed && bytes > 0) {
    try {
      // All-zero bits are 0 in every dtype: fill as 16-bit words (every storage size is even).
      run('fill', { dst: nativeTensor(handle, 'bfloat16'), value: 0 });
    } catch (e) {
      native().cudaFree({ block: handle });
      throw e;
    }
  }
  return { kind: 'cuda', handle, bytes };
}

function freeDevice(s: DeviceStorage): void {
  native().cudaFree({ block: s.handle });
}

/** Host memory for a tensor's raw values: Float32Array for float32, Int32Array for int32, else Uint16Array bits. */
function hostArray(dtype: DType, n: number): Storage {
  return hostStorage(dtype, n);
}

/** The largest magnitude of the int32 values toFloat32Array() converts: every integer up to it is exact in float32. */
const EXACT_F32_INT = 2 ** 24;

/** int32 values as float32; a RangeError naming the first one above 2^24 in magnitude (not exact in float32). */
function int32ToFloat32(src: Int32Array): Float32Array {
  const out = new Float32Array(src.length);
  for (let i = 0; i < src.length; i++) {
    const v = src[i];
    if (v > EXACT_F32_INT || v < -EXACT_F32_INT)
      throw invalidRange(
        `int32 values in [-${EXACT_F32_INT}, ${EXACT_F32_INT}] (exact in float32)`,
        `tensor[${i}]`,
        v,
        'read int32 values with toInt32Array()',
      );
    out[i] = v;
  }
  return out;
}

/** Runs `fill` on a fresh tensor; disposes it and rethrows when `fill` fails. */
function filledBy(out: Tensor, fill: (t: Tensor) => void): Tensor {
  try {
    fill(out);
  } catch (e) {
    out.dispose();
    throw e;
  }
  return out;
}

/**
 * Who owns a tensor's storage: 'pooled' (lowrank allocated it; it returns to the pool on
 * dispose), 'borrowed' (the caller's array, wrapped without a copy) or 'view' (another
 * tensor's storage; counts no bytes).
 */
export type Ownership = 'pooled' | 'borrowed' | 'view';

/**
 * One storage as a tensor and its views share it. The owner's dispose() empties it for all of
 * them at once (so a view never reads or writes a buffer that was handed to another tensor);
 * work off the event loop holds it, from any of them, and the buffer is recycled only after the
 * last hold is released. @internal
 */
export class StorageCell {
  data: Storage | DeviceStorage | null;
  holds = 0;
  /** Emptied while held: recycled on the last release. */
  deferred: Storage | DeviceStorage | null = null;
  constructor(data: Storage | DeviceStorage) {
    this.data = data;
  }
}

function free(storage: Storage | DeviceStorage): void {
  if (isDevice(storage)) freeDevice(storage);
  else recycle(storage);
}

export class Tensor {
  readonly #cell: StorageCell;
  #disposed = false;
  readonly #shape: Shape;
  readonly #dtype: DType;
  readonly #device: Device;
  readonly #size: number;
  readonly #ownership: Ownership;

  /**
   * @internal Use tensor(), zeros() or randn(). A CUDA tensor's storage is a DeviceStorage
   * ('pooled': the tensor owns the block). A view is made by reshape(), sharing its base's storage.
   */
  constructor(storage: Storage | DeviceStorage | StorageCell, shape: Shape, dtype: DType, device: Device, ownership: Ownership = 'pooled') {
    this.#cell = storage instanceof StorageCell ? storage : new StorageCell(storage);
    this.#shape = Object.freeze([...shape]);
    this.#dtype = dtype;
    this.#device = device;
    this.#size = sizeOf(shape);
    this.#ownership = storage instanceof StorageCell ? 'view' : ownership;
    live[device].tensors += 1;
    live[device].bytes += this.#countedBytes;
    registry.register(this, { device, bytes: this.#countedBytes }, this);
  }

  /**
   * @internal A tensor of fresh storage (pooled host memory, or a block from the CUDA caching
   * allocator); contents arbitrary unless zeroed. The caller checked the device is available.
   */
  static empty(shape: Shape, dtype: DType, device: Device, zeroed = false): Tensor {
    const n = sizeOf(shape);
    if (n > MAX_ELEMENTS)
      throw invalidRangeText(`a result of at most ${MAX_ELEMENTS} elements`, 'the output', `${formatShape(shape)} (${n} elements)`);
    if (device === 'cuda') return new Tensor(allocateDevice(n * dtypeBytes(dtype), zeroed), shape, dtype, device, 'pooled');
    return new Tensor(allocate(dtype, n, zeroed), shape, dtype, device, 'pooled');
  }

  get #countedBytes(): number {
    return this.#ownership === 'view' ? 0 : this.#size * dtypeBytes(this.#dtype);
  }

  /**
   * @internal Marks the storage (shared with the tensor's base and views) as in use by work off
   * the event loop: a dispose() meanwhile takes effect at once for JavaScript, but the buffer is
   * recycled only after release().
   */
  hold(): () => void {
    const cell = this.#cell;
    cell.holds += 1;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      cell.holds -= 1;
      if (cell.holds === 0 && cell.deferred) {
        const deferred = cell.deferred;
        cell.deferred = null;
        free(deferred);
      }
    };
  }

  get shape(): Shape {
    return this.#shape;
  }
  get dtype(): DType {
    return this.#dtype;
  }
  get device(): Device {
    return this.#device;
  }
  /** Number of elements. */
  get size(): number {
    return this.#size;
  }
  /** Bytes of storage. */
  get nbytes(): number {
    return this.#size * dtypeBytes(this.#dtype);
  }
  /** True after dispose(), and for a view once its base was disposed. */
  get disposed(): boolean {
    return this.#disposed || this.#cell.data === null;
  }

  /** The storage, host or device; throws a TypeError naming `name` after dispose() (of this tensor or of its base). */
  #live(name: string): Storage | DeviceStorage {
    if (this.#disposed) throw invalidType('a live Tensor', name, this, 'it was disposed');
    if (this.#cell.data === null) throw invalidType('a live Tensor', name, this, 'its base tensor was disposed');
    return this.#cell.data;
  }

  /** @internal Throws the TypeError naming `name` when the tensor (or its base) was disposed. */
  checkLive(name: string): void {
    this.#live(name);
  }

  /**
   * @internal The raw host storage; throws a TypeError naming `name` after dispose(), and a
   * RangeError for a tensor in CUDA memory (see deviceStorage()).
   */
  storage(name = 'tensor'): Storage {
    const s = this.#live(name);
    if (isDevice(s)) throw invalidRange('a tensor in host memory', name, this, "this operation runs on the CPU; move it with .to('cpu')");
    return s;
  }

  /** @internal The device storage of a CUDA tensor; the same errors as storage() the other way round. */
  deviceStorage(name = 'tensor'): DeviceStorage {
    const s = this.#live(name);
    if (!isDevice(s)) throw invalidRange('a tensor in CUDA memory', name, this);
    return s;
  }

  /** @internal The native block (an External) of a live CUDA tensor, for the CUDA ops. */
  deviceHandle(name = 'tensor'): DeviceMemory {
    return this.deviceStorage(name).handle;
  }

  /**
   * A new Float32Array with the values (converted from bfloat16 / float16), synchronously. An
   * int32 tensor converts exactly or not at all: every value must be within [-2^24, 2^24]
   * (where every integer is a float32), else a RangeError names the first element outside;
   * toInt32Array() reads any int32 tensor.
   */
  toFloat32Array(): Float32Array {
    const src = this.#live('tensor');
    if (isDevice(src)) {
      const raw = hostArray(this.#dtype, this.#size);
      native().cudaDownload({ block: src.handle, dst: raw });
      return this.#asFloat32(raw);
    }
    if (this.#dtype === 'float32') return (src as Float32Array).slice();
    return this.#asFloat32(src);
  }

  /**
   * A new Int32Array with the values of an int32 tensor, synchronously (waiting for queued work
   * on a CUDA tensor). A float tensor is a TypeError: int32 values come only from int32 tensors.
   */
  toInt32Array(): Int32Array {
    const src = this.#live('tensor');
    if (this.#dtype !== 'int32')
      throw invalidType('an int32 Tensor', 'tensor', this, `dtype is ${this.#dtype}; read it with toFloat32Array()`);
    if (!isDevice(src)) return (src as Int32Array).slice();
    const out = new Int32Array(this.#size);
    native().cudaDownload({ block: src.handle, dst: out });
    return out;
  }

  /** `raw` (this tensor's dtype) as float32: itself when float32, else a converted copy. */
  #asFloat32(raw: Storage): Float32Array {
    if (raw instanceof Float32Array) return raw;
    if (raw instanceof Int32Array) return int32ToFloat32(raw);
    const out = new Float32Array(this.#size);
    run('convert', { src: nativeTensor(raw, this.#dtype), dst: nativeTensor(out, 'float32') });
    return out;
  }

  /**
   * The values as a Float32Array, once every pending operation on the tensor is done. For a
   * CUDA tensor the wait and the copy run off the event loop. int32 converts as in
   * toFloat32Array() (exactly, values within [-2^24, 2^24], else a RangeError).
   */
  async data(): Promise<Float32Array> {
    const src = this.#live('tensor');
    if (!isDevice(src)) return this.toFloat32Array();
    const raw = hostArray(this.#dtype, this.#size);
    const release = this.hold(); // a dispose() meanwhile frees the block only after the copy
    try {
      await holding(native().cudaDownload({ block: src.handle, dst: raw }, true), []);
    } finally {
      release();
    }
    return this.#asFloat32(raw);
  }

  /** A copy on `device` (a copy even when already there). */
  to(device: Device): Tensor {
    const src = this.#live('tensor');
    checkDevice(device, 'device');
    if (!isDevice(src) && device === this.#device) return copyOf(src, this.#shape, this.#dtype, device);
    const out = Tensor.empty(this.#shape, this.#dtype, device);
    return filledBy(out, (t) => {
      if (device === 'cuda') {
        if (isDevice(src)) native().cudaCopy({ dst: t.deviceHandle(), src: src.handle, bytes: this.nbytes });
        else native().cudaUpload({ block: t.deviceHandle(), src });
      } else if (isDevice(src)) {
        native().cudaDownload({ block: src.handle, dst: t.storage() });
      } else {
        t.storage().set(src);
      }
    });
  }

  /**
   * A copy converted to `dtype`, between the float dtypes. int32 converts only to itself (a
   * clone): int32 and a float dtype is a TypeError (toInt32Array() / toFloat32Array() read an
   * int32 tensor's values; tensor(values, shape, { dtype }) builds one from them).
   */
  astype(dtype: DType): Tensor {
    checkDType(dtype, 'dtype');
    const src = this.#live('tensor');
    if (dtype === this.#dtype) return this.clone();
    if (!isFloatDType(this.#dtype))
      throw invalidType(
        "'int32'",
        'dtype',
        dtype,
        'an int32 tensor does not convert to a float dtype; read its values with toInt32Array() or toFloat32Array()',
      );
    if (!isFloatDType(dtype))
      throw invalidType(
        dtypeNames(FLOAT_DTYPES),
        'dtype',
        dtype,
        `a ${this.#dtype} tensor does not convert to int32; build an int32 tensor with tensor(values, shape, { dtype: 'int32' })`,
      );
    const out = isDevice(src) ? Tensor.empty(this.#shape, dtype, 'cuda') : emptyHost(this.#shape, dtype, this.#device);
    const from = nativeTensor(isDevice(src) ? src.handle : src, this.#dtype);
    return filledBy(out, (t) => run('convert', { src: from, dst: nativeTensor(isDevice(src) ? t.deviceHandle() : t.storage(), dtype) }));
  }

  /** A copy with its own storage. */
  clone(): Tensor {
    const src = this.#live('tensor');
    if (!isDevice(src)) return copyOf(src, this.#shape, this.#dtype, this.#device);
    const out = Tensor.empty(this.#shape, this.#dtype, 'cuda');
    return filledBy(out, (t) => native().cudaCopy({ dst: t.deviceHandle(), src: src.handle, bytes: this.nbytes }));
  }

  /** The same storage seen with another shape of the same size (a view: writes show in both). */
  reshape(shape: readonly number[]): Tensor {
    const s = checkShape(shape, 'shape');
    if (sizeOf(s) !== this.#size)
      throw invalidRangeText(`a shape of ${this.#size} elements`, 'shape', `${formatShape(s)} (${sizeOf(s)} elements)`);
    this.#live('tensor');
    return new Tensor(this.#cell, s, this.#dtype, this.#device, 'view');
  }

  /**
   * Frees the storage; safe to call twice. Every other method throws afterwards, and so do
   * they on the tensor's views (disposing a view frees nothing). A CUDA tensor's block returns
   * to the caching allocator at once (work already queued on it still runs first); storage that
   * work off the event loop holds is recycled when that work settles.
   */
  dispose(): void {
    if (this.#disposed) return;
    this.#disposed = true;
    registry.unregister(this);
    release(this.#device, this.#countedBytes);
    if (this.#ownership === 'view') return;
    const cell = this.#cell;
    const storage = cell.data;
    cell.data = null; // every view of it is disposed with it
    if (storage === null || this.#ownership === 'borrowed') return;
    if (!isDevice(storage) && this.#device !== 'cpu') return; // a host array standing in for a CUDA tensor
    if (cell.holds > 0) cell.deferred = storage;
    else free(storage);
  }

  [Symbol.dispose](): void {
    this.dispose();
  }

  /** Short text for messages: Tensor(float32, [3, 4], cpu). */
  describe(): string {
    return `Tensor(${this.#dtype}, ${formatShape(this.#shape)}, ${this.#device}${this.disposed ? ', disposed' : ''})`;
  }

  toString(): string {
    return this.describe();
  }
}

/** Fresh pooled host storage; `device` is 'cpu' except for a host array standing in for CUDA. */
function emptyHost(shape: Shape, dtype: DType, device: Device): Tensor {
  return new Tensor(allocate(dtype, sizeOf(shape), false), shape, dtype, device, 'pooled');
}

function copyOf(src: Storage, shape: Shape, dtype: DType, device: Device): Tensor {
  const out = emptyHost(shape, dtype, device);
  out.storage().set(src);
  return out;
}

// ---- argument checks shared by the constructors ----------------------------------------

/** Quoted dtype names for a message: 'float32', 'bfloat16' or 'float16'. */
function dtypeNames(dtypes: readonly DType[]): string {
  const quoted = dtypes.map((d) => `'${d}'`);
  return quoted.length === 1 ? quoted[0] : `${quoted.slice(0, -1).join(', ')} or ${quoted[quoted.length - 1]}`;
}

export function checkDType(dtype: unknown, name: string): DType {
  const expected = dtypeNames(DTYPES);
  if (typeof dtype !== 'string') throw invalidType(expected, name, dtype);
  if (!(DTYPES as readonly string[]).includes(dtype)) throw invalidRange(expected, name, dtype);
  return dtype as DType;
}

// A device, once found, stays; until then every check asks the runtime again (and reports its
// current reason).
let cudaFound = false;

/** @internal Whether a CUDA device was found (so work may be queued there). */
export function cudaFoundYet(): boolean {
  return cudaFound;
}

export function checkDevice(device: unknown, name: string): Device {
  if (typeof device !== 'string') throw invalidType("'cpu' or 'cuda'", name, device);
  if (device !== 'cpu' && device !== 'cuda') throw invalidRange("'cpu' or 'cuda'", name, device);
  if (device === 'cuda' && !cudaFound) {
    const cuda = native().backends().cuda;
    if (!cuda.available) throw invalidRange('an available device', name, device, `CUDA is unavailable: ${cuda.reason ?? 'unknown reason'}`);
    cudaFound = true;
  }
  return device;
}

/** The options' dtype (`fallback` when omitted) and device. */
function checkOptions(opts: unknown, name: string, fallback: DType = 'float32'): { dtype: DType; device: Device } {
  if (opts === undefined) return { dtype: fallback, device: 'cpu' };
  if (typeof opts !== 'object' || opts === null) throw invalidType('an options object', name, opts);
  const o = opts as TensorOptions;
  return {
    dtype: o.dtype === undefined ? fallback : checkDType(o.dtype, `${name}.dtype`),
    device: o.device === undefined ? 'cpu' : checkDevice(o.device, `${name}.device`),
  };
}

/** `data`, of `length` elements, holds the n elements of shape `s`, else a RangeError. */
function checkLength(data: unknown, length: number, n: number, s: readonly number[]): void {
  if (length !== n) throw invalidRangeText(`${n} elements (shape ${formatShape(s)})`, 'data', `${describe(data)} with ${length} elements`);
}

const INT32_MIN = -(2 ** 31);
const INT32_MAX = 2 ** 31 - 1;

/** An int32 tensor from an Int32Array (wrapped on the CPU) or an array of integers (copied). */
function int32Tensor(data: unknown, s: readonly number[], device: Device): Tensor {
  let values: Int32Array;
  if (data instanceof Int32Array) values = data;
  else if (Array.isArray(data)) {
    const expected = `an integer in [${INT32_MIN}, ${INT32_MAX}]`;
    for (let i = 0; i < data.length; i++) {
      const v: unknown = data[i]; // holes read as undefined
      if (typeof v !== 'number') throw invalidType(expected, `data[${i}]`, v);
      if (!Number.isInteger(v) || v < INT32_MIN || v > INT32_MAX) throw invalidRange(expected, `data[${i}]`, v);
    }
    values = Int32Array.from(data as number[]);
  } else throw invalidType('an Int32Array or an array of integers', 'data', data);
  checkLength(data, values.length, sizeOf(s), s);
  if (device === 'cuda')
    return filledBy(Tensor.empty(s, 'int32', 'cuda'), (t) => native().cudaUpload({ block: t.deviceHandle(), src: values }));
  return new Tensor(values, s, 'int32', device, Array.isArray(data) ? 'pooled' : 'borrowed');
}

/**
 * A tensor from values. `data` is a Float32Array (wrapped without a copy for float32), an
 * array of numbers (copied), or for bfloat16 / float16 a Uint16Array of raw bits (wrapped) or
 * a Float32Array (converted, round-to-nearest-even). For int32 (the dtype when `data` is an
 * Int32Array and options.dtype is omitted) it is an Int32Array (wrapped) or an array of
 * integers in int32's range (copied; any other number is a RangeError naming its index).
 */
export function tensor(
  data: Float32Array | Uint16Array | Int32Array | readonly number[],
  shape: readonly number[],
  options?: TensorOptions,
): Tensor {
  const s = checkShape(shape, 'shape');
  const { dtype, device } = checkOptions(options, 'options', data instanceof Int32Array ? 'int32' : 'float32');
  if (dtype === 'int32') return int32Tensor(data, s, device);
  const n = sizeOf(s);
  let values: Float32Array | Uint16Array;
  if (data instanceof Float32Array) values = data;
  else if (data instanceof Uint16Array && dtype !== 'float32') values = data;
  else if (Array.isArray(data)) {
    for (let i = 0; i < data.length; i++) {
      const v: unknown = data[i]; // holes read as undefined
      if (typeof v !== 'number') throw invalidType('a number', `data[${i}]`, v);
    }
    values = Float32Array.from(data as number[]);
  } else {
    const expected =
      dtype === 'float32'
        ? 'a Float32Array or an array of numbers'
        : `a Float32Array, a Uint16Array of ${dtype} bits or an array of numbers`;
    throw invalidType(expected, 'data', data);
  }
  checkLength(data, values.length, n, s);
  if (device === 'cuda') {
    let host: Storage = values;
    if (!(values instanceof Uint16Array) && dtype !== 'float32') {
      host = new Uint16Array(n);
      run('convert', { src: nativeTensor(values, 'float32'), dst: nativeTensor(host, dtype) });
    }
    return filledBy(Tensor.empty(s, dtype, 'cuda'), (t) => native().cudaUpload({ block: t.deviceHandle(), src: host }));
  }
  if (values instanceof Uint16Array || dtype === 'float32')
    return new Tensor(values, s, dtype, device, Array.isArray(data) ? 'pooled' : 'borrowed');
  const out = Tensor.empty(s, dtype, device);
  run('convert', { src: nativeTensor(values, 'float32'), dst: nativeTensor(out.storage(), dtype) });
  return out;
}

export function zeros(shape: readonly number[], options?: TensorOptions): Tensor {
  const s = checkShape(shape, 'shape');
  const { dtype, device } = checkOptions(options, 'options');
  return Tensor.empty(s, dtype, device, true);
}

export interface RandomOptions extends TensorOptions {
  /** Same seed, same values (on every backend). Drawn at random when omitted. */
  seed?: number | bigint;
}

function filled(shape: readonly number[], options: RandomOptions | undefined, normal: boolean, a: number, b: number): Tensor {
  const s = checkShape(shape, 'shape');
  const { dtype, device } = checkOptions(options, 'options');
  if (!isFloatDType(dtype)) throw invalidRange(dtypeNames(FLOAT_DTYPES), 'options.dtype', dtype, 'random values are floating-point');
  const seed = checkSeed(options?.seed, 'options.seed');
  // Drawn on the host in every case, so a seed gives the same values on every device.
  let t = Tensor.empty(s, 'float32', 'cpu');
  try {
    run('fillRandom', { out: nativeTensor(t.storage(), 'float32'), seed, normal, a, b });
    if (dtype !== 'float32') {
      const converted = t.astype(dtype);
      t.dispose();
      t = converted;
    }
    if (device !== 'cpu') {
      const moved = t.to(device);
      t.dispose();
      t = moved;
    }
  } catch (e) {
    t.dispose();
    throw e;
  }
  return t;
}

/** Normal values, mean + std · N(0, 1), from the counter-based generator. */
export function randn(shape: readonly number[], options?: RandomOptions & { mean?: number; std?: number }): Tensor {
  const mean = finiteF32(options?.mean, 'options.mean', 0);
  const std = finiteF32(options?.std, 'options.std', 1);
  return filled(shape, options, true, mean, std);
}

/** Uniform values in [low, high), from the counter-based generator. */
export function rand(shape: readonly number[], options?: RandomOptions & { low?: number; high?: number }): Tensor {
  const low = finiteF32(options?.low, 'options.low', 0);
  const high = finiteF32(options?.high, 'options.high', 1);
  // in float32, as the values are drawn: distinct bounds, and a width that is finite there
  if (!(Math.fround(low) < Math.fround(high)) || !(Math.fround(high) - Math.fround(low) <= FLOAT32_MAX))
    throw invalidRange(`a number above options.low (${low}) in float32, within float32 range of it`, 'options.high', high);
  return filled(shape, options, false, low, high);
}
