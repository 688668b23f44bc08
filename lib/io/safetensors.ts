// safetensors: read tensor by tensor from an open file, write atomically (README.md, Files).
//
// Layout: an 8-byte little-endian u64 N, N bytes of UTF-8 JSON (an object that starts with "{",
// padded with spaces), then the data buffer. Each tensor is `"name": {"dtype", "shape",
// "data_offsets": [begin, end]}` with offsets relative to the buffer (end exclusive); an optional
// `"__metadata__"` maps strings to strings.
//
// The reader validates the whole header before it touches the data, and never allocates from a
// length it has not checked against the file's size: N is at most 100 000 000 (the safetensors
// crate's MAX_HEADER_SIZE) and 8 + N at most the file's size; it rejects invalid UTF-8, anything
// but one JSON object (trailing JSON whitespace allowed), duplicate keys at any level (JSON.parse
// would silently keep the last one, so the header is parsed here, by a small strict parser),
// `__metadata__` that is not an object of strings (null is read as no metadata, as the crate
// does), entries without a known dtype, an array shape of non-negative integers and two
// non-negative integer data_offsets, and data_offsets that do not tile the buffer exactly: sorted
// by offset, each tensor must start where the previous one ended (no overlap, no hole), span
// product(shape) × dtype size bytes (computed with BigInt) and the last must end at the end of the
// file. Unknown keys inside an entry are ignored, as the crate's serde derive ignores them.
// 0-d tensors (shape [], one element) and empty tensors (a 0 in the shape, zero bytes) are valid.
//
// The writer orders tensors as the safetensors crate does (safetensors/src/tensor.rs, `prepare`:
// `data.sort_by(|(lname, left), (rname, right)| right.dtype().cmp(&left.dtype()).then(lname.cmp(rname)))`):
// by the `Dtype` enum's declaration order, descending — U64, I64, F64, F32, U32, I32, BF16, F16,
// U16, I16, F8_E4M3, F8_E5M2, I8, U8, BOOL — then by name compared as UTF-8 bytes (Rust's str
// order, which differs from JavaScript's UTF-16 order above U+FFFF). The header is the crate's
// compact serde_json text, `__metadata__` first (keys sorted by UTF-8 bytes here; the crate
// serializes a HashMap, in no fixed order), then the tensors in data order, padded with spaces to
// a multiple of 8 bytes. Checked byte for byte against safetensors 0.8.0 in test/18.
import { constants } from 'node:buffer';
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { DTYPE_INFO, DTYPES as TENSOR_DTYPES, type DType } from '../dtype.js';
import { invalidRange, invalidRangeText, invalidType } from '../errors.js';
import { formatShape, MAX_ELEMENTS, Tensor } from '../tensor.js';
import { AtomicWriter } from './atomic.js';

export type SafetensorsDtype =
  'BOOL' | 'U8' | 'I8' | 'F8_E5M2' | 'F8_E4M3' | 'I16' | 'U16' | 'F16' | 'BF16' | 'I32' | 'U32' | 'F32' | 'F64' | 'I64' | 'U64';

/** The dtypes in the safetensors crate's `Dtype` declaration order (its `Ord`). */
export const DTYPES: readonly SafetensorsDtype[] = Object.freeze([
  'BOOL',
  'U8',
  'I8',
  'F8_E5M2',
  'F8_E4M3',
  'I16',
  'U16',
  'F16',
  'BF16',
  'I32',
  'U32',
  'F32',
  'F64',
  'I64',
  'U64',
] as const);

export const DTYPE_BYTES: Record<SafetensorsDtype, number> = Object.freeze({
  BOOL: 1,
  U8: 1,
  I8: 1,
  F8_E5M2: 1,
  F8_E4M3: 1,
  I16: 2,
  U16: 2,
  F16: 2,
  BF16: 2,
  I32: 4,
  U32: 4,
  F32: 4,
  F64: 8,
  I64: 8,
  U64: 8,
});

/** The largest header the reader accepts (the safetensors crate's MAX_HEADER_SIZE). */
export const MAX_HEADER_BYTES = 100_000_000;

const RANK = new Map<string, number>(DTYPES.map((d, i) => [d, i]));
// The tensor dtypes' safetensors names, from lib/dtype.ts's table.
const TO_LOWRANK: Partial<Record<SafetensorsDtype, DType>> = Object.fromEntries(TENSOR_DTYPES.map((d) => [DTYPE_INFO[d].safetensors, d]));
const FROM_LOWRANK = (dtype: DType): SafetensorsDtype => DTYPE_INFO[dtype].safetensors;
const LOADABLE_NAMES = TENSOR_DTYPES.map((d) => DTYPE_INFO[d].safetensors);
/** The safetensors dtypes read() loads as tensors, for messages: "F32, BF16, F16 or I32". */
const LOADABLE = `${LOADABLE_NAMES.slice(0, -1).join(', ')} or ${LOADABLE_NAMES[LOADABLE_NAMES.length - 1]}`;
const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;
/** The largest byte array this Node.js can allocate. */
const MAX_BYTES = constants.MAX_LENGTH;

export interface TensorEntry {
  name: string;
  dtype: SafetensorsDtype;
  shape: number[];
  /** Offsets relative to the data buffer (which starts at Header.headerBytes); end exclusive. */
  begin: number;
  end: number;
}

export interface Header {
  /** In file order of data offsets. */
  entries: TensorEntry[];
  metadata: Record<string, string>;
  /** 8 + N: where the data buffer starts. */
  headerBytes: number;
}

// ---- messages ------------------------------------------------------------------------------

function typeText(expected: string, name: string, received: string): TypeError {
  return new TypeError(`Expected ${expected} for ${name} but received ${received}`);
}

/** A name quoted for a message, shortened when long. */
function quote(name: string): string {
  const q = JSON.stringify(name);
  return q.length > 120 ? `${q.slice(0, 100)}…" (${name.length} characters)` : q;
}

function plural(n: number | bigint, unit: string): string {
  return `${n} ${unit}${n === 1 || n === 1n ? '' : 's'}`;
}

// ---- a strict JSON parser that reports duplicate keys --------------------------------------

/** A JSON number kept as its text, so integers are checked exactly (no float rounding). */
class JsonNumber {
  constructor(readonly text: string) {}
}
type JsonValue = null | boolean | string | JsonNumber | JsonValue[] | JsonObject;
type JsonObject = Map<string, JsonValue>;

/** serde_json's limit is 128; a safetensors header needs 3 levels. */
const MAX_DEPTH = 64;
const NUMBER = /-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?/y;
const LONE_SURROGATE = /\p{Cs}/u;
const LITERALS = [
  ['true', true],
  ['false', false],
  ['null', null],
] as const;
const ESCAPES: Record<string, string> = { '"': '"', '\\': '\\', '/': '/', b: '\b', f: '\f', n: '\n', r: '\r', t: '\t' };

class JsonParser {
  #i = 0;
  readonly #s: string;
  readonly #where: string;

  constructor(text: string, where: string) {
    this.#s = text;
    this.#where = where;
  }

  /** The one top-level object, then only JSON whitespace. */
  document(): JsonObject {
    const top = this.#object(1);
    this.#ws();
    if (this.#i < this.#s.length) this.#fail('only whitespace after the JSON object');
    return top;
  }

  #fail(expected: string, at = this.#i): never {
    const s = this.#s;
    const near = at >= s.length ? 'the end of the header' : JSON.stringify(s.slice(at, at + 16));
    throw typeText(expected, `the header of ${this.#where}`, `${near} at character ${at}`);
  }

  #ws(): void {
    const s = this.#s;
    let i = this.#i;
    for (; i < s.length; i++) {
      const c = s.charCodeAt(i);
      if (c !== 0x20 && c !== 0x0a && c !== 0x0d && c !== 0x09) break;
    }
    this.#i = i;
  }

  #value(depth: number): JsonValue {
    this.#ws();
    const s = this.#s;
    const c = s.charCodeAt(this.#i);
    if (c === 0x7b) return this.#object(depth + 1);
    if (c === 0x5b) return this.#array(depth + 1);
    if (c === 0x22) return this.#string();
    if (c === 0x2d || (c >= 0x30 && c <= 0x39)) return this.#number();
    for (const [word, value] of LITERALS) {
      if (s.startsWith(word, this.#i)) {
        this.#i += word.length;
        return value;
      }
    }
    return this.#fail('a JSON value');
  }

  #object(depth: number): JsonObject {
    if (depth > MAX_DEPTH) this.#fail(`JSON nested at most ${MAX_DEPTH} deep`);
    const s = this.#s;
    if (s.charCodeAt(this.#i) !== 0x7b) this.#fail('a JSON object starting with "{"');
    this.#i++;
    const out: JsonObject = new Map();
    this.#ws();
    if (s.charCodeAt(this.#i) === 0x7d) {
      this.#i++;
      return out;
    }
    for (;;) {
      this.#ws();
      const at = this.#i;
      if (s.charCodeAt(at) !== 0x22) this.#fail('a string key');
      const key = this.#string();
      this.#ws();
      if (s.charCodeAt(this.#i) !== 0x3a) this.#fail("':'");
      this.#i++;
      const value = this.#value(depth);
      if (out.has(key))
        throw typeText(
          depth === 1 ? 'unique tensor names' : 'unique keys',
          `the header of ${this.#where}`,
          `${quote(key)} twice (the second at character ${at})`,
        );
      out.set(key, value);
      this.#ws();
      const c = s.charCodeAt(this.#i);
      this.#i++;
      if (c === 0x7d) return out;
      if (c !== 0x2c) this.#fail("',' or '}'", this.#i - 1);
    }
  }

  #array(depth: number): JsonValue[] {
    if (depth > MAX_DEPTH) this.#fail(`JSON nested at most ${MAX_DEPTH} deep`);
    const s = this.#s;
    this.#i++;
    const out: JsonValue[] = [];
    this.#ws();
    if (s.charCodeAt(this.#i) === 0x5d) {
      this.#i++;
      return out;
    }
    for (;;) {
      out.push(this.#value(depth));
      this.#ws();
      const c = s.charCodeAt(this.#i);
      this.#i++;
      if (c === 0x5d) return out;
      if (c !== 0x2c) this.#fail("',' or ']'", this.#i - 1);
    }
  }

  #string(): string {
    const s = this.#s;
    let i = this.#i + 1;
    let start = i;
    let out = '';
    let escaped = false;
    for (;;) {
      if (i >= s.length) this.#fail("a closing '\"'", i);
      const c = s.charCodeAt(i);
      if (c === 0x22) break;
      if (c < 0x20) this.#fail('control characters escaped inside strings', i);
      if (c !== 0x5c) {
        i++;
        continue;
      }
      escaped = true;
      out += s.slice(start, i);
      const e = s[i + 1];
      const simple = e === undefined ? undefined : ESCAPES[e];
      if (simple !== undefined) {
        out += simple;
        i += 2;
      } else if (e === 'u' && /^[0-9a-fA-F]{4}$/.test(s.slice(i + 2, i + 6))) {
        out += String.fromCharCode(parseInt(s.slice(i + 2, i + 6), 16));
        i += 6;
      } else {
        this.#fail('a JSON escape (\\" \\\\ \\/ \\b \\f \\n \\r \\t \\uXXXX)', i);
      }
      start = i;
    }
    out += s.slice(start, i);
    // Text decoded from valid UTF-8 has no lone surrogates; only \u escapes can make one.
    if (escaped && LONE_SURROGATE.test(out)) this.#fail('well-formed Unicode (a \\u escape is a lone surrogate)', this.#i);
    this.#i = i + 1;
    return out;
  }

  #number(): JsonNumber {
    NUMBER.lastIndex = this.#i;
    const m = NUMBER.exec(this.#s);
    if (!m) return this.#fail('a JSON number');
    this.#i += m[0].length;
    return new JsonNumber(m[0]);
  }
}

/** Briefly, for messages. */
function describeJson(v: JsonValue | undefined): string {
  if (v === undefined) return 'nothing (the key is missing)';
  if (v === null) return 'null';
  if (typeof v === 'boolean') return String(v);
  if (typeof v === 'string') return quote(v);
  if (v instanceof JsonNumber) return v.text.length > 40 ? `${v.text.slice(0, 40)}…` : v.text;
  if (Array.isArray(v)) return v.length > 8 ? `an array of length ${v.length}` : `[${v.map(describeJson).join(', ')}]`;
  return 'an object';
}

/** A non-negative integer below 2^53 from JSON text (no fraction, exponent, sign or -0). */
function jsonIndex(v: JsonValue | undefined, name: string): number {
  if (!(v instanceof JsonNumber)) throw typeText('a non-negative integer', name, describeJson(v));
  if (!/^(?:0|[1-9][0-9]*)$/.test(v.text)) throw invalidRangeText('a non-negative integer', name, describeJson(v));
  const n = Number(v.text);
  if (!Number.isSafeInteger(n)) throw invalidRangeText('a non-negative integer below 2^53', name, describeJson(v));
  return n;
}

// ---- header --------------------------------------------------------------------------------

function checkIndexArg(v: unknown, name: string): number {
  if (typeof v !== 'number') throw invalidType('a non-negative integer', name, v);
  if (!Number.isSafeInteger(v) || v < 0) throw invalidRange('a non-negative integer', name, v);
  return v;
}

/**
 * Validates a header as README.md's Files section describes. `bytes` holds at least the file's first 8 + N bytes (fewer:
 * a RangeError naming bytes); `fileSize` is the whole file's size; `source` names the file in
 * messages (the path, say). Every failure is a TypeError (malformed document) or RangeError (a
 * length, offset or size out of range) whose message starts with "Expected ".
 */
export function parseHeader(bytes: Uint8Array, fileSize: number, source?: string): Header {
  if (!(bytes instanceof Uint8Array)) throw invalidType('a Uint8Array', 'bytes', bytes);
  checkIndexArg(fileSize, 'fileSize');
  if (source !== undefined && typeof source !== 'string') throw invalidType('a string', 'source', source);
  const where = source === undefined ? 'the safetensors data' : quote(source);

  if (fileSize < 8) throw invalidRangeText('a file of at least 8 bytes (the header length)', where, plural(fileSize, 'byte'));
  if (bytes.length < 8) throw invalidRangeText("the file's first 8 bytes", 'bytes', plural(bytes.length, 'byte'));
  const n64 = new DataView(bytes.buffer, bytes.byteOffset, 8).getBigUint64(0, true);
  if (n64 > BigInt(MAX_HEADER_BYTES))
    throw invalidRangeText(`a header length of at most ${MAX_HEADER_BYTES} bytes`, `the header length of ${where}`, String(n64));
  const n = Number(n64);
  if (8 + n > fileSize)
    throw invalidRangeText(
      `a header length of at most ${fileSize - 8} bytes (the file has ${fileSize})`,
      `the header length of ${where}`,
      String(n),
    );
  if (bytes.length < 8 + n)
    throw invalidRangeText(`the file's first ${8 + n} bytes (8 + the header length)`, 'bytes', plural(bytes.length, 'byte'));
  if (n === 0 || bytes[8] !== 0x7b) {
    const preview = n === 0 ? 'an empty header' : `a header starting with byte 0x${bytes[8].toString(16).padStart(2, '0')}`;
    throw typeText('a JSON object starting with "{"', `the header of ${where}`, preview);
  }
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(bytes.subarray(8, 8 + n));
  } catch {
    throw typeText('UTF-8 text', `the header of ${where}`, 'invalid UTF-8');
  }
  const doc = new JsonParser(text, where).document();
  const bufferBytes = fileSize - 8 - n;

  let metadata: Record<string, string> = Object.create(null) as Record<string, string>;
  const entries: TensorEntry[] = [];
  for (const [name, value] of doc) {
    if (name === '__metadata__') {
      metadata = readMetadata(value, where);
      continue;
    }
    entries.push(readEntry(name, value, where));
  }

  // Sorted by offsets (stable: empty tensors at one offset keep the header's order), the
  // tensors must tile [0, bufferBytes) exactly.
  entries.sort((a, b) => a.begin - b.begin || a.end - b.end);
  let covered = 0;
  let previous: TensorEntry | undefined;
  for (const e of entries) {
    const label = (): string => `tensor ${quote(e.name)} in ${where}`;
    const offsets = (): string => `[${e.begin}, ${e.end}]`;
    if (e.end > bufferBytes) throw invalidRangeText(`data_offsets within the data buffer [0, ${bufferBytes}]`, label(), offsets());
    if (e.begin !== covered) {
      const what = previous ? `${covered} (the end of tensor ${quote(previous.name)})` : '0 (the start of the data buffer)';
      const why = e.begin < covered ? `it overlaps tensor ${quote(previous!.name)}` : `bytes ${covered}..${e.begin} belong to no tensor`;
      throw invalidRangeText(`data_offsets starting at ${what}`, label(), `${offsets()} (${why})`);
    }
    const size = e.shape.reduce((p, d) => p * BigInt(d), 1n) * BigInt(DTYPE_BYTES[e.dtype]);
    if (size !== BigInt(e.end - e.begin))
      throw invalidRangeText(
        `${plural(size, 'byte')} (shape ${formatShape(e.shape)} of ${e.dtype}, ${plural(DTYPE_BYTES[e.dtype], 'byte')} each)`,
        `the data_offsets of ${label()}`,
        `${offsets()} (${plural(e.end - e.begin, 'byte')})`,
      );
    covered = e.end;
    previous = e;
  }
  if (covered !== bufferBytes)
    throw invalidRangeText(
      `tensors covering the data buffer to its end (byte ${bufferBytes})`,
      where,
      entries.length === 0 ? 'no tensors' : `tensors ending at byte ${covered}`,
    );
  return { entries, metadata, headerBytes: 8 + n };
}

function readMetadata(value: JsonValue, where: string): Record<string, string> {
  const out: Record<string, string> = Object.create(null) as Record<string, string>;
  if (value === null) return out;
  if (!(value instanceof Map)) throw typeText('an object of strings', `__metadata__ in ${where}`, describeJson(value));
  for (const [k, v] of value) {
    if (typeof v !== 'string') throw typeText('a string', `__metadata__[${quote(k)}] in ${where}`, describeJson(v));
    out[k] = v;
  }
  return out;
}

function readEntry(name: string, value: JsonValue, where: string): TensorEntry {
  const label = `tensor ${quote(name)} in ${where}`;
  if (!(value instanceof Map)) throw typeText('an object { dtype, shape, data_offsets }', label, describeJson(value));
  const dtype = value.get('dtype');
  if (typeof dtype !== 'string') throw typeText('a dtype string', `the dtype of ${label}`, describeJson(dtype));
  if (!RANK.has(dtype)) throw invalidRangeText(`one of ${DTYPES.join(', ')}`, `the dtype of ${label}`, describeJson(dtype));
  const shapeValue = value.get('shape');
  if (!Array.isArray(shapeValue)) throw typeText('an array of non-negative integers', `the shape of ${label}`, describeJson(shapeValue));
  const shape = shapeValue.map((d, i) => jsonIndex(d, `shape[${i}] of ${label}`));
  const offsets = value.get('data_offsets');
  if (!Array.isArray(offsets) || offsets.length !== 2)
    throw typeText('an array [begin, end]', `the data_offsets of ${label}`, describeJson(offsets));
  const begin = jsonIndex(offsets[0], `data_offsets[0] of ${label}`);
  const end = jsonIndex(offsets[1], `data_offsets[1] of ${label}`);
  if (begin > end) throw invalidRangeText('data_offsets [begin, end] with begin <= end', label, `[${begin}, ${end}]`);
  return { name, dtype: dtype as SafetensorsDtype, shape, begin, end };
}

// ---- reading -------------------------------------------------------------------------------

/** Reads exactly out.length bytes at `position`, looping over short reads. */
function readFully(fd: number, out: Uint8Array, position: number, what: string): void {
  let done = 0;
  while (done < out.length) {
    const n = readSync(fd, out, done, Math.min(out.length - done, 1 << 30), position + done);
    if (n === 0)
      throw invalidRangeText(
        `${plural(out.length, 'byte')} at byte ${position}`,
        what,
        `${plural(done, 'byte')} (the file is shorter than when it was opened)`,
      );
    done += n;
  }
}

/** Byte order: safetensors is little-endian; typed arrays use the host's order. */
function swapBytes(bytes: Uint8Array, size: number): void {
  if (LITTLE_ENDIAN || size === 1) return;
  for (let i = 0; i < bytes.length; i += size) bytes.subarray(i, i + size).reverse();
}

// Descriptors of files dropped without close(): closed when collected (a backstop, not the contract).
const openFiles = new FinalizationRegistry<number>((fd) => {
  try {
    closeSync(fd);
  } catch {
    // already closed
  }
});

/** A safetensors file open for reading tensor by tensor (the header is read and validated once). */
export class SafetensorsFile {
  readonly path: string;
  readonly metadata: Record<string, string>;
  /** In file order of data offsets; frozen. */
  readonly entries: readonly TensorEntry[];
  /** Where the data buffer starts (8 + N). */
  readonly headerBytes: number;
  /** The file's size when it was opened. */
  readonly fileSize: number;
  readonly #byName: Map<string, TensorEntry>;
  #fd: number;

  private constructor(path: string, fd: number, fileSize: number, header: Header) {
    this.path = path;
    this.#fd = fd;
    this.fileSize = fileSize;
    this.headerBytes = header.headerBytes;
    this.metadata = Object.freeze(header.metadata);
    this.entries = Object.freeze(header.entries.map((e) => Object.freeze({ ...e, shape: Object.freeze(e.shape) as number[] })));
    this.#byName = new Map(this.entries.map((e) => [e.name, e]));
    openFiles.register(this, fd, this);
  }

  /** Opens `path` and reads and validates its header (synchronously); the data stays on disk. */
  static open(path: string): SafetensorsFile {
    if (typeof path !== 'string' || path.length === 0) throw invalidType('a non-empty path string', 'path', path);
    let fd: number;
    try {
      fd = openSync(path, 'r');
    } catch (e) {
      // A RangeError naming the argument, keeping the system error's code (and the error as its cause).
      const err = e as NodeJS.ErrnoException;
      const reason = `${err.code ?? 'error'}: ${err.message.replace(/^[A-Z]+: /, '').replace(/, open .*$/, '')}`;
      throw Object.assign(invalidRange('a readable safetensors file', 'path', path, reason), { code: err.code, cause: err });
    }
    try {
      const size = fstatSync(fd).size;
      const head = new Uint8Array(Math.min(8, size));
      readFully(fd, head, 0, `the header length of ${quote(path)}`);
      // Allocate only once the length is known to be within the limit and the file; otherwise
      // parseHeader reports what is wrong from the first 8 bytes.
      const n = size >= 8 ? new DataView(head.buffer).getBigUint64(0, true) : -1n;
      let bytes = head;
      if (n >= 0n && n <= BigInt(Math.min(MAX_HEADER_BYTES, size - 8))) {
        bytes = new Uint8Array(8 + Number(n));
        bytes.set(head);
        readFully(fd, bytes.subarray(8), 8, `the header of ${quote(path)}`);
      }
      return new SafetensorsFile(path, fd, size, parseHeader(bytes, size, path));
    } catch (e) {
      closeSync(fd);
      throw e;
    }
  }

  get closed(): boolean {
    return this.#fd < 0;
  }

  has(name: string): boolean {
    return this.#byName.has(name);
  }

  /** The entry of tensor `name`; a RangeError when there is none. */
  entry(name: string): TensorEntry {
    if (typeof name !== 'string') throw invalidType('a tensor name string', 'name', name);
    const e = this.#byName.get(name);
    if (e) return e;
    const names = this.entries.slice(0, 5).map((x) => quote(x.name));
    const more = this.entries.length > 5 ? `, … (${this.entries.length} in all)` : '';
    throw invalidRange(
      `the name of a tensor in ${quote(this.path)}`,
      'name',
      name,
      this.entries.length === 0 ? 'the file holds no tensors' : `it holds ${names.join(', ')}${more}`,
    );
  }

  #open(): number {
    if (this.#fd < 0) throw typeText('an open SafetensorsFile', 'file', `a closed SafetensorsFile (${quote(this.path)})`);
    return this.#fd;
  }

  /**
   * Tensor `name` as a CPU Tensor, copied into lowrank storage: F32 → float32, BF16 → bfloat16,
   * F16 → float16, I32 → int32 (little-endian in the file, like every dtype). Any other dtype is
   * a TypeError (read its bytes with readBytes()).
   */
  read(name: string): Tensor {
    const e = this.entry(name);
    const fd = this.#open();
    const dtype = TO_LOWRANK[e.dtype];
    const label = `tensor ${quote(name)} in ${quote(this.path)}`;
    if (dtype === undefined)
      throw typeText(
        `an ${LOADABLE} tensor`,
        label,
        `dtype ${e.dtype} (dtype ${e.dtype} is not supported by lowrank's ops; readBytes() returns its raw bytes)`,
      );
    const count = (e.end - e.begin) / DTYPE_BYTES[e.dtype];
    if (count > MAX_ELEMENTS)
      throw invalidRangeText(`a tensor of at most ${MAX_ELEMENTS} elements`, label, `shape ${formatShape(e.shape)}`);
    const out = Tensor.empty(e.shape, dtype, 'cpu');
    try {
      const storage = out.storage();
      const bytes = new Uint8Array(storage.buffer, storage.byteOffset, storage.byteLength);
      readFully(fd, bytes, this.headerBytes + e.begin, label);
      swapBytes(bytes, DTYPE_BYTES[e.dtype]);
    } catch (err) {
      out.dispose();
      throw err;
    }
    return out;
  }

  /**
   * The raw little-endian bytes of tensor `name` (any dtype), in a new array; with `start` and
   * `end` (byte offsets within the tensor, end exclusive), only that range, so a tensor larger
   * than memory can be copied in pieces (SafetensorsWriter.write accepts pieces).
   */
  readBytes(name: string, start?: number, end?: number): Uint8Array {
    const e = this.entry(name);
    const fd = this.#open();
    const size = e.end - e.begin;
    const from = start === undefined ? 0 : checkIndexArg(start, 'start');
    const to = end === undefined ? size : checkIndexArg(end, 'end');
    if (to > size) throw invalidRange(`a byte offset within tensor ${quote(name)} (at most ${size})`, 'end', end);
    if (from > to) throw invalidRange(`a byte offset at most end (${to})`, 'start', start);
    const label = `tensor ${quote(name)} in ${quote(this.path)}`;
    if (to - from > MAX_BYTES)
      throw invalidRangeText(`at most ${MAX_BYTES} bytes (the largest array here)`, label, plural(to - from, 'byte'));
    const out = new Uint8Array(to - from);
    readFully(fd, out, this.headerBytes + e.begin + from, label);
    return out;
  }

  /** Closes the file; safe to call twice. read() and readBytes() throw afterwards. */
  close(): void {
    if (this.#fd < 0) return;
    const fd = this.#fd;
    this.#fd = -1;
    openFiles.unregister(this);
    closeSync(fd);
  }

  [Symbol.dispose](): void {
    this.close();
  }

  describe(): string {
    return `SafetensorsFile(${quote(this.path)}, ${plural(this.entries.length, 'tensor')}${this.closed ? ', closed' : ''})`;
  }
}

/** Every tensor of a (small) file, plus its metadata. Tensors of other dtypes than F32, BF16, F16 and I32 are a TypeError. */
export function readSafetensors(path: string): { tensors: Map<string, Tensor>; metadata: Record<string, string> } {
  const file = SafetensorsFile.open(path);
  const tensors = new Map<string, Tensor>();
  try {
    for (const e of file.entries) tensors.set(e.name, file.read(e.name));
  } catch (err) {
    for (const t of tensors.values()) t.dispose();
    throw err;
  } finally {
    file.close();
  }
  return { tensors, metadata: Object.assign(Object.create(null) as Record<string, string>, file.metadata) };
}

// ---- writing -------------------------------------------------------------------------------

export interface WriteEntry {
  name: string;
  /** A CPU tensor (float32 → F32, bfloat16 → BF16, float16 → F16, int32 → I32)… */
  tensor?: Tensor;
  /** …or raw little-endian bytes with their dtype and shape (to copy tensors of any dtype untouched). */
  dtype?: SafetensorsDtype;
  shape?: number[];
  bytes?: Uint8Array;
}

interface Declared {
  name: string;
  dtype: SafetensorsDtype;
  shape: number[];
  size: number;
}

function checkName(v: unknown, name: string): string {
  if (typeof v !== 'string') throw invalidType('a tensor name string', name, v);
  if (v === '__metadata__') throw invalidRange('a tensor name other than "__metadata__"', name, v);
  if (LONE_SURROGATE.test(v)) throw invalidRange('well-formed Unicode (no lone surrogates)', name, v);
  return v;
}

function checkSafetensorsDtype(v: unknown, name: string): SafetensorsDtype {
  if (typeof v !== 'string') throw invalidType(`one of ${DTYPES.join(', ')}`, name, v);
  if (!RANK.has(v)) throw invalidRange(`one of ${DTYPES.join(', ')}`, name, v);
  return v as SafetensorsDtype;
}

function checkShapeArg(v: unknown, name: string): number[] {
  if (!Array.isArray(v)) throw invalidType('an array of non-negative integers', name, v);
  return v.map((d: unknown, i) => checkIndexArg(d, `${name}[${i}]`));
}

/** Byte size of a dtype and shape, as a safe integer. */
function byteSize(dtype: SafetensorsDtype, shape: readonly number[], name: string): number {
  const size = shape.reduce((p, d) => p * BigInt(d), 1n) * BigInt(DTYPE_BYTES[dtype]);
  if (size > BigInt(Number.MAX_SAFE_INTEGER))
    throw invalidRangeText('a tensor of fewer than 2^53 bytes', name, `shape ${formatShape(shape)} of ${dtype}`);
  return Number(size);
}

function checkMetadata(v: unknown): Record<string, string> | undefined {
  if (v === undefined) return undefined;
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw invalidType('an object of strings', 'metadata', v);
  const out: Record<string, string> = Object.create(null) as Record<string, string>;
  for (const [k, value] of Object.entries(v)) {
    if (typeof value !== 'string') throw invalidType('a string', `metadata[${quote(k)}]`, value);
    if (LONE_SURROGATE.test(k)) throw invalidRange('well-formed Unicode (no lone surrogates)', 'metadata key', k);
    if (LONE_SURROGATE.test(value)) throw invalidRange('well-formed Unicode (no lone surrogates)', `metadata[${quote(k)}]`, value);
    out[k] = value;
  }
  return out;
}

const utf8 = (s: string): Buffer => Buffer.from(s, 'utf8');

/** The crate's order: dtype (declaration order) descending, then name by UTF-8 bytes. */
function crateOrder<T extends { name: string; dtype: SafetensorsDtype }>(items: readonly T[]): T[] {
  const keyed = items.map((item) => ({ item, rank: RANK.get(item.dtype)!, bytes: utf8(item.name) }));
  keyed.sort((a, b) => b.rank - a.rank || Buffer.compare(a.bytes, b.bytes));
  return keyed.map((k) => k.item);
}

/** The header bytes (length prefix, JSON, space padding) for tensors already in data order. */
function headerFor(ordered: readonly Declared[], metadata: Record<string, string> | undefined): Uint8Array {
  const parts: string[] = [];
  if (metadata !== undefined) {
    const keys = Object.keys(metadata).sort((a, b) => Buffer.compare(utf8(a), utf8(b)));
    parts.push(`"__metadata__":{${keys.map((k) => `${JSON.stringify(k)}:${JSON.stringify(metadata[k])}`).join(',')}}`);
  }
  let offset = 0;
  for (const d of ordered) {
    parts.push(
      `${JSON.stringify(d.name)}:{"dtype":"${d.dtype}","shape":[${d.shape.join(',')}],"data_offsets":[${offset},${offset + d.size}]}`,
    );
    offset += d.size;
  }
  const json = utf8(`{${parts.join(',')}}`);
  const n = Math.ceil(json.length / 8) * 8;
  if (n > MAX_HEADER_BYTES)
    throw invalidRangeText(`a header of at most ${MAX_HEADER_BYTES} bytes`, 'the tensors and metadata', `${n} bytes of header`);
  const out = new Uint8Array(8 + n).fill(0x20, 8 + json.length);
  new DataView(out.buffer).setBigUint64(0, BigInt(n), true);
  out.set(json, 8);
  return out;
}

/**
 * A streaming safetensors writer for files larger than memory: declare every tensor's dtype and
 * shape up front, then write each tensor's bytes in the header's order (`order`), each tensor
 * in one or more pieces; commit() publishes the file atomically. abort(), an error thrown by
 * write() or commit(), `using` disposal before commit, or process exit before commit delete
 * the temporary file; the final path is never half-written.
 */
export class SafetensorsWriter {
  readonly path: string;
  /** Tensor names in the order their bytes must be written (the file's data order). */
  readonly order: readonly string[];
  readonly #tensors: Declared[];
  readonly #index: Map<string, number>;
  readonly #file: AtomicWriter;
  #cursor = 0;
  #written = 0;

  constructor(
    path: string,
    declared: Array<{ name: string; dtype: SafetensorsDtype; shape: number[] }>,
    metadata?: Record<string, string>,
  ) {
    if (typeof path !== 'string' || path.length === 0) throw invalidType('a non-empty path string', 'path', path);
    if (!Array.isArray(declared)) throw invalidType('an array of { name, dtype, shape }', 'declared', declared);
    const seen = new Map<string, number>();
    const items = declared.map((d: unknown, i): Declared => {
      const label = `declared[${i}]`;
      if (typeof d !== 'object' || d === null) throw invalidType('an object { name, dtype, shape }', label, d);
      const o = d as Record<string, unknown>;
      const name = checkName(o.name, `${label}.name`);
      if (seen.has(name)) throw invalidRange('a unique tensor name', `${label}.name`, name, `declared[${seen.get(name)}] has it too`);
      seen.set(name, i);
      const dtype = checkSafetensorsDtype(o.dtype, `${label}.dtype`);
      const shape = checkShapeArg(o.shape, `${label}.shape`);
      return { name, dtype, shape, size: byteSize(dtype, shape, label) };
    });
    const meta = checkMetadata(metadata);
    this.#tensors = crateOrder(items);
    const total = this.#tensors.reduce((s, d) => s + d.size, 0);
    if (!Number.isSafeInteger(total)) throw invalidRangeText('fewer than 2^53 bytes of tensors in all', 'declared', `${total}`);
    const header = headerFor(this.#tensors, meta);
    this.path = path;
    this.order = Object.freeze(this.#tensors.map((d) => d.name));
    this.#index = new Map(this.order.map((n, i) => [n, i]));
    this.#file = new AtomicWriter(path);
    this.#run(() => this.#file.write(header));
    this.#skipEmpty();
  }

  /** Runs `f`; any error aborts the writer (deleting its temporary file) and is rethrown. */
  #run(f: () => void): void {
    try {
      f();
    } catch (e) {
      this.#file.abort();
      throw e;
    }
  }

  #skipEmpty(): void {
    while (this.#cursor < this.#tensors.length && this.#written === this.#tensors[this.#cursor].size) {
      this.#cursor++;
      this.#written = 0;
    }
  }

  #checkOpen(): void {
    if (this.#file.state !== 'open')
      throw typeText(
        'an open SafetensorsWriter',
        'writer',
        `${this.#file.state === 'aborted' ? 'an' : 'a'} ${this.#file.state} SafetensorsWriter (${quote(this.path)})`,
      );
  }

  /**
   * Appends bytes (raw little-endian) of tensor `name`, which must be the next unfinished tensor
   * in `order`; a tensor may arrive in several pieces. An empty write is accepted for any
   * declared name.
   */
  write(name: string, bytes: Uint8Array): void {
    this.#checkOpen();
    this.#run(() => {
      if (typeof name !== 'string') throw invalidType('a tensor name string', 'name', name);
      const i = this.#index.get(name);
      if (i === undefined) throw invalidRange('the name of a declared tensor', 'name', name);
      if (!(bytes instanceof Uint8Array)) throw invalidType('a Uint8Array', 'bytes', bytes);
      if (bytes.length === 0) return;
      if (i < this.#cursor) throw invalidRange(`a tensor not yet written (${quote(name)} is complete)`, 'name', name);
      if (i > this.#cursor) {
        const next = this.#tensors[this.#cursor].name;
        throw invalidRange(`${quote(next)} (the next tensor in the header's order)`, 'name', name);
      }
      const t = this.#tensors[i];
      const left = t.size - this.#written;
      if (bytes.length > left)
        throw invalidRange(
          `at most ${plural(left, 'byte')} (tensor ${quote(name)} has ${plural(t.size, 'byte')}, ${this.#written} written)`,
          'bytes',
          bytes,
        );
      this.#file.write(bytes);
      this.#written += bytes.length;
      this.#skipEmpty();
    });
  }

  /** Checks every tensor is complete, then fsyncs and renames the file into place. */
  commit(): void {
    this.#checkOpen();
    this.#run(() => {
      if (this.#cursor < this.#tensors.length) {
        const t = this.#tensors[this.#cursor];
        throw invalidRangeText(
          'every declared tensor written before commit()',
          `the writer of ${quote(this.path)}`,
          `tensor ${quote(t.name)} with ${this.#written} of ${plural(t.size, 'byte')}`,
        );
      }
      this.#file.commit();
    });
  }

  /** Deletes the temporary file; nothing happens after commit() or a previous abort(). */
  abort(): void {
    this.#file.abort();
  }

  /** `using` support: aborts unless committed. */
  [Symbol.dispose](): void {
    this.abort();
  }

  get state(): 'open' | 'committed' | 'aborted' {
    return this.#file.state;
  }

  describe(): string {
    return `SafetensorsWriter(${quote(this.path)}, ${plural(this.order.length, 'tensor')}, ${this.state})`;
  }
}

/** The raw little-endian bytes of a CPU tensor (a view, or a byte-swapped copy on big-endian hosts). */
function tensorBytes(t: Tensor, name: string): Uint8Array {
  const storage = t.storage(name);
  if (t.device !== 'cpu') throw invalidRange('a CPU tensor', name, t);
  const view = new Uint8Array(storage.buffer, storage.byteOffset, storage.byteLength);
  if (LITTLE_ENDIAN) return view;
  const copy = view.slice();
  swapBytes(copy, storage.BYTES_PER_ELEMENT);
  return copy;
}

/**
 * Writes tensors and metadata to `path` atomically (temporary file in the same directory, fsync,
 * rename, fsync of the directory), in the safetensors crate's order with its header text.
 * `entries` is an object of Tensors, or an array of { name, tensor } or { name, dtype, shape,
 * bytes } (raw little-endian bytes, to copy tensors of any dtype untouched).
 */
export function writeSafetensors(path: string, entries: WriteEntry[] | Record<string, Tensor>, metadata?: Record<string, string>): void {
  if (typeof path !== 'string' || path.length === 0) throw invalidType('a non-empty path string', 'path', path);
  const list: Array<[label: string, entry: WriteEntry]> = [];
  if (Array.isArray(entries)) entries.forEach((e: unknown, i) => list.push([`entries[${i}]`, e as WriteEntry]));
  else if (typeof entries === 'object' && entries !== null)
    for (const [name, tensor] of Object.entries(entries)) list.push([`entries[${quote(name)}]`, { name, tensor }]);
  else throw invalidType('an array of { name, tensor } or { name, dtype, shape, bytes }, or an object of Tensors', 'entries', entries);

  const data = new Map<string, Uint8Array>();
  const declared: Declared[] = [];
  const seen = new Map<string, string>();
  for (const [label, e] of list) {
    if (typeof e !== 'object' || e === null) throw invalidType('an object { name, tensor } or { name, dtype, shape, bytes }', label, e);
    const name = checkName(e.name, `${label}.name`);
    if (seen.has(name)) throw invalidRange('a unique tensor name', `${label}.name`, name, `${seen.get(name)} has it too`);
    seen.set(name, label);
    if (e.tensor !== undefined) {
      if (e.dtype !== undefined || e.shape !== undefined || e.bytes !== undefined)
        throw typeText('either tensor or { dtype, shape, bytes }', label, 'both');
      if (!(e.tensor instanceof Tensor)) throw invalidType('a Tensor', `${label}.tensor`, e.tensor);
      const bytes = tensorBytes(e.tensor, `${label}.tensor`);
      const t = e.tensor;
      declared.push({ name, dtype: FROM_LOWRANK(t.dtype), shape: [...t.shape], size: bytes.length });
      data.set(name, bytes);
    } else {
      const dtype = checkSafetensorsDtype(e.dtype, `${label}.dtype`);
      const shape = checkShapeArg(e.shape, `${label}.shape`);
      const size = byteSize(dtype, shape, label);
      if (!(e.bytes instanceof Uint8Array)) throw invalidType('a Uint8Array (or a tensor)', `${label}.bytes`, e.bytes);
      if (e.bytes.length !== size)
        throw invalidRange(
          `${plural(size, 'byte')} (shape ${formatShape(shape)} of ${dtype}, ${plural(DTYPE_BYTES[dtype], 'byte')} each)`,
          `${label}.bytes`,
          e.bytes,
        );
      declared.push({ name, dtype, shape, size });
      data.set(name, e.bytes);
    }
  }
  const writer = new SafetensorsWriter(path, declared, metadata);
  try {
    for (const name of writer.order) writer.write(name, data.get(name)!);
    writer.commit();
  } finally {
    writer.abort();
  }
}
