// The fiber lifecycle on top of the tables (parks.ts): spawn, start, step a
// generator, cancel, time out, finish, and the report of failures nobody
// observed. loop.ts adds the event-loop side (watchers and one timer) and
// drive.ts the passes and the synchronous drivers; both work on the same
// tables, so a fiber can be driven by either, or by both in turn.
import { CancelledError, FiberFailedError, TimeoutError } from '../errors';
import { type SpawnOptions, isGeneratorFunction } from './args';
import {
  Deadline,
  FiberImpl,
  Outcome,
  type Park,
  asyncFiberBorn,
  asyncFiberGone,
  isNativeGenerator,
  runAsAsync,
  stepGenerator,
} from './fiber';
import { ParkTables, busyCores, isThenable } from './parks';

export abstract class FiberTables extends ParkTables {
  private nextId = 1;
  /** Live async fibers: the synchronous drivers must drain microtasks for them. */
  protected asyncFibers = 0;
  private unobserved: FiberImpl<any>[] = [];
  private reportQueued = false;

  override forgetAfterFork(): void {
    this.unobserved = [];
    this.reportQueued = false;
    this.asyncFibers = 0;
    super.forgetAfterFork();
  }

  // -- fibers ---------------------------------------------------------------

  spawn<T>(fn: (fiber: FiberImpl<T>) => unknown, options: SpawnOptions, parent: FiberImpl<any> | null): FiberImpl<T> {
    this.checkPid();
    const isGen = isGeneratorFunction(fn);
    const f = new FiberImpl<T>(this, this.nextId++, fn, isGen, parent);
    this.fibers.add(f);
    if (!isGen) {
      asyncFiberBorn();
      this.asyncFibers++;
    }
    busyCores.add(this);
    if (options.timeoutMs !== Infinity) this.openDeadline(f, options.timeoutMs, false);
    this.enqueue(f);
    if (parent !== null && parent.outcome === Outcome.Pending) {
      (parent.children ??= new Set()).add(f);
      if (parent.cancelled !== null) this.cancel(f, parent.cancelled);
    }
    return f;
  }

  cancel(f: FiberImpl<any>, reason: unknown): void {
    if (f.outcome !== Outcome.Pending || f.cancelled !== null || f.orphaned) return;
    const why = reason === undefined ? {} : { cause: reason };
    f.cancelled = new CancelledError(`fiber ${f.id} was cancelled`, why);
    this.raiseInChildren(f, f.cancelled);
    // A fiber that never started is settled by the next pass without running.
    if (f.state === 'new') return this.scheduleLoopPass();
    this.raiseAtParks(f, f.cancelled, null);
    this.reconcile();
  }

  /** A child spawned with fiber.spawn() is cancelled with its parent. */
  private raiseInChildren(f: FiberImpl<any>, why: Error): void {
    if (f.children === null) return;
    for (const c of [...f.children]) c.core.cancel(c, why);
  }

  /** Wakes every park of `f` with `err`: into `woken` during a pass, else through the run queue. */
  private raiseAtParks(f: FiberImpl<any>, err: Error, woken: Park[] | null): void {
    for (const p of f.parks.slice()) {
      this.detach(p);
      p.wakeError = err;
      if (p.queued) continue;
      if (woken !== null) woken.push(p);
      else this.enqueue(p);
    }
  }

  /** A fiber from the run queue: a new one starts; a generator fiber that yielded pause(0) resumes. */
  protected runQueued(f: FiberImpl<any>): void {
    if (f.outcome !== Outcome.Pending || f.orphaned) return;
    if (f.state === 'new') return this.start(f);
    // Cancelled or out of time since it yielded: raised at that yield.
    const raising = f.raising();
    this.step(f, raising !== null, raising ?? undefined);
  }

  private start(f: FiberImpl<any>): void {
    const raising = f.raising();
    if (raising !== null) return this.finish(f, Outcome.Rejected, raising);
    f.state = 'running';
    if (f.isGen) {
      try {
        f.gen = f.fn(f) as Generator<unknown, unknown, unknown>;
      } catch (err) {
        return this.finish(f, Outcome.Rejected, err);
      }
      return this.step(f, false, undefined);
    }
    this.needDrain = true;
    let r: unknown;
    try {
      r = runAsAsync(f, f.fn);
    } catch (err) {
      return this.finish(f, Outcome.Rejected, err);
    }
    if (isNativeGenerator(r)) {
      // A plain function that returned a generator (`() => helper(x)`): a generator fiber after all.
      f.isGen = true;
      asyncFiberGone();
      this.asyncFibers--;
      f.gen = r;
      return this.step(f, false, undefined);
    }
    if (isThenable(r)) {
      Promise.resolve(r).then(
        (v) => this.finish(f, Outcome.Fulfilled, v),
        (e) => this.finish(f, Outcome.Rejected, e),
      );
    } else {
      this.finish(f, Outcome.Fulfilled, r);
    }
  }

  /** Resumes a generator fiber directly (no microtask), up to its next yield or its end. */
  protected step(f: FiberImpl<any>, threw: boolean, value: unknown): void {
    f.state = 'running';
    let r: IteratorResult<unknown, unknown>;
    try {
      r = stepGenerator(f, threw, value);
    } catch (err) {
      return this.finish(f, Outcome.Rejected, err);
    }
    if (r.done === true) return this.finish(f, Outcome.Fulfilled, r.value);
    this.parkGenerator(f, r.value);
  }

  protected finish(f: FiberImpl<any>, outcome: Outcome, result: unknown): void {
    if (f.outcome !== Outcome.Pending || f.orphaned) return;
    f.outcome = outcome;
    f.result = result;
    f.state = 'done';
    f.gen = null;
    // Parks the fiber left behind (the loser of a Promise.race) go with it.
    for (const p of f.parks.slice()) this.detach(p);
    if (f.deadlines !== null) for (const d of f.deadlines) this.timers.remove(d);
    f.deadlines = null;
    f.parent?.children?.delete(f);
    this.fibers.delete(f);
    if (!f.isGen) {
      asyncFiberGone();
      this.asyncFibers--;
    }
    f.settleDeferred();
    if (f.joiners !== null) {
      for (const p of f.joiners) p.fiber!.core.wakeJoiner(p, outcome === Outcome.Rejected, result);
      f.joiners = null;
    }
    if (outcome === Outcome.Rejected && !f.observed && result !== f.cancelled) {
      this.unobserved.push(f);
      this.scheduleReport();
    }
    if (this.depth === 0) this.reconcile();
  }

  // -- deadlines ------------------------------------------------------------

  /** A deadline over `f`: spawn's options.timeout (`scope` false), or a withTimeout() scope. */
  openDeadline(f: FiberImpl<any>, ms: number, scope: boolean): Deadline {
    const d = new Deadline(f, this.clock() + ms, ms / 1000, scope);
    d.seq = this.nextSeq++;
    this.timers.push(d);
    (f.deadlines ??= []).push(d);
    if (this.depth === 0) this.reconcile();
    return d;
  }

  closeDeadline(d: Deadline): void {
    this.timers.remove(d);
    const ds = d.fiber.deadlines;
    if (ds !== null) {
      const i = ds.indexOf(d);
      if (i >= 0) ds.splice(i, 1);
    }
    if (this.depth === 0) this.reconcile();
  }

  /** Time is up: the fiber's parks raise TimeoutError from now until the scope closes (or the fiber ends). */
  protected expire(d: Deadline, woken: Park[]): void {
    const f = d.fiber;
    const what = d.scope ? `withTimeout(${d.seconds})` : `spawn options.timeout (${d.seconds} s)`;
    d.error = new TimeoutError(`fiber ${f.id} ran out of time: ${what}`, undefined, d.seconds);
    d.expired = true;
    if (f.outcome !== Outcome.Pending || f.orphaned || f.state === 'new') return;
    if (!d.scope) this.raiseInChildren(f, d.error);
    this.raiseAtParks(f, d.error, woken);
  }

  // -- unobserved failures --------------------------------------------------

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
    const errors = this.unobserved.filter((f) => !f.observed).map((f) => f.result);
    this.unobserved = [];
    if (errors.length === 0) return;
    const first = errors[0] instanceof Error ? errors[0].message : String(errors[0]);
    throw new FiberFailedError(
      `${errors.length} fiber${errors.length === 1 ? '' : 's'} failed and nobody read fiber.done: ${first}`,
      errors,
    );
  }
}
