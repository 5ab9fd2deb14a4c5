// How a forked child leaves. A child never runs the parent's exit handlers or
// libuv's teardown: it leaves through _exit. But a Node process does not end
// while a request of its own is pending, and apps rely on that: a line handed
// to fs.WriteStream or to pino's asynchronous destination is written by a
// threadpool request some time after write() returns. A child that left as
// soon as its work returned lost those lines: 2 of 40 from a map whose items
// log through a file stream or through pino, and none from a child that opened
// its own stream (docs/hazards.md, "A child's own pending writes").
//
// So a child that ends normally first lets its event loop finish the requests
// it made itself (libuv's active request count above its count at the fork;
// the parent's that never finish in the child stay at that level), for up to
// DRAIN_MS, and says so on stderr if any are still pending then. A child
// that fails (an uncaught error, a parent that died) leaves at once.
import { native } from './native';

/** How long a child that has finished its work waits for its own pending requests. */
export const DRAIN_MS = 5000;
const POLL_MS = 1;

let requestsAtFork = 0;

/** In the child, at the fork: what the loop counted then is the parent's. */
export function noteRequestsAtFork(): void {
  requestsAtFork = native.loopRequests();
}

/** Requests this process made that are still pending (in a child: since its fork). */
export function ownRequests(): number {
  return native.loopRequests() - requestsAtFork;
}

/** Leaves the child at once, without the parent's exit handlers or libuv teardown. */
export function exitChild(code: number): never {
  return native.exit(code);
}

let fatalHandler: (err: unknown) => void = (err) => {
  try {
    process.stderr.write(`cowfork child ${process.pid}: ${(err as Error)?.stack ?? String(err)}\n`);
  } finally {
    native.exit(native.EXIT_CODES.UNCAUGHT);
  }
};

/** In a child: what to do with an uncaught exception or unhandled rejection. */
export function onChildFatal(handler: (err: unknown) => void): void {
  fatalHandler = handler;
}

/** Hands an uncaught error to the child's fatal handler. */
export function childFatal(err: unknown): void {
  fatalHandler(err);
}

/**
 * Leaves the child with `code` once the requests it made itself are done (see above). Returns at once, so that
 * the caller unwinds to the event loop: the work's pending callbacks and microtasks run first (a stream opens its
 * file from one), then the child leaves from the next turn of its loop, or later.
 */
export function leaveChild(code: number): void {
  const deadline = Date.now() + DRAIN_MS;
  const check = (): void => {
    const pending = ownRequests();
    if (pending <= 0) exitChild(code);
    if (Date.now() >= deadline) {
      process.stderr.write(
        `cowfork child ${process.pid}: left with ${pending} request(s) of its own still pending after ${DRAIN_MS} ms ` +
          '(a write, a lookup, threadpool work); what they would have done is lost. Wait for them before the work ' +
          "returns: a stream's end() callback, `await once(stream, 'finish')`, an awaited promise.\n",
      );
      exitChild(code);
    }
    setTimeout(check, POLL_MS);
  };
  setImmediate(check);
}
