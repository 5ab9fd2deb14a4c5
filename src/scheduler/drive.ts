// The pass, and the synchronous drivers that run passes: tick, runUntilEmpty
// and runFor, which wait in poll(2) over the parked fds with the earliest
// deadline as the poll timeout. docs/scheduler.md describes the model.
//
// Generator fibers are resumed by calling their generators, so the drivers
// run them anywhere, including inside a microtask (the top level of an ES
// module). Async fibers' continuations are microtasks: a pass that wakes one
// drains the microtask queue (drain.ts), which V8 allows only outside a
// microtask, so with async fibers alive the drivers refuse to run inside one.
import { performance } from 'node:perf_hooks';
import { SchedulerError } from '../errors';
import { ERR, HUP, native } from '../native';
import { drainMicrotasks, hasSyncDrain } from './drain';
import { Deadline, type FdEntry, FiberImpl, type Park, readyBits } from './fiber';
import { LoopTables } from './loop';
import { flush } from './promises';

const NESTED_HINT =
  'it was called inside a microtask (after an `await`, or at the top level of an ES module), where V8 ' +
  'cannot run async fibers\u2019 continuations before it returns. Use a generator fiber (function*, parking ' +
  'with `yield Scheduler.pause(s)`), which the drivers run anywhere; or call it from synchronous code (the top ' +
  'level of a CommonJS module, or a callback such as setImmediate(() => scheduler.runUntilEmpty())); or let the ' +
  'event loop drive the fibers and await fiber.done';

export class Core extends LoopTables {
  // poll(2) arrays, reused across passes.
  private pollFds = new Int32Array(16);
  private pollEvents = new Int32Array(16);
  private pollRevents = new Int32Array(16);
  private pollEntries: FdEntry[] = [];

  /**
   * One pass. Collects what is ready when it begins (queued starts, wake-ups
   * and cancellations, settled promises, fds with readiness, expired timers
   * and deadlines), wakes exactly those, and lets each run to its next park:
   * a generator fiber is stepped directly, an async one by draining the
   * microtask queue at the end. Fibers made ready by this pass wait for the
   * next one. With `waitMs` > 0 and nothing ready, first waits in poll(2)
   * for at most that long (or until the earliest deadline). `fromLoop`:
   * readiness comes from the libuv watchers instead of poll(2).
   */
  protected pass(waitMs: number, fromLoop: boolean): number {
    if (this.promiseParks > 0) flush();
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
    this.passNow = now;

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
      if (top instanceof Deadline) {
        this.timers.remove(top);
        this.expire(top, woken);
        continue;
      }
      top.wakeBits = 0;
      this.detach(top);
      woken.push(top);
    }

    this.needDrain = false;
    let n = 0;
    for (const item of queued) {
      if (item instanceof FiberImpl) {
        this.runQueued(item);
      } else {
        item.queued = false;
        this.detach(item);
        this.wake(item);
      }
      n++;
    }
    for (const p of woken) this.wake(p);
    n += woken.length;
    if (this.needDrain) drainMicrotasks();
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

  /** Work a pass can do, counting promises that settled since the last pass. */
  private canProgress(): boolean {
    if (this.hasWork()) return true;
    if (this.promiseParks > 0) flush();
    return this.runQueue.length > 0;
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
    // Generator fibers need no microtask drain; async fibers do.
    if (this.asyncFibers === 0) return;
    if (!hasSyncDrain()) {
      throw new SchedulerError(
        `${api}() needs process._tickCallback to run async fibers synchronously, and this Node (${process.version}) ` +
          'has none. Use generator fibers, or let the event loop drive the fibers (await fiber.done).',
      );
    }
    if (!drainMicrotasks()) throw new SchedulerError(`${api}() cannot run here: ${NESTED_HINT}.`);
  }

  tick(timeoutMs: number): number {
    this.enterDriver('tick');
    if (!this.canProgress()) return 0;
    return this.bracket(this.passPolling, timeoutMs);
  }

  runUntilEmpty(): number {
    this.enterDriver('runUntilEmpty');
    const total = this.bracket(this.passUntilEmpty, undefined);
    this.throwUnobserved();
    return total;
  }

  runFor(ms: number): number {
    this.enterDriver('runFor');
    return this.bracket(this.passUntil, performance.now() + ms);
  }

  // The drivers' bodies, run inside bracket().

  private passPolling(waitMs: number): number {
    return this.pass(waitMs, false);
  }

  private passUntilEmpty(): number {
    let n = 0;
    while (this.fibers.size > 0) {
      if (!this.canProgress()) {
        throw new SchedulerError(
          `runUntilEmpty(): ${this.fibers.size} fiber${this.fibers.size === 1 ? '' : 's'} wait on something the ` +
            'scheduler does not drive (a promise only the event loop can settle, such as fs.promises or fetch), ' +
            'so driving synchronously would hang. Let the event loop run instead: await fiber.done.',
        );
      }
      n += this.pass(Infinity, false);
    }
    return n;
  }

  private passUntil(deadline: number): number {
    let n = 0;
    do {
      if (!this.canProgress()) break;
      n += this.pass(Math.max(0, Math.ceil(deadline - performance.now())), false);
    } while (performance.now() < deadline);
    return n;
  }
}
