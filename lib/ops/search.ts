// search: the selection step of exact nearest-neighbour search, one native op on the scores'
// device (native/core/ops/search.h). Arguments are validated here (lib/ops/check.ts,
// lib/validate.ts); results are new tensors on the scores' device.
import { invalidRange } from '../errors.js';
import { Tensor } from '../tensor.js';
import { positiveInt } from '../validate.js';
import { checked, nativeOf, output } from './check.js';
import { run, runAsync } from './run.js';

export interface TopkResult {
  /** [rows, k] int32: the columns of each row's k largest scores, best first. */
  indices: Tensor;
  /** [rows, k] float32: those scores (scores[row, indices[row, i]]). */
  values: Tensor;
}

/** The most columns topk takes: its indices are int32. */
const MAX_COLS = 2 ** 31 - 1;

/** The checked arguments of one topk call, its fresh results and what it holds. */
function prepareTopk(scores: Tensor, k: number) {
  const s = checked(scores, 'scores', 'float32');
  if (s.shape.length !== 2 || s.shape[0] < 1 || s.shape[1] < 1 || s.shape[1] > MAX_COLS)
    throw invalidRange(`a 2-D tensor [rows, cols] with rows >= 1 and 1 <= cols <= ${MAX_COLS}`, 'scores', s);
  const [rows, cols] = s.shape as [number, number];
  const kk = positiveInt(k, 'k');
  if (kk > cols) throw invalidRange(`a positive integer at most ${cols} (scores' columns)`, 'k', kk);
  const ss = nativeOf(s, 'scores');
  const indices = Tensor.empty([rows, kk], 'int32', s.device);
  const values = Tensor.empty([rows, kk], 'float32', s.device);
  const args = { rows, cols, k: kk, scores: ss, indices: output(indices), values: output(values) };
  const discard = () => {
    indices.dispose();
    values.dispose();
  };
  return { args, result: { indices, values }, held: [s, indices, values], discard };
}

/**
 * The k largest scores of each row of scores [rows, cols] (float32, 1 <= k <= cols), best
 * first: their columns (int32) and values, new tensors on the scores' device. Ties go to the
 * lower column, NaN ranks below every number (-Infinity included), -0 equals +0; the result is
 * the same on both devices and for any thread count. topkAsync: the same off the event loop.
 */
export function topk(scores: Tensor, k: number): TopkResult {
  const { args, result, discard } = prepareTopk(scores, k);
  try {
    run('topk', args);
  } catch (e) {
    discard();
    throw e;
  }
  return result;
}

/** topk off the event loop (on CUDA: queued on the device in order). */
export async function topkAsync(scores: Tensor, k: number): Promise<TopkResult> {
  const { args, result, held, discard } = prepareTopk(scores, k);
  try {
    await runAsync('topk', args, held);
  } catch (e) {
    discard();
    throw e;
  }
  return result;
}
