// `lowrank merge`: the command line over checkpoint.mergeCheckpoint (lib/io/checkpoint.ts), which
// does the work. This file shows its progress (a bar on a terminal, a line per 10 % otherwise) and
// prints its report (text, or JSON with --json); main.ts parses the arguments.
import { SingleBar } from 'cli-progress';
import { mergeCheckpoint, type MergeCheckpointOptions, type MergeProgress, type MergeReport } from '../io/checkpoint.js';
import { setPoolBudget } from '../pool.js';
import { formatBytes } from './inspect.js';

const MiB = 1024 * 1024;

/** A progress bar on a terminal; otherwise a plain line per 10 % (for logs and pipes). */
function progress(quiet: boolean): { onProgress?: (p: MergeProgress) => void; stop: () => void } {
  if (quiet) return { stop: () => {} };
  if (process.stdout.isTTY) {
    let bar: SingleBar | null = null;
    return {
      onProgress: (p) => {
        if (!bar) {
          bar = new SingleBar({
            format: 'merging {bar} {percentage}% | {value}/{total} MiB | {tensors}/{totalTensors} tensors',
            hideCursor: true,
            stream: process.stdout,
          });
          bar.start(Math.max(1, Math.round(p.totalBytes / MiB)), 0, { tensors: 0, totalTensors: p.totalTensors });
        }
        bar.update(Math.round(p.bytes / MiB), { tensors: p.tensors, totalTensors: p.totalTensors });
      },
      stop: () => bar?.stop(),
    };
  }
  let next = 0.1;
  return {
    onProgress: (p) => {
      const f = p.totalBytes > 0 ? p.bytes / p.totalBytes : p.tensors / p.totalTensors;
      if (f + 1e-12 < next && p.tensors < p.totalTensors) return;
      while (next <= f + 1e-12) next += 0.1;
      console.log(
        `merge: ${Math.round(f * 100)}% (${p.tensors}/${p.totalTensors} tensors, ${(p.bytes / MiB).toFixed(1)} of ${(p.totalBytes / MiB).toFixed(1)} MiB)`,
      );
    },
    stop: () => {},
  };
}

function formatReport(r: MergeReport): string {
  return [
    `merged ${r.merged} adapted weights${r.biases ? `, ${r.biases} biases` : ''}${r.replaced ? `, replaced ${r.replaced} tensors (modules_to_save)` : ''}; ` +
      `copied ${r.copied} tensors unchanged${r.converted ? `, converted ${r.converted}` : ''} (${r.tensors} in all)`,
    `wrote ${formatBytes(r.bytesWritten)} (read ${formatBytes(r.bytesRead)}) in ${r.seconds.toFixed(2)} s to ${r.outputs.join(', ')}`,
    `peak RSS ${formatBytes(r.peakRssBytes)} (largest tensor ${formatBytes(r.largestTensorBytes)})`,
  ].join('\n');
}

/** The parsed command line of `lowrank merge`. */
export interface MergeCommand extends Omit<MergeCheckpointOptions, 'onProgress'> {
  /** Print the report as JSON (and no progress). */
  json: boolean;
  /** Print nothing but errors. */
  quiet: boolean;
}

/** Runs the merge with progress and prints its report; returns the exit status (errors are thrown). */
export function merge(c: MergeCommand): number {
  // A command-line merge holds one tensor at a time: keep no freed buffers around for reuse.
  if (process.env.LOWRANK_POOL_BYTES === undefined) setPoolBudget(0);
  const bar = progress(c.json || c.quiet);
  let report: MergeReport;
  try {
    report = mergeCheckpoint({ base: c.base, adapter: c.adapter, out: c.out, dtype: c.dtype, device: c.device, onProgress: bar.onProgress });
  } finally {
    bar.stop();
  }
  if (c.json) console.log(JSON.stringify(report, null, 2));
  else if (!c.quiet) console.log(formatReport(report));
  return 0;
}
