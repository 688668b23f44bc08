// Element-wise helpers the layers and the optimizer share, on either device: zero a tensor, add
// one tensor into another. Both are float32-only (gradients), and both are the native ops
// `fill` and `addInto` (on CUDA, device kernels queued on the backend stream).
import { type Tensor } from '../tensor.js';
import { apart, checked, f32, nativeOf } from './check.js';
import { run } from './run.js';

/** t ← 0 (a float32 tensor on either device). */
export function fillZeros(t: Tensor, name: string): void {
  const c = checked(t, name, 'float32');
  run('fill', { dst: nativeOf(c, name), value: 0 });
}

/** dst += src, element by element (float32 tensors of one size on one device). */
export function addInto(dst: Tensor, src: Tensor, dstName: string, srcName: string): void {
  const d = checked(dst, dstName, 'float32'),
    s = checked(src, srcName, 'float32');
  if (d.device !== s.device) {
    // the one in CUDA memory is refused as host memory is expected (the CPU path)
    f32(d, dstName);
    f32(s, srcName);
  }
  apart([[d, dstName]], [[s, srcName]], true);
  run('addInto', { dst: nativeOf(d, dstName), src: nativeOf(s, srcName) });
}
