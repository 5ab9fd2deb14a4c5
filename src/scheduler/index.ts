// The public Scheduler: cooperative fibers (async functions) that park on
// timers or on any fd's readiness. A thin facade: it validates input, picks
// the scheduler, and delegates to the engine in core.ts. docs/scheduler.md
// has the model, both driving modes and the pitfalls.
import { ERR, HUP, READ, WRITE } from '../native';
import { boolean, optionsObject, rejectUnknown } from '../validate';
import { Core, type FiberImpl, type FiberState, currentFiber } from './core';

export type { FiberState } from './core';

/** A spawned fiber. */
export interface Fiber<T = unknown> {
  /** Unique within its scheduler. */
  readonly id: number;
  /**
   * `new` (not started), `running` (runs, or awaits something the scheduler
   * does not own), `parked` (in pause/ioWait), `ready` (woken, resumes in the
   * next pass), `done`.
   */
  readonly state: FiberState;
  /**
   * Settles with the fiber's result or error. Reading it means you handle the
   * error; a failure nobody read `done` for is reported by runUntilEmpty(),
   * or else becomes an unhandled rejection at the next macrotask.
   */
  readonly done: Promise<T>;
  /**
   * Raises CancelledError inside the fiber at the park it waits in (and at
   * every later one); a fiber that never started settles without running.
   * No-op once the fiber is done.
   */
  cancel(reason?: unknown): void;
}

export type FiberFunction<T> = (fiber: Fiber<T>) => T | PromiseLike<T>;

export interface SchedulerOptions {
  /**
   * true (default): fibers also make progress whenever Node's event loop
   * runs. false: only tick/runUntilEmpty/runFor run them, so stepping stays
   * deterministic across macrotasks; nothing is armed on the loop.
   */
  eventLoop?: boolean;
}

// ---------------------------------------------------------------------------
// Validation. Async methods reject; the synchronous drivers throw.

function seconds(v: unknown, name: string): number {
  if (typeof v !== 'number' || Number.isNaN(v)) throw new TypeError(`${name} must be a number of seconds, got ${describe(v)}`);
  if (v < 0 || !Number.isFinite(v)) throw new RangeError(`${name} must be a non-negative finite number of seconds, got ${v}`);
  return v * 1000;
}

function milliseconds(v: unknown, name: string): number {
  if (typeof v !== 'number' || Number.isNaN(v)) throw new TypeError(`${name} must be a number of milliseconds, got ${describe(v)}`);
  if (v < 0) throw new RangeError(`${name} must be a non-negative number of milliseconds, got ${v}`);
  return v;
}

function fdArg(v: unknown): number {
  if (typeof v !== 'number' || !Number.isInteger(v)) {
    throw new TypeError(`ioWait(fd, mode, timeout): fd must be an integer file descriptor, got ${describe(v)}`);
  }
  if (v < 0 || v > 0x7fffffff) throw new RangeError(`ioWait(fd, mode, timeout): fd must be a non-negative file descriptor, got ${v}`);
  return v;
}

function modeArg(v: unknown): number {
  const what = 'ioWait(fd, mode, timeout): mode must be Scheduler.READ (1), Scheduler.WRITE (2) or Scheduler.READ | Scheduler.WRITE (3)';
  if (typeof v !== 'number' || !Number.isInteger(v)) throw new TypeError(`${what}, got ${describe(v)}`);
  if (v < 1 || v > 3) throw new RangeError(`${what}, got ${v}`);
  return v;
}

function timeoutArg(v: unknown): number {
  if (v === undefined || v === null || v === Infinity) return Infinity;
  return seconds(v, 'ioWait(fd, mode, timeout): timeout');
}

function describe(v: unknown): string {
  return typeof v === 'string' ? JSON.stringify(v) : v === null ? 'null' : typeof v === 'object' ? 'an object' : String(v);
}

// ---------------------------------------------------------------------------
// The per-process default scheduler. A forked child gets a fresh one: the
// pid check covers it, and core.ts also forgets copied state in an atFork
// child hook so nothing the parent parked keeps a child's loop alive.

let defaultScheduler: Scheduler | null = null;
let defaultPid = 0;

function theDefault(): Scheduler {
  if (defaultScheduler === null || defaultPid !== process.pid) {
    defaultScheduler = new Scheduler();
    defaultPid = process.pid;
  }
  return defaultScheduler;
}

/** Inside a fiber, the fiber's own scheduler; outside, the default one. */
function ambient(): Core {
  return currentFiber()?.core ?? coreOf(theDefault());
}

const cores = new WeakMap<Scheduler, Core>();
function coreOf(s: Scheduler): Core {
  return cores.get(s)!;
}

function doPause(core: Core, secs: unknown): Promise<void> {
  try {
    core.checkPid();
    const fiber = core.owner('pause');
    return core.pause(fiber, seconds(secs, 'pause(seconds): seconds'));
  } catch (err) {
    return Promise.reject(err);
  }
}

function doIoWait(core: Core, fd: unknown, mode: unknown, timeout: unknown): Promise<number> {
  try {
    core.checkPid();
    const fiber = core.owner('ioWait');
    return core.ioWait(fiber, fdArg(fd), modeArg(mode), timeoutArg(timeout));
  } catch (err) {
    return Promise.reject(err);
  }
}

/**
 * Cooperative fibers that park on timers (`pause`) or on an fd's readiness
 * (`ioWait`). Static methods use the per-process default scheduler (inside a
 * fiber, `pause` and `ioWait` use that fiber's own); `new Scheduler()` gives
 * an independent one with the same methods.
 *
 * Fibers make progress in two ways, which can be mixed: synchronously, when
 * `tick`, `runUntilEmpty` or `runFor` drive them (blocking in poll(2)), and on
 * their own whenever Node's event loop runs (libuv watchers and timers).
 */
export class Scheduler {
  /** Readiness for reading. */
  static readonly READ = READ;
  /** Readiness for writing. */
  static readonly WRITE = WRITE;
  /** Set in ioWait's result on hang-up (with the requested mode bits: the next read returns EOF). */
  static readonly HUP = HUP;
  /** Set in ioWait's result on an error condition, or an fd closed under its park. */
  static readonly ERR = ERR;

  constructor(options?: SchedulerOptions) {
    const o = optionsObject(options);
    rejectUnknown(o, ['eventLoop']);
    cores.set(this, new Core(boolean(o.eventLoop, 'options.eventLoop', true)));
  }

  /** The per-process default scheduler the static methods use (fresh in a forked child). */
  static get default(): Scheduler {
    return theDefault();
  }

  // -- spawning -------------------------------------------------------------

  /** Registers `fn` as a fiber. It starts in the next pass: a driver call, or the event loop's next turn. */
  spawn<T>(fn: FiberFunction<T>): Fiber<T> {
    if (typeof fn !== 'function') throw new TypeError(`spawn(fn): fn must be a function, got ${describe(fn)}`);
    return coreOf(this).spawn(fn as (f: FiberImpl<T>) => T | PromiseLike<T>);
  }

  static spawn<T>(fn: FiberFunction<T>): Fiber<T> {
    return theDefault().spawn(fn);
  }

  // -- parking --------------------------------------------------------------

  /**
   * Parks the current fiber for at least `seconds`. Outside any fiber it is a
   * plain awaitable timer, woken by the event loop or by a driver.
   */
  pause(seconds_: number): Promise<void> {
    return doPause(coreOf(this), seconds_);
  }

  static pause(seconds_: number): Promise<void> {
    return doPause(ambient(), seconds_);
  }

  /**
   * Parks the current fiber until `fd` is ready for `mode` (READ, WRITE or
   * both) or `timeout` seconds pass (default: no timeout). Resolves to the
   * ready bits, or 0 on timeout. Any number of fibers may wait on one fd. The
   * fd should be non-blocking; in event-loop mode libuv makes it so.
   */
  ioWait(fd: number, mode: number, timeout?: number): Promise<number> {
    return doIoWait(coreOf(this), fd, mode, timeout);
  }

  static ioWait(fd: number, mode: number, timeout?: number): Promise<number> {
    return doIoWait(ambient(), fd, mode, timeout);
  }

  // -- synchronous drivers --------------------------------------------------

  /**
   * One pass: waits in poll(2) for at most `timeoutMs` (default 0) unless
   * something is ready already, resumes what is ready, and returns how many
   * fibers and parks it resumed. Each resumed fiber has run to its next park
   * (or its end) when tick returns. Returns 0 at once when nothing is parked.
   */
  tick(timeoutMs = 0): number {
    const ms = milliseconds(timeoutMs, 'tick(timeoutMs): timeoutMs');
    return coreOf(this).tick(ms);
  }

  static tick(timeoutMs = 0): number {
    return theDefault().tick(timeoutMs);
  }

  /**
   * Drives until no fiber is left, blocking in poll(2) between passes. Throws
   * FiberFailedError afterwards if fibers failed and nobody read their
   * `done`; throws SchedulerError rather than hang when the remaining fibers
   * wait on something only the event loop can settle.
   */
  runUntilEmpty(): number {
    return coreOf(this).runUntilEmpty();
  }

  static runUntilEmpty(): number {
    return theDefault().runUntilEmpty();
  }

  /**
   * Drives for `seconds`, blocking in poll(2) between passes (no busy spin).
   * Returns early when nothing is left to drive. Returns the number resumed.
   */
  runFor(seconds_: number): number {
    const ms = seconds(seconds_, 'runFor(seconds): seconds');
    return coreOf(this).runFor(ms);
  }

  static runFor(seconds_: number): number {
    return theDefault().runFor(seconds_);
  }

  // -- introspection --------------------------------------------------------

  /** Fibers not yet done. */
  get size(): number {
    return coreOf(this).size;
  }

  /** Parks waiting on a deadline (pause, or ioWait with a timeout). */
  get pendingTimers(): number {
    return coreOf(this).pendingTimers;
  }

  /** Active libuv fd watchers: one per fd with parked fibers. */
  get watchers(): number {
    return coreOf(this).watchers;
  }

  /** The fiber whose code is running, or null outside any fiber. */
  static current(): Fiber | null {
    return currentFiber();
  }
}
