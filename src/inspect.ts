// What a fork would hand the child, and the warnings the parent gives before
// forking when some of it cannot work there: threads that will not exist in
// the child, and connections that will be dead there (docs/hazards.md).
import path from 'node:path';
import { native } from './native';
import { warnFromParent } from './warn';

export interface ThreadInfo {
  tid: number;
  /** The kernel's name for the thread (15 characters at most). */
  name: string;
  /** True when neither Node, V8 nor libuv started it: a native library's own thread. */
  foreign: boolean;
}

export interface SocketInfo {
  fd: number;
  /** libuv's handle type: 'tcp' or 'pipe'. */
  type: string;
  /** The peer of a connection ("127.0.0.1:5432", "[::1]:6379", a unix path), or the address a listener is bound to. */
  address: string;
}

export interface ForkInspection {
  /** Every thread of the process. A child has only the thread that forked. Empty where /proc is missing. */
  threads: ThreadInfo[];
  /** Threads of native libraries (sharp's libvips, for one). Their work never completes in a child. */
  foreignThreads: ThreadInfo[];
  /** Client connections (TCP, or unix sockets with a path). In a child they are dead: writes fail with EPIPE, reads never complete. */
  connections: SocketInfo[];
  /** Listening sockets. A child never accepts on them unless it is handed them (prefork does). */
  listening: SocketInfo[];
  /** Active handles on the event loop, counted by libuv type ('tcp', 'timer', 'async', ...). */
  handles: Record<string, number>;
}

// The names Node, V8 and libuv give their threads, across Node 20-26. Node 20
// names none, so its threads carry the process's name (the executable's).
const NODE_THREAD_NAMES = new Set([
  'node',
  'MainThread',
  'node-MainThread',
  'DelayedTaskSche',
  'V8Worker',
  'node-V8Worker',
  'SignalInspector',
  'libuv-worker',
  'WorkerThread',
  'InspectorIo',
]);

let mainThreadName: string | undefined;

function isNodeThread(tid: number, name: string): boolean {
  if (tid === process.pid || NODE_THREAD_NAMES.has(name)) return true;
  if (name === path.basename(process.execPath).slice(0, 15)) return true;
  mainThreadName ??= threadsOrEmpty().find(([t]) => t === process.pid)?.[1] ?? '';
  return name === mainThreadName;
}

function threadsOrEmpty(): Array<[number, string]> {
  try {
    return native.threads();
  } catch {
    return []; // no /proc (macOS)
  }
}

/** Lists what a fork of this process would inherit. */
export function inspectFork(): ForkInspection {
  const threads = threadsOrEmpty().map(([tid, name]) => ({ tid, name, foreign: !isNodeThread(tid, name) }));
  const connections: SocketInfo[] = [];
  const listening: SocketInfo[] = [];
  const handles: Record<string, number> = {};
  for (const [type, fd, sock, active, , closing, address] of native.inspectHandles()) {
    if (closing) continue;
    if (active) handles[type] = (handles[type] ?? 0) + 1;
    // Unnamed socketpairs (Node's IPC channel) stay quiet in a child, not dead: not listed.
    if (sock === SOCK_CONNECTED && address !== '') connections.push({ fd, type, address });
    else if (sock === SOCK_LISTENING) listening.push({ fd, type, address });
  }
  return { threads, foreignThreads: threads.filter((t) => t.foreign), connections, listening, handles };
}

/** Where the atFork recipes for common client libraries live. */
export const RECIPES = 'docs/recipes.md';

const SOCK_LISTENING = 1;
const SOCK_CONNECTED = 2;

// ---------------------------------------------------------------------------
// Foreign threads. Checked before every fork, but only re-listed when the
// thread count changed, which costs one read of /proc/self/stat.

let lastThreadCount = -1;
let foreignAtFork: string[] = [];
let warnedForeign = false;

/** Summarises names with repeats: "libvips worker x3, grpc_global_tim". */
export function describeCounts(names: string[]): string {
  const counts = new Map<string, number>();
  for (const n of names) counts.set(n, (counts.get(n) ?? 0) + 1);
  return [...counts].map(([n, c]) => (c > 1 ? `${n} x${c}` : n)).join(', ');
}

export const FOREIGN_THREAD_RULE =
  'A native library that runs its own threads must be used for the first time after the fork, in the child, ' +
  'or be re-initialized there in atFork({ child }); its threads do not exist in a child, so work handed to them ' +
  'never completes. See docs/hazards.md, "Foreign threads".';

/** Called just before each fork: notes foreign threads and warns once. */
export function noteThreadsBeforeFork(): void {
  let count: number;
  try {
    count = native.threadCount();
  } catch {
    return;
  }
  if (count === lastThreadCount) return;
  lastThreadCount = count;
  foreignAtFork = inspectThreadsOnly();
  if (foreignAtFork.length > 0 && !warnedForeign) {
    warnedForeign = true;
    pending.push({
      code: 'COWFORK_FOREIGN_THREADS',
      message:
        `cowfork: this process has threads that neither Node nor libuv started (${describeCounts(foreignAtFork)}). ` +
        `A forked child does not have them. ${FOREIGN_THREAD_RULE}`,
    });
  }
}

// process.emitWarning defers to a tick, which a child would run too: warnings
// are prepared before a fork and emitted by the parent after it.
const pending: Array<{ code: string; message: string }> = [];

/** In the parent, just after a fork: emits the warnings prepared before it. */
export function warnAfterFork(): void {
  for (const w of pending.splice(0)) warnFromParent(w.message, w.code);
}

/** In a child: its copy of the parent's prepared warnings is not its own. */
export function forgetForkWarnings(): void {
  pending.length = 0;
}

function inspectThreadsOnly(): string[] {
  return threadsOrEmpty()
    .filter(([tid, name]) => !isNodeThread(tid, name))
    .map(([, name]) => name);
}

/** The foreign threads the process had at its last fork (in a child: at the fork that made it). */
export function foreignThreadsAtFork(): readonly string[] {
  return foreignAtFork;
}

/**
 * For errors about a child that never finished: the likely causes the fork
 * that made it saw, threads of a native library and live Workers.
 */
export function hangCauseNote(): string {
  let note = '';
  if (foreignAtFork.length > 0) {
    note +=
      `. The process had threads of a native library when it forked (${describeCounts(foreignAtFork)}), ` +
      `and work handed to them never completes in a child. ${FOREIGN_THREAD_RULE}`;
  }
  if (workersAtFork > 0) {
    note +=
      `. The process had ${workersAtFork} live worker_threads Worker(s) when it forked; a child has none of ` +
      `their threads, and an answer from one never comes. ${LIVE_WORKERS_RULE}`;
  }
  return note;
}

let warnedWorkers = false;
/** Live Workers at the last fork (in a child: at the fork that made it). */
let workersAtFork = 0;

export const LIVE_WORKERS_RULE =
  'Start Workers in the process that uses them (in atFork({ child }), or lazily per process); log to stdout or ' +
  `to a file opened for appending, and run transports in a process of their own: see ${RECIPES}.`;

/**
 * Called just before each fork: notes once that the process has live Workers.
 * A child has none of their threads: what it posts or writes to them is lost
 * (a pino transport's log lines) and their replies never come.
 */
export function noteWorkersBeforeFork(live: number): void {
  workersAtFork = live;
  if (warnedWorkers || live === 0) return;
  warnedWorkers = true;
  pending.push({
    code: 'COWFORK_LIVE_WORKERS',
    message:
      `cowfork: this process has ${live} live worker_threads Worker(s) (an app's own, a pool such as piscina's, ` +
      "a logger's transport such as pino's). A forked child does not have their threads: what it posts or writes " +
      `to them is lost, log lines included, and their replies never come. ${LIVE_WORKERS_RULE}`,
  });
}

let warnedConnections = false;

/**
 * For a supervisor about to fork long-lived workers (prefork's master): notes
 * once, before the fork, the client connections the workers would inherit
 * dead; warnAfterFork emits it in the parent.
 */
export function noteConnectionsBeforeFork(who: string): void {
  if (warnedConnections) return;
  const peers = inspectFork().connections.map((c) => c.address);
  if (peers.length === 0) return;
  warnedConnections = true;
  pending.push({
    code: 'COWFORK_INHERITED_CONNECTIONS',
    message:
      `cowfork: ${who} has ${peers.length} open client connection(s) (${describeCounts(peers)}) that every worker ` +
      'inherits dead: in a worker their writes fail at once (EPIPE) and they never receive data. Open connections ' +
      'in the worker instead (re-create the client or pool in atFork({ child }), or create it lazily per process): ' +
      `see ${RECIPES}.`,
  });
}
