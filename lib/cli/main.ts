#!/usr/bin/env node
// lowrank: the command line (package.json "bin").
//   lowrank merge    a base checkpoint + a PEFT adapter → a merged checkpoint (streamed)
//   lowrank inspect  what an adapter directory or a .safetensors file holds
//   lowrank demo     the method comparison (npm start)
//   lowrank bench    the benchmark (npm run bench)
// Each command takes --help. Bad arguments exit with status 2 and an "Expected ..." message;
// failures while running exit with status 1.
import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { demo, parseDemoArgs } from './demo.js';
import { formatInspect, inspect, inspectJson } from './inspect.js';
import { merge } from './merge.js';

/** A bad command line (exit status 2), as opposed to a failure while running (1). */
class UsageError extends RangeError {
  override name = 'RangeError';
}

interface OptionSpec {
  type: 'string' | 'boolean';
  /** Allowed values of a string option. */
  values?: readonly string[];
  /** Placeholder in the usage text. */
  arg?: string;
  help: string;
}

interface CommandSpec {
  usage: string;
  summary: string;
  options: Record<string, OptionSpec>;
  /** Positional arguments: exactly this many (with a name for messages). */
  positionals?: { count: number; name: string };
}

const HELP: OptionSpec = { type: 'boolean', help: 'show this text' };

const COMMANDS = {
  merge: {
    usage: 'lowrank merge --base <model> --adapter <dir> --out <path> [options]',
    summary: 'merge a PEFT LoRA / VeRA adapter into a base checkpoint, one tensor at a time',
    options: {
      base: { type: 'string', arg: '<path>', help: 'model.safetensors, model.safetensors.index.json, or a directory holding either (shards)' },
      adapter: { type: 'string', arg: '<dir>', help: 'a PEFT adapter directory (adapter_config.json + adapter_model.safetensors)' },
      out: {
        type: 'string',
        arg: '<path>',
        help: 'a .safetensors file (one file, shards joined), or a directory (mirrors the base: same shard names + index)',
      },
      dtype: { type: 'string', values: ['float32', 'bfloat16', 'float16'], arg: '<dtype>', help: 'convert every floating-point tensor (default: keep each one\'s dtype)' },
      device: { type: 'string', values: ['cpu', 'cuda'], arg: '<device>', help: 'where to compute the deltas (default cpu)' },
      json: { type: 'boolean', help: 'print the report as JSON (and no progress)' },
      quiet: { type: 'boolean', help: 'print nothing but errors' },
      help: HELP,
    },
  },
  inspect: {
    usage: 'lowrank inspect <adapter dir | file.safetensors> [--json]',
    summary: 'method, rank, alpha, scale, targets and layer shapes of an adapter; entries of a safetensors file',
    options: { json: { type: 'boolean', help: 'print JSON' }, help: HELP },
    positionals: { count: 1, name: 'one path (an adapter directory or a .safetensors file)' },
  },
  demo: {
    usage: 'lowrank demo [--steps N] [--out FILE] [--device cpu|cuda] [--quiet]',
    summary: 'compare full fine-tuning, LoRA, LoRA-FA, VeRA, Delta-LoRA and LoRA+ on two small tasks',
    options: {},
  },
  bench: {
    usage: 'lowrank bench [--quick] [--shapes S,M,M64] [--threads N] [--no-ort] [--out FILE]',
    summary: "time lowrank's kernels at SPEC section 6's shapes (runs bench/run.mjs)",
    options: {},
  },
} satisfies Record<string, CommandSpec>;

type CommandName = keyof typeof COMMANDS;

function usageOf(name: CommandName): string {
  const spec: CommandSpec = COMMANDS[name];
  const lines = [`${spec.usage}`, '', spec.summary];
  const opts = Object.entries(spec.options);
  if (opts.length) {
    lines.push('', 'Options:');
    const label = ([k, o]: [string, OptionSpec]) => `--${k}${o.arg ? ` ${o.arg}` : ''}`;
    const width = Math.max(...opts.map((e) => label(e).length)) + 2;
    for (const e of opts) {
      const [, o] = e;
      const values = o.values ? ` [${o.values.join(' | ')}]` : '';
      lines.push(`  ${label(e).padEnd(width)}${o.help}${values}`);
    }
  }
  return lines.join('\n');
}

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

/** Parses argv against a command's options; every mistake is a UsageError in the house format. */
function parseCommand(name: CommandName, argv: string[]): { values: Record<string, string | boolean | undefined>; positionals: string[] } {
  const spec: CommandSpec = COMMANDS[name];
  const options = Object.fromEntries(Object.entries(spec.options).map(([k, o]) => [k, { type: o.type }]));
  const { tokens } = parseArgs({ args: argv, options, strict: false, allowPositionals: true, tokens: true });
  const known = Object.keys(spec.options).map((k) => `--${k}`);
  const values: Record<string, string | boolean | undefined> = {};
  const positionals: string[] = [];
  for (const t of tokens) {
    if (t.kind === 'positional') {
      positionals.push(t.value);
      continue;
    }
    if (t.kind === 'option-terminator') continue;
    const o = spec.options[t.name];
    if (!o) throw new UsageError(`Expected one of ${known.join(', ')} for an option of lowrank ${name} but received ${JSON.stringify(t.rawName)}`);
    if (o.type === 'boolean') {
      if (t.value !== undefined) throw new UsageError(`Expected no value for ${t.rawName} but received ${JSON.stringify(t.value)}`);
      values[t.name] = true;
      continue;
    }
    if (t.value === undefined || (!t.inlineValue && t.value.startsWith('--')))
      throw new UsageError(`Expected a value for ${t.rawName} but received ${t.value === undefined ? 'nothing' : `the option ${JSON.stringify(t.value)}`}`);
    if (o.values && !o.values.includes(t.value)) throw new UsageError(`Expected ${o.values.join(', ')} for ${t.rawName} but received ${JSON.stringify(t.value)}`);
    if (values[t.name] !== undefined) throw new UsageError(`Expected ${t.rawName} once but received it twice`);
    values[t.name] = t.value;
  }
  if (values.help) return { values, positionals };
  const want = spec.positionals?.count ?? 0;
  if (positionals.length !== want)
    throw new UsageError(
      want === 0
        ? `Expected no positional arguments for lowrank ${name} but received ${JSON.stringify(positionals[0])}`
        : `Expected ${spec.positionals!.name} for lowrank ${name} but received ${positionals.length === 0 ? 'none' : `${positionals.length} (${positionals.map((p) => JSON.stringify(p)).join(' ')})`}`,
    );
  return { values, positionals };
}

function required(values: Record<string, unknown>, name: CommandName, key: string): string {
  const v = values[key];
  if (typeof v !== 'string') throw new UsageError(`Expected --${key} ${(COMMANDS[name] as CommandSpec).options[key]?.arg ?? '<value>'} for lowrank ${name} but received nothing`);
  return v;
}

// ---- merge ---------------------------------------------------------------------------------

function runMerge(argv: string[]): number {
  const { values } = parseCommand('merge', argv);
  if (values.help) {
    console.log(usageOf('merge'));
    return 0;
  }
  return merge({
    base: required(values, 'merge', 'base'),
    adapter: required(values, 'merge', 'adapter'),
    out: required(values, 'merge', 'out'),
    dtype: values.dtype as 'float32' | 'bfloat16' | 'float16' | undefined,
    device: values.device as 'cpu' | 'cuda' | undefined,
    json: values.json === true,
    quiet: values.quiet === true,
  });
}

// ---- inspect -------------------------------------------------------------------------------

function runInspect(argv: string[]): number {
  const { values, positionals } = parseCommand('inspect', argv);
  if (values.help) {
    console.log(usageOf('inspect'));
    return 0;
  }
  const result = inspect(positionals[0]);
  console.log(values.json ? inspectJson(result) : formatInspect(result));
  return 0;
}

// ---- demo and bench --------------------------------------------------------------------------

async function runDemo(argv: string[]): Promise<number> {
  let opts;
  try {
    opts = parseDemoArgs(argv); // prints its own --help and exits
  } catch (e) {
    const code = (e as { code?: string }).code;
    if (typeof code === 'string' && code.startsWith('ERR_PARSE_ARGS')) {
      const option = /'(-[^']*)'/.exec((e as Error).message)?.[1];
      throw new UsageError(
        option && code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION'
          ? `Expected one of --steps, --out, --device, --quiet, --help for an option of lowrank demo but received ${JSON.stringify(option)}`
          : `Expected valid arguments for lowrank demo but received ${JSON.stringify(argv.join(' '))} (${(e as Error).message.split('\n')[0]})`,
      );
    }
    if (e instanceof RangeError) throw new UsageError(e.message);
    throw e;
  }
  await demo(opts);
  return 0;
}

const packageRoot = fileURLToPath(new URL('../../', import.meta.url));

function runBench(argv: string[]): Promise<number> {
  if (argv.includes('--help') || argv.includes('-h')) {
    console.log(
      [
        usageOf('bench'),
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
    throw new RangeError(`Expected the benchmark script for lowrank bench but received no ${script} (it ships with the source repository, not the npm package)`);
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
