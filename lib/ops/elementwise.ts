// Element-wise helpers the layers and the optimizer share, on either device: zero a tensor, add
// one tensor into another. Both are float32-only (gradients).
//
// CUDA: zeros are uploaded from one reused host buffer (stream-ordered, no wait). The backend
// has no element-wise add, so addInto() on CUDA brings both tensors to the host, adds there and
// uploads the sum: it waits for the device and moves 3 × nbytes over the bus. That is fine for
// adapter gradients (r × in, out × r, λ) and slow for a full [out, in] weight gradient.
import { native } from '../native.js';
import { type Tensor } from '../tensor.js';
import { checked, f32 } from './check.js';

/** Zeros are uploaded from one host chunk of at most this size. */
const ZERO_CHUNK_BYTES = 8 * 1024 * 1024;
let zeroChunk: Uint8Array | null = null;

/** t ← 0 (a float32 tensor on either device). */
export function fillZeros(t: Tensor, name: string): void {
  const c = checked(t, name, 'float32');
  if (c.device !== 'cuda') {
    f32(c, name).fill(0);
    return;
  }
  const block = c.deviceHandle(name);
  const bytes = c.nbytes;
  zeroChunk ??= new Uint8Array(ZERO_CHUNK_BYTES);
  for (let offset = 0; offset < bytes; offset += zeroChunk.length)
    native().cudaUpload({ block, src: zeroChunk.subarray(0, Math.min(zeroChunk.length, bytes - offset)), offset });
}

/** dst += src, element by element (float32 tensors of one size on one device). */
export function addInto(dst: Tensor, src: Tensor, dstName: string, srcName: string): void {
  const d = checked(dst, dstName, 'float32'), s = checked(src, srcName, 'float32');
  if (d.device !== 'cuda' || s.device !== 'cuda') {
    const a = f32(d, dstName), b = f32(s, srcName);
    for (let i = 0; i < a.length; i++) a[i] += b[i];
    return;
  }
  const a = new Float32Array(d.size), b = new Float32Array(s.size);
  native().cudaDownload({ block: d.deviceHandle(dstName), dst: a });
  native().cudaDownload({ block: s.deviceHandle(srcName), dst: b });
  for (let i = 0; i < a.length; i++) a[i] += b[i];
  native().cudaUpload({ block: d.deviceHandle(dstName), src: a });
}
