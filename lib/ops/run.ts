// The one place that runs an op's native entry point and knows what differs between sync and
// async and between the devices: the CPU runs an op now (run) or off the event loop (runAsync:
// a Promise, with the tensors it reads and writes held until it settles, so a dispose()
// meanwhile cannot hand their buffers to another tensor); CUDA queues it on the device's
// stream either way (the native side returns an already-resolved Promise). A rejection is
// rethrown as the same error class carrying the caller's JavaScript stack.
import { native, type Memory, type OpArgs, type OpName } from '../native.js';

/** Something whose storage can be held while native work uses it (a Tensor). */
export interface Holdable {
  hold(): () => void;
}

/** Runs op `name` now (CPU) or queues it (CUDA). */
export function run<K extends OpName, M extends Memory>(name: K, args: OpArgs<M>[K]): void {
  (native()[name] as (a: OpArgs<M>[K], async?: false) => void)(args);
}

/** Runs op `name` off the event loop (CPU) or queues it (CUDA), holding `held` until it settles. */
export async function runAsync<K extends OpName, M extends Memory>(
  name: K,
  args: OpArgs<M>[K],
  held: ReadonlyArray<Holdable | null | undefined>,
): Promise<void> {
  const site = new Error(); // captured synchronously, at the API call
  let pending: Promise<void>;
  try {
    pending = (native()[name] as (a: OpArgs<M>[K], async: true) => Promise<void>)(args, true);
  } catch (e) {
    throw withStack(e, site); // refused while unpacking, before any work was queued
  }
  await holding(pending, held, site);
}

/** Awaits `pending` while `held` are held; rejections carry the stack of `site` (default: the caller). */
export async function holding(
  pending: Promise<void>,
  held: ReadonlyArray<Holdable | null | undefined>,
  site: Error = new Error(),
): Promise<void> {
  const releases = held.filter((t): t is Holdable => t != null).map((t) => t.hold());
  try {
    await pending;
  } catch (e) {
    throw withStack(e, site);
  } finally {
    releases.forEach((r) => r());
  }
}

/** The same error class and message as `e`, with `site`'s stack (errors cross threads as text). */
function withStack(e: unknown, site: Error): unknown {
  if (!(e instanceof Error)) return e;
  const Ctor = e instanceof RangeError ? RangeError : e instanceof TypeError ? TypeError : Error;
  const err = new Ctor(e.message);
  err.stack = `${Ctor.name}: ${e.message}\n${(site.stack ?? '').split('\n').slice(2).join('\n')}`;
  return err;
}
