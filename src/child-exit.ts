// How a forked child leaves. A child never runs the parent's exit handlers or
// libuv's teardown: it leaves through _exit. But a Node process does not end
// while a request of its own is pending, and apps rely on that: a line handed
// to fs.WriteStream or to pino's asynchronous destination is written by a
// threadpool request some time after write() returns. A child that left as
// soon as its work returned lost those lines: 2 of 40 from a map whose items
// log through a file stream or through pino, and none from a child that opened
// its own stream (docs/hazards.md, "A child's own pending writes").
//
// So a child that ends normally first lets the work's pending callbacks and
// microtasks run (a stream opens its file from a nextTick), without entering
// the event loop. If it then has no request of its own pending, it leaves at
// once: nothing of the parent's ran. Otherwise it runs its loop until its own
// requests are done, for up to DRAIN_MS, and says so on stderr if any are
// still pending then. A child that fails (an uncaught error, a parent that
// died) leaves at once.
//
// Which requests are the child's own: the parent's requests in flight at the
// fork stay counted in the child (they never finish there, native/loop.c),
// except those on connections the child silenced (native/silence.c), which
// fail there and stop counting once the loop runs. So the count can drop below
// its level at the fork while the child's own requests are pending. Two
// counts, each against its level at the fork: libuv's active requests (any
// request; the parent's can only lower it), and Node's list of active
// requests by kind (process.getActiveResourcesInfo()), where a parent's socket
// write that failed does not hide the child's file writes. The child waits
// while either is above its level.
import { native } from './native';

/** How long a child that has finished its work waits for its own pending requests. */
export const DRAIN_MS = 5000;
const POLL_MS = 1;

// Node's names for its request objects (process.getActiveResourcesInfo() also lists handles and timers).
const REQUEST_KINDS = new Set([
  'FSReqCallback',
  'FSReqPromise',
  'FileHandleCloseReq',
  'WriteWrap',
  'SimpleWriteWrap',
  'ShutdownWrap',
  'ConnectWrap',
  'SendWrap',
  'GetAddrInfoReqWrap',
  'GetNameInfoReqWrap',
]);

let requestsAtFork = 0;
/** Node's active requests by kind at the fork; empty when the parent had none. */
let kindsAtFork = new Map<string, number>();

function requestKinds(): Map<string, number> {
  const out = new Map<string, number>();
  for (const name of process.getActiveResourcesInfo()) {
    if (REQUEST_KINDS.has(name)) out.set(name, (out.get(name) ?? 0) + 1);
  }
  return out;
}

/**
 * In a child, before it runs anything: whether the parent had requests in flight at the fork. Those its fork
 * dropped (native/loop.c) no longer count in the loop, but stay in Node's list.
 */
export function parentHadRequests(): boolean {
  return native.loopRequests() > 0 || native.forkParentWork()[0] > 0;
}

/** In the child, at the fork: what is counted then is the parent's. */
export function noteRequestsAtFork(): void {
  requestsAtFork = native.loopRequests();
  // The list costs a walk over every handle and timer: only when there is something of the parent's in it.
  kindsAtFork = parentHadRequests() ? requestKinds() : new Map();
}

/** Requests this process made that are still pending (in a child: since its fork), as far as libuv counts them. */
export function ownRequests(): number {
  return native.loopRequests() - requestsAtFork;
}

/** Whether a request of the child's own is pending, by either count (see above). */
function ownPending(): number {
  let byKind = 0;
  for (const [name, n] of requestKinds()) byKind += Math.max(0, n - (kindsAtFork.get(name) ?? 0));
  return Math.max(ownRequests(), byKind);
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
 * the caller unwinds: the child then leaves from a nextTick, or from its event loop when it has to wait.
 */
export function leaveChild(code: number): void {
  const deadline = Date.now() + DRAIN_MS;
  const check = (): void => {
    const pending = ownPending();
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
  process.nextTick(check);
}
