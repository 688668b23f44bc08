// Element-wise helpers the layers and the optimizer share, on either device: zero a tensor, add
// one tensor into another. Both are float32-only (gradients).
//
// On CUDA both are device kernels queued on the backend stream (no wait, nothing over the bus).
import { native } from '../native.js';
import { type Tensor } from '../tensor.js';
import { checked, f32 } from './check.js';

/** t ← 0 (a float32 tensor on either device). */
export function fillZeros(t: Tensor, name: string): void {
  const c = checked(t, name, 'float32');
  if (c.device !== 'cuda') {
    f32(c, name).fill(0);
    return;
  }
  native().cudaFill({ block: c.deviceHandle(name), dtype: 0, value: 0, n: c.size });
}

/** dst += src, element by element (float32 tensors of one size on one device). */
export function addInto(dst: Tensor, src: Tensor, dstName: string, srcName: string): void {
  const d = checked(dst, dstName, 'float32'), s = checked(src, srcName, 'float32');
  if (d.device !== 'cuda' || s.device !== 'cuda') {
    const a = f32(d, dstName), b = f32(s, srcName);
    for (let i = 0; i < a.length; i++) a[i] += b[i];
    return;
  }
  native().cudaAddInto({ dst: d.deviceHandle(dstName), src: s.deviceHandle(srcName), n: d.size });
}
