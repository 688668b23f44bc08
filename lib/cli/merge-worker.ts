// The thread that runs `lowrank merge` (lib/cli/merge.ts): mergeCheckpoint is synchronous, so
// it runs here while the main thread stays free to answer SIGINT and SIGTERM. It reports
// progress, every temporary file it makes or finishes with, and the report or the error.
import { parentPort, workerData } from 'node:worker_threads';
import { watchTemporaryFiles } from '../io/atomic.js';
import { mergeCheckpoint, type MergeCheckpointOptions } from '../io/checkpoint.js';
import { setPoolBudget } from '../pool.js';

/** A message from the worker to lib/cli/merge.ts. */
export type MergeMessage =
  | { kind: 'progress'; progress: Parameters<NonNullable<MergeCheckpointOptions['onProgress']>>[0] }
  | { kind: 'created'; path: string }
  | { kind: 'committed'; path: string }
  | { kind: 'removed'; path: string }
  | { kind: 'done'; report: ReturnType<typeof mergeCheckpoint> }
  | { kind: 'error'; cls: 'RangeError' | 'TypeError' | 'Error'; message: string; stack?: string };

export interface MergeWorkerData {
  options: Omit<MergeCheckpointOptions, 'onProgress'>;
  /** Keep no freed buffers for reuse (a merge holds one tensor at a time). */
  noPool: boolean;
}

const port = parentPort;
if (port) {
  const post = (m: MergeMessage) => port.postMessage(m);
  const data = workerData as MergeWorkerData;
  watchTemporaryFiles((kind, path) => post({ kind, path }));
  if (data.noPool) setPoolBudget(0);
  try {
    post({ kind: 'done', report: mergeCheckpoint({ ...data.options, onProgress: (progress) => post({ kind: 'progress', progress }) }) });
  } catch (e) {
    const cls = e instanceof RangeError ? 'RangeError' : e instanceof TypeError ? 'TypeError' : 'Error';
    post({ kind: 'error', cls, message: e instanceof Error ? e.message : String(e), stack: e instanceof Error ? e.stack : undefined });
  }
}
