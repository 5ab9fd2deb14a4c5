// Fibers and the parks they wait in: the records the scheduler's tables hold.
// No behaviour lives here beyond what a record says about itself; the
// tables (parks.ts, tables.ts) create, park, wake and finish them.
//
// A fiber is one of two kinds:
// - an async function: it parks by awaiting a promise from pause()/ioWait(),
//   and a pass resumes it by settling that promise and draining microtasks;
// - a generator function: it parks by yielding an Op (what pause()/ioWait()
//   return inside it), a promise or another fiber, and a pass resumes it by
//   calling gen.next()/gen.throw() directly, with no microtask drain.
import { AsyncLocalStorage } from 'node:async_hooks';
import type { CancelledError, TimeoutError } from '../errors';
import { ERR, HUP, READ, WRITE, type WatchHandle } from '../native';
import { fiberFunction, spawnOptions } from './args';
import type { HeapEntry } from './heap';
import type { FiberTables } from './tables';

export type FiberState = 'new' | 'running' | 'parked' | 'ready' | 'done';

export const enum Outcome {
  Pending,
  Fulfilled,
  Rejected,
}

// ---------------------------------------------------------------------------
// Fiber identity. A generator fiber runs only inside gen.next()/gen.throw(),
// so a variable set around that call says which one runs. An async fiber's
// code runs in microtasks, so it is known through an AsyncLocalStorage that
// is enabled only while some async fiber is alive (it slows every promise in
// the process on Node 20).

const storage = new AsyncLocalStorage<FiberImpl>();
let liveAsync = 0;
let runningGen: FiberImpl | null = null;

export function asyncFiberBorn(): void {
  liveAsync++;
}

export function asyncFiberGone(): void {
  // With no async fiber alive nobody asks who is running: turn the promise hooks off.
  if (--liveAsync === 0) storage.disable();
}

export function forgetIdentityAfterFork(): void {
  liveAsync = 0;
  runningGen = null;
  storage.disable();
}

export function runAsAsync<T>(f: FiberImpl, fn: (f: FiberImpl) => T): T {
  return storage.run(f, fn, f);
}

// %GeneratorPrototype%'s next and throw, called directly. Each closure of a
// generator function gives its generator objects their own map, so
// `gen.next` is a megamorphic load whose feedback a full GC clears with the
// closures: V8 then deoptimizes and re-optimizes the resume path over and
// over (seen as an 8x slower resume after each gc() on Node 20).
const GeneratorPrototype = Object.getPrototypeOf(function* () {}).prototype as Generator;
const genNext = GeneratorPrototype.next;
const genThrow = GeneratorPrototype.throw;

/** A generator object made by a generator function (not a look-alike iterator). */
export function isNativeGenerator(v: unknown): v is Generator<unknown, unknown, unknown> {
  return v !== null && typeof v === 'object' && Object.prototype.isPrototypeOf.call(GeneratorPrototype, v);
}

/** Resumes a generator fiber up to its next yield, with the fiber marked as running. Throws what it throws. */
export function stepGenerator(f: FiberImpl, threw: boolean, value: unknown): IteratorResult<unknown, unknown> {
  const prev = runningGen;
  runningGen = f;
  try {
    return threw ? genThrow.call(f.gen!, value) : genNext.call(f.gen!, value);
  } finally {
    runningGen = prev;
  }
}

/** The fiber whose code is running, or null outside any live fiber of this process. */
export function currentFiber(): FiberImpl | null {
  if (runningGen !== null) return runningGen;
  if (liveAsync === 0) return null;
  const f = storage.getStore();
  return f !== undefined && f.outcome === Outcome.Pending && !f.orphaned ? f : null;
}

// ---------------------------------------------------------------------------

export class FiberImpl<T = unknown> {
  state: FiberState = 'new';
  outcome = Outcome.Pending;
  result: unknown = undefined;
  /** Set by cancel(); every park from then on raises it. */
  cancelled: CancelledError | null = null;
  /** Set in a forked child for the parent's fibers, which never run there. */
  orphaned = false;
  /** Someone read `done` or joined the fiber, so they own its rejection. */
  observed = false;
  readonly parks: Park[] = [];
  /** The generator, for a generator fiber once started. */
  gen: Generator<unknown, T, unknown> | null = null;
  /** Deadlines that cover the fiber: spawn's timeout and open withTimeout scopes. */
  deadlines: Deadline[] | null = null;
  /** Fibers spawned with fiber.spawn(), cancelled with this one. */
  children: Set<FiberImpl<any>> | null = null;
  /** Generator fibers parked in `yield thisFiber`. */
  joiners: Park[] | null = null;
  private deferred: { promise: Promise<T>; resolve: (v: T) => void; reject: (e: unknown) => void } | null = null;

  constructor(
    readonly core: FiberTables,
    readonly id: number,
    readonly fn: (fiber: FiberImpl<T>) => unknown,
    /** Set at spawn for a generator function, or at start for a function that returned a generator. */
    public isGen: boolean,
    readonly parent: FiberImpl<any> | null,
  ) {}

  get done(): Promise<T> {
    this.observed = true;
    return this.promise();
  }

  /** The `done` promise, created on demand so that an unread failure is not an unhandled rejection. */
  promise(): Promise<T> {
    if (this.deferred === null) {
      let resolve!: (v: T) => void;
      let reject!: (e: unknown) => void;
      const promise = new Promise<T>((a, b) => {
        resolve = a;
        reject = b;
      });
      this.deferred = { promise, resolve, reject };
      this.settleDeferred();
    }
    return this.deferred.promise;
  }

  settleDeferred(): void {
    if (this.deferred === null || this.outcome === Outcome.Pending) return;
    if (this.outcome === Outcome.Fulfilled) this.deferred.resolve(this.result as T);
    else this.deferred.reject(this.result);
  }

  /** The error every park of this fiber raises now: its cancellation, or an expired deadline's TimeoutError. */
  raising(): Error | null {
    if (this.cancelled !== null) return this.cancelled;
    const ds = this.deadlines;
    if (ds !== null) for (const d of ds) if (d.expired) return d.error!;
    return null;
  }

  cancel(reason?: unknown): void {
    this.core.cancel(this, reason);
  }

  /** Spawns a child fiber: it is cancelled when this fiber is. */
  spawn<U>(fn: (fiber: FiberImpl<U>) => unknown, options?: unknown): FiberImpl<U> {
    fiberFunction(fn, 'fiber.spawn(fn, options)');
    return this.core.spawn(fn, spawnOptions(options), this);
  }

  /** `const r = yield* fiber` joins it with r typed. */
  *[Symbol.iterator](): Generator<unknown, T, unknown> {
    return (yield this) as T;
  }
}

/** What a park waits on. */
export const enum Kind {
  /** pause(): a deadline, or nothing for pause(0). */
  Timer,
  /** ioWait(): an fd's readiness, with an optional deadline. */
  Io,
  /** A promise a generator fiber yielded. */
  Promise,
  /** Another fiber a generator fiber yielded. */
  Join,
}

export class Park implements HeapEntry {
  deadline = Infinity;
  seq = 0;
  heapIndex = -1;
  /** Readiness bits to resolve with; an ioWait that timed out resolves with 0. */
  wakeBits = 0;
  /** A promise's value or a joined fiber's result. */
  value: unknown = undefined;
  wakeError: unknown = undefined;
  /** In the run queue already (a cancellation, or an fd that is always ready). */
  queued = false;
  /** Taken off its fiber: a promise that settles later is ignored. */
  gone = false;
  /** The fiber a Join park waits for. */
  target: FiberImpl<any> | null = null;
  constructor(
    readonly kind: Kind,
    readonly fiber: FiberImpl | null,
    readonly fd: number,
    readonly mode: number,
    /** null for a generator fiber's park: waking it steps the generator instead. */
    readonly resolve: ((v: number | undefined) => void) | null,
    readonly reject: ((e: unknown) => void) | null,
  ) {}
}

/** A deadline over a fiber: spawn's timeout, or a withTimeout() scope. */
export class Deadline implements HeapEntry {
  seq = 0;
  heapIndex = -1;
  expired = false;
  /** Made when time is up (an error's stack trace costs more than the deadline). */
  error: TimeoutError | null = null;
  constructor(
    readonly fiber: FiberImpl<any>,
    readonly deadline: number,
    readonly seconds: number,
    /** true for a withTimeout() scope, false for spawn's options.timeout. */
    readonly scope: boolean,
  ) {}
}

/** The parks waiting on one fd, and the one libuv watcher that serves them all. */
export class FdEntry {
  readonly parks = new Set<Park>();
  readers = 0;
  writers = 0;
  watch: WatchHandle | null = null;
  watchMode = 0;
  /** Readiness seen by the watcher or by poll(2), not yet handed out. */
  pendingBits = 0;
  constructor(readonly fd: number) {}

  want(): number {
    return (this.readers > 0 ? READ : 0) | (this.writers > 0 ? WRITE : 0);
  }
}

/** The bits an ioWait resolves with. On hang-up or error the next read or write will not block either. */
export function readyBits(mode: number, revents: number): number {
  let bits = revents & (mode | HUP | ERR);
  if (revents & (HUP | ERR)) bits |= mode;
  return bits;
}
