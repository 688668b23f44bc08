// The one error helper of the public boundary: every bad argument is reported as
// "Expected <what> for <name> but received <value>", as a TypeError (wrong kind of value) or a
// RangeError (right kind, wrong value).

/** Renders a received value for an error message, briefly and without dumping data. */
export function describe(value: unknown): string {
  if (value === null) return 'null';
  if (value === undefined) return 'undefined';
  if (typeof value === 'string') return JSON.stringify(value);
  if (typeof value === 'number' || typeof value === 'boolean') return String(value);
  if (typeof value === 'bigint') return `${value}n`;
  if (typeof value === 'function') return `function ${value.name || '(anonymous)'}`;
  if (ArrayBuffer.isView(value)) {
    const name = value.constructor.name;
    return 'length' in value ? `${name}(${(value as unknown as { length: number }).length})` : name;
  }
  if (Array.isArray(value)) {
    if (value.length > 8) return `an array of length ${value.length}`;
    return `[${value.map(describe).join(', ')}]`;
  }
  const described = (value as { describe?: () => string }).describe;
  if (typeof described === 'function') return described.call(value);
  const ctor = value.constructor;
  return ctor && ctor !== Object ? `a ${ctor.name}` : 'an object';
}

function message(expected: string, name: string, received: unknown, detail?: string): string {
  const base = `Expected ${expected} for ${name} but received ${describe(received)}`;
  return detail ? `${base} (${detail})` : base;
}

export function invalidType(expected: string, name: string, received: unknown, detail?: string): TypeError {
  return new TypeError(message(expected, name, received, detail));
}

export function invalidRange(expected: string, name: string, received: unknown, detail?: string): RangeError {
  return new RangeError(message(expected, name, received, detail));
}

/** Like invalidRange, but `received` is already rendered text (a shape, say). */
export function invalidRangeText(expected: string, name: string, received: string): RangeError {
  return new RangeError(`Expected ${expected} for ${name} but received ${received}`);
}
