#!/usr/bin/env node
// lowrank: the command line (package.json "bin").
//   lowrank merge    a base checkpoint + a PEFT adapter → a merged checkpoint (streamed)
//   lowrank inspect  what an adapter directory or a .safetensors file holds
//   lowrank demo     the semantic-search method comparison (npm start); --synthetic: the MLP one
//   lowrank finetune-embeddings  an adapter for semantic search on the user's pairs or vectors
//   lowrank bench    the benchmark (npm run bench)
// Each command takes --help. Bad arguments exit with status 2 and an "Expected ..." message;
// failures while running exit with status 1.
import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { type CommandSpec, HELP, parseCommand, UsageError, usageOf } from './args.js';
import { demo, parseDemoArgs } from './demo.js';
import { FINETUNE_EMBEDDINGS, runFinetuneEmbeddings } from './finetune-embeddings.js';
import { parseSearchDemoArgs, searchDemo } from './search-demo.js';
import { formatInspect, inspect, inspectJson } from './inspect.js';
import { MERGE, runMerge } from './merge.js';

const COMMANDS = {
  merge: MERGE,
  inspect: {
    usage: 'lowrank inspect <adapter dir | file.safetensors> [--json]',
    summary: 'method, rank, alpha, scale, targets and layer shapes of an adapter; entries of a safetensors file',
    options: { json: { type: 'boolean', help: 'print JSON' }, help: HELP },
    positionals: { count: 1, name: 'one path (an adapter directory or a .safetensors file)' },
  },
  demo: {
    usage: 'lowrank demo [--datasets A,B] [--max-pairs N] [--epochs N] [--out DIR] ... | lowrank demo --synthetic [--steps N] ...',
    summary: 'compare full fine-tuning, LoRA, LoRA-FA, VeRA, Delta-LoRA and LoRA+ fine-tuning a sentence encoder for search',
    options: {},
  },
  'finetune-embeddings': FINETUNE_EMBEDDINGS,
  bench: {
    usage: 'lowrank bench [--quick] [--shapes S,M,M64] [--threads N] [--no-ort] [--out FILE]',
    summary: "time lowrank's kernels at README.md's Performance shapes (runs bench/run.mjs)",
    options: {},
  },
} satisfies Record<string, CommandSpec>;

function mainUsage(): string {
  const width = Math.max(...Object.keys(COMMANDS).map((k) => k.length)) + 2;
  return [
    'lowrank: parameter-efficient fine-tuning (LoRA and friends) for Node.js',
    '',
    'Usage: lowrank <command> [options]',
    '',
    'Commands:',
    ...Object.entries(COMMANDS).map(([k, c]) => `  ${k.padEnd(width)}${c.summary}`),
    '',
    'lowrank <command> --help describes each; lowrank --version prints the version.',
  ].join('\n');
}

// ---- inspect -------------------------------------------------------------------------------

function runInspect(argv: string[]): number {
  const { values, positionals } = parseCommand('inspect', COMMANDS.inspect, argv);
  if (values.help) {
    console.log(usageOf(COMMANDS.inspect));
    return 0;
  }
  const result = inspect(positionals[0]);
  console.log(values.json ? inspectJson(result) : formatInspect(result));
  return 0;
}

// ---- demo and bench --------------------------------------------------------------------------

/** A parseArgs or RangeError of a demo's options as a UsageError (exit status 2). */
function demoUsageError(e: unknown, argv: string[], known: string): never {
  const code = (e as { code?: string }).code;
  if (typeof code === 'string' && code.startsWith('ERR_PARSE_ARGS')) {
    const option = /'(-[^']*)'/.exec((e as Error).message)?.[1];
    throw new UsageError(
      option && code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION'
        ? `Expected one of ${known} for an option of lowrank demo but received ${JSON.stringify(option)}`
        : `Expected valid arguments for lowrank demo but received ${JSON.stringify(argv.join(' '))} (${(e as Error).message.split('\n')[0]})`,
    );
  }
  if (e instanceof RangeError) throw new UsageError(e.message);
  throw e;
}

async function runDemo(argv: string[]): Promise<number> {
  if (!argv.includes('--synthetic')) {
    let opts;
    try {
      opts = parseSearchDemoArgs(argv);
    } catch (e) {
      demoUsageError(
        e,
        argv,
        '--datasets, --max-pairs, --epochs, --methods, --out, --cache, --workers, --refresh, --seed, --quiet, --synthetic, --help',
      );
    }
    if (opts) await searchDemo(opts);
    return 0;
  }
  argv = argv.filter((a) => a !== '--synthetic');
  let opts;
  try {
    opts = parseDemoArgs(argv); // prints its own --help and exits
  } catch (e) {
    demoUsageError(e, argv, '--synthetic, --steps, --out, --device, --quiet, --help');
  }
  demo(opts);
  return 0;
}

const packageRoot = fileURLToPath(new URL('../../', import.meta.url));

function runBench(argv: string[]): Promise<number> {
  if (argv.includes('--help') || argv.includes('-h')) {
    console.log(
      [
        usageOf(COMMANDS.bench),
        '',
        'Options (passed to bench/run.mjs):',
        '  --quick             small shapes, few repetitions (a smoke run in seconds)',
        '  --shapes S,M,M64    which shapes to time',
        '  --threads N         CPU threads (default: all)',
        '  --no-ort            skip onnxruntime-node',
        '  --out FILE          where to write the JSON results (default bench/results/<date>.json)',
      ].join('\n'),
    );
    return Promise.resolve(0);
  }
  const script = fileURLToPath(new URL('../../bench/run.mjs', import.meta.url));
  if (!existsSync(script))
    throw new RangeError(
      `Expected the benchmark script for lowrank bench but received no ${script} (it ships with the source repository, not the npm package)`,
    );
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [script, ...argv], { stdio: 'inherit', cwd: packageRoot });
    child.on('error', reject);
    child.on('exit', (code, signal) => resolve(code ?? (signal ? 128 + 15 : 1)));
  });
}

// ---- dispatch ------------------------------------------------------------------------------

function version(): string {
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
  return pkg.version;
}

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  if (command === undefined) {
    console.error(mainUsage());
    return 2;
  }
  if (command === '--help' || command === '-h' || command === 'help') {
    if (rest[0] && rest[0] in COMMANDS) return main([rest[0], '--help']);
    console.log(mainUsage());
    return 0;
  }
  if (command === '--version' || command === '-v') {
    console.log(version());
    return 0;
  }
  switch (command) {
    case 'merge':
      return runMerge(rest);
    case 'inspect':
      return runInspect(rest);
    case 'demo':
      return runDemo(rest);
    case 'bench':
      return runBench(rest);
    case 'finetune-embeddings':
      return runFinetuneEmbeddings(rest);
    default:
      throw new UsageError(`Expected a command (${Object.keys(COMMANDS).join(', ')}) but received ${JSON.stringify(command)}`);
  }
}

const argv = process.argv.slice(2);
try {
  process.exitCode = await main(argv);
} catch (e) {
  const command = argv[0] && argv[0] in COMMANDS ? `lowrank ${argv[0]}` : 'lowrank';
  if (e instanceof UsageError) {
    console.error(`${command}: ${e.message}\n(see ${command} --help)`);
    process.exitCode = 2;
  } else {
    console.error(`${command}: ${e instanceof Error ? e.message : String(e)}`);
    if (process.env.LOWRANK_DEBUG && e instanceof Error) console.error(e.stack);
    process.exitCode = 1;
  }
}
