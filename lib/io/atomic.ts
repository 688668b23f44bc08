// Atomic file writes: the bytes go to a temporary file beside the destination, which is flushed
// to disk (fsync), renamed over the destination (atomic on POSIX file systems) and made durable by
// an fsync of the directory. A crash at any point leaves either the previous file or the new one
// under the final name, never a half-written one (README.md, Files). Temporary files of writers that never
// finished are removed when the process exits normally or through process.exit(); after a hard
// kill (SIGKILL, power loss) a `.<name>.<pid>.<random>.tmp` file may remain beside the target.
import { randomBytes } from 'node:crypto';
import { closeSync, fchmodSync, fsyncSync, openSync, renameSync, statSync, unlinkSync, writeSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { invalidType } from '../errors.js';

/** A TypeError in the house format whose received part is already text. */
function stateError(expected: string, name: string, received: string): TypeError {
  return new TypeError(`Expected ${expected} for ${name} but received ${received}`);
}

/** Temporary files not yet committed or aborted, removed by the exit hook. */
const pending = new Set<string>();
let hooked = false;

/** What happened to a temporary file: made, renamed into place, or deleted. */
export type TemporaryFileEvent = 'created' | 'committed' | 'removed';
const watchers: ((event: TemporaryFileEvent, path: string) => void)[] = [];

/**
 * Calls `listener` whenever a writer of this thread makes, commits or removes a temporary file:
 * how a caller that may be stopped from outside (a worker terminated on SIGTERM) learns what
 * to delete.
 */
export function watchTemporaryFiles(listener: (event: TemporaryFileEvent, path: string) => void): void {
  watchers.push(listener);
}

function notify(event: TemporaryFileEvent, path: string): void {
  for (const w of watchers) w(event, path);
}

function track(tmp: string): void {
  pending.add(tmp);
  notify('created', tmp);
  if (hooked) return;
  hooked = true;
  process.on('exit', () => {
    for (const path of pending) {
      try {
        unlinkSync(path);
      } catch {
        // already gone
      }
    }
  });
}

/** A fresh temporary path in the destination's directory (so the rename never crosses devices). */
export function temporaryPathFor(path: string): string {
  const base = basename(path).slice(0, 100);
  return join(dirname(path), `.${base}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`);
}

/** Flushes a directory's entries (the rename) to disk. Not possible on Windows, where it is skipped. */
export function fsyncDirectory(dir: string): void {
  if (process.platform === 'win32') return;
  const fd = openSync(dir, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

function checkPath(path: unknown, name: string): string {
  if (typeof path !== 'string' || path.length === 0) throw invalidType('a non-empty path string', name, path);
  return path;
}

/**
 * A file written in pieces and published atomically: write() appends, commit() fsyncs, renames
 * the temporary file over `path` and fsyncs the directory; abort() deletes the temporary file.
 * Both are idempotent once either has run. When `path` already exists, the new file takes over
 * its permission bits.
 */
export class AtomicWriter {
  readonly path: string;
  readonly temporaryPath: string;
  #fd: number;
  #state: 'open' | 'committed' | 'aborted' = 'open';

  constructor(path: string) {
    this.path = checkPath(path, 'path');
    this.temporaryPath = temporaryPathFor(this.path);
    this.#fd = openSync(this.temporaryPath, 'wx', 0o666);
    track(this.temporaryPath);
    try {
      const mode = existingMode(this.path);
      if (mode !== undefined) fchmodSync(this.#fd, mode);
    } catch (e) {
      this.abort();
      throw e;
    }
  }

  get state(): 'open' | 'committed' | 'aborted' {
    return this.#state;
  }

  #checkOpen(): void {
    if (this.#state === 'open') return;
    const article = this.#state === 'aborted' ? 'an' : 'a';
    throw stateError('an open AtomicWriter', 'writer', `${article} ${this.#state} AtomicWriter (${JSON.stringify(this.path)})`);
  }

  /** Appends all of `data` (looping over short writes). */
  write(data: Uint8Array): void {
    this.#checkOpen();
    let done = 0;
    while (done < data.byteLength) {
      // writeSync's length is an int32: large buffers go in 1 GiB pieces.
      const n = Math.min(data.byteLength - done, 1 << 30);
      done += writeSync(this.#fd, data, done, n);
    }
  }

  /** Flushes, renames into place and flushes the directory. */
  commit(): void {
    this.#checkOpen();
    try {
      fsyncSync(this.#fd);
      closeSync(this.#fd);
      this.#fd = -1;
      renameSync(this.temporaryPath, this.path);
    } catch (e) {
      this.abort();
      throw e;
    }
    this.#state = 'committed';
    pending.delete(this.temporaryPath);
    notify('committed', this.temporaryPath);
    fsyncDirectory(dirname(this.path));
  }

  /** Closes and deletes the temporary file; nothing happens once committed or aborted. */
  abort(): void {
    if (this.#state !== 'open') return;
    this.#state = 'aborted';
    if (this.#fd >= 0) {
      try {
        closeSync(this.#fd);
      } catch {
        // the descriptor is unusable either way
      }
      this.#fd = -1;
    }
    try {
      unlinkSync(this.temporaryPath);
    } catch {
      // never created or already gone
    }
    pending.delete(this.temporaryPath);
    notify('removed', this.temporaryPath);
  }
}

function existingMode(path: string): number | undefined {
  try {
    return statSync(path).mode & 0o7777;
  } catch {
    return undefined;
  }
}

/** writeFileSync's atomic cousin: temp file beside `path`, fsync, rename, fsync the directory. */
export function writeFileAtomic(path: string, data: Uint8Array | string): void {
  checkPath(path, 'path');
  let bytes: Uint8Array;
  if (typeof data === 'string') bytes = Buffer.from(data, 'utf8');
  else if (data instanceof Uint8Array) bytes = data;
  else throw invalidType('a Uint8Array or a string', 'data', data);
  const writer = new AtomicWriter(path);
  try {
    writer.write(bytes);
    writer.commit();
  } finally {
    writer.abort();
  }
}
