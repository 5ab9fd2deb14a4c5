// The public Scheduler: cooperative fibers (generator functions or async
// functions) that park on timers, on any fd's readiness, on promises and on
// each other. A thin facade: it validates input, picks the scheduler, and
// delegates to the engine (tables.ts, loop.ts, drive.ts). docs/scheduler.md
// has the model, both driving modes and the pitfalls.
import { ERR, HUP, READ, WRITE } from '../native';
import { boolean, optionsObject, rejectUnknown } from '../validate';
import { fdArg, fiberFunction, milliseconds, modeArg, seconds, spawnOptions, timeoutArg, timeoutSeconds } from './args';
import { Core } from './drive';
import { Deadline, FdEntry, FiberImpl, type FiberState, Kind, Park, currentFiber } from './fiber';
import { Op } from './op';
import { withTimeout } from './timeout';

export type { FiberState } from './fiber';

/**
 * What pause() and ioWait() return: a promise to `await` in an async fiber,
 * and, inside a generator fiber, a park to `yield` (untyped result) or to
 * `yield*` (typed result).
 */
export interface Parking<T> extends Promise<T> {
  [Symbol.iterator](): Generator<unknown, T, unknown>;
}

/** A spawned fiber. */
export interface Fiber<T = unknown> {
  /** Unique within its scheduler. */
  readonly id: number;
  /**
   * `new` (not started), `running` (runs, or awaits something the scheduler
   * does not own), `parked` (in pause/ioWait, or a generator fiber waiting on
   * a promise or a fiber), `ready` (woken, resumes in the next pass), `done`.
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
   * every later one), and cancels its children; a fiber that never started
   * settles without running. No-op once the fiber is done.
   */
  cancel(reason?: unknown): void;
  /** Spawns a child fiber on the same scheduler: it is cancelled when this fiber is. */
  spawn<U>(fn: GeneratorFiberFunction<U>, options?: FiberOptions): Fiber<U>;
  spawn<U>(fn: FiberFunction<U>, options?: FiberOptions): Fiber<U>;
  /** In a generator fiber, `const r = yield* fiber` joins it, with `r` typed. */
  [Symbol.iterator](): Generator<unknown, T, unknown>;
}

/** A generator fiber: parks by yielding pause()/ioWait(), a promise, or another fiber. */
export type GeneratorFiberFunction<T> = (fiber: Fiber<T>) => Generator<unknown, T, any>;
/** An async fiber: parks by awaiting pause()/ioWait(). */
export type FiberFunction<T> = (fiber: Fiber<T>) => T | PromiseLike<T>;

export interface FiberOptions {
  /** Seconds. When they pass, the fiber's park raises TimeoutError (and its children are cancelled). */
  timeout?: number;
}

export interface SchedulerOptions {
  /**
   * true (default): fibers also make progress whenever Node's event loop
   * runs. false: only tick/runUntilEmpty/runFor run them, so stepping stays
   * deterministic across macrotasks; nothing is armed on the loop.
   */
  eventLoop?: boolean;
}

// ---------------------------------------------------------------------------
// The per-process default scheduler. A forked child gets a fresh one: the
// pid check covers it, and tables.ts also forgets copied state in an atFork
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
  return (currentFiber()?.core as Core | undefined) ?? coreOf(theDefault());
}

/** A scheduler's engine, read through the private field (set in the class's static block). */
let coreOf: (s: Scheduler) => Core;

// Async methods reject rather than throw; inside a generator fiber the
// rejection is yielded and thrown at the yield.
function doPause(core: Core, secs: unknown): Parking<void> {
  try {
    core.checkPid();
    const fiber = core.owner('pause');
    const ms = seconds(secs, 'pause(seconds): seconds');
    if (fiber !== null && fiber.isGen) return ms === 0 ? core.yieldOp : new Op<void>(core, -1, 0, ms);
    return core.pause(fiber, ms) as Parking<void>;
  } catch (err) {
    return Promise.reject(err) as Parking<void>;
  }
}

function doIoWait(core: Core, fd: unknown, mode: unknown, timeout: unknown): Parking<number> {
  try {
    core.checkPid();
    const fiber = core.owner('ioWait');
    const args = [fdArg(fd), modeArg(mode), timeoutArg(timeout)] as const;
    if (fiber !== null && fiber.isGen) return new Op<number>(core, ...args);
    return core.ioWait(fiber, ...args) as Parking<number>;
  } catch (err) {
    return Promise.reject(err) as Parking<number>;
  }
}

function doSpawn<T>(core: Core, fn: unknown, options: unknown): Fiber<T> {
  fiberFunction(fn, 'spawn(fn)');
  return core.spawn(fn as (f: FiberImpl<T>) => unknown, spawnOptions(options), null) as Fiber<T>;
}

/**
 * Cooperative fibers that park on timers (`pause`), on an fd's readiness
 * (`ioWait`), and, for generator fibers, on promises and other fibers. Static
 * methods use the per-process default scheduler (inside a fiber, `pause` and
 * `ioWait` use that fiber's own); `new Scheduler()` gives an independent one
 * with the same methods.
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

  readonly #core: Core;

  static {
    coreOf = (s) => s.#core;
  }

  constructor(options?: SchedulerOptions) {
    const o = optionsObject(options);
    rejectUnknown(o, ['eventLoop']);
    this.#core = new Core(boolean(o.eventLoop, 'options.eventLoop', true));
  }

  /** The per-process default scheduler the static methods use (fresh in a forked child). */
  static get default(): Scheduler {
    return theDefault();
  }

  // -- spawning -------------------------------------------------------------

  /**
   * Registers `fn` as a fiber. It starts in the next pass: a driver call, or
   * the event loop's next turn. A generator function makes a generator fiber.
   */
  spawn<T>(fn: GeneratorFiberFunction<T>, options?: FiberOptions): Fiber<T>;
  spawn<T>(fn: FiberFunction<T>, options?: FiberOptions): Fiber<T>;
  spawn<T>(fn: unknown, options?: FiberOptions): Fiber<T> {
    return doSpawn<T>(coreOf(this), fn, options);
  }

  static spawn<T>(fn: GeneratorFiberFunction<T>, options?: FiberOptions): Fiber<T>;
  static spawn<T>(fn: FiberFunction<T>, options?: FiberOptions): Fiber<T>;
  static spawn<T>(fn: unknown, options?: FiberOptions): Fiber<T> {
    return doSpawn<T>(coreOf(theDefault()), fn, options);
  }

  // -- parking --------------------------------------------------------------

  /**
   * Parks the current fiber for at least `seconds`. Outside any fiber it is a
   * plain awaitable timer, woken by the event loop or by a driver.
   */
  pause(seconds_: number): Parking<void> {
    return doPause(coreOf(this), seconds_);
  }

  static pause(seconds_: number): Parking<void> {
    return doPause(ambient(), seconds_);
  }

  /**
   * Parks the current fiber until `fd` is ready for `mode` (READ, WRITE or
   * both) or `timeout` seconds pass (default: no timeout). Resolves to the
   * ready bits, or 0 on timeout. Any number of fibers may wait on one fd. The
   * fd should be non-blocking; in event-loop mode libuv makes it so.
   */
  ioWait(fd: number, mode: number, timeout?: number): Parking<number> {
    return doIoWait(coreOf(this), fd, mode, timeout);
  }

  static ioWait(fd: number, mode: number, timeout?: number): Parking<number> {
    return doIoWait(ambient(), fd, mode, timeout);
  }

  /**
   * Runs `fn` in the current fiber with a deadline (trio's fail_after): when
   * `seconds` pass before it ends, the park it waits in raises TimeoutError.
   * A generator function gives a generator (`yield* Scheduler.withTimeout(1, function* () {...})`),
   * any other function a promise (`await Scheduler.withTimeout(1, async () => {...})`).
   */
  static withTimeout<T>(seconds_: number, fn: () => Generator<unknown, T, any>): Generator<unknown, T, unknown>;
  static withTimeout<T>(seconds_: number, fn: () => T | PromiseLike<T>): Promise<T>;
  static withTimeout(seconds_: number, fn: () => unknown): unknown {
    const s = timeoutSeconds(seconds_);
    fiberFunction(fn, 'withTimeout(seconds, fn)');
    return withTimeout(s * 1000, fn);
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

  /** The default scheduler's `size`. */
  static get size(): number {
    return theDefault().size;
  }

  /** Entries in the timer heap: parks with a deadline, and fiber deadlines (options.timeout, withTimeout). */
  get pendingTimers(): number {
    return coreOf(this).pendingTimers;
  }

  /** The default scheduler's `pendingTimers`. */
  static get pendingTimers(): number {
    return theDefault().pendingTimers;
  }

  /** Active libuv fd watchers: one per fd with parked fibers. */
  get watchers(): number {
    return coreOf(this).watchers;
  }

  /** The default scheduler's `watchers`. */
  static get watchers(): number {
    return theDefault().watchers;
  }

  /** The fiber whose code is running, or null outside any fiber. */
  static current(): Fiber | null {
    return currentFiber() as Fiber | null;
  }
}

// Idle instances that keep V8's maps of the engine's classes alive (shapeAnchors() below), held by the class.
Object.defineProperty(Scheduler, Symbol('cowfork.shapeAnchors'), { value: shapeAnchors(new Scheduler({ eventLoop: false })) });

/**
 * Shape anchors. V8 reaches the map of an instance of a class with fields
 * only through weak transitions from the class's initial map: when a full GC
 * finds no instance alive (every scheduler of a round and its fibers are
 * garbage), the map is freed, every optimized function that checks it
 * (spawn, pause, enqueue, the pass, stepGenerator) is thrown away ("weak
 * objects" in --trace-deopt) and compiled again on the main thread, and the
 * next scheduler gets a new map. One idle instance of each class the passes
 * touch, made before any other and held by the Scheduler class, keeps those
 * maps: the Scheduler holds its Core, the Core its TimerHeap and pause(0) Op.
 * They are never registered or driven.
 */
function shapeAnchors(scheduler: Scheduler): object[] {
  const fiber = new FiberImpl(coreOf(scheduler), 0, function* () {}, true, null);
  const park = new Park(Kind.Timer, fiber, -1, 0, null, null);
  return [scheduler, fiber, park, new Deadline(fiber, Infinity, Infinity, false), new FdEntry(-1)];
}
