// safetensors: round trips, byte-identity with the reference implementation (safetensors 0.8.0,
// the file below was written by its save()), a file assembled by hand from the format, every
// validation error with its class and message, the streaming writer, interrupted writes (in
// process and in a child process that dies mid-write), and property-based fuzzing of the reader.
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  chmodSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  truncateSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { safetensors, Tensor, tensor, zeros } from '../lib/index.js';
import { writeFileAtomic } from '../lib/io/atomic.js';
import type { Header, SafetensorsDtype } from '../lib/io/safetensors.js';
import { errorOf, randomF32 } from './helpers/reference.js';

const { parseHeader, SafetensorsFile, SafetensorsWriter, writeSafetensors, readSafetensors, DTYPE_BYTES, DTYPES } = safetensors;

const root = mkdtempSync(join(tmpdir(), 'lowrank-safetensors-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));
let dirs = 0;
/** A fresh empty directory per test, so "no temporary file left" is a directory listing. */
const freshDir = () => {
  const dir = join(root, `d${dirs++}`);
  mkdirSync(dir);
  return dir;
};

const sha256 = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');
const bytesOf = (a: ArrayBufferView) => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
const utf8 = (s: string) => new Uint8Array(Buffer.from(s, 'utf8'));

/** A file assembled by hand: u64 LE header length (default: the header's), header bytes, data. */
function hand(header: string | Uint8Array, data: Uint8Array = new Uint8Array(0), n?: bigint): Uint8Array {
  const h = typeof header === 'string' ? utf8(header) : header;
  const out = new Uint8Array(8 + h.length + data.length);
  new DataView(out.buffer).setBigUint64(0, n ?? BigInt(h.length), true);
  out.set(h, 8);
  out.set(data, 8 + h.length);
  return out;
}
const entry = (dtype: string, shape: number[], begin: number, end: number) =>
  `{"dtype":"${dtype}","shape":${JSON.stringify(shape)},"data_offsets":[${begin},${end}]}`;
const parse = (bytes: Uint8Array) => parseHeader(bytes, bytes.length, 'm.safetensors');

// ---- round trip ----------------------------------------------------------------------------

describe('round trip', () => {
  const f32 = randomF32(3 * 5 * 7, 11);
  f32.set([NaN, -0, Infinity, -Infinity, 1e-45, 3.4028234663852886e38], 0);
  new Uint32Array(f32.buffer)[6] = 0x7fc12345; // a NaN payload must survive
  const bf16 = new Uint16Array(17).map((_, i) => (i * 7919 + 0x3f00) & 0xffff);
  const f16 = new Uint16Array(33).map((_, i) => (i * 4099 + 0x3c00) & 0xffff);
  const ids = new BigInt64Array([1n, -2n, 2n ** 62n]);

  function writeAll(path: string) {
    writeSafetensors(
      path,
      [
        { name: 'layer.f32', tensor: tensor(f32, [3, 5, 7]) },
        { name: 'layer.bf16', tensor: tensor(bf16, [1, 17], { dtype: 'bfloat16' }) },
        { name: 'layer.f16', tensor: tensor(f16, [33], { dtype: 'float16' }) },
        { name: 'scalar', tensor: tensor([2.5], []) },
        { name: 'empty', tensor: zeros([0, 3]) },
        { name: 'empty.bf16', tensor: zeros([4, 0], { dtype: 'bfloat16' }) },
        { name: 'ids', dtype: 'I64', shape: [3], bytes: bytesOf(ids) },
      ],
      Object.fromEntries([
        ['format', 'pt'],
        ['ünï', 'çødé "quoted"\n'],
        ['__proto__', 'kept as a key'],
      ]),
    );
  }

  it('reads back every tensor bit for bit, with shapes, dtypes and metadata', () => {
    const path = join(freshDir(), 'round.safetensors');
    writeAll(path);
    const file = SafetensorsFile.open(path);
    // The crate's order: I64, then F32 by name, then BF16, then F16.
    expect(file.entries.map((e) => e.name)).toEqual(['ids', 'empty', 'layer.f32', 'scalar', 'empty.bf16', 'layer.bf16', 'layer.f16']);
    expect(file.entries.map((e) => e.dtype)).toEqual(['I64', 'F32', 'F32', 'F32', 'BF16', 'BF16', 'F16']);
    expect(Object.entries(file.metadata).sort()).toEqual([
      ['__proto__', 'kept as a key'],
      ['format', 'pt'],
      ['ünï', 'çødé "quoted"\n'],
    ]);
    const check = (name: string, dtype: string, shape: number[], raw: ArrayBufferView) => {
      const t = file.read(name);
      expect([t.dtype, t.shape]).toEqual([dtype, shape]);
      expect(Buffer.from(bytesOf(t.storage())).equals(Buffer.from(bytesOf(raw)))).toBe(true);
      t.dispose();
    };
    check('layer.f32', 'float32', [3, 5, 7], f32);
    check('layer.bf16', 'bfloat16', [1, 17], bf16);
    check('layer.f16', 'float16', [33], f16);
    check('scalar', 'float32', [], new Float32Array([2.5]));
    check('empty', 'float32', [0, 3], new Float32Array(0));
    check('empty.bf16', 'bfloat16', [4, 0], new Uint16Array(0));
    expect(Array.from(new BigInt64Array(file.readBytes('ids').buffer))).toEqual([1n, -2n, 2n ** 62n]);
    expect(file.entry('ids')).toEqual({ name: 'ids', dtype: 'I64', shape: [3], begin: 0, end: 24 });
    expect(errorOf(() => file.read('ids'))).toEqual({
      cls: 'TypeError',
      message: `Expected an F32, BF16, F16 or I32 tensor for tensor "ids" in ${JSON.stringify(path)} but received dtype I64 (dtype I64 is not supported by lowrank's ops; readBytes() returns its raw bytes)`,
    });
    file.close();
  });

  it('pads the header with spaces to a multiple of 8 and starts the data right after', () => {
    const path = join(freshDir(), 'pad.safetensors');
    writeAll(path);
    const bytes = readFileSync(path);
    const n = Number(bytes.readBigUInt64LE(0));
    expect(n % 8).toBe(0);
    const text = bytes.subarray(8, 8 + n).toString('utf8');
    expect(text).toMatch(/^\{"__metadata__":\{.*\} *$/s);
    expect(Buffer.byteLength(text.trimEnd())).toBeGreaterThan(n - 8);
    const header = parseHeader(bytes, bytes.length);
    expect(header.headerBytes).toBe(8 + n);
    expect(bytes.length).toBe(8 + n + header.entries.at(-1)!.end);
  });

  it('an object of Tensors works too; readSafetensors reads a small file whole', () => {
    const path = join(freshDir(), 'record.safetensors');
    writeSafetensors(path, { b: tensor([1, 2, 3], [3]), a: tensor(new Uint16Array([0x3f80]), [1], { dtype: 'bfloat16' }) });
    const { tensors, metadata } = readSafetensors(path);
    expect([...tensors.keys()]).toEqual(['b', 'a']); // F32 before BF16
    expect(Array.from(tensors.get('b')!.toFloat32Array())).toEqual([1, 2, 3]);
    expect(Array.from(tensors.get('a')!.toFloat32Array())).toEqual([1]);
    expect(metadata).toEqual({});
    expect(readFileSync(path).subarray(8, 16).toString()).toBe('{"b":{"d'); // no __metadata__ when none given
  });
});

// ---- I32 ------------------------------------------------------------------------------------

describe('I32 (int32 tensors)', () => {
  const INT32_MIN = -(2 ** 31),
    INT32_MAX = 2 ** 31 - 1;
  /** The little-endian bytes of int32 values, written one by one (independent of the host's byte order). */
  const littleEndian = (values: readonly number[]) => {
    const out = new Uint8Array(values.length * 4);
    const view = new DataView(out.buffer);
    values.forEach((v, i) => view.setInt32(i * 4, v, true));
    return out;
  };

  it('an int32 tensor writes as I32 (little-endian, in the crate order after F32 and U32) and reads back as int32', () => {
    const path = join(freshDir(), 'ids.safetensors');
    const values = [0, 1, -1, INT32_MIN, INT32_MAX, 0x01020304, -0x01020304];
    writeSafetensors(path, [
      { name: 'w.bf16', tensor: zeros([2], { dtype: 'bfloat16' }) },
      { name: 'input_ids', tensor: tensor(Int32Array.from(values), [1, 7]) },
      { name: 'w.f32', tensor: tensor([1.5], [1]) },
      { name: 'raw.u32', dtype: 'U32', shape: [1], bytes: new Uint8Array(4) },
      { name: 'empty.ids', tensor: zeros([0, 2], { dtype: 'int32' }) },
    ]);
    const file = SafetensorsFile.open(path);
    expect(file.entries.map((e) => `${e.dtype} ${e.name}`)).toEqual([
      'F32 w.f32',
      'U32 raw.u32',
      'I32 empty.ids',
      'I32 input_ids',
      'BF16 w.bf16',
    ]);
    expect(file.entry('input_ids')).toMatchObject({ dtype: 'I32', shape: [1, 7] });
    expect(Buffer.from(file.readBytes('input_ids')).equals(Buffer.from(littleEndian(values)))).toBe(true);
    const ids = file.read('input_ids');
    expect([ids.dtype, ids.shape]).toEqual(['int32', [1, 7]]);
    expect(Array.from(ids.toInt32Array())).toEqual(values);
    const empty = file.read('empty.ids');
    expect([empty.dtype, empty.shape, empty.size]).toEqual(['int32', [0, 2], 0]);
    ids.dispose();
    empty.dispose();
    file.close();
  });

  it('reads I32 from a hand-built file as int32 values, and readSafetensors loads it', () => {
    const path = join(freshDir(), 'hand.safetensors');
    writeFileSync(path, hand(`{"ids":${entry('I32', [2, 2], 0, 16)}}`, littleEndian([7, -8, INT32_MAX, INT32_MIN])));
    const { tensors } = readSafetensors(path);
    const t = tensors.get('ids')!;
    expect([t.dtype, t.shape]).toEqual(['int32', [2, 2]]);
    expect(Array.from(t.toInt32Array())).toEqual([7, -8, INT32_MAX, INT32_MIN]);
    t.dispose();
  });

  it('other integer dtypes keep their refusal', () => {
    const path = join(freshDir(), 'ints.safetensors');
    writeFileSync(
      path,
      hand(`{"a":${entry('U8', [4], 0, 4)},"b":${entry('U32', [1], 4, 8)},"c":${entry('I16', [2], 8, 12)}}`, new Uint8Array(12)),
    );
    const file = SafetensorsFile.open(path);
    for (const [name, dtype] of [
      ['a', 'U8'],
      ['b', 'U32'],
      ['c', 'I16'],
    ])
      expect(errorOf(() => file.read(name))).toEqual({
        cls: 'TypeError',
        message: `Expected an F32, BF16, F16 or I32 tensor for tensor "${name}" in ${JSON.stringify(path)} but received dtype ${dtype} (dtype ${dtype} is not supported by lowrank's ops; readBytes() returns its raw bytes)`,
      });
    file.close();
  });

  it('property: random int32 tensors round-trip through a file bit for bit', () => {
    const dir = freshDir();
    let n = 0;
    fc.assert(
      fc.property(
        fc.array(fc.oneof(fc.integer({ min: INT32_MIN, max: INT32_MAX }), fc.constantFrom(INT32_MIN, INT32_MAX)), { maxLength: 40 }),
        (values) => {
          const path = join(dir, `p${n++}.safetensors`);
          const t = tensor(Int32Array.from(values), [values.length]);
          writeSafetensors(path, { t });
          const back = readSafetensors(path).tensors.get('t')!;
          expect(back.dtype).toBe('int32');
          expect(Array.from(back.toInt32Array())).toEqual(values);
          t.dispose();
          back.dispose();
        },
      ),
      { numRuns: Number(process.env.FC_RUNS ?? 50), seed: Number(process.env.FC_SEED ?? 42) },
    );
  });
});

// ---- byte identity with the reference implementation ---------------------------------------

describe('byte-identical with safetensors 0.8.0 (the Rust crate behind safetensors.torch.save)', () => {
  // import torch; from safetensors.torch import save
  // save({'b.weight': torch.arange(6, dtype=torch.float32).reshape(2,3) * 0.5 - 1,
  //       'a.weight': torch.tensor([0x3f80, 0x4000, 0xc040 - 0x10000, 1], dtype=torch.int16).view(torch.bfloat16),
  //       'c': torch.tensor([0x3c00], dtype=torch.int16).view(torch.float16).reshape(1,1,1),
  //       'scalar': torch.tensor(2.5), 'é': torch.zeros(0, 3), '😀': torch.tensor([7.0]), 'Ａ': torch.tensor([-7.0]),
  //       'ids': torch.tensor([1, -2], dtype=torch.int64), 'flag': torch.tensor([True, False, True]),
  //       'u8': torch.arange(5, dtype=torch.uint8)}, metadata={'format': 'pt'})
  const expectedHeader =
    '{"__metadata__":{"format":"pt"},"ids":{"dtype":"I64","shape":[2],"data_offsets":[0,16]},' +
    '"b.weight":{"dtype":"F32","shape":[2,3],"data_offsets":[16,40]},"scalar":{"dtype":"F32","shape":[],"data_offsets":[40,44]},' +
    '"é":{"dtype":"F32","shape":[0,3],"data_offsets":[44,44]},"Ａ":{"dtype":"F32","shape":[1],"data_offsets":[44,48]},' +
    '"😀":{"dtype":"F32","shape":[1],"data_offsets":[48,52]},"a.weight":{"dtype":"BF16","shape":[4],"data_offsets":[52,60]},' +
    '"c":{"dtype":"F16","shape":[1,1,1],"data_offsets":[60,62]},"u8":{"dtype":"U8","shape":[5],"data_offsets":[62,67]},' +
    '"flag":{"dtype":"BOOL","shape":[3],"data_offsets":[67,70]}}    ';

  it('same header text, same order (dtype descending, then UTF-8 name order), same bytes', () => {
    const path = join(freshDir(), 'ref.safetensors');
    writeSafetensors(
      path,
      [
        { name: 'b.weight', tensor: tensor([-1, -0.5, 0, 0.5, 1, 1.5], [2, 3]) },
        { name: 'a.weight', tensor: tensor(new Uint16Array([0x3f80, 0x4000, 0xc040, 0x0001]), [4], { dtype: 'bfloat16' }) },
        { name: 'c', tensor: tensor(new Uint16Array([0x3c00]), [1, 1, 1], { dtype: 'float16' }) },
        { name: 'scalar', tensor: tensor([2.5], []) },
        { name: 'é', tensor: zeros([0, 3]) },
        { name: '😀', tensor: tensor([7], [1]) }, // UTF-16 order would put it before 'Ａ' (U+FF21)
        { name: 'Ａ', tensor: tensor([-7], [1]) },
        { name: 'ids', dtype: 'I64', shape: [2], bytes: bytesOf(new BigInt64Array([1n, -2n])) },
        { name: 'flag', dtype: 'BOOL', shape: [3], bytes: new Uint8Array([1, 0, 1]) },
        { name: 'u8', dtype: 'U8', shape: [5], bytes: new Uint8Array([0, 1, 2, 3, 4]) },
      ],
      { format: 'pt' },
    );
    const bytes = readFileSync(path);
    expect(bytes.readBigUInt64LE(0)).toBe(624n);
    expect(bytes.subarray(8, 632).toString('utf8')).toBe(expectedHeader);
    expect(bytes.length).toBe(702);
    expect(sha256(bytes)).toBe('378aa719570ad11537df353701c78000cfde4f62352ebfea5cb3a0e15ee953a7');
  });

  it('orders by the Dtype enum, descending: U64 I64 F64 F32 U32 I32 BF16 F16 U16 I16 F8_E4M3 F8_E5M2 I8 U8 BOOL', () => {
    const declared = [...DTYPES].map((dtype) => ({ name: `t.${dtype}`, dtype, shape: [1] }));
    const w = new SafetensorsWriter(join(freshDir(), 'order.safetensors'), declared);
    expect(w.order).toEqual(
      ['U64', 'I64', 'F64', 'F32', 'U32', 'I32', 'BF16', 'F16', 'U16', 'I16', 'F8_E4M3', 'F8_E5M2', 'I8', 'U8', 'BOOL'].map(
        (d) => `t.${d}`,
      ),
    );
    w.abort();
    expect(DTYPE_BYTES).toEqual({
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
  });
});

// ---- a file built by hand ------------------------------------------------------------------

describe('a hand-built file', () => {
  it('reads entries in any header order, with whitespace, unknown keys, escapes and trailing padding', () => {
    const data = new Uint8Array(16);
    const view = new DataView(data.buffer);
    [0x3f80, 0xbf80, 0x4000, 0x0000].forEach((b, i) => view.setUint16(2 * i, b, true)); // bfloat16 1, -1, 2, 0
    view.setFloat32(8, 1.5, true);
    view.setFloat32(12, -2.25, true);
    const header =
      '{"z" : {"dtype": "F32", "shape": [2], "data_offsets": [8, 16]},\n' +
      ' "__metadata__": {"k": "v", "t\\u00e9": "\\"q\\""},\n' +
      ' "\\u0061": {"data_offsets": [0, 8], "shape": [2, 2], "dtype": "BF16", "extra": [1, {"x": null}]},' +
      ' "nil": {"dtype": "U8", "shape": [0], "data_offsets": [16, 16]}}\t\r\n   ';
    const path = join(freshDir(), 'hand.safetensors');
    writeFileSync(path, hand(header, data));
    const file = SafetensorsFile.open(path);
    expect(file.entries.map((e) => [e.name, e.dtype, e.shape, e.begin, e.end])).toEqual([
      ['a', 'BF16', [2, 2], 0, 8],
      ['z', 'F32', [2], 8, 16],
      ['nil', 'U8', [0], 16, 16],
    ]);
    expect({ ...file.metadata }).toEqual({ k: 'v', té: '"q"' });
    const a = file.read('a');
    expect([a.dtype, a.shape, Array.from(a.toFloat32Array())]).toEqual(['bfloat16', [2, 2], [1, -1, 2, 0]]);
    expect(Array.from(file.read('z').toFloat32Array())).toEqual([1.5, -2.25]);
    expect(file.readBytes('nil')).toEqual(new Uint8Array(0));
    expect(file.headerBytes).toBe(8 + utf8(header).length);
    file[Symbol.dispose]();
    expect(file.closed).toBe(true);
  });

  it('accepts the smallest files: {} with no data, null metadata, an empty tensor at the end', () => {
    expect(parse(hand('{}'))).toEqual({ entries: [], metadata: {}, headerBytes: 10 });
    expect(parse(hand('{"__metadata__":null}')).metadata).toEqual({});
    expect(
      parse(hand(`{"a":${entry('F32', [1], 0, 4)},"b":${entry('F64', [0, 9], 4, 4)}}`, new Uint8Array(4))).entries.map((e) => e.name),
    ).toEqual(['a', 'b']);
    // Names JSON.parse would mangle stay names.
    expect(parse(hand(`{"__proto__":${entry('U8', [1], 0, 1)}}`, new Uint8Array(1))).entries[0].name).toBe('__proto__');
  });
});

// ---- every validation error ----------------------------------------------------------------

type Case = [label: string, call: () => unknown, cls: 'TypeError' | 'RangeError', message: string];
function check(cases: Case[]) {
  it.each(cases)('%s', (_label, call, cls, message) => {
    expect(errorOf(call)).toEqual({ cls, message });
  });
}

const W = `"w":${entry('F32', [2], 0, 8)}`;
const d = (n: number) => new Uint8Array(n);
const M = 'for the header of "m.safetensors" but received';
const T = 'tensor "w" in "m.safetensors"';
const DTYPE_LIST = 'BOOL, U8, I8, F8_E5M2, F8_E4M3, I16, U16, F16, BF16, I32, U32, F32, F64, I64, U64';

describe('parseHeader: lengths', () => {
  check([
    [
      'file shorter than 8 bytes',
      () => parse(d(5)),
      'RangeError',
      'Expected a file of at least 8 bytes (the header length) for "m.safetensors" but received 5 bytes',
    ],
    [
      'no source name',
      () => parseHeader(d(3), 3),
      'RangeError',
      'Expected a file of at least 8 bytes (the header length) for the safetensors data but received 3 bytes',
    ],
    [
      'header length above 100 MB',
      () => parse(hand('{}', d(0), 100_000_001n)),
      'RangeError',
      'Expected a header length of at most 100000000 bytes for the header length of "m.safetensors" but received 100000001',
    ],
    [
      'header length 2^64 − 1',
      () => parse(hand('{}', d(0), 2n ** 64n - 1n)),
      'RangeError',
      'Expected a header length of at most 100000000 bytes for the header length of "m.safetensors" but received 18446744073709551615',
    ],
    [
      'header length beyond the file',
      () => parse(hand('{"w":1}', d(0), 64n)),
      'RangeError',
      'Expected a header length of at most 7 bytes (the file has 15) for the header length of "m.safetensors" but received 64',
    ],
    [
      'bytes holds less than 8 + N',
      () => parseHeader(hand(`{${W}}`, d(8)).subarray(0, 12), 100),
      'RangeError',
      `Expected the file's first ${8 + 2 + W.length} bytes (8 + the header length) for bytes but received 12 bytes`,
    ],
    [
      'bytes holds less than 8',
      () => parseHeader(d(4), 100),
      'RangeError',
      "Expected the file's first 8 bytes for bytes but received 4 bytes",
    ],
    [
      'bytes is not a Uint8Array',
      () => parseHeader([1, 2] as never, 2),
      'TypeError',
      'Expected a Uint8Array for bytes but received [1, 2]',
    ],
    ['fileSize is negative', () => parseHeader(d(8), -1), 'RangeError', 'Expected a non-negative integer for fileSize but received -1'],
  ]);
});

describe('parseHeader: the JSON text', () => {
  check([
    ['an empty header', () => parse(hand('')), 'TypeError', `Expected a JSON object starting with "{" ${M} an empty header`],
    [
      'a leading space',
      () => parse(hand(' {}')),
      'TypeError',
      `Expected a JSON object starting with "{" ${M} a header starting with byte 0x20`,
    ],
    [
      'a byte order mark',
      () => parse(hand('\ufeff{}')),
      'TypeError',
      `Expected a JSON object starting with "{" ${M} a header starting with byte 0xef`,
    ],
    ['an array', () => parse(hand('[]')), 'TypeError', `Expected a JSON object starting with "{" ${M} a header starting with byte 0x5b`],
    [
      'invalid UTF-8',
      () => parse(hand(new Uint8Array([0x7b, 0x22, 0xff, 0x22, 0x3a, 0x31, 0x7d]))),
      'TypeError',
      `Expected UTF-8 text ${M} invalid UTF-8`,
    ],
    [
      'an overlong UTF-8 encoding',
      () => parse(hand(new Uint8Array([0x7b, 0x22, 0xc0, 0xaf, 0x22, 0x3a, 0x31, 0x7d]))),
      'TypeError',
      `Expected UTF-8 text ${M} invalid UTF-8`,
    ],
    ['not JSON', () => parse(hand('{"w": nope}')), 'TypeError', `Expected a JSON value ${M} "nope}" at character 6`],
    [
      'garbage after the object',
      () => parse(hand('{} x')),
      'TypeError',
      `Expected only whitespace after the JSON object ${M} "x" at character 3`,
    ],
    ['a second object', () => parse(hand('{}{}')), 'TypeError', `Expected only whitespace after the JSON object ${M} "{}" at character 2`],
    ['a non-string key', () => parse(hand('{1:2}')), 'TypeError', `Expected a string key ${M} "1:2}" at character 1`],
    ['a missing colon', () => parse(hand('{"w" 1}')), 'TypeError', `Expected ':' ${M} "1}" at character 5`],
    ['a trailing comma', () => parse(hand('{"a":1,}')), 'TypeError', `Expected a string key ${M} "}" at character 7`],
    [
      'an unterminated object',
      () => parse(hand('{"w":{"dtype":"F32"')),
      'TypeError',
      `Expected ',' or '}' ${M} the end of the header at character 19`,
    ],
    ['an unterminated array', () => parse(hand('{"w":[1 2]}')), 'TypeError', `Expected ',' or ']' ${M} "2]}" at character 8`],
    ['an unterminated string', () => parse(hand('{"w')), 'TypeError', `Expected a closing '"' ${M} the end of the header at character 3`],
    [
      'a raw newline in a string',
      () => parse(hand('{"a\nb":1}')),
      'TypeError',
      `Expected control characters escaped inside strings ${M} "\\nb\\":1}" at character 3`,
    ],
    [
      'an unknown escape',
      () => parse(hand('{"a\\x":1}')),
      'TypeError',
      String.raw`Expected a JSON escape (\" \\ \/ \b \f \n \r \t \uXXXX) for the header of "m.safetensors" but received "\\x\":1}" at character 3`,
    ],
    [
      'a short \\u escape',
      () => parse(hand('{"\\u12":1}')),
      'TypeError',
      String.raw`Expected a JSON escape (\" \\ \/ \b \f \n \r \t \uXXXX) for the header of "m.safetensors" but received "\\u12\":1}" at character 2`,
    ],
    [
      'a lone surrogate escape',
      () => parse(hand('{"\\ud800":1}')),
      'TypeError',
      String.raw`Expected well-formed Unicode (a \u escape is a lone surrogate) for the header of "m.safetensors" but received "\"\\ud800\":1}" at character 1`,
    ],
    ['a leading zero', () => parse(hand('{"w":01}')), 'TypeError', `Expected ',' or '}' ${M} "1}" at character 6`],
    ['a bare minus', () => parse(hand('{"w":-}')), 'TypeError', `Expected a JSON number ${M} "-}" at character 5`],
    [
      'nesting deeper than 64',
      () => parse(hand(`{"a":${'['.repeat(70)}`)),
      'TypeError',
      `Expected JSON nested at most 64 deep ${M} "[[[[[[[" at character 68`,
    ],
  ]);
});

describe('parseHeader: duplicates and metadata', () => {
  check([
    [
      'a duplicate tensor name',
      () => parse(hand(`{${W},${W}}`, d(8))),
      'TypeError',
      `Expected unique tensor names ${M} "w" twice (the second at character ${2 + W.length})`,
    ],
    [
      'a duplicate name, escaped differently',
      () => parse(hand(`{${W},"\\u0077":${entry('F32', [2], 8, 16)}}`, d(16))),
      'TypeError',
      `Expected unique tensor names ${M} "w" twice (the second at character ${2 + W.length})`,
    ],
    [
      'a duplicate key in an entry',
      () => parse(hand('{"w":{"dtype":"F32","dtype":"F64","shape":[2],"data_offsets":[0,8]}}', d(8))),
      'TypeError',
      `Expected unique keys ${M} "dtype" twice (the second at character 20)`,
    ],
    [
      'a duplicate metadata key',
      () => parse(hand('{"__metadata__":{"a":"1","a":"2"}}')),
      'TypeError',
      `Expected unique keys ${M} "a" twice (the second at character 25)`,
    ],
    [
      'two __metadata__',
      () => parse(hand('{"__metadata__":{},"__metadata__":{}}')),
      'TypeError',
      `Expected unique tensor names ${M} "__metadata__" twice (the second at character 19)`,
    ],
    [
      '__metadata__ is a number',
      () => parse(hand('{"__metadata__":3}')),
      'TypeError',
      'Expected an object of strings for __metadata__ in "m.safetensors" but received 3',
    ],
    [
      '__metadata__ is an array',
      () => parse(hand('{"__metadata__":["a"]}')),
      'TypeError',
      'Expected an object of strings for __metadata__ in "m.safetensors" but received ["a"]',
    ],
    [
      'a metadata value is a number',
      () => parse(hand('{"__metadata__":{"k":1}}')),
      'TypeError',
      'Expected a string for __metadata__["k"] in "m.safetensors" but received 1',
    ],
    [
      'a metadata value is an object',
      () => parse(hand('{"__metadata__":{"k":{}}}')),
      'TypeError',
      'Expected a string for __metadata__["k"] in "m.safetensors" but received an object',
    ],
  ]);
});

describe('parseHeader: entries', () => {
  const one =
    (value: string, data = 8) =>
    () =>
      parse(hand(`{"w":${value}}`, d(data)));
  check([
    [
      'an entry that is an array',
      one('[1,2]'),
      'TypeError',
      `Expected an object { dtype, shape, data_offsets } for ${T} but received [1, 2]`,
    ],
    [
      'an entry that is a string',
      one('"F32"'),
      'TypeError',
      `Expected an object { dtype, shape, data_offsets } for ${T} but received "F32"`,
    ],
    [
      'no dtype',
      one('{"shape":[2],"data_offsets":[0,8]}'),
      'TypeError',
      `Expected a dtype string for the dtype of ${T} but received nothing (the key is missing)`,
    ],
    [
      'a numeric dtype',
      one('{"dtype":4,"shape":[2],"data_offsets":[0,8]}'),
      'TypeError',
      `Expected a dtype string for the dtype of ${T} but received 4`,
    ],
    [
      'an unknown dtype',
      one('{"dtype":"F4","shape":[2],"data_offsets":[0,8]}'),
      'RangeError',
      `Expected one of ${DTYPE_LIST} for the dtype of ${T} but received "F4"`,
    ],
    [
      'a lowercase dtype',
      one('{"dtype":"f32","shape":[2],"data_offsets":[0,8]}'),
      'RangeError',
      `Expected one of ${DTYPE_LIST} for the dtype of ${T} but received "f32"`,
    ],
    [
      'no shape',
      one('{"dtype":"F32","data_offsets":[0,8]}'),
      'TypeError',
      `Expected an array of non-negative integers for the shape of ${T} but received nothing (the key is missing)`,
    ],
    [
      'a string shape',
      one('{"dtype":"F32","shape":"2","data_offsets":[0,8]}'),
      'TypeError',
      `Expected an array of non-negative integers for the shape of ${T} but received "2"`,
    ],
    [
      'a negative dimension',
      one(entry('F32', [-1], 0, 8)),
      'RangeError',
      `Expected a non-negative integer for shape[0] of ${T} but received -1`,
    ],
    [
      'a fractional dimension',
      one('{"dtype":"F32","shape":[1.5],"data_offsets":[0,8]}'),
      'RangeError',
      `Expected a non-negative integer for shape[0] of ${T} but received 1.5`,
    ],
    [
      'an exponent dimension',
      one('{"dtype":"F32","shape":[2e0],"data_offsets":[0,8]}'),
      'RangeError',
      `Expected a non-negative integer for shape[0] of ${T} but received 2e0`,
    ],
    [
      'a negative zero dimension',
      one('{"dtype":"F32","shape":[-0],"data_offsets":[0,0]}', 0),
      'RangeError',
      `Expected a non-negative integer for shape[0] of ${T} but received -0`,
    ],
    [
      'a string dimension',
      one('{"dtype":"F32","shape":[2,"2"],"data_offsets":[0,8]}'),
      'TypeError',
      `Expected a non-negative integer for shape[1] of ${T} but received "2"`,
    ],
    [
      'a nested dimension',
      one('{"dtype":"F32","shape":[[2]],"data_offsets":[0,8]}'),
      'TypeError',
      `Expected a non-negative integer for shape[0] of ${T} but received [2]`,
    ],
    [
      'a dimension of 2^53 + 1',
      one('{"dtype":"F32","shape":[9007199254740993],"data_offsets":[0,8]}'),
      'RangeError',
      `Expected a non-negative integer below 2^53 for shape[0] of ${T} but received 9007199254740993`,
    ],
    [
      'no data_offsets',
      one('{"dtype":"F32","shape":[2]}'),
      'TypeError',
      `Expected an array [begin, end] for the data_offsets of ${T} but received nothing (the key is missing)`,
    ],
    [
      'one offset',
      one('{"dtype":"F32","shape":[2],"data_offsets":[0]}'),
      'TypeError',
      `Expected an array [begin, end] for the data_offsets of ${T} but received [0]`,
    ],
    [
      'three offsets',
      one('{"dtype":"F32","shape":[2],"data_offsets":[0,4,8]}'),
      'TypeError',
      `Expected an array [begin, end] for the data_offsets of ${T} but received [0, 4, 8]`,
    ],
    [
      'a string offset',
      one('{"dtype":"F32","shape":[2],"data_offsets":[0,"8"]}'),
      'TypeError',
      `Expected a non-negative integer for data_offsets[1] of ${T} but received "8"`,
    ],
    [
      'a negative offset',
      one(entry('F32', [2], -8, 0)),
      'RangeError',
      `Expected a non-negative integer for data_offsets[0] of ${T} but received -8`,
    ],
    [
      'an offset of 2^64',
      one('{"dtype":"F32","shape":[2],"data_offsets":[0,18446744073709551616]}'),
      'RangeError',
      `Expected a non-negative integer below 2^53 for data_offsets[1] of ${T} but received 18446744073709551616`,
    ],
    [
      'begin after end',
      one(entry('F32', [2], 8, 4)),
      'RangeError',
      `Expected data_offsets [begin, end] with begin <= end for ${T} but received [8, 4]`,
    ],
  ]);
});

describe('parseHeader: offsets and sizes', () => {
  const two = (a: string, b: string, data: number) => () => parse(hand(`{"a":${a},"b":${b}}`, d(data)));
  check([
    [
      'an end beyond the buffer',
      () => parse(hand(`{"w":${entry('F32', [3], 0, 12)}}`, d(8))),
      'RangeError',
      `Expected data_offsets within the data buffer [0, 8] for ${T} but received [0, 12]`,
    ],
    [
      'an end far beyond the buffer',
      () => parse(hand(`{"w":${entry('U8', [2 ** 52], 0, 2 ** 52)}}`, d(8))),
      'RangeError',
      `Expected data_offsets within the data buffer [0, 8] for ${T} but received [0, 4503599627370496]`,
    ],
    [
      'overlapping tensors',
      two(entry('F32', [2], 0, 8), entry('F32', [2], 4, 12), 12),
      'RangeError',
      'Expected data_offsets starting at 8 (the end of tensor "a") for tensor "b" in "m.safetensors" but received [4, 12] (it overlaps tensor "a")',
    ],
    [
      'two tensors at the same offsets',
      two(entry('F32', [2], 0, 8), entry('F32', [2], 0, 8), 8),
      'RangeError',
      'Expected data_offsets starting at 8 (the end of tensor "a") for tensor "b" in "m.safetensors" but received [0, 8] (it overlaps tensor "a")',
    ],
    [
      'a hole between tensors',
      two(entry('F32', [1], 0, 4), entry('F32', [1], 8, 12), 12),
      'RangeError',
      'Expected data_offsets starting at 4 (the end of tensor "a") for tensor "b" in "m.safetensors" but received [8, 12] (bytes 4..8 belong to no tensor)',
    ],
    [
      'a hole at the start',
      () => parse(hand(`{"w":${entry('F32', [1], 4, 8)}}`, d(8))),
      'RangeError',
      `Expected data_offsets starting at 0 (the start of the data buffer) for ${T} but received [4, 8] (bytes 0..4 belong to no tensor)`,
    ],
    [
      'bytes after the last tensor',
      () => parse(hand(`{${W}}`, d(12))),
      'RangeError',
      'Expected tensors covering the data buffer to its end (byte 12) for "m.safetensors" but received tensors ending at byte 8',
    ],
    [
      'data but no tensors',
      () => parse(hand('{}', d(4))),
      'RangeError',
      'Expected tensors covering the data buffer to its end (byte 4) for "m.safetensors" but received no tensors',
    ],
    [
      'a size that does not match the shape',
      () => parse(hand(`{"w":${entry('F32', [2, 3], 0, 20)}}`, d(20))),
      'RangeError',
      `Expected 24 bytes (shape [2, 3] of F32, 4 bytes each) for the data_offsets of ${T} but received [0, 20] (20 bytes)`,
    ],
    [
      'an odd size for a 2-byte dtype',
      () => parse(hand(`{"w":${entry('BF16', [3], 0, 5)}}`, d(5))),
      'RangeError',
      `Expected 6 bytes (shape [3] of BF16, 2 bytes each) for the data_offsets of ${T} but received [0, 5] (5 bytes)`,
    ],
    [
      'a shape whose size overflows 64 bits',
      () => parse(hand(`{"w":${entry('F64', [2 ** 32, 2 ** 32, 2 ** 32], 0, 8)}}`, d(8))),
      'RangeError',
      `Expected 633825300114114700748351602688 bytes (shape [4294967296, 4294967296, 4294967296] of F64, 8 bytes each) for the data_offsets of ${T} but received [0, 8] (8 bytes)`,
    ],
    [
      'a zero dimension with data',
      () => parse(hand(`{"w":${entry('F32', [0, 2], 0, 8)}}`, d(8))),
      'RangeError',
      `Expected 0 bytes (shape [0, 2] of F32, 4 bytes each) for the data_offsets of ${T} but received [0, 8] (8 bytes)`,
    ],
  ]);
});

// ---- SafetensorsFile -----------------------------------------------------------------------

describe('SafetensorsFile', () => {
  const dir = freshDir();
  const path = join(dir, 'f.safetensors');
  writeSafetensors(path, [
    { name: 'a', tensor: tensor([1, 2], [2]) },
    { name: 'z', tensor: tensor([3, 4], [2]) },
  ]);
  const q = JSON.stringify(path);

  it('names the file in header errors, and reads only the first 8 bytes of a file claiming a huge header', () => {
    const small = join(dir, 'small.safetensors');
    writeFileSync(small, d(5));
    expect(errorOf(() => SafetensorsFile.open(small))).toEqual({
      cls: 'RangeError',
      message: `Expected a file of at least 8 bytes (the header length) for ${JSON.stringify(small)} but received 5 bytes`,
    });
    const huge = join(dir, 'huge.safetensors');
    writeFileSync(huge, hand('{}', d(0), 2n ** 63n));
    expect(errorOf(() => SafetensorsFile.open(huge))).toEqual({
      cls: 'RangeError',
      message: `Expected a header length of at most 100000000 bytes for the header length of ${JSON.stringify(huge)} but received 9223372036854775808`,
    });
    const beyond = join(dir, 'beyond.safetensors');
    writeFileSync(beyond, hand('{}', d(0), 99_999_999n));
    expect(errorOf(() => SafetensorsFile.open(beyond))).toEqual({
      cls: 'RangeError',
      message: `Expected a header length of at most 2 bytes (the file has 10) for the header length of ${JSON.stringify(beyond)} but received 99999999`,
    });
  });

  it('a missing file is the system error', () => {
    const e = (() => {
      try {
        SafetensorsFile.open(join(dir, 'nope.safetensors'));
      } catch (err) {
        return err as NodeJS.ErrnoException;
      }
    })();
    expect(e?.code).toBe('ENOENT');
  });

  it('has, entry, unknown names, close', () => {
    const file = SafetensorsFile.open(path);
    expect([file.has('a'), file.has('b')]).toEqual([true, false]);
    expect(file.describe()).toBe(`SafetensorsFile(${q}, 2 tensors)`);
    check2(() => file.entry('b'), 'RangeError', `Expected the name of a tensor in ${q} for name but received "b" (it holds "a", "z")`);
    check2(() => file.read(3 as never), 'TypeError', 'Expected a tensor name string for name but received 3');
    file.close();
    file.close();
    check2(() => file.read('a'), 'TypeError', `Expected an open SafetensorsFile for file but received a closed SafetensorsFile (${q})`);
    check2(
      () => file.readBytes('a'),
      'TypeError',
      `Expected an open SafetensorsFile for file but received a closed SafetensorsFile (${q})`,
    );
    expect(file.entry('a').end).toBe(8); // the header stays readable
  });

  it('readBytes(name, start, end) reads a range, so a tensor can be copied in pieces', () => {
    const src = join(dir, 'big.safetensors');
    const values = randomF32(10_000, 9);
    writeSafetensors(src, [
      { name: 'x', tensor: tensor(values, [100, 100]) },
      { name: 'n', dtype: 'I8', shape: [3], bytes: new Uint8Array([1, 2, 3]) },
    ]);
    const file = SafetensorsFile.open(src);
    const out = join(dir, 'copy.safetensors');
    const w = new SafetensorsWriter(
      out,
      file.entries.map(({ name, dtype, shape }) => ({ name, dtype, shape })),
    );
    for (const name of w.order) {
      const size = file.entry(name).end - file.entry(name).begin;
      for (let at = 0; at < size; at += 4096) w.write(name, file.readBytes(name, at, Math.min(size, at + 4096)));
    }
    w.commit();
    expect(readFileSync(out).equals(readFileSync(src))).toBe(true);
    expect(Array.from(file.readBytes('n', 1))).toEqual([2, 3]);
    expect(file.readBytes('n', 3, 3)).toEqual(new Uint8Array(0));
    check2(() => file.readBytes('n', 0, 4), 'RangeError', 'Expected a byte offset within tensor "n" (at most 3) for end but received 4');
    check2(() => file.readBytes('n', 2, 1), 'RangeError', 'Expected a byte offset at most end (1) for start but received 2');
    check2(() => file.readBytes('n', -1), 'RangeError', 'Expected a non-negative integer for start but received -1');
    file.close();
  });

  it('a file that shrinks after open is a clean error, not a short tensor', () => {
    const p = join(dir, 'shrink.safetensors');
    writeFileSync(p, readFileSync(path));
    const file = SafetensorsFile.open(p);
    truncateSync(p, file.headerBytes + 12);
    expect(Array.from(file.read('a').toFloat32Array())).toEqual([1, 2]);
    check2(
      () => file.read('z'),
      'RangeError',
      `Expected 8 bytes at byte ${file.headerBytes + 8} for tensor "z" in ${JSON.stringify(p)} but received 4 bytes (the file is shorter than when it was opened)`,
    );
    file.close();
  });
});

function check2(call: () => unknown, cls: string, message: string) {
  expect(errorOf(call)).toEqual({ cls, message });
}

// ---- writer arguments ----------------------------------------------------------------------

describe('writeSafetensors: arguments (and no file, no temporary file after a refusal)', () => {
  const dir = freshDir();
  const p = join(dir, 'w.safetensors');
  const t2 = tensor([1, 2], [2]);
  const gone = tensor([1, 2], [2]);
  gone.dispose();
  const write = (entries: unknown, metadata?: unknown) => () => writeSafetensors(p, entries as never, metadata as never);
  check([
    ['an empty path', () => writeSafetensors('', []), 'TypeError', 'Expected a non-empty path string for path but received ""'],
    [
      'entries is a number',
      write(3),
      'TypeError',
      'Expected an array of { name, tensor } or { name, dtype, shape, bytes }, or an object of Tensors for entries but received 3',
    ],
    [
      'an entry is a number',
      write([3]),
      'TypeError',
      'Expected an object { name, tensor } or { name, dtype, shape, bytes } for entries[0] but received 3',
    ],
    ['no name', write([{ tensor: t2 }]), 'TypeError', 'Expected a tensor name string for entries[0].name but received undefined'],
    [
      'the name __metadata__',
      write([{ name: '__metadata__', tensor: t2 }]),
      'RangeError',
      'Expected a tensor name other than "__metadata__" for entries[0].name but received "__metadata__"',
    ],
    [
      'a lone surrogate in a name',
      write([{ name: 'a\ud800', tensor: t2 }]),
      'RangeError',
      'Expected well-formed Unicode (no lone surrogates) for entries[0].name but received "a\\ud800"',
    ],
    [
      'a duplicate name',
      write([
        { name: 'w', tensor: t2 },
        { name: 'w', tensor: t2 },
      ]),
      'RangeError',
      'Expected a unique tensor name for entries[1].name but received "w" (entries[0] has it too)',
    ],
    [
      'a tensor that is not a Tensor',
      write([{ name: 'w', tensor: new Float32Array(2) }]),
      'TypeError',
      'Expected a Tensor for entries[0].tensor but received Float32Array(2)',
    ],
    [
      'a disposed tensor',
      write([{ name: 'w', tensor: gone }]),
      'TypeError',
      'Expected a live Tensor for entries[0].tensor but received Tensor(float32, [2], cpu, disposed) (it was disposed)',
    ],
    [
      'both a tensor and bytes',
      write([{ name: 'w', tensor: t2, bytes: d(8) }]),
      'TypeError',
      'Expected either tensor or { dtype, shape, bytes } for entries[0] but received both',
    ],
    [
      'no dtype for bytes',
      write([{ name: 'w', shape: [2], bytes: d(8) }]),
      'TypeError',
      `Expected one of ${DTYPE_LIST} for entries[0].dtype but received undefined`,
    ],
    [
      'an unknown dtype',
      write([{ name: 'w', dtype: 'F4', shape: [2], bytes: d(1) }]),
      'RangeError',
      `Expected one of ${DTYPE_LIST} for entries[0].dtype but received "F4"`,
    ],
    [
      'a shape that is not an array',
      write([{ name: 'w', dtype: 'U8', shape: 2, bytes: d(2) }]),
      'TypeError',
      'Expected an array of non-negative integers for entries[0].shape but received 2',
    ],
    [
      'a negative dimension',
      write([{ name: 'w', dtype: 'U8', shape: [2, -1], bytes: d(2) }]),
      'RangeError',
      'Expected a non-negative integer for entries[0].shape[1] but received -1',
    ],
    [
      'bytes that are not a Uint8Array',
      write([{ name: 'w', dtype: 'U8', shape: [2], bytes: [1, 2] }]),
      'TypeError',
      'Expected a Uint8Array (or a tensor) for entries[0].bytes but received [1, 2]',
    ],
    [
      'bytes of the wrong length',
      write([{ name: 'w', dtype: 'I64', shape: [2], bytes: d(15) }]),
      'RangeError',
      'Expected 16 bytes (shape [2] of I64, 8 bytes each) for entries[0].bytes but received Uint8Array(15)',
    ],
    ['an object entry that is not a Tensor', write({ w: 3 }), 'TypeError', 'Expected a Tensor for entries["w"].tensor but received 3'],
    ['metadata that is an array', write([], []), 'TypeError', 'Expected an object of strings for metadata but received []'],
    ['a metadata value that is a number', write([], { k: 1 }), 'TypeError', 'Expected a string for metadata["k"] but received 1'],
  ]);
  it('left nothing in the directory', () => {
    expect(readdirSync(dir)).toEqual([]);
  });
});

// ---- the streaming writer ------------------------------------------------------------------

describe('SafetensorsWriter', () => {
  const declared: Array<{ name: string; dtype: SafetensorsDtype; shape: number[] }> = [
    { name: 'small', dtype: 'U8', shape: [3] },
    { name: 'big', dtype: 'F32', shape: [1000] },
    { name: 'none', dtype: 'F16', shape: [0] },
    { name: 'ids', dtype: 'I64', shape: [2] },
  ];
  const content: Record<string, Uint8Array> = {
    small: new Uint8Array([1, 2, 3]),
    big: bytesOf(randomF32(1000, 5)),
    none: d(0),
    ids: bytesOf(new BigInt64Array([5n, -5n])),
  };
  const meta = { step: '100', b: 'x' };

  it('writes in the header order, tensors in pieces, the same bytes as writeSafetensors', () => {
    const dir = freshDir();
    const w = new SafetensorsWriter(join(dir, 's.safetensors'), declared, meta);
    expect(w.order).toEqual(['ids', 'big', 'none', 'small']);
    expect(readdirSync(dir)).toHaveLength(1); // the temporary file
    expect(existsSync(join(dir, 's.safetensors'))).toBe(false);
    for (const name of w.order) {
      const bytes = content[name];
      for (let at = 0; at < bytes.length; at += 1000) w.write(name, bytes.subarray(at, at + 1000)); // 1000-byte pieces
      w.write(name, d(0));
    }
    w.commit();
    expect(w.state).toBe('committed');
    w.abort(); // nothing happens after commit
    writeSafetensors(
      join(dir, 'w.safetensors'),
      declared.map((e) => ({ ...e, bytes: content[e.name] })),
      meta,
    );
    expect(sha256(readFileSync(join(dir, 's.safetensors')))).toBe(sha256(readFileSync(join(dir, 'w.safetensors'))));
    expect(readdirSync(dir).sort()).toEqual(['s.safetensors', 'w.safetensors']);
    check2(
      () => w.write('ids', d(1)),
      'TypeError',
      `Expected an open SafetensorsWriter for writer but received a committed SafetensorsWriter (${JSON.stringify(join(dir, 's.safetensors'))})`,
    );
  });

  const misuse: Array<[string, (w: InstanceType<typeof SafetensorsWriter>) => void, string, string]> = [
    [
      'an out-of-order write',
      (w) => w.write('big', content.big),
      'RangeError',
      'Expected "ids" (the next tensor in the header\'s order) for name but received "big"',
    ],
    [
      'a write past the current tensor',
      (w) => (w.write('ids', content.ids), w.write('small', content.small)),
      'RangeError',
      'Expected "big" (the next tensor in the header\'s order) for name but received "small"',
    ],
    [
      'a second write of a finished tensor',
      (w) => (w.write('ids', content.ids), w.write('ids', d(1))),
      'RangeError',
      'Expected a tensor not yet written ("ids" is complete) for name but received "ids"',
    ],
    [
      'too many bytes',
      (w) => (w.write('ids', d(10)), w.write('ids', d(8))),
      'RangeError',
      'Expected at most 6 bytes (tensor "ids" has 16 bytes, 10 written) for bytes but received Uint8Array(8)',
    ],
    [
      'an undeclared name',
      (w) => w.write('nope', d(1)),
      'RangeError',
      'Expected the name of a declared tensor for name but received "nope"',
    ],
    [
      'bytes that are not a Uint8Array',
      (w) => w.write('ids', [1] as never),
      'TypeError',
      'Expected a Uint8Array for bytes but received [1]',
    ],
    [
      'a commit with a tensor missing',
      (w) => (w.write('ids', content.ids), w.commit()),
      'RangeError',
      'Expected every declared tensor written before commit() for the writer of "PATH" but received tensor "big" with 0 of 4000 bytes',
    ],
    [
      'a commit with a tensor half written',
      (w) => (w.write('ids', content.ids), w.write('big', d(100)), w.commit()),
      'RangeError',
      'Expected every declared tensor written before commit() for the writer of "PATH" but received tensor "big" with 100 of 4000 bytes',
    ],
  ];
  it.each(misuse)('%s is an error that aborts: no file, no temporary file', (_label, misuseIt, cls, message) => {
    const dir = freshDir();
    const path = join(dir, 'm.safetensors');
    const w = new SafetensorsWriter(path, declared);
    expect(errorOf(() => misuseIt(w))).toEqual({ cls, message: message.replace('PATH', path.replace(/\\/g, '\\\\')) });
    expect(w.state).toBe('aborted');
    expect(readdirSync(dir)).toEqual([]);
    check2(
      () => w.commit(),
      'TypeError',
      `Expected an open SafetensorsWriter for writer but received an aborted SafetensorsWriter (${JSON.stringify(path)})`,
    );
  });

  it('abort(), or disposal before commit, deletes the temporary file and keeps the previous version', () => {
    const dir = freshDir();
    const path = join(dir, 'keep.safetensors');
    writeSafetensors(path, { v1: tensor([1], [1]) });
    chmodSync(path, 0o640);
    const before = readFileSync(path);
    const w = new SafetensorsWriter(path, declared);
    w.write('ids', content.ids);
    w.abort();
    w.abort();
    expect(readFileSync(path).equals(before)).toBe(true);
    const v = new SafetensorsWriter(path, declared);
    v[Symbol.dispose]();
    expect(readdirSync(dir)).toEqual(['keep.safetensors']);
    // A successful rewrite replaces the file and keeps its permission bits.
    writeSafetensors(path, { v2: tensor([2], [1]) });
    expect(SafetensorsFile.open(path).entries[0].name).toBe('v2');
    if (process.platform !== 'win32') expect(statSync(path).mode & 0o777).toBe(0o640);
  });

  it('a data source that throws mid-write leaves no file (try/finally abort, as `using` does)', () => {
    const dir = freshDir();
    const path = join(dir, 'crash.safetensors');
    function* source(): Generator<[string, Uint8Array]> {
      yield ['ids', content.ids];
      yield ['big', content.big.subarray(0, 2000)];
      throw new Error('disk source failed');
    }
    expect(() => {
      const w = new SafetensorsWriter(path, declared);
      try {
        for (const [name, bytes] of source()) w.write(name, bytes);
        w.commit();
      } finally {
        w[Symbol.dispose]();
      }
    }).toThrow('disk source failed');
    expect(readdirSync(dir)).toEqual([]);
  });

  it('rejects bad declarations', () => {
    const p = join(freshDir(), 'x.safetensors');
    check2(
      () => new SafetensorsWriter(p, 3 as never),
      'TypeError',
      'Expected an array of { name, dtype, shape } for declared but received 3',
    );
    check2(
      () =>
        new SafetensorsWriter(p, [
          { name: 'a', dtype: 'U8', shape: [1] },
          { name: 'a', dtype: 'U8', shape: [1] },
        ]),
      'RangeError',
      'Expected a unique tensor name for declared[1].name but received "a" (declared[0] has it too)',
    );
    check2(
      () => new SafetensorsWriter(p, [{ name: 'a', dtype: 'U8', shape: [2 ** 40, 2 ** 40] }]),
      'RangeError',
      'Expected a tensor of fewer than 2^53 bytes for declared[0] but received shape [1099511627776, 1099511627776] of U8',
    );
    check2(
      () => new SafetensorsWriter(p, [null as never]),
      'TypeError',
      'Expected an object { name, dtype, shape } for declared[0] but received null',
    );
  });

  it('writeFileAtomic writes text and bytes atomically', () => {
    const dir = freshDir();
    writeFileAtomic(join(dir, 'a.json'), '{"r": 8}\n');
    writeFileAtomic(join(dir, 'b.bin'), new Uint8Array([1, 2]));
    expect(readFileSync(join(dir, 'a.json'), 'utf8')).toBe('{"r": 8}\n');
    expect(Array.from(readFileSync(join(dir, 'b.bin')))).toEqual([1, 2]);
    expect(readdirSync(dir).sort()).toEqual(['a.json', 'b.bin']);
    check2(() => writeFileAtomic(join(dir, 'c'), 3 as never), 'TypeError', 'Expected a Uint8Array or a string for data but received 3');
    expect(() => writeFileAtomic(join(dir, 'missing', 'c'), 'x')).toThrow(/ENOENT/);
    expect(readdirSync(dir).sort()).toEqual(['a.json', 'b.bin']);
  });
});

// ---- a process that dies mid-write ---------------------------------------------------------

// The child runs the real writer: the compiled dist/io/safetensors.js (npm test compiles
// lib/ to dist/ before the tests run).
const compiled = join(import.meta.dirname, '..', 'dist', 'io', 'safetensors.js');

describe.skipIf(!existsSync(compiled))(
  `a child process that dies mid-write${existsSync(compiled) ? '' : ' (skipped: dist/ is not built; run npx tsc -p tsconfig.json)'}`,
  () => {
    const dir = freshDir();
    const script = join(dir, 'child.mjs');
    writeFileSync(
      script,
      `import { SafetensorsWriter } from ${JSON.stringify(pathToFileURL(compiled).href)};
       const [path, how] = process.argv.slice(2);
       const w = new SafetensorsWriter(path, [{ name: 'a', dtype: 'F32', shape: [4096] }, { name: 'b', dtype: 'U8', shape: [10] }], { v: '2' });
       w.write('a', new Uint8Array(16384).fill(7));
       if (how === 'exit') process.exit(1);
       if (how === 'kill') process.kill(process.pid, 'SIGKILL');
       w.write('b', new Uint8Array(10));
       w.commit();`,
    );
    const run = (path: string, how: string) => spawnSync(process.execPath, [script, path, how], { encoding: 'utf8' });

    it('process.exit(1) before commit: no file under the final name, no temporary file', () => {
      const sub = join(dir, 'exit');
      mkdirSync(sub);
      const r = run(join(sub, 'a.safetensors'), 'exit');
      expect([r.status, r.stderr]).toEqual([1, '']);
      expect(readdirSync(sub)).toEqual([]);
    });

    it('process.exit(1) over an existing file: the previous version is intact', () => {
      const sub = join(dir, 'exit-existing');
      mkdirSync(sub);
      const path = join(sub, 'a.safetensors');
      writeSafetensors(path, { v1: tensor([1], [1]) });
      const before = readFileSync(path);
      expect(run(path, 'exit').status).toBe(1);
      expect(readFileSync(path).equals(before)).toBe(true);
      expect(readdirSync(sub)).toEqual(['a.safetensors']);
    });

    it.skipIf(process.platform === 'win32')(
      'SIGKILL mid-write: the previous version is intact (only an orphaned temporary file may remain)',
      () => {
        const sub = join(dir, 'kill');
        mkdirSync(sub);
        const path = join(sub, 'a.safetensors');
        writeSafetensors(path, { v1: tensor([1], [1]) });
        const before = readFileSync(path);
        expect(run(path, 'kill').signal).toBe('SIGKILL');
        expect(readFileSync(path).equals(before)).toBe(true);
        const left = readdirSync(sub).filter((f) => f !== 'a.safetensors');
        expect(left.length).toBeLessThanOrEqual(1);
        for (const f of left) expect(f).toMatch(/^\.a\.safetensors\.\d+\.[0-9a-f]{12}\.tmp$/);
      },
    );

    it('a child that commits leaves exactly the file', () => {
      const sub = join(dir, 'ok');
      mkdirSync(sub);
      const path = join(sub, 'a.safetensors');
      expect(run(path, 'commit').status).toBe(0);
      expect(readdirSync(sub)).toEqual(['a.safetensors']);
      const file = SafetensorsFile.open(path);
      expect([file.metadata.v, file.entries.map((e) => e.name)]).toEqual(['2', ['a', 'b']]);
      file.close();
    });
  },
);

// ---- fuzzing the reader ---------------------------------------------------------------------

/** An independent check of an accepted header: JSON.parse agrees, and the tensors tile the buffer. */
function consistent(bytes: Uint8Array, h: Header): void {
  const n = Number(new DataView(bytes.buffer, bytes.byteOffset, 8).getBigUint64(0, true));
  expect(h.headerBytes).toBe(8 + n);
  const parsed = JSON.parse(Buffer.from(bytes.subarray(8, 8 + n)).toString('utf8')) as Record<string, unknown>;
  const names = Object.keys(parsed).filter((k) => k !== '__metadata__');
  expect(h.entries.map((e) => e.name).sort()).toEqual(names.sort());
  expect({ ...h.metadata }).toEqual(parsed.__metadata__ ?? {});
  let at = 0;
  for (const e of h.entries) {
    expect(parsed[e.name]).toMatchObject({ dtype: e.dtype, shape: e.shape, data_offsets: [e.begin, e.end] });
    expect(e.begin).toBe(at);
    expect(e.end - e.begin).toBe(e.shape.reduce((p, x) => p * x, 1) * DTYPE_BYTES[e.dtype]);
    at = e.end;
  }
  expect(at).toBe(bytes.length - 8 - n);
}

interface Model {
  members: Array<{ key: string; fields: Array<[string, string]> }>;
  meta?: string;
  tail: string;
  data: number;
}

/** A valid file model: names, dtypes, shapes, offsets laid out in order, members in any order. */
const modelArb = fc
  .record({
    tensors: fc.uniqueArray(
      fc.record({
        name: fc.oneof(fc.string({ maxLength: 5 }), fc.constantFrom('w', 'é', '😀', '__proto__', 'a"b', 'x\\y', '')),
        dtype: fc.constantFrom(...DTYPES),
        shape: fc.array(fc.nat({ max: 4 }), { maxLength: 3 }),
      }),
      { selector: (t) => t.name, maxLength: 4 },
    ),
    meta: fc.option(fc.dictionary(fc.string({ maxLength: 4 }), fc.string({ maxLength: 6 }), { maxKeys: 2 }), { nil: undefined }),
    rotate: fc.nat(),
    pad: fc.nat({ max: 7 }),
  })
  .map(({ tensors, meta, rotate, pad }): Model => {
    let at = 0;
    const members = tensors
      .filter((t) => t.name !== '__metadata__')
      .map((t) => {
        const size = t.shape.reduce((p, x) => p * x, 1) * DTYPE_BYTES[t.dtype];
        const m = {
          key: JSON.stringify(t.name),
          fields: [
            ['dtype', JSON.stringify(t.dtype)],
            ['shape', JSON.stringify(t.shape)],
            ['data_offsets', `[${at},${at + size}]`],
          ] as Array<[string, string]>,
        };
        at += size;
        return m;
      });
    const k = members.length ? rotate % members.length : 0;
    const metaText =
      meta &&
      `{${Object.entries(meta)
        .map(([a, b]) => `${JSON.stringify(a)}:${JSON.stringify(b)}`)
        .join(',')}}`;
    return { members: [...members.slice(k), ...members.slice(0, k)], meta: metaText, tail: ' '.repeat(pad), data: at };
  });

const junk = fc.constantFrom(
  'null',
  'true',
  '3',
  '-1',
  '1.5',
  '1e3',
  '-0',
  '"F32"',
  '"x"',
  '[]',
  '{}',
  '[0]',
  '[0,1,2]',
  '[-1,4]',
  '[1.5,2]',
  '["0","4"]',
  '[18446744073709551615,0]',
  '[9007199254740993,9007199254740994]',
  '[[1]]',
  '{"a":1}',
  '"\\ud800"',
  '{"a":"b","a":"c"}',
);
const mutationArb = fc.oneof(
  fc.record({
    kind: fc.constant('field' as const),
    i: fc.nat(),
    field: fc.constantFrom('dtype', 'shape', 'data_offsets'),
    text: fc.oneof(
      junk,
      fc.constantFrom(...DTYPES.map((x) => `"${x}"`)),
      fc.array(fc.integer({ min: -2, max: 9 }), { maxLength: 3 }).map((a) => JSON.stringify(a)),
      fc.tuple(fc.integer({ min: -4, max: 90 }), fc.integer({ min: -4, max: 90 })).map(([a, b]) => `[${a},${b}]`),
    ),
  }),
  fc.record({ kind: fc.constant('drop' as const), i: fc.nat(), field: fc.nat() }),
  fc.record({ kind: fc.constant('dupField' as const), i: fc.nat(), field: fc.nat() }),
  fc.record({ kind: fc.constant('dupMember' as const), i: fc.nat() }),
  fc.record({ kind: fc.constant('sameOffsets' as const), i: fc.nat(), j: fc.nat() }),
  fc.record({
    kind: fc.constant('member' as const),
    i: fc.nat(),
    text: fc.oneof(
      junk,
      fc.integer({ min: 1, max: 120 }).map((k) => '['.repeat(k) + ']'.repeat(k)),
    ),
  }),
  fc.record({ kind: fc.constant('meta' as const), text: junk }),
  fc.record({
    kind: fc.constant('tail' as const),
    text: fc.oneof(fc.string({ maxLength: 4 }), fc.constantFrom('\t\n\r', ' x', '}', '\u00a0')),
  }),
  fc.record({ kind: fc.constant('data' as const), delta: fc.integer({ min: -9, max: 9 }) }),
);
const byteMutationArb = fc.oneof(
  fc.record({ kind: fc.constant('truncate' as const), at: fc.nat() }),
  fc.record({ kind: fc.constant('set' as const), at: fc.nat(), value: fc.nat({ max: 255 }) }),
  fc.record({
    kind: fc.constant('length' as const),
    value: fc.oneof(
      fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }),
      fc.constantFrom(0n, 1n, 2n, 7n, 8n, 100_000_000n, 100_000_001n, 2n ** 53n, 2n ** 63n, 2n ** 64n - 1n),
      fc.integer({ min: -3, max: 3 }).map((x) => BigInt(x) - 1000n),
    ),
  }),
  fc.record({ kind: fc.constant('replace' as const), bytes: fc.uint8Array({ maxLength: 40 }) }),
);

function render(
  model: Model,
  mutations: ReadonlyArray<typeof mutationArb extends fc.Arbitrary<infer T> ? T : never>,
): { bytes: Uint8Array; duplicated: boolean } {
  const members = model.members.map((m) => ({
    key: m.key,
    value: undefined as string | undefined,
    fields: m.fields.map(([k, v]) => [k, v] as [string, string]),
  }));
  let meta = model.meta,
    tail = model.tail,
    data = model.data;
  const pick = <T>(a: T[], i: number) => (a.length ? a[i % a.length] : undefined);
  for (const m of mutations) {
    const target = 'i' in m ? pick(members, m.i) : undefined;
    if (m.kind === 'field' && target) {
      const f = target.fields.find(([k]) => k === m.field);
      if (f) f[1] = m.text;
    } else if (m.kind === 'drop' && target && target.fields.length) target.fields.splice(m.field % target.fields.length, 1);
    else if (m.kind === 'dupField' && target && target.fields.length)
      target.fields.push([...target.fields[m.field % target.fields.length]]);
    else if (m.kind === 'dupMember' && target)
      members.push({ ...target, fields: target.fields.map(([k, v]) => [k, v] as [string, string]) });
    else if (m.kind === 'sameOffsets' && target) {
      const other = pick(members, m.j)!;
      const mine = target.fields.find(([k]) => k === 'data_offsets'),
        theirs = other.fields.find(([k]) => k === 'data_offsets');
      if (mine && theirs) mine[1] = theirs[1];
    } else if (m.kind === 'member' && target) target.value = m.text;
    else if (m.kind === 'meta') meta = m.text;
    else if (m.kind === 'tail') tail = m.text;
    else if (m.kind === 'data') data = Math.max(0, data + m.delta);
  }
  // Duplicate keys that reach the text: tensor names, or fields of a member not replaced wholesale.
  const keys = members.map((m) => m.key);
  let duplicated = new Set(keys).size < keys.length;
  for (const m of members) if (m.value === undefined) duplicated ||= new Set(m.fields.map(([k]) => k)).size < m.fields.length;
  const parts = members.map((m) => `${m.key}:${m.value ?? `{${m.fields.map(([k, v]) => `"${k}":${v}`).join(',')}}`}`);
  if (meta !== undefined) parts.unshift(`"__metadata__":${meta}`);
  return {
    bytes: hand(
      `{${parts.join(',')}}${tail}`,
      new Uint8Array(data).map((_, i) => i * 37),
    ),
    duplicated,
  };
}

function applyBytes(
  bytes: Uint8Array,
  mutations: ReadonlyArray<typeof byteMutationArb extends fc.Arbitrary<infer T> ? T : never>,
): Uint8Array {
  let out = bytes.slice();
  for (const m of mutations) {
    if (m.kind === 'truncate') out = out.slice(0, m.at % (out.length + 1));
    else if (m.kind === 'set' && out.length) out[m.at % out.length] = m.value;
    else if (m.kind === 'length' && out.length >= 8) {
      const real = BigInt(out.length - 8);
      new DataView(out.buffer).setBigUint64(0, m.value >= 0n ? m.value : BigInt.asUintN(64, real + m.value + 1000n), true);
    } else if (m.kind === 'replace') out = m.bytes.slice();
  }
  return out;
}

/** Throws on any typed-array or ArrayBuffer allocation above `limit` bytes while `f` runs. */
function withAllocationLimit<T>(limit: () => number, f: () => T): T {
  const originals = { Uint8Array, Uint16Array, Float32Array, ArrayBuffer };
  const g = globalThis as unknown as Record<string, unknown>;
  for (const [name, ctor] of Object.entries(originals)) {
    const per = name === 'ArrayBuffer' ? 1 : (ctor as unknown as { BYTES_PER_ELEMENT: number }).BYTES_PER_ELEMENT;
    g[name] = new Proxy(ctor, {
      construct(target, args, newTarget) {
        if (typeof args[0] === 'number' && args[0] * per > limit()) throw new Error(`giant allocation: ${name}(${args[0]})`);
        return Reflect.construct(target, args, newTarget === g[name] ? target : newTarget) as object;
      },
    });
  }
  try {
    return f();
  } finally {
    Object.assign(g, originals);
  }
}

function outcome(f: () => void): 'accepted' | 'rejected' {
  try {
    f();
    return 'accepted';
  } catch (e) {
    if (
      (e instanceof TypeError || e instanceof RangeError) &&
      /^Expected /.test(e.message) &&
      [TypeError, RangeError].includes(e.constructor as never)
    )
      return 'rejected';
    throw e;
  }
}

describe('fuzzing the reader (fast-check: 10 500 mutated files)', () => {
  it('guards allocations (self-test)', () => {
    expect(() =>
      withAllocationLimit(
        () => 100,
        () => new Uint8Array(101),
      ),
    ).toThrow('giant allocation: Uint8Array(101)');
    expect(
      withAllocationLimit(
        () => 100,
        () => Buffer.from([1]) instanceof Uint8Array,
      ),
    ).toBe(true);
    // …and it sees the library's own allocations.
    const p = join(freshDir(), 'guard.safetensors');
    writeSafetensors(p, { w: tensor(randomF32(64, 1), [64]) });
    expect(() =>
      withAllocationLimit(
        () => 64,
        () => SafetensorsFile.open(p),
      ),
    ).toThrow(/^giant allocation: Uint8Array\(\d+\)$/);
    const file = SafetensorsFile.open(p);
    expect(() =>
      withAllocationLimit(
        () => 200,
        () => file.read('w'),
      ),
    ).toThrow('giant allocation: Float32Array(64)');
    file.close();
  });

  it('parseHeader: 9 000 mutated headers are accepted consistently or rejected as "Expected …", never read past the bytes', () => {
    const tally = { accepted: 0, rejected: 0 };
    let size = 0;
    withAllocationLimit(
      () => size + 65536,
      () =>
        fc.assert(
          fc.property(modelArb, fc.array(mutationArb, { maxLength: 3 }), fc.array(byteMutationArb, { maxLength: 2 }), (model, ms, bms) => {
            const { bytes: rendered, duplicated } = render(model, ms);
            const bytes = applyBytes(rendered, bms);
            size = bytes.length;
            // The bytes sit inside a larger buffer of '{' bytes: reading past the view would show.
            const host = new Uint8Array(bytes.length + 32).fill(0x7b);
            host.set(bytes, 16);
            const view = host.subarray(16, 16 + bytes.length);
            let header: Header | undefined;
            const result = outcome(() => {
              header = parseHeader(view, view.length, 'fuzz');
            });
            tally[result]++;
            if (header) consistent(view, header);
            if (duplicated && bms.length === 0) expect(result).toBe('rejected');
          }),
          { numRuns: 9000 },
        ),
    );
    expect(tally.accepted).toBeGreaterThan(500);
    expect(tally.rejected).toBeGreaterThan(3000);
  });

  it('SafetensorsFile: 1 500 mutated files open, read every tensor, or fail as "Expected …", allocating at most the file size', () => {
    const dir = freshDir();
    const path = join(dir, 'fuzz.safetensors');
    const tally = { accepted: 0, rejected: 0 };
    let size = 0;
    withAllocationLimit(
      () => size + 4096,
      () =>
        fc.assert(
          fc.property(modelArb, fc.array(mutationArb, { maxLength: 2 }), fc.array(byteMutationArb, { maxLength: 1 }), (model, ms, bms) => {
            const bytes = applyBytes(render(model, ms).bytes, bms);
            size = bytes.length;
            writeFileSync(path, bytes);
            tally[
              outcome(() => {
                const file = SafetensorsFile.open(path);
                try {
                  for (const e of file.entries) {
                    expect(file.readBytes(e.name)).toEqual(bytes.subarray(file.headerBytes + e.begin, file.headerBytes + e.end));
                    if (e.dtype === 'F32' || e.dtype === 'BF16' || e.dtype === 'F16') {
                      const t: Tensor = file.read(e.name);
                      expect(t.shape).toEqual(e.shape);
                      t.dispose();
                    }
                  }
                } finally {
                  file.close();
                }
              })
            ]++;
          }),
          { numRuns: 1500 },
        ),
    );
    expect(tally.accepted).toBeGreaterThan(100);
    expect(tally.rejected).toBeGreaterThan(300);
    expect(readdirSync(dir)).toEqual(['fuzz.safetensors']);
  });
});
