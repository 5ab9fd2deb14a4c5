// The scheduler's tables (live fibers, the run queue, the timer heap, the fds
// with parks) and parking: what pause(), ioWait() and a generator fiber's
// yield put in them, and how a park is taken out and woken. tables.ts adds the
// fiber lifecycle on top (spawn, step, cancel, deadlines, finish); loop.ts
// the event-loop side; drive.ts the passes and the synchronous drivers.
import fs from 'node:fs';
import { performance } from 'node:perf_hooks';
import { SchedulerError } from '../errors';
import { libraryAtFork } from '../fork';
import { READ, WRITE } from '../native';
import { type Deadline, FdEntry, FiberImpl, Kind, Outcome, Park, currentFiber, forgetIdentityAfterFork } from './fiber';
import { TimerHeap } from './heap';
import { Op } from './op';
import { flush, onSettle } from './promises';

// ---------------------------------------------------------------------------
// Per-process bookkeeping. A forked child starts with empty schedulers: the
// parent's fibers are continuations of the parent's code and never run there.

export const busyCores = new Set<ParkTables>();
/** This process's pid; process.pid is refreshed in a child before at-fork child hooks run. */
let ownPid = process.pid;

libraryAtFork({
  child() {
    ownPid = process.pid;
    for (const core of busyCores) core.forgetAfterFork();
    busyCores.clear();
    forgetIdentityAfterFork();
  },
});

export function isThenable(v: unknown): v is PromiseLike<unknown> {
  return v !== null && (typeof v === 'object' || typeof v === 'function') && typeof (v as PromiseLike<unknown>).then === 'function';
}

export abstract class ParkTables {
  pid = process.pid;
  readonly fibers = new Set<FiberImpl<any>>();
  protected runQueue: (FiberImpl<any> | Park)[] = [];
  protected readonly timers = new TimerHeap<Park | Deadline>();
  protected readonly fds = new Map<number, FdEntry>();
  protected readonly dirty = new Set<FdEntry>();
  protected nextSeq = 0;
  /** > 0 while a driver or a pass runs: watcher and timer changes wait for reconcile(). */
  protected depth = 0;
  /**
   * The time a pass took as its own (drive.ts sets it): the base of every
   * deadline made in the pass. NaN before the first pass, not 0: a field
   * that starts as a small integer and later holds a fraction moves every
   * later scheduler to a new map, away from the shape anchor's (index.ts).
   */
  protected passNow = NaN;
  /** Generator fibers parked on a promise: a pass flushes the promise bridge first. */
  protected promiseParks = 0;
  /** A promise park or an async fiber woke in this pass: drain microtasks at its end. */
  protected needDrain = false;
  /** What pause(0) returns in every generator fiber: a yield needs no park of its own. */
  readonly yieldOp: Op<void> = new Op<void>(this, -1, 0, 0);

  /**
   * @param loop false: only the synchronous drivers run passes; nothing is
   *   armed on the event loop (no watchers, timers or immediates).
   */
  constructor(readonly loop: boolean) {}

  /** Resumes a generator fiber (tables.ts). */
  protected abstract step(f: FiberImpl<any>, threw: boolean, value: unknown): void;
  /** Brings the event-loop side in line with the tables once no driver or pass runs (loop.ts). */
  abstract reconcile(): void;
  protected abstract scheduleLoopPass(): void;
  protected abstract startWatch(e: FdEntry, mode: number): void;
  protected abstract pauseWatch(e: FdEntry): void;

  /**
   * Runs `fn(arg)` as a driver or a pass: watcher and timer changes wait
   * until it ends, then reconcile() applies them at once. `fn` is a method,
   * not a closure made per call: a new closure per driver call would give V8
   * a new function to optimize each time.
   */
  protected bracket<A, R>(fn: (this: this, arg: A) => R, arg: A): R {
    this.depth++;
    try {
      return fn.call(this, arg);
    } finally {
      this.depth--;
      this.reconcile();
    }
  }

  /**
   * The base for a new deadline. Inside a pass it is the pass's own time, as
   * libuv's loop time is for Node's timers: parks made in one pass then fire
   * in the order of their delays, however long the pass itself runs (on a
   * loaded machine the fibers of one pass can start tens of ms apart).
   */
  protected clock(): number {
    return this.depth > 0 ? this.passNow : performance.now();
  }

  /** Drops a scheduler that was copied into a forked child by fork(). */
  checkPid(): void {
    if (this.pid !== ownPid) this.forgetAfterFork();
  }

  forgetAfterFork(): void {
    for (const f of this.fibers) f.orphaned = true;
    this.fibers.clear();
    this.fds.clear();
    this.dirty.clear();
    this.timers.clear();
    this.runQueue = [];
    this.promiseParks = 0;
    this.depth = 0;
    this.pid = process.pid;
  }

  // -- parking --------------------------------------------------------------

  /** The fiber a park belongs to: null outside any fiber (a plain awaitable). */
  owner(api: string): FiberImpl<any> | null {
    const f = currentFiber();
    if (f === null || (f.core as ParkTables) === this) return f;
    throw new SchedulerError(
      `${api}() was called on one Scheduler from a fiber of another; cancelling that fiber could not reach the park. ` +
        'Use the static Scheduler.pause/ioWait inside fibers: they park on the fiber\u2019s own scheduler.',
    );
  }

  /** pause() for an async fiber or outside any fiber: a promise. */
  pause(fiber: FiberImpl<any> | null, ms: number): Promise<void> {
    const raising = fiber?.raising();
    if (raising) return Promise.reject(raising);
    return new Promise((resolve, reject) => this.placePause(new Park(Kind.Timer, fiber, -1, 0, resolve as () => void, reject), ms));
  }

  /** ioWait() for an async fiber or outside any fiber: a promise. */
  ioWait(fiber: FiberImpl<any> | null, fd: number, mode: number, timeoutMs: number): Promise<number> {
    const raising = fiber?.raising();
    if (raising) return Promise.reject(raising);
    return new Promise((resolve, reject) =>
      this.placeIo(new Park(Kind.Io, fiber, fd, mode, resolve as (v: number | undefined) => void, reject), timeoutMs),
    );
  }

  /** What a generator fiber yielded: an Op from pause()/ioWait(), another fiber, or a promise. */
  protected parkGenerator(f: FiberImpl<any>, y: unknown): void {
    const raising = f.raising();
    // Level-triggered, as for async fibers: every park of a cancelled fiber raises.
    if (raising !== null) return this.queueError(f, raising);
    // pause(0), the cheapest park: the fiber itself waits in the run queue.
    if (y === this.yieldOp) {
      f.state = 'ready';
      return this.enqueue(f);
    }
    if (y instanceof Op) {
      if (y.core !== this) return this.queueError(f, new SchedulerError('a fiber yielded a park of another Scheduler'));
      if (y.fd < 0) return this.placePause(new Park(Kind.Timer, f, -1, 0, null, null), y.ms);
      return this.placeIo(new Park(Kind.Io, f, y.fd, y.mode, null, null), y.ms);
    }
    if (y instanceof FiberImpl) return this.join(f, y);
    if (isThenable(y)) return this.awaitPromise(f, y);
    this.queueError(
      f,
      new TypeError(
        `fiber ${f.id} yielded ${y === null ? 'null' : typeof y}; a generator fiber may yield Scheduler.pause() or ` +
          'Scheduler.ioWait(), a promise, or another fiber',
      ),
    );
  }

  private queueError(f: FiberImpl<any>, err: unknown): void {
    const p = new Park(Kind.Timer, f, -1, 0, null, null);
    p.wakeError = err;
    this.queueReady(p, 0);
  }

  private placePause(p: Park, ms: number): void {
    // pause(0) is a yield: ready for the next pass, no timer needed.
    if (ms === 0) this.queueReady(p, 0);
    else this.place(p, null, this.clock() + ms);
  }

  private placeIo(p: Park, timeoutMs: number): void {
    const fd = p.fd;
    let e = this.fds.get(fd);
    if (e === undefined) {
      e = new FdEntry(fd);
      try {
        // Outside a pass the watcher starts now, and uv_poll_init checks the
        // fd. Inside one it starts when the pass ends, so a fiber that re-parks
        // on its fd every pass does not churn watchers; fstat checks the fd.
        if (this.loop && this.depth === 0) this.startWatch(e, p.mode);
        else if (fs.fstatSync(fd).isFile()) return this.queueReady(p, p.mode);
      } catch (err) {
        // epoll refuses regular files; poll(2) calls them always ready, and so do we.
        if ((err as NodeJS.ErrnoException)?.code === 'EPERM') return this.queueReady(p, p.mode);
        return this.failNow(p, watchError(fd, err));
      }
      this.fds.set(fd, e);
    }
    this.place(p, e, timeoutMs === Infinity ? Infinity : this.clock() + timeoutMs);
  }

  /** A park that cannot be placed: a promise rejects at once, a generator fiber gets the error thrown in the next pass. */
  private failNow(p: Park, err: unknown): void {
    if (p.reject !== null) return p.reject(err);
    p.wakeError = err;
    this.queueReady(p, 0);
  }

  private place(p: Park, e: FdEntry | null, deadline: number): void {
    p.seq = this.nextSeq++;
    if (deadline !== Infinity) {
      p.deadline = deadline;
      this.timers.push(p);
    }
    if (e !== null) {
      e.parks.add(p);
      if (p.mode & READ) e.readers++;
      if (p.mode & WRITE) e.writers++;
      if ((e.watchMode & p.mode) !== p.mode || e.watch === null) this.dirty.add(e);
    }
    this.attach(p, 'parked');
    if (this.depth === 0) this.reconcile();
  }

  /** A park that is ready at once (a yield, a regular file, an error): it wakes in the next pass. */
  private queueReady(p: Park, bits: number): void {
    p.wakeBits = bits;
    this.attach(p, 'ready');
    this.enqueue(p);
  }

  private attach(p: Park, state: 'parked' | 'ready'): void {
    const f = p.fiber;
    if (f !== null) {
      f.parks.push(p);
      f.state = state;
    }
    busyCores.add(this);
  }

  /** `yield fiber`: wakes with its result, or throws its error. */
  private join(f: FiberImpl<any>, target: FiberImpl<any>): void {
    if (target === f) return this.queueError(f, new SchedulerError(`fiber ${f.id} yielded itself: a fiber cannot join itself`));
    target.observed = true;
    const p = new Park(Kind.Join, f, -1, 0, null, null);
    if (target.outcome !== Outcome.Pending) {
      if (target.outcome === Outcome.Rejected) p.wakeError = target.result;
      else p.value = target.result;
      return this.queueReady(p, 0);
    }
    p.target = target;
    (target.joiners ??= []).push(p);
    this.attach(p, 'parked');
  }

  wakeJoiner(p: Park, rejected: boolean, result: unknown): void {
    p.target = null;
    if (p.gone) return;
    this.detach(p);
    if (rejected) p.wakeError = result;
    else p.value = result;
    this.enqueue(p);
  }

  /** `yield promise`: learnt through the promise bridge, so that it works inside a microtask too. */
  private awaitPromise(f: FiberImpl<any>, promise: PromiseLike<unknown>): void {
    const p = new Park(Kind.Promise, f, -1, 0, null, null);
    this.promiseParks++;
    this.attach(p, 'parked');
    try {
      onSettle(promise, (rejected, v) => {
        if (p.gone) return;
        this.detach(p);
        if (rejected) p.wakeError = v;
        else p.value = v;
        this.enqueue(p);
      });
    } catch (err) {
      // A thenable whose then() throws.
      this.detach(p);
      p.wakeError = err;
      return this.enqueue(p);
    }
    // The event loop never runs the bridge's queue; a main-context reaction does.
    if (this.loop && promise instanceof Promise) promise.then(flush, flush);
  }

  /** Takes a park out of the timer heap, its fd, the fiber it joins, and its fiber. */
  protected detach(p: Park): void {
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
    if (!p.gone) {
      p.gone = true;
      if (p.kind === Kind.Promise) this.promiseParks--;
      const joiners = p.target?.joiners;
      if (joiners) joiners.splice(joiners.indexOf(p), 1);
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

  protected wake(p: Park): void {
    const f = p.fiber;
    if (p.resolve === null) {
      // A generator fiber's park: step the generator.
      if (f === null || f.outcome !== Outcome.Pending || f.orphaned) return;
      if (p.wakeError !== undefined) return this.step(f, true, p.wakeError);
      return this.step(f, false, p.kind === Kind.Io ? p.wakeBits : p.value);
    }
    this.needDrain = true;
    if (f !== null && f.outcome === Outcome.Pending && f.parks.length === 0) f.state = 'running';
    if (p.wakeError !== undefined) p.reject!(p.wakeError);
    else p.resolve(p.fd >= 0 ? p.wakeBits : undefined);
  }

  protected enqueue(item: FiberImpl<any> | Park): void {
    if (item instanceof Park) item.queued = true;
    this.runQueue.push(item);
    if (this.depth === 0) this.scheduleLoopPass();
  }

  /** Something a pass can wake: queued work, a deadline, or a park on an fd. */
  hasWork(): boolean {
    if (this.runQueue.length > 0 || this.timers.size > 0) return true;
    // An fd whose last park left stays in the table until reconcile(), which
    // waits for the driver to end; it gives a pass nothing to wake.
    for (const e of this.fds.values()) if (e.parks.size > 0) return true;
    return false;
  }
}

export function watchError(fd: number, err: unknown): Error {
  const code = (err as NodeJS.ErrnoException)?.code;
  if (code === 'EBADF') {
    return Object.assign(new RangeError(`ioWait(fd): fd ${fd} is not an open file descriptor (EBADF)`), { code, cause: err });
  }
  if (code === 'EEXIST') {
    return Object.assign(
      new Error(
        `ioWait(fd): fd ${fd} is already watched by another handle on Node's event loop (EEXIST), such as a ` +
          'net.Socket or fs stream that owns it; in event-loop mode the Scheduler can wait only on fds nobody else ' +
          'on the loop watches. Yield a promise of the stream\u2019s own event instead (once(socket, "readable")), ' +
          'or wait with a Scheduler created with { eventLoop: false }, whose drivers use poll(2)',
      ),
      { code, cause: err },
    );
  }
  return err as Error;
}
