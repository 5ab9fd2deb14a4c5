// How a forked child leaves. A child never runs the parent's exit handlers or
// libuv's teardown: it leaves through _exit. But a Node process does not end
// while a request of its own is pending, and apps rely on that: a line handed
// to fs.WriteStream or to pino's asynchronous destination is written by a
// threadpool request some time after write() returns. A child that left as
// soon as its work returned lost those lines: 2 of 40 from a map whose items
// log through a file stream or through pino, and none from a child that opened
// its own stream (docs/hazards.md).
//
// So a child that ends normally first lets the work's pending callbacks and
// microtasks run (a stream opens its file from a nextTick), without entering
// the event loop; the parent's nextTick callbacks queued in the forking
// macrotask do nothing in a child (libraryMacrotask, src/fork.ts). If it then
// has no request of its own pending, it leaves at once: nothing of the
// parent's ran. Otherwise it runs its loop until its own
// requests are done, for up to DRAIN_MS, and says so on stderr if any are
// still pending then. A child that fails (an uncaught error, a parent that
// died) leaves at once.
//
// Which requests are the child's own: the parent's requests in flight at the
// fork stay in the child, and most never finish there (native/loop.c). But a
// parent's write on a connection the child silenced (native/silence.c) fails
// there once the loop runs, and stops counting: a count against its level at
// the fork hid the child's own pending writes. So the child notes the
// parent's request objects at the fork (process._getActiveRequests()): its
// own are the listed objects it did not inherit, and for libuv's count
// (threadpool work Node lists no object for: zlib, crypto) the level at the
// fork is lowered by each of the parent's objects that has left the list.
// A line written to stdout or stderr while the parent's write there is still
// in flight waits in the stream's own buffer, where no request counts it; so
// the child also waits for those buffers to empty.
import { native } from './native';
import { bufferedOwnStreams } from './write-streams';

/** How long a child that has finished its work waits for its own pending requests. */
export const DRAIN_MS = 5000;
const POLL_MS = 1;

let requestsAtFork = 0;
/** The parent's request objects listed at the fork; empty when it had none in flight. */
let parentRequests = new Set<object>();
/** Those of the parent's requests that write to stdout or stderr, classified once at the fork. */
let parentStdioRequests = new Set<object>();
/** The streams on stdout and stderr that had a write of the parent's in flight at the fork. */
let busyStdio: object[] = [];

/** Node's active request objects (`process._getActiveRequests()`, Node 0.x to 26); empty where it is missing. */
function activeRequests(): object[] {
  const list = (process as unknown as { _getActiveRequests?: () => object[] })._getActiveRequests;
  return typeof list === 'function' ? list.call(process) : [];
}

/**
 * In the child, at the fork, before it runs anything: what is counted and listed then is the parent's. The list
 * is read only when the parent had requests in flight; those its fork dropped (native/loop.c) no longer count in
 * the loop, but stay in Node's list.
 */
export function noteRequestsAtFork(): void {
  requestsAtFork = native.loopRequests();
  const parentHad = requestsAtFork > 0 || native.forkParentWork()[0] > 0;
  parentRequests = parentHad ? new Set(activeRequests()) : new Set();
  parentStdioRequests = new Set();
  busyStdio = [];
  for (const r of parentRequests) {
    const owner = requestOwner(r);
    if (!isStdioRequest(r, owner)) continue;
    parentStdioRequests.add(r);
    if (owner !== null && !busyStdio.includes(owner)) busyStdio.push(owner);
  }
}

/** In the child: whether one of the parent's requests listed at the fork writes to stdout or stderr. */
export function isParentStdioRequest(req: object): boolean {
  return parentStdioRequests.has(req);
}

/** In the child: the streams on stdout and stderr that the parent had a write in flight on at the fork. */
export function parentBusyStdio(): readonly object[] {
  return busyStdio;
}

/** The fd of a request's handle (a stream write's), or -1. */
export function requestFd(req: object): number {
  const fd = (req as { handle?: { fd?: unknown } }).handle?.fd;
  return typeof fd === 'number' ? fd : -1;
}

/**
 * The stream that made a write request, or null: Node keeps it on the request's handle under its `owner_symbol`
 * (Node 10 to 26), which is how Node itself finds it when the write completes. Found by the symbol's description;
 * `process.stdout` is not read, since reading it makes the stream, and a second handle on fd 1 fails (EEXIST) when
 * the parent wrote to fd 1 through a stream of its own.
 */
function requestOwner(req: object): object | null {
  const handle = (req as { handle?: unknown }).handle;
  if (handle === null || typeof handle !== 'object') return null;
  const sym = Object.getOwnPropertySymbols(handle).find((s) => s.description === 'owner_symbol');
  const owner = sym === undefined ? undefined : (handle as Record<symbol, unknown>)[sym];
  return owner !== null && typeof owner === 'object' ? owner : null;
}

/**
 * Whether a request writes to stdout or stderr: fd 1 or 2, or Node's stream for either (`_isStdio`) where libuv
 * writes to a terminal through an fd of its own (native/silence.c, cf_tty_writer).
 */
function isStdioRequest(req: object, owner: object | null): boolean {
  const fd = requestFd(req);
  if (fd === 1 || fd === 2) return true;
  return (owner as { _isStdio?: unknown } | null)?._isStdio === true;
}

/**
 * How many of stdout and stderr hold lines of the child's own that are not yet handed to libuv. A stream writes
 * one request at a time: behind a parent's write in flight at the fork (a pipe read slowly), a child's line waits
 * in the stream's buffer, where no request counts it, until that write completes in the child (native/loop.c).
 */
function bufferedStdio(): number {
  let n = 0;
  for (const stream of busyStdio) if (((stream as { writableLength?: unknown }).writableLength as number) > 0) n++;
  return n;
}

/** In the child: the parent's request objects listed at the fork (src/inherited.ts gives them no-op completions). */
export function inheritedRequests(): ReadonlySet<object> {
  return parentRequests;
}

/** Requests this process made that are still pending (in a child: since its fork), as far as libuv counts them. */
export function ownRequests(): number {
  return native.loopRequests() - requestsAtFork;
}

/** How many requests of the child's own are pending (see above). */
function ownPending(): number {
  let own = 0;
  let parentLeft = 0;
  for (const r of activeRequests()) {
    if (parentRequests.has(r)) parentLeft++;
    else own++;
  }
  const parentGone = parentRequests.size - parentLeft;
  return Math.max(own, ownRequests() + parentGone) + bufferedStdio() + bufferedOwnStreams();
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
