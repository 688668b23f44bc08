// nn: the building blocks of a training loop on either device, each one native op on the
// tensors' device (CUDA: device kernels queued on the backend stream), so a step never copies to
// the host. Every function validates its arguments here (lib/ops/check.ts, lib/validate.ts) and
// returns new tensors on its inputs' device unless told to write into `out`.
import { invalidRange, invalidType } from '../errors.js';
import { type Tensor } from '../tensor.js';
import { checked, live, nativeOf, sameDevice, sameShape } from './check.js';
import { run } from './run.js';

const INT32_MIN = -(2 ** 31), INT32_MAX = 2 ** 31 - 1;

/**
 * t ← value in place, for a tensor of any dtype: a float tensor takes the value rounded to its
 * dtype (NaN and ±Infinity included), an int32 tensor an integer in int32's range. Returns t.
 */
export function fill(t: Tensor, value: number): Tensor {
  const c = live(t, 't');
  if (typeof value !== 'number') throw invalidType('a number', 'value', value);
  if (c.dtype === 'int32' && !(Number.isInteger(value) && value >= INT32_MIN && value <= INT32_MAX))
    throw invalidRange('an integer in int32 range (t is int32)', 'value', value);
  run('fill', { dst: nativeOf(c, 't'), value });
  return c;
}

/** dst += src in place, element by element (float32 tensors of one shape on one device). Returns dst. */
export function addInto(dst: Tensor, src: Tensor): Tensor {
  sameDevice([
    [dst, 'dst'],
    [src, 'src'],
  ]);
  const d = checked(dst, 'dst', 'float32'), s = checked(src, 'src', 'float32');
  sameShape(s, 'src', d, 'dst');
  run('addInto', { dst: nativeOf(d, 'dst'), src: nativeOf(s, 'src') });
  return d;
}
