// `lowrank merge`: the command line over checkpoint.mergeCheckpoint (lib/io/checkpoint.ts), which
// does the work. This file parses the command's arguments, shows its progress (a bar on a
// terminal, a line per 10 % otherwise) and prints its report (text, or JSON with --json).
import { SingleBar } from 'cli-progress';
import { mergeCheckpoint, type MergeProgress, type MergeReport } from '../io/checkpoint.js';
import { setPoolBudget } from '../pool.js';
import { type CommandSpec, HELP, parseCommand, required, usageOf } from './args.js';
import { formatBytes } from './inspect.js';

export const MERGE = {
  usage: 'lowrank merge --base <model> --adapter <dir> --out <path> [options]',
  summary: 'merge a PEFT LoRA / VeRA adapter into a base checkpoint, one tensor at a time',
  options: {
    base: {
      type: 'string',
      arg: '<path>',
      help: 'model.safetensors, model.safetensors.index.json, or a directory holding either (shards)',
    },
    adapter: { type: 'string', arg: '<dir>', help: 'a PEFT adapter directory (adapter_config.json + adapter_model.safetensors)' },
    out: {
      type: 'string',
      arg: '<path>',
      help: 'a .safetensors file (one file, shards joined), or a directory (mirrors the base: same shard names + index)',
    },
    dtype: {
      type: 'string',
      values: ['float32', 'bfloat16', 'float16'],
      arg: '<dtype>',
      help: "convert every floating-point tensor (default: keep each one's dtype)",
    },
    device: { type: 'string', values: ['cpu', 'cuda'], arg: '<device>', help: 'where to compute the deltas (default cpu)' },
    json: { type: 'boolean', help: 'print the report as JSON (and no progress)' },
    quiet: { type: 'boolean', help: 'print nothing but errors' },
    help: HELP,
  },
} satisfies CommandSpec;

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

/** Runs `lowrank merge` with `argv` (the arguments after "merge"); returns the exit status (errors are thrown). */
export function runMerge(argv: string[]): number {
  const { values } = parseCommand('merge', MERGE, argv);
  if (values.help) {
    console.log(usageOf(MERGE));
    return 0;
  }
  const base = required(values, 'merge', MERGE, 'base');
  const adapter = required(values, 'merge', MERGE, 'adapter');
  const out = required(values, 'merge', MERGE, 'out');
  // A command-line merge holds one tensor at a time: keep no freed buffers around for reuse.
  if (process.env.LOWRANK_POOL_BYTES === undefined) setPoolBudget(0);
  const json = values.json === true;
  const quiet = values.quiet === true;
  const bar = progress(json || quiet);
  let report: MergeReport;
  try {
    report = mergeCheckpoint({
      base,
      adapter,
      out,
      dtype: values.dtype as 'float32' | 'bfloat16' | 'float16' | undefined,
      device: values.device as 'cpu' | 'cuda' | undefined,
      onProgress: bar.onProgress,
    });
  } finally {
    bar.stop();
  }
  if (json) console.log(JSON.stringify(report, null, 2));
  else if (!quiet) console.log(formatReport(report));
  return 0;
}
