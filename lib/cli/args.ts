// The command line's arguments, parsed the same way for every command (main.ts, merge.ts): a spec
// of each command's options, its usage text, and every mistake as a UsageError in the house format.
import { parseArgs } from 'node:util';

/** A bad command line (exit status 2), as opposed to a failure while running (1). */
export class UsageError extends RangeError {
  override name = 'RangeError';
}

export interface OptionSpec {
  type: 'string' | 'boolean';
  /** Allowed values of a string option. */
  values?: readonly string[];
  /** Placeholder in the usage text. */
  arg?: string;
  help: string;
}

export interface CommandSpec {
  usage: string;
  summary: string;
  options: Record<string, OptionSpec>;
  /** Positional arguments: exactly this many (with a name for messages). */
  positionals?: { count: number; name: string };
}

export const HELP: OptionSpec = { type: 'boolean', help: 'show this text' };

export function usageOf(spec: CommandSpec): string {
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

/** Parses argv against a command's options; every mistake is a UsageError in the house format. */
export function parseCommand(
  name: string,
  spec: CommandSpec,
  argv: string[],
): { values: Record<string, string | boolean | undefined>; positionals: string[] } {
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
    if (!o)
      throw new UsageError(
        `Expected one of ${known.join(', ')} for an option of lowrank ${name} but received ${JSON.stringify(t.rawName)}`,
      );
    if (o.type === 'boolean') {
      if (t.value !== undefined) throw new UsageError(`Expected no value for ${t.rawName} but received ${JSON.stringify(t.value)}`);
      values[t.name] = true;
      continue;
    }
    if (t.value === undefined || (!t.inlineValue && t.value.startsWith('--')))
      throw new UsageError(
        `Expected a value for ${t.rawName} but received ${t.value === undefined ? 'nothing' : `the option ${JSON.stringify(t.value)}`}`,
      );
    if (o.values && !o.values.includes(t.value))
      throw new UsageError(`Expected ${o.values.join(', ')} for ${t.rawName} but received ${JSON.stringify(t.value)}`);
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

export function required(values: Record<string, unknown>, name: string, spec: CommandSpec, key: string): string {
  const v = values[key];
  if (typeof v !== 'string')
    throw new UsageError(`Expected --${key} ${spec.options[key]?.arg ?? '<value>'} for lowrank ${name} but received nothing`);
  return v;
}
