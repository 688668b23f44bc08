// `lowrank merge`: the command line over checkpoint.mergeCheckpoint (lib/io/checkpoint.ts), which
// does the work. This file parses the command's arguments, shows its progress (a bar on a
// terminal, a line per 10 % otherwise) and prints its report (text, or JSON with --json).
import { SingleBar } from 'cli-progress';
import { rmSync } from 'node:fs';
import os from 'node:os';
import { Worker } from 'node:worker_threads';
import { type MergeProgress, type MergeReport } from '../io/checkpoint.js';
import { type CommandSpec, HELP, parseCommand, required, usageOf } from './args.js';
import { formatBytes } from './inspect.js';
import { type MergeMessage, type MergeWorkerData } from './merge-worker.js';

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

/** The conventional exit status of a process ended by `signal`: 128 + its number. */
function signalStatus(signal: NodeJS.Signals): number {
  return 128 + (os.constants.signals[signal] ?? 15);
}

/**
 * Runs `lowrank merge` with `argv` (the arguments after "merge"); resolves to the exit status
 * (errors are thrown). The merge runs on a worker thread: on SIGINT or SIGTERM this thread
 * stops it, deletes its temporary files (nothing appears under the final name), says so in one
 * line and exits with 128 + the signal's number.
 */
export async function runMerge(argv: string[]): Promise<number> {
  const { values } = parseCommand('merge', MERGE, argv);
  if (values.help) {
    console.log(usageOf(MERGE));
    return 0;
  }
  const base = required(values, 'merge', MERGE, 'base');
  const adapter = required(values, 'merge', MERGE, 'adapter');
  const out = required(values, 'merge', MERGE, 'out');
  const json = values.json === true;
  const quiet = values.quiet === true;
  const bar = progress(json || quiet);
  const data: MergeWorkerData = {
    options: {
      base,
      adapter,
      out,
      dtype: values.dtype as 'float32' | 'bfloat16' | 'float16' | undefined,
      device: values.device as 'cpu' | 'cuda' | undefined,
    },
    noPool: process.env.LOWRANK_POOL_BYTES === undefined,
  };
  const worker = new Worker(new URL('./merge-worker.js', import.meta.url), { workerData: data });
  const temporary = new Set<string>();
  let report: MergeReport;
  const onSignal = (signal: NodeJS.Signals) => {
    void worker.terminate().finally(() => {
      for (const p of temporary) rmSync(p, { force: true });
      bar.stop();
      console.error(`lowrank merge: stopped by ${signal}; its temporary files were deleted`);
      process.exit(signalStatus(signal));
    });
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  try {
    report = await new Promise<MergeReport>((resolve, reject) => {
      worker.on('message', (m: MergeMessage) => {
        if (m.kind === 'progress') bar.onProgress?.(m.progress);
        else if (m.kind === 'created') temporary.add(m.path);
        else if (m.kind === 'committed' || m.kind === 'removed') temporary.delete(m.path);
        else if (m.kind === 'done') resolve(m.report);
        else {
          const Ctor = m.cls === 'RangeError' ? RangeError : m.cls === 'TypeError' ? TypeError : Error;
          const err = new Ctor(m.message);
          if (m.stack) err.stack = m.stack;
          reject(err);
        }
      });
      worker.on('error', reject);
      worker.on('exit', (code) => reject(new Error(`the merge stopped unexpectedly (worker exit code ${code})`)));
    });
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    bar.stop();
    await worker.terminate();
  }
  if (json) console.log(JSON.stringify(report, null, 2));
  else if (!quiet) console.log(formatReport(report));
  return 0;
}
