// The Scheduler's engine: fibers, the parks they wait in, and the passes that
// wake them. docs/scheduler.md describes the model; index.ts is the facade
// that validates input and delegates here.
//
// A fiber is an async function. It parks by awaiting a promise from pause()
// or ioWait(); a pass settles the promises of the parks that are ready and
// then drains the microtask queue, so each woken fiber runs up to its next
// park (or its end) before the pass returns. Two kinds of driver run passes:
//
// - synchronous: tick/runUntilEmpty/runFor wait in poll(2) over the parked
//   fds, with the earliest timer deadline as the poll timeout;
// - the event loop: one libuv poll watcher per parked fd (native.watch), one
//   Node timer for the earliest deadline, and a setImmediate for new or
//   cancelled fibers. Each of these runs a pass from its own macrotask.
//
// Both keep the same tables, so a fiber can be driven by either, or by both
// in turn. Which fiber is running is known through an AsyncLocalStorage that
// is enabled only while some fiber is alive (it slows every promise in the
// process on Node 20).
import { AsyncLocalStorage } from 'node:async_hooks';
import fs from 'node:fs';
import { performance } from 'node:perf_hooks';
import { CancelledError, FiberFailedError, SchedulerError } from '../errors';
import { libraryAtFork, libraryTimeout } from '../fork';
import { ERR, HUP, READ, WRITE, type WatchHandle, native } from '../native';
import { drainMicrotasks, hasSyncDrain } from './drain';
import { type HeapEntry, TimerHeap } from './heap';

export type FiberState = 'new' | 'running' | 'parked' | 'ready' | 'done';

const enum Outcome {
  Pending,
  Fulfilled,
  Rejected,
}

// ---------------------------------------------------------------------------
// Fiber identity.

const storage = new AsyncLocalStorage<FiberImpl>();
let liveFibers = 0;

function fiberBorn(): void {
  liveFibers++;
}

function fiberGone(): void {
  // With no fiber alive nobody asks who is running: turn the promise hooks off.
  if (--liveFibers === 0) storage.disable();
}

/** The fiber whose code is running, or null outside any live fiber of this process. */
export function currentFiber(): FiberImpl | null {
  if (liveFibers === 0) return null;
  const f = storage.getStore();
  return f !== undefined && f.outcome === Outcome.Pending && !f.orphaned ? f : null;
}

// ---------------------------------------------------------------------------
// Fibers and parks.

export class FiberImpl<T = unknown> {
  state: FiberState = 'new';
  outcome = Outcome.Pending;
  result: unknown = undefined;
  /** Set by cancel(); every park from then on rejects with it. */
  cancelled: CancelledError | null = null;
  /** Set in a forked child for the parent's fibers, which never run there. */
  orphaned = false;
  /** Someone read `done`, so they own its rejection. */
  observed = false;
  readonly parks: Park[] = [];
  private deferred: { promise: Promise<T>; resolve: (v: T) => void; reject: (e: unknown) => void } | null = null;

  constructor(
    readonly core: Core,
    readonly id: number,
    readonly fn: (fiber: FiberImpl<T>) => T | PromiseLike<T>,
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

  cancel(reason?: unknown): void {
    this.core.cancel(this, reason);
  }
}

class Park implements HeapEntry {
  deadline = Infinity;
  seq = 0;
  heapIndex = -1;
  /** Readiness bits to resolve with; an ioWait that timed out resolves with 0. */
  wakeBits = 0;
  wakeError: unknown = undefined;
  /** In the run queue already (a cancellation, or an fd that is always ready). */
  queued = false;
  constructor(
    readonly fiber: FiberImpl | null,
    readonly fd: number,
    readonly mode: number,
    readonly resolve: (v: number | undefined) => void,
    readonly reject: (e: unknown) => void,
  ) {}
}

/** The parks waiting on one fd, and the one libuv watcher that serves them all. */
class FdEntry {
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
function readyBits(mode: number, revents: number): number {
  let bits = revents & (mode | HUP | ERR);
  if (revents & (HUP | ERR)) bits |= mode;
  return bits;
}

// ---------------------------------------------------------------------------
// Per-process bookkeeping. A forked child starts with empty schedulers: the
// parent's fibers are continuations of the parent's code and never run there.

const busyCores = new Set<Core>();
/** This process's pid; process.pid is refreshed in a child before at-fork child hooks run. */
let ownPid = process.pid;

libraryAtFork({
  child() {
    ownPid = process.pid;
    for (const core of busyCores) core.forgetAfterFork();
    busyCores.clear();
    liveFibers = 0;
    storage.disable();
  },
});

const NESTED_HINT =
  'it was called inside a microtask (after an `await`, or at the top level of an ES module), where V8 ' +
  'cannot run the fibers\u2019 continuations before it returns. Call it from synchronous code (the top level ' +
  'of a CommonJS module, or a callback such as setImmediate(() => scheduler.runUntilEmpty())), or let the ' +
  'event loop drive the fibers and await fiber.done';

// ---------------------------------------------------------------------------

export class Core {
  pid = process.pid;
  /**
   * @param loop false: only the synchronous drivers run passes; nothing is
   *   armed on the event loop (no watchers, timers or immediates).
   */
  constructor(readonly loop: boolean) {}

  readonly fibers = new Set<FiberImpl<any>>();
  private runQueue: (FiberImpl<any> | Park)[] = [];
  private readonly timers = new TimerHeap<Park>();
  private readonly fds = new Map<number, FdEntry>();
  private readonly dirty = new Set<FdEntry>();
  private watchCount = 0;
  private nextSeq = 0;
  private nextId = 1;
  /** > 0 while a driver or a pass runs: watcher and timer changes wait for reconcile(). */
  private depth = 0;
  private loopTimerCancel: (() => void) | null = null;
  private loopTimerAt = Infinity;
  private immediateQueued = false;
  private unobserved: FiberImpl<any>[] = [];
  private reportQueued = false;
  // poll(2) arrays, reused across passes.
  private pollFds = new Int32Array(16);
  private pollEvents = new Int32Array(16);
  private pollRevents = new Int32Array(16);
  private pollEntries: FdEntry[] = [];
  private readonly probeFd = new Int32Array(1);
  private readonly probeEvents = new Int32Array(1);
  private readonly probeRevents = new Int32Array(1);

  get size(): number {
    this.checkPid();
    return this.fibers.size;
  }

  get pendingTimers(): number {
    this.checkPid();
    return this.timers.size;
  }

  get watchers(): number {
    this.checkPid();
    return this.watchCount;
  }

  /** Drops a scheduler that was copied into a forked child by fork(). */
  checkPid(): void {
    if (this.pid !== ownPid) this.forgetAfterFork();
  }

  forgetAfterFork(): void {
    for (const e of this.fds.values()) {
      if (e.watch !== null) {
        try {
          native.unwatch(e.watch);
        } catch {
          // The handle went with the parent's loop state; nothing to free.
        }
      }
    }
    for (const f of this.fibers) f.orphaned = true;
    this.fibers.clear();
    this.fds.clear();
    this.dirty.clear();
    this.timers.clear();
    this.runQueue = [];
    this.unobserved = [];
    this.watchCount = 0;
    this.loopTimerCancel?.();
    this.loopTimerCancel = null;
    this.loopTimerAt = Infinity;
    this.immediateQueued = false;
    this.reportQueued = false;
    this.depth = 0;
    this.pid = process.pid;
  }

  // -- fibers ---------------------------------------------------------------

  spawn<T>(fn: (fiber: FiberImpl<T>) => T | PromiseLike<T>): FiberImpl<T> {
    this.checkPid();
    const f = new FiberImpl<T>(this, this.nextId++, fn);
    this.fibers.add(f);
    fiberBorn();
    busyCores.add(this);
    this.enqueue(f);
    return f;
  }

  cancel(f: FiberImpl<any>, reason: unknown): void {
    if (f.outcome !== Outcome.Pending || f.cancelled !== null || f.orphaned) return;
    const why = reason === undefined ? {} : { cause: reason };
    f.cancelled = new CancelledError(`fiber ${f.id} was cancelled`, why);
    // A fiber that never started is settled by the next pass without running.
    if (f.state === 'new') {
      this.scheduleLoopPass();
      return;
    }
    for (const p of f.parks.slice()) {
      this.detach(p);
      p.wakeError = f.cancelled;
      if (!p.queued) this.enqueue(p);
    }
    this.reconcile();
  }

  private start(f: FiberImpl<any>): void {
    if (f.cancelled !== null) return this.finish(f, Outcome.Rejected, f.cancelled);
    f.state = 'running';
    let r: unknown;
    try {
      r = storage.run(f, f.fn, f);
    } catch (err) {
      return this.finish(f, Outcome.Rejected, err);
    }
    if (r !== null && typeof r === 'object' && typeof (r as PromiseLike<unknown>).then === 'function') {
      Promise.resolve(r).then(
        (v) => this.finish(f, Outcome.Fulfilled, v),
        (e) => this.finish(f, Outcome.Rejected, e),
      );
    } else {
      this.finish(f, Outcome.Fulfilled, r);
    }
  }

  private finish(f: FiberImpl<any>, outcome: Outcome, result: unknown): void {
    if (f.outcome !== Outcome.Pending || f.orphaned) return;
    f.outcome = outcome;
    f.result = result;
    f.state = 'done';
    // Parks the fiber left behind (the loser of a Promise.race) go with it.
    for (const p of f.parks.slice()) this.detach(p);
    this.fibers.delete(f);
    fiberGone();
    f.settleDeferred();
    if (outcome === Outcome.Rejected && !f.observed && result !== f.cancelled) {
      this.unobserved.push(f);
      this.scheduleReport();
    }
    if (this.depth === 0) this.reconcile();
  }

  // -- unobserved failures --------------------------------------------------

  /** Failures nobody read `done` for, taken off the list. */
  private takeUnobserved(): unknown[] {
    const errors = this.unobserved.filter((f) => !f.observed).map((f) => f.result);
    this.unobserved = [];
    return errors;
  }

  /**
   * Failures that no runUntilEmpty() claims by the next macrotask become
   * unhandled rejections of their fiber's `done`, the way an unawaited async
   * function's error would: never silent.
   */
  private scheduleReport(): void {
    if (this.reportQueued) return;
    this.reportQueued = true;
    const pid = this.pid;
    setImmediate(() => {
      if (process.pid !== pid) return;
      this.reportQueued = false;
      for (const f of this.unobserved) if (!f.observed) void f.promise();
      this.unobserved = [];
    });
  }

  throwUnobserved(): void {
    const errors = this.takeUnobserved();
    if (errors.length === 0) return;
    const first = errors[0] instanceof Error ? errors[0].message : String(errors[0]);
    throw new FiberFailedError(
      `${errors.length} fiber${errors.length === 1 ? '' : 's'} failed and nobody read fiber.done: ${first}`,
      errors,
    );
  }

  // -- parking --------------------------------------------------------------

  /** The fiber a park belongs to: null outside any fiber (a plain awaitable). */
  owner(api: string): FiberImpl<any> | null {
    const f = currentFiber();
    if (f === null || f.core === this) return f;
    throw new SchedulerError(
      `${api}() was called on one Scheduler from a fiber of another; cancelling that fiber could not reach the park. ` +
        'Use the static Scheduler.pause/ioWait inside fibers: they park on the fiber\u2019s own scheduler.',
    );
  }

  pause(fiber: FiberImpl<any> | null, ms: number): Promise<void> {
    if (fiber?.cancelled) return Promise.reject(fiber.cancelled);
    // pause(0) is a yield: ready for the next pass, no timer needed.
    if (ms === 0) return this.readyNow(fiber, -1, 0) as Promise<unknown> as Promise<void>;
    return this.park(fiber, null, 0, performance.now() + ms) as Promise<unknown> as Promise<void>;
  }

  ioWait(fiber: FiberImpl<any> | null, fd: number, mode: number, timeoutMs: number): Promise<number> {
    if (fiber?.cancelled) return Promise.reject(fiber.cancelled);
    let e = this.fds.get(fd);
    if (e === undefined) {
      e = new FdEntry(fd);
      try {
        // Outside a pass the watcher starts now, and uv_poll_init checks the
        // fd. Inside one it starts when the pass ends, so a fiber that re-parks
        // on its fd every pass does not churn watchers; fstat checks the fd.
        if (this.loop && this.depth === 0) this.startWatch(e, mode);
        else if (fs.fstatSync(fd).isFile()) return this.readyNow(fiber, fd, mode);
      } catch (err) {
        // epoll refuses regular files; poll(2) calls them always ready, and so do we.
        if ((err as NodeJS.ErrnoException)?.code === 'EPERM') return this.readyNow(fiber, fd, mode);
        return Promise.reject(watchError(fd, err));
      }
      this.fds.set(fd, e);
    }
    const deadline = timeoutMs === Infinity ? Infinity : performance.now() + timeoutMs;
    return this.park(fiber, e, mode, deadline) as Promise<number>;
  }

  private park(fiber: FiberImpl<any> | null, e: FdEntry | null, mode: number, deadline: number): Promise<number | undefined> {
    let resolve!: (v: number | undefined) => void;
    let reject!: (e: unknown) => void;
    const promise = new Promise<number | undefined>((a, b) => {
      resolve = a;
      reject = b;
    });
    const p = new Park(fiber, e === null ? -1 : e.fd, mode, resolve, reject);
    p.seq = this.nextSeq++;
    if (deadline !== Infinity) {
      p.deadline = deadline;
      this.timers.push(p);
    }
    if (e !== null) {
      e.parks.add(p);
      if (mode & READ) e.readers++;
      if (mode & WRITE) e.writers++;
      if ((e.watchMode & mode) !== mode || e.watch === null) this.dirty.add(e);
    }
    if (fiber !== null) {
      fiber.parks.push(p);
      fiber.state = 'parked';
    }
    busyCores.add(this);
    if (this.depth === 0) this.reconcile();
    return promise;
  }

  /** A park that is ready at once (a yield, or a regular file): it wakes in the next pass. */
  private readyNow(fiber: FiberImpl<any> | null, fd: number, mode: number): Promise<number> {
    let resolve!: (v: number | undefined) => void;
    let reject!: (e: unknown) => void;
    const promise = new Promise<number | undefined>((a, b) => {
      resolve = a;
      reject = b;
    });
    const p = new Park(fiber, fd, mode, resolve, reject);
    p.wakeBits = mode;
    if (fiber !== null) {
      fiber.parks.push(p);
      fiber.state = 'ready';
    }
    busyCores.add(this);
    this.enqueue(p);
    return promise as Promise<number>;
  }

  /** Takes a park out of the timer heap, its fd and its fiber. */
  private detach(p: Park): void {
    if (p.heapIndex >= 0) this.timers.remove(p);
    if (p.fd >= 0) {
      const e = this.fds.get(p.fd);
      if (e !== undefined && e.parks.delete(p)) {
        if (p.mode & READ) e.readers--;
        if (p.mode & WRITE) e.writers--;
        // Stopped now, while the fd still names the file it watches: the
        // woken fiber may close the fd, and the number's next owner must find
        // libuv's slot for it free. The handle is kept until the pass ends, to
        // be restarted if a fiber parks on the fd again.
        if (e.parks.size === 0) this.pauseWatch(e);
        this.dirty.add(e);
      }
    }
    const f = p.fiber;
    if (f !== null) {
      const parks = f.parks;
      const i = parks.indexOf(p);
      if (i >= 0) {
        // Swap-remove: a fiber's parks have no order, and splice allocates.
        const last = parks.pop()!;
        if (i < parks.length) parks[i] = last;
      }
      if (f.outcome === Outcome.Pending) f.state = f.parks.length > 0 ? 'parked' : 'ready';
    }
  }

  private wake(p: Park): void {
    const f = p.fiber;
    if (f !== null && f.outcome === Outcome.Pending && f.parks.length === 0) f.state = 'running';
    if (p.wakeError !== undefined) p.reject(p.wakeError);
    else p.resolve(p.fd >= 0 ? p.wakeBits : undefined);
  }

  private enqueue(item: FiberImpl<any> | Park): void {
    if (item instanceof Park) item.queued = true;
    this.runQueue.push(item);
    if (this.depth === 0) this.scheduleLoopPass();
  }

  // -- passes ---------------------------------------------------------------

  hasWork(): boolean {
    return this.runQueue.length > 0 || this.timers.size > 0 || this.fds.size > 0;
  }

  /**
   * One pass. Collects what is ready when it begins (queued starts and
   * cancellations, fds with readiness, expired timers), wakes exactly those,
   * then drains the microtask queue so they run to their next park. Fibers
   * made ready by this pass wait for the next one. With `waitMs` > 0 and
   * nothing ready, first waits in poll(2) for at most that long (or until the
   * earliest deadline). `fromLoop`: readiness comes from the libuv watchers
   * instead of poll(2).
   */
  private pass(waitMs: number, fromLoop: boolean): number {
    const queued = this.runQueue;
    this.runQueue = [];
    let now = performance.now();
    if (!fromLoop) {
      const top = this.timers.peek();
      let timeout = waitMs;
      if (queued.length > 0 || (top !== undefined && top.deadline <= now)) timeout = 0;
      else if (top !== undefined) timeout = Math.min(timeout, Math.ceil(top.deadline - now));
      this.pollReadiness(timeout);
      now = performance.now();
    }

    // fd readiness first: a park whose fd became ready and whose timeout
    // passed in the same pass reports the readiness.
    const woken: Park[] = [];
    for (const e of this.fds.values()) {
      const bits = e.pendingBits;
      if (bits === 0) continue;
      e.pendingBits = 0;
      let used = false;
      for (const p of e.parks) {
        const got = bits & (p.mode | HUP | ERR);
        if (got === 0) continue;
        used = true;
        p.wakeBits = readyBits(p.mode, bits);
        this.detach(p);
        woken.push(p);
      }
      // A watcher that fires for bits nobody wants any more needs its mode narrowed.
      if (!used) this.dirty.add(e);
    }
    for (let top = this.timers.peek(); top !== undefined && top.deadline <= now; top = this.timers.peek()) {
      top.wakeBits = 0;
      this.detach(top);
      woken.push(top);
    }

    let n = 0;
    for (const item of queued) {
      if (item instanceof FiberImpl) {
        if (item.outcome === Outcome.Pending && !item.orphaned) this.start(item);
      } else {
        item.queued = false;
        this.detach(item);
        this.wake(item);
      }
      n++;
    }
    for (const p of woken) this.wake(p);
    n += woken.length;
    if (n > 0) drainMicrotasks();
    return n;
  }

  /** poll(2) over the parked fds; sets their pendingBits. With no fds it just sleeps. */
  private pollReadiness(timeoutMs: number): void {
    let n = 0;
    if (this.fds.size > this.pollFds.length) {
      const size = Math.max(this.fds.size, this.pollFds.length * 2);
      this.pollFds = new Int32Array(size);
      this.pollEvents = new Int32Array(size);
      this.pollRevents = new Int32Array(size);
    }
    const entries = this.pollEntries;
    for (const e of this.fds.values()) {
      if (e.parks.size === 0) continue;
      this.pollFds[n] = e.fd;
      this.pollEvents[n] = e.want();
      entries[n] = e;
      n++;
    }
    if (n === 0 && timeoutMs <= 0) return;
    const t = timeoutMs === Infinity ? -1 : Math.max(0, timeoutMs);
    const ready = native.poll(this.pollFds.subarray(0, n), this.pollEvents.subarray(0, n), this.pollRevents.subarray(0, n), t);
    if (ready > 0) {
      for (let i = 0; i < n; i++) if (this.pollRevents[i] !== 0) entries[i].pendingBits |= this.pollRevents[i];
    }
    entries.length = 0;
  }

  // -- synchronous drivers --------------------------------------------------

  private enterDriver(api: string): void {
    this.checkPid();
    if (this.depth > 0) {
      throw new SchedulerError(
        `${api}() was called while this scheduler is running a pass (from inside one of its fibers?); ` +
          'a fiber cannot drive its own scheduler. Park with pause()/ioWait() instead.',
      );
    }
    if (!hasSyncDrain()) {
      throw new SchedulerError(
        `${api}() needs process._tickCallback to run fibers synchronously, and this Node (${process.version}) ` +
          'has none. Let the event loop drive the fibers instead (await fiber.done).',
      );
    }
    if (!drainMicrotasks()) throw new SchedulerError(`${api}() cannot run here: ${NESTED_HINT}.`);
  }

  tick(timeoutMs: number): number {
    this.enterDriver('tick');
    if (!this.hasWork()) return 0;
    this.depth++;
    try {
      return this.pass(timeoutMs, false);
    } finally {
      this.depth--;
      this.reconcile();
    }
  }

  runUntilEmpty(): number {
    this.enterDriver('runUntilEmpty');
    let total = 0;
    this.depth++;
    try {
      while (this.fibers.size > 0) {
        if (!this.hasWork()) {
          throw new SchedulerError(
            `runUntilEmpty(): ${this.fibers.size} fiber${this.fibers.size === 1 ? '' : 's'} wait on something the ` +
              'scheduler does not drive (a promise only the event loop can settle, such as fs.promises or fetch), ' +
              'so driving synchronously would hang. Let the event loop run instead: await fiber.done.',
          );
        }
        total += this.pass(Infinity, false);
      }
    } finally {
      this.depth--;
      this.reconcile();
    }
    this.throwUnobserved();
    return total;
  }

  runFor(ms: number): number {
    this.enterDriver('runFor');
    const deadline = performance.now() + ms;
    let total = 0;
    this.depth++;
    try {
      do {
        if (!this.hasWork()) break;
        total += this.pass(Math.max(0, Math.ceil(deadline - performance.now())), false);
      } while (performance.now() < deadline);
    } finally {
      this.depth--;
      this.reconcile();
    }
    return total;
  }

  // -- event-loop mode ------------------------------------------------------

  private scheduleLoopPass(): void {
    if (this.immediateQueued || !this.loop) return;
    this.immediateQueued = true;
    const pid = this.pid;
    setImmediate(() => {
      if (process.pid !== pid) return;
      this.immediateQueued = false;
      this.loopPass();
    });
  }

  private loopPass(): void {
    if (this.depth > 0 || !this.hasWork()) return;
    this.depth++;
    try {
      this.pass(0, true);
    } finally {
      this.depth--;
      this.reconcile();
    }
  }

  private startWatch(e: FdEntry, mode: number): void {
    const pid = this.pid;
    e.watch = native.watch(e.fd, mode, (bits) => {
      if (process.pid !== pid || this.fds.get(e.fd) !== e) return;
      e.pendingBits |= bits;
      this.loopPass();
    });
    e.watchMode = mode;
    this.watchCount++;
  }

  /** uv_poll_stop: frees libuv's slot for the fd and takes it out of epoll, keeping the handle. */
  private pauseWatch(e: FdEntry): void {
    if (e.watch === null || e.watchMode === 0) return;
    native.watchUpdate(e.watch, 0);
    e.watchMode = 0;
    this.watchCount--;
  }

  /** True unless the fd is closed. Restarting a watcher on a closed fd would abort inside libuv. */
  private fdIsOpen(fd: number): boolean {
    this.probeFd[0] = fd;
    this.probeEvents[0] = READ;
    native.poll(this.probeFd, this.probeEvents, this.probeRevents, 0);
    if ((this.probeRevents[0] & ERR) === 0) return true;
    // ERR is POLLERR or POLLNVAL; only fstat tells them apart.
    try {
      fs.fstatSync(fd);
      return true;
    } catch {
      return false;
    }
  }

  private stopWatch(e: FdEntry): void {
    if (e.watch === null) return;
    native.unwatch(e.watch);
    e.watch = null;
    if (e.watchMode !== 0) this.watchCount--;
    e.watchMode = 0;
  }

  /**
   * Brings the event-loop side in line with the tables, once no driver or
   * pass is running: one watcher per parked fd with the union of the parks'
   * modes, one Node timer for the earliest deadline, an immediate for queued
   * work. Changes during a driver are batched here, so a fiber that re-parks
   * on the same fd does not churn its watcher.
   */
  reconcile(): void {
    if (this.depth > 0) return;
    for (const e of this.dirty) {
      if (this.fds.get(e.fd) !== e) continue;
      if (e.parks.size === 0) {
        this.stopWatch(e);
        this.fds.delete(e.fd);
        continue;
      }
      if (!this.loop) continue;
      const want = e.want();
      if (want === e.watchMode) continue;
      if (e.watch === null) {
        // uv_poll_init checks the fd, and refuses one another handle on the loop owns.
        try {
          this.startWatch(e, want);
        } catch (err) {
          this.failEntry(e, err);
        }
      } else if (this.fdIsOpen(e.fd)) {
        native.watchUpdate(e.watch, want);
        if (e.watchMode === 0) this.watchCount++;
        e.watchMode = want;
      } else {
        this.failEntry(e, Object.assign(new Error('EBADF'), { code: 'EBADF' }));
      }
    }
    this.dirty.clear();
    this.armTimer();
    if (this.runQueue.length > 0) this.scheduleLoopPass();
    if (!this.hasWork() && this.fibers.size === 0 && this.watchCount === 0) busyCores.delete(this);
  }

  /**
   * The fd cannot be watched. Its parks wake as poll(2) would report it: a
   * regular file (EPERM from epoll) is ready, a closed fd (EBADF) has ERR;
   * anything else (EEXIST: another handle owns the fd) rejects them.
   */
  private failEntry(e: FdEntry, err: unknown): void {
    const code = (err as NodeJS.ErrnoException)?.code;
    const error = code === 'EPERM' || code === 'EBADF' ? undefined : watchError(e.fd, err);
    for (const p of [...e.parks]) {
      this.detach(p);
      if (code === 'EPERM') p.wakeBits = p.mode;
      else if (code === 'EBADF') p.wakeBits = p.mode | ERR;
      else p.wakeError = error;
      this.enqueue(p);
    }
    this.stopWatch(e);
    this.fds.delete(e.fd);
  }

  private armTimer(): void {
    const top = this.timers.peek();
    if (top === undefined || !this.loop) {
      this.loopTimerCancel?.();
      this.loopTimerCancel = null;
      this.loopTimerAt = Infinity;
      return;
    }
    // An earlier timer is already armed: when it fires, the pass re-arms.
    if (this.loopTimerCancel !== null && this.loopTimerAt <= top.deadline) return;
    this.loopTimerCancel?.();
    this.loopTimerAt = top.deadline;
    const delay = Math.max(0, Math.ceil(top.deadline - performance.now()));
    this.loopTimerCancel = libraryTimeout(() => {
      this.loopTimerCancel = null;
      this.loopTimerAt = Infinity;
      if (process.pid !== this.pid) return;
      this.loopPass();
      // Node timers can fire a little early by the monotonic clock; re-arm.
      this.armTimer();
    }, delay);
  }
}

function watchError(fd: number, err: unknown): Error {
  const code = (err as NodeJS.ErrnoException)?.code;
  if (code === 'EBADF') {
    return Object.assign(new RangeError(`ioWait(fd): fd ${fd} is not an open file descriptor (EBADF)`), { code, cause: err });
  }
  if (code === 'EEXIST') {
    return Object.assign(
      new Error(
        `ioWait(fd): fd ${fd} is already watched by another handle on Node's event loop (EEXIST), such as a ` +
          'net.Socket or fs stream that owns it; the Scheduler can wait only on fds nobody else on the loop watches',
      ),
      { code, cause: err },
    );
  }
  return err as Error;
}
