// Forking the running Node process, and the hygiene a child needs before it
// can run JavaScript again. docs/hazards.md explains each step; every step
// has a test that fails without it.
import module from 'node:module';
import os from 'node:os';
import { dropParentSignalListeners, trackTimedSignals } from './abort-signals';
import { childFatal, leaveChild, noteRequestsAtFork, parentBusyStdio } from './child-exit';
import { ForkUnsafeError, signalName } from './errors';
import { forgetParentRequests, resetNodePools, watchInheritedWrites } from './inherited';
import { forgetForkWarnings, noteConnectionsBeforeFork, noteThreadsBeforeFork, noteWorkersBeforeFork, warnAfterFork } from './inspect';
import { HUP, READ, native } from './native';
import { warnIfPoolUnrepaired } from './pool-repair';
import { prepareRandom, reseedRandom } from './random';
import { releaseParentStdio, warnIfStdioUnknown } from './stdio';
import { dropParentTimers, recordTimerOwners, warnIfTimersUnknown } from './timers';
import { warnFromParent } from './warn';
import { dropParentWatchers, trackWatchers } from './watchers';
import { releaseParentWriteStreams, trackWriteStreams } from './write-streams';
import { forgetParentWorkers, forgetSettle, liveWorkers, settleWorkers, trackWorkers } from './workers';

trackWorkers();
recordTimerOwners();
trackWatchers();
trackWriteStreams();
trackTimedSignals();
// ESM imports of the built-ins see the wrappers above too (`import { MessageChannel } from 'node:worker_threads'`,
// `import { watchFile } from 'node:fs'`): this updates the ESM view of every built-in module to its CommonJS exports,
// as Node's documentation describes for patching them. Once, after every wrapper is in place.
module.syncBuiltinESMExports();

const SINGLE_THREADED = new Set(['--single-threaded', '--single_threaded']);

/** True when this process was started with V8's --single-threaded flag, which fork() needs. */
export function isForkSafe(): boolean {
  return process.execArgv.some((arg) => SINGLE_THREADED.has(arg));
}

export function forkUnsafeError(api: string): ForkUnsafeError {
  const script = process.argv[1] ? ` ${process.argv[1]}` : ' app.js';
  return new ForkUnsafeError(
    `${api} needs V8's --single-threaded flag, and V8 only accepts it at startup ` +
      '(without it, forked children deadlock on V8 background-thread locks). Start the process with ' +
      `\`node --single-threaded${script}\`, \`npx cowfork run${script}\`, ` +
      `or \`node -r cowfork/register${script}\`.`,
  );
}

// ---------------------------------------------------------------------------
// At-fork hooks, like pthread_atfork(3) and Python's os.register_at_fork.

export interface AtForkHooks {
  /** Runs in the parent just before each fork; hooks run in reverse registration order. */
  prepare?: () => void;
  /** Runs in the parent just after each fork. */
  parent?: () => void;
  /** Runs in the child just after each fork, before any cowfork work. */
  child?: () => void;
}

const hooks: AtForkHooks[] = [];
/** Hooks cowfork registers for itself (the scheduler's); the rest are the app's. */
const ownHooks = new WeakSet<AtForkHooks>();

/** Registers fork hooks. Returns a function that unregisters them. */
export function atFork(h: AtForkHooks): () => void {
  if (h === null || typeof h !== 'object') throw new TypeError('atFork(hooks): hooks must be an object');
  for (const key of ['prepare', 'parent', 'child'] as const) {
    if (h[key] !== undefined && typeof h[key] !== 'function') {
      throw new TypeError(`atFork(hooks): hooks.${key} must be a function`);
    }
  }
  return addHooks({ ...h });
}

/** atFork for cowfork's own modules: not counted as the app re-creating its clients. */
export function libraryAtFork(h: AtForkHooks): () => void {
  const entry = { ...h };
  ownHooks.add(entry);
  return addHooks(entry);
}

function addHooks(entry: AtForkHooks): () => void {
  hooks.push(entry);
  return () => {
    const i = hooks.indexOf(entry);
    if (i >= 0) hooks.splice(i, 1);
  };
}

// ---------------------------------------------------------------------------
// Library-owned macrotasks. A fork inside a user's stack frame would continue
// that user's code in the child and run microtasks that were already queued.
// At the top of a setImmediate callback the library owns, the microtask queue
// is empty and the only code on the stack is ours.

let inLibraryMacrotask = false;

/**
 * Thrown in a child to unwind out of the parent's call stack back to the
 * event loop. Code between `libraryMacrotask` and `forkChild` must not catch
 * it; `isChildUnwind(err)` tells a catch block to rethrow.
 */
const CHILD_UNWIND = Object.freeze(new Error('cowfork internal: a forked child is unwinding the parent\'s stack; rethrow this'));

export function isChildUnwind(err: unknown): boolean {
  return err === CHILD_UNWIND;
}

/**
 * process.nextTick while a library macrotask runs, around `nextTick`: a callback runs only in the process that
 * queued it. The parent's ticks queued in the forking macrotask (by an atFork hook, by a warning, by the fork of
 * an earlier child in the same macrotask) are still queued in a child; a child that finished synchronously ran
 * them before it left (src/child-exit.ts), and one that awaits ran them at its first turn.
 */
function ticksOfThisProcess(nextTick: typeof process.nextTick): typeof process.nextTick {
  return function nextTickOfThisProcess(this: unknown, callback: (...args: unknown[]) => void, ...args: unknown[]) {
    // A bad callback: let Node's own function throw its error.
    if (typeof callback !== 'function') return Reflect.apply(nextTick, this, [callback, ...args]);
    const queuedBy = process.pid;
    // Node's own write bookkeeping on a stream the child shares (process.stdout) must run: dropped, a write the
    // parent made in an atFork hook left a stale entry that swallowed the child's own write callbacks.
    if (callback.name === 'afterWriteTick') return Reflect.apply(nextTick, this, [callback, ...args]);
    const own = (...a: unknown[]): void => {
      if (process.pid === queuedBy) callback(...a);
    };
    return Reflect.apply(nextTick, this, [own, ...args]);
  } as typeof process.nextTick;
}

export function libraryMacrotask(fn: () => void): void {
  // A child that returns to its event loop inherits the parent's queue of
  // immediates; work the library queued in the parent must not run there.
  const owner = process.pid;
  setImmediate(() => {
    if (process.pid !== owner) return;
    inLibraryMacrotask = true;
    const nextTick = process.nextTick;
    const wrapper = ticksOfThisProcess(nextTick);
    process.nextTick = wrapper;
    try {
      fn();
    } catch (err) {
      if (err !== CHILD_UNWIND) throw err;
    } finally {
      inLibraryMacrotask = false;
      // Unless the work patched it meanwhile (a child's item or a worker loading zone.js, an APM): theirs stays.
      if (process.nextTick === wrapper) process.nextTick = nextTick;
    }
  });
}

// Timers the library starts in a parent (watchdogs, progress). A child's loop
// shares the parent's timer list, so they are cleared in every child.
const libraryTimers = new Set<NodeJS.Timeout>();

export function libraryInterval(fn: () => void, ms: number): () => void {
  const t = setInterval(fn, ms);
  libraryTimers.add(t);
  return () => {
    clearInterval(t);
    libraryTimers.delete(t);
  };
}

export function libraryTimeout(fn: () => void, ms: number): () => void {
  const t = setTimeout(() => {
    libraryTimers.delete(t);
    fn();
  }, ms);
  libraryTimers.add(t);
  return () => {
    clearTimeout(t);
    libraryTimers.delete(t);
  };
}

// ---------------------------------------------------------------------------
// Child state.

let childDepth = 0;

/** True in a process cowfork forked. */
export function isChild(): boolean {
  return childDepth > 0;
}

function refreshIdentity(): void {
  // process.pid is captured at startup; in a forked child it is the parent's.
  Object.defineProperty(process, 'pid', {
    value: native.getpid(),
    writable: false,
    enumerable: true,
    configurable: true,
  });
  Object.defineProperty(process, 'ppid', {
    value: native.getppid(),
    writable: true,
    enumerable: true,
    configurable: true,
  });
}

// Signal names, looked up once in the parent so that a child does not build the list.
const SIGNALS: ReadonlySet<string | symbol> = new Set(Object.keys(os.constants.signals));

function resetSignals(): void {
  // Ctrl-C reaches the whole process group: without this every child would run
  // the parent's SIGINT listeners. Removing the last listener restores SIG_DFL.
  // Only the events that have listeners are looked at: a child pays for every
  // page it touches (each is a copy-on-write fault).
  for (const name of process.eventNames()) {
    if (SIGNALS.has(name)) process.removeAllListeners(name);
  }
}

// Made once, in the parent: a child then only stores references to them.
const onFatalEvent = (err: unknown): void => childFatal(err);
// process.exit() would emit 'exit' and run libuv teardown, which aborts in a
// forked child; leave through _exit instead.
const childExit = ((code?: number | string | null) => {
  const c = Number(code ?? process.exitCode ?? 0);
  // Like Node's own process.exit, keep the code's low 32 bits.
  return native.exit(Number.isInteger(c) ? c | 0 : 1);
}) as typeof process.exit;
const childReallyExit = (code: number): never => native.exit(Number.isInteger(code) ? code : 1);

function routeFatalErrors(): void {
  // The parent's handlers (a test runner's, an APM's) must not run in a child.
  for (const name of ['uncaughtException', 'unhandledRejection', 'beforeExit', 'exit']) {
    if (process.listenerCount(name) > 0) process.removeAllListeners(name);
  }
  process.on('uncaughtException', onFatalEvent);
  process.on('unhandledRejection', onFatalEvent);
  process.exit = childExit;
  // Code that kept a reference to the original process.exit (a test runner's
  // worker, a process manager's agent) reaches process.reallyExit, which Node
  // looks up on each call: route that through _exit too.
  (process as unknown as { reallyExit: (code: number) => never }).reallyExit = childReallyExit;
}

function childHygiene(options: ForkOptions, flags: number): void {
  childDepth++;
  refreshIdentity();
  // cowfork's own timers (reap retries, the scheduler's loop timer) are the parent's bookkeeping: cleared in
  // every child, prefork workers included and unref'd ones too, which dropParentTimers() would keep. Before the
  // drop: once dropped, a parent's ref'd timer reads as already cleared, and clearTimeout() would not unlink it.
  for (const t of libraryTimers) clearTimeout(t);
  libraryTimers.clear();
  if (options.dropParentWork) {
    dropParentTimers();
    dropParentWatchers();
    dropParentSignalListeners();
  }
  resetSignals();
  routeFatalErrors();
  reseedRandom();
  forgetForkWarnings();
  // What the loop counts and Node lists now is the parent's; what the hooks and the work add is the child's
  // (src/child-exit.ts). The steps below start no request.
  noteRequestsAtFork();
  if (!(flags & native.FORK_FLAGS.SKIP_PARENT_REQUESTS)) forgetParentRequests(options.keepFds ?? []);
  if (!(flags & native.FORK_FLAGS.SKIP_PARENT_STDIO)) releaseParentStdio(parentBusyStdio());
  resetNodePools();
  watchInheritedWrites();
  forgetParentWorkers();
  releaseParentWriteStreams();
  for (const h of hooks) h.child?.();
}

// ---------------------------------------------------------------------------
// Forking and reaping.

export interface ChildExit {
  pid: number;
  /** The exit code, or null when the child was killed by a signal. */
  exitCode: number | null;
  signal: NodeJS.Signals | null;
}

/** What each of cowfork's own exit codes means (native/cowfork.h owns the numbers). */
const EXIT_MEANINGS = new Map<number, string>([
  [native.EXIT_CODES.UNCAUGHT, "cowfork's code for an uncaught exception in the child"],
  [native.EXIT_CODES.LOOP_FORK, 'cowfork could not re-create the event loop in the child: uv_loop_fork failed'],
  [native.EXIT_CODES.SILENCE, 'cowfork could not silence the sockets the child inherited'],
]);

/** How a child ended, for an error message: its signal, or its exit code and what cowfork means by it. */
export function describeExit(exit: ChildExit): string {
  if (exit.signal !== null) return `was killed by ${exit.signal}`;
  const meaning = exit.exitCode === null ? undefined : EXIT_MEANINGS.get(exit.exitCode);
  return `exited with code ${exit.exitCode}${meaning ? ` (${meaning})` : ''}`;
}

export interface ForkedChild {
  readonly pid: number;
  /** Settles once the child has exited and been reaped; it never leaves a zombie. */
  readonly exited: Promise<ChildExit>;
  kill(signal?: NodeJS.Signals): void;
}

export interface ForkOptions {
  /** Inherited fds the child keeps polling (everything else above 2 is silenced). */
  keepFds?: number[];
  /** The child gets SIGKILL when the parent dies (Linux). */
  dieWithParent?: boolean;
  /**
   * For long-lived workers: warn once, naming `who`, about client connections
   * the child would inherit dead, unless an atFork({ child }) hook is registered.
   */
  warnInheritedConnections?: string;
  /**
   * The child runs only the work it was forked for (map, iterate): the
   * parent's pending immediates and timers never run there
   * (src/timers.ts), nor do its file watchers (src/watchers.ts) or its
   * listeners on timed AbortSignals (src/abort-signals.ts).
   */
  dropParentWork?: boolean;
  /** Test-only flags that skip hygiene steps, to show each hazard is real. */
  unsafeFlags?: number;
}

/**
 * Forks the process. Must run inside `libraryMacrotask`. In the child, `body`
 * runs and the child exits with the code it returns (or resolves to); the call
 * never returns into the parent's code: it throws a sentinel that
 * `libraryMacrotask` swallows, so a try/catch around this call must rethrow
 * when `isChildUnwind(err)`. In the parent, returns the child.
 *
 * Microtasks queued earlier in the same macrotask (a resolved promise, an
 * event whose listeners await) would also run in the child: fork first, then
 * settle promises.
 */
export function forkChild(body: () => number | Promise<number>, options: ForkOptions = {}): ForkedChild {
  if (!inLibraryMacrotask) throw new Error('cowfork internal error: fork outside a library-owned macrotask');
  // Where there is no pidfd, the child holds the write end of a pipe: its EOF
  // is the parent's notice, without SIGCHLD and without waitpid(-1).
  const death = havePidfd() ? null : native.pipe(false);
  prepareRandom();
  warnIfImmediatesUnknown();
  warnIfStdioUnknown();
  if (options.dropParentWork) warnIfTimersUnknown();
  for (let i = hooks.length - 1; i >= 0; i--) hooks[i].prepare?.();
  noteThreadsBeforeFork();
  noteWorkersBeforeFork(liveWorkers());
  // An app with an atFork({ child }) hook re-creates its clients there (docs/recipes.md): no warning.
  if (options.warnInheritedConnections && !hooks.some((h) => h.child && !ownHooks.has(h))) {
    noteConnectionsBeforeFork(options.warnInheritedConnections);
  }
  const flags = (options.unsafeFlags ?? 0) | testUnsafeFlags() | (options.dieWithParent ? native.FORK_FLAGS.SET_PDEATHSIG : 0);
  // Registers the fork's first step: waiting until the parent's Worker threads are asleep (src/workers.ts).
  if (!(flags & native.FORK_FLAGS.SKIP_SETTLE_WORKERS)) settleWorkers();
  let pid: number;
  try {
    pid = native.fork(options.keepFds ?? [], flags);
  } catch (err) {
    forgetSettle();
    if (death) death.forEach((fd) => native.close(fd));
    throw err;
  }

  if (pid === 0) {
    if (death) native.close(death[0]);
    runChild(body, options, flags);
    throw CHILD_UNWIND;
  }

  if (death) native.close(death[1]);
  warnAfterFork();
  warnIfPoolUnrepaired();
  for (const h of hooks) {
    try {
      h.parent?.();
    } catch (err) {
      warnFromParent(`cowfork atFork parent hook threw: ${String(err)}`, 'COWFORK_HOOK_THREW');
    }
  }
  return watchChild(pid, death ? death[0] : native.pidfdOpen(pid));
}

/**
 * COWFORK_TEST_UNSAFE_FLAGS: FORK_FLAGS bits a test sets so that a hazard
 * shows through the public API (map, prefork). Never set it otherwise.
 */
function testUnsafeFlags(): number {
  return Number(process.env.COWFORK_TEST_UNSAFE_FLAGS) | 0;
}

let immediatesChecked = false;

/**
 * Children drop the callbacks other threads had queued for the parent (a
 * finished worker_thread's join, above all). Node has no API for that queue,
 * so the native side finds it by its layout; where it cannot, say so once.
 */
function warnIfImmediatesUnknown(): void {
  if (immediatesChecked) return;
  immediatesChecked = true;
  if (native.immediatesFound()) return;
  warnFromParent(
    `cowfork: Node ${process.version}'s queue of callbacks from other threads was not found, so children ` +
      'may run the parent\'s: a child forked just after a worker_thread finished can abort. ' +
      'Wait for a Worker\'s \'exit\' event before forking (see docs/hazards.md).',
    'COWFORK_IMMEDIATES_UNKNOWN',
  );
}

let pidfdWorks: boolean | undefined;

/** Whether this kernel has pidfd_open (Linux >= 5.3). */
function havePidfd(): boolean {
  if (pidfdWorks === undefined) {
    try {
      native.close(native.pidfdOpen(process.pid));
      pidfdWorks = true;
    } catch {
      pidfdWorks = false;
    }
  }
  return pidfdWorks;
}

function runChild(body: () => number | Promise<number>, options: ForkOptions, flags: number): void {
  try {
    childHygiene(options, flags);
    const code = body();
    // Async work, or requests of the child's own still pending: unwind to the event loop and leave from there.
    if (typeof code === 'number') leaveChild(code);
    else code.then(leaveChild, childFatal);
  } catch (err) {
    childFatal(err);
  }
}

/** Watches a child's pidfd (or death pipe) and reaps it once it has exited. */
function watchChild(pid: number, exitFd: number): ForkedChild {
  let resolveExit!: (e: ChildExit) => void;
  const exited = new Promise<ChildExit>((resolve) => (resolveExit = resolve));
  let reaped = false;
  const watch = native.watch(exitFd, READ | HUP, () => {
    native.unwatch(watch);
    native.close(exitFd);
    reap(0);
  });
  // A pidfd is readable exactly when the child can be reaped. A death pipe's
  // EOF comes a little earlier, so poll briefly with growing sleeps.
  const reap = (attempt: number): void => {
    const r = reapedEarly.get(pid) ?? native.waitpid(pid, true);
    reapedEarly.delete(pid);
    if (r === null) {
      libraryTimeout(() => reap(attempt + 1), Math.min(1 << Math.min(attempt, 6), 50));
      return;
    }
    reaped = true;
    resolveExit({ pid, exitCode: r[1] >= 0 ? r[1] : null, signal: signalName(r[2]) });
  };
  return {
    pid,
    exited,
    kill(signal: NodeJS.Signals = 'SIGKILL') {
      if (reaped) return;
      try {
        process.kill(pid, signal);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ESRCH') throw err;
      }
    },
  };
}

// Statuses that killAndReapSync collected. When a SIGINT listener keeps the
// process alive, the child's watcher still fires, and reports this status:
// waitpid() would fail with ECHILD.
const reapedEarly = new Map<number, [number, number, number]>();

/** Kills and synchronously reaps a child; for signal-time cleanup, when no event loop turn is left. */
export function killAndReapSync(pid: number): void {
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    return;
  }
  try {
    const r = native.waitpid(pid, false);
    if (r !== null) reapedEarly.set(pid, r);
  } catch {
    // ECHILD: already reaped.
  }
}
