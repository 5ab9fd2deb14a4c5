// Running microtasks synchronously. A synchronous driver resumes async
// fibers, whose continuations are microtasks; the tick contract says they have
// run before tick() returns. On Node 20-24, process._tickCallback drains the
// nextTick queue and the microtask queue synchronously (docs/hazards.md,
// Appendix). It is undocumented (DEP0134 is documentation-only), so it is
// feature-detected here, and test/scheduler-drain.test.ts fails loudly if a
// Node upgrade removes it or changes what it does.
//
// V8 refuses to start a microtask checkpoint inside another one. Inside a
// microtask (after an `await`, or at the top level of an ES module) the drain
// is a no-op; drainMicrotasks() reports that so the drivers can say so
// instead of hanging.

type TickCallback = (this: NodeJS.Process) => void;

const tickCallback = (process as unknown as { _tickCallback?: TickCallback })._tickCallback;
const resolved = Promise.resolve();

/** True when this Node offers a synchronous microtask drain. */
export function hasSyncDrain(): boolean {
  return typeof tickCallback === 'function';
}

/**
 * Runs every queued nextTick callback and microtask, including the ones they
 * queue. Returns false when nothing could run because the caller is itself
 * inside a microtask, or when this Node has no synchronous drain.
 */
export function drainMicrotasks(): boolean {
  if (tickCallback === undefined) return false;
  // The probe is queued behind everything already queued: if it ran, all of
  // that ran too, and so did whatever it queued in turn.
  let ran = false;
  resolved.then(() => {
    ran = true;
  });
  tickCallback.call(process);
  return ran;
}
