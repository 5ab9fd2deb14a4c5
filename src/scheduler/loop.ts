// The event-loop side of a scheduler: one libuv poll watcher per parked fd
// (native.watch), one Node timer for the earliest deadline, and a
// setImmediate for new, cancelled or otherwise ready fibers. Each of these
// runs a pass from its own macrotask. reconcile() brings them in line with
// the tables whenever no driver or pass is running, so changes made during a
// driver are applied once, and a fiber that re-parks on the same fd does not
// churn its watcher.
import fs from 'node:fs';
import { performance } from 'node:perf_hooks';
import { libraryTimeout } from '../fork';
import { ERR, READ, native } from '../native';
import type { FdEntry } from './fiber';
import { busyCores, watchError } from './parks';
import { FiberTables } from './tables';

export abstract class LoopTables extends FiberTables {
  private watchCount = 0;
  private loopTimerCancel: (() => void) | null = null;
  private loopTimerAt = Infinity;
  private immediateQueued = false;
  private readonly probeFd = new Int32Array(1);
  private readonly probeEvents = new Int32Array(1);
  private readonly probeRevents = new Int32Array(1);

  /** One pass; `fromLoop`: readiness comes from the watchers instead of poll(2). */
  protected abstract pass(waitMs: number, fromLoop: boolean): number;

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

  override forgetAfterFork(): void {
    for (const e of this.fds.values()) {
      if (e.watch !== null) {
        try {
          native.unwatch(e.watch);
        } catch {
          // The handle went with the parent's loop state; nothing to free.
        }
      }
    }
    this.watchCount = 0;
    this.loopTimerCancel?.();
    this.loopTimerCancel = null;
    this.loopTimerAt = Infinity;
    this.immediateQueued = false;
    super.forgetAfterFork();
  }

  protected scheduleLoopPass(): void {
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
    this.bracket(this.passFromLoop, undefined);
  }

  private passFromLoop(): number {
    return this.pass(0, true);
  }

  protected startWatch(e: FdEntry, mode: number): void {
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
  protected pauseWatch(e: FdEntry): void {
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
   * work.
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
