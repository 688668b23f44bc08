// safetensors files assembled byte by byte from the format description (u64 header length,
// JSON header padded with spaces to a multiple of 8, data buffer), and read back the same way:
// fixtures independent of lowrank's own reader and writer.
import { readFileSync } from 'node:fs';
import { bf16Bits, bf16Value, f32FromBits } from './reference.js';

export interface FixtureTensor {
  name: string;
  dtype: 'F32' | 'BF16' | 'F16' | 'I64';
  shape: number[];
  data: Float32Array | Uint16Array | BigInt64Array;
}

/** The bytes of a safetensors file holding `entries` in the given order. */
export function safetensorsBytes(entries: FixtureTensor[], metadata: Record<string, string> | null = { format: 'pt' }): Buffer {
  const header: Record<string, unknown> = {};
  if (metadata) header.__metadata__ = metadata;
  const chunks: Buffer[] = [];
  let offset = 0;
  for (const e of entries) {
    const bytes = Buffer.from(e.data.buffer, e.data.byteOffset, e.data.byteLength);
    header[e.name] = { dtype: e.dtype, shape: e.shape, data_offsets: [offset, offset + bytes.length] };
    offset += bytes.length;
    chunks.push(bytes);
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - (json.length % 8)) % 8);
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(json.length));
  return Buffer.concat([len, Buffer.from(json, 'utf8'), ...chunks]);
}

/** Header entries, metadata, sorted names, each tensor's raw bytes, and F32 / BF16 values as float32. */
export function parseSafetensors(file: string) {
  const buf = readFileSync(file);
  const n = Number(buf.readBigUInt64LE(0));
  const header = JSON.parse(buf.subarray(8, 8 + n).toString('utf8')) as Record<
    string,
    { dtype: string; shape: number[]; data_offsets: [number, number] }
  >;
  const metadata = (header.__metadata__ ?? null) as unknown as Record<string, string> | null;
  delete header.__metadata__;
  const bytes = (name: string) => buf.subarray(8 + n + header[name].data_offsets[0], 8 + n + header[name].data_offsets[1]);
  const f32 = (name: string) => {
    const b = Buffer.from(bytes(name));
    return header[name].dtype === 'BF16'
      ? Float32Array.from(new Uint16Array(b.buffer, b.byteOffset, b.length / 2), (u) => f32FromBits(u << 16))
      : new Float32Array(b.buffer, b.byteOffset, b.length / 4);
  };
  return { header, metadata, names: Object.keys(header).sort(), bytes, f32 };
}

/** Float32 values rounded to bfloat16, as raw bits. */
export const toBf16Bits = (v: Float32Array) => Uint16Array.from(v, (x) => bf16Bits(bf16Value(x)));
/** bfloat16 bits widened to float32. */
export const fromBf16Bits = (u: Uint16Array) => Float32Array.from(u, (b) => f32FromBits(b << 16));
