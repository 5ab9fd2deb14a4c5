// Pool mode, the default: `concurrency` long-lived children claim chunks of
// indexes from a counter in shared memory. Items are never copied: each child
// holds them copy-on-write. Each child appends authenticated records to one
// results file. A crash in settle mode starts a new round for the items the
// dead child had claimed.
import { WorkerCrashedError } from '../errors';
import { type ChildExit, exitChild, forkChild, libraryInterval, libraryMacrotask, onChildFatal } from '../fork';
import { BatchWriter, Outcome } from '../frame';
import { type ShmHandle, native } from '../native';
import { writeAll } from '../scratch';
import { CURSOR, Call, DONE, type ItemFn, type Live, type RunOptions, SLOT_BASE, SLOT_SIZE, STOP, now } from './call';

export class PoolCall<T, R> extends Call<T, R> {
  private readonly shm: ShmHandle;
  private readonly width: number;
  private list: number[] | null = null; // null: positions are indexes
  private total: number;
  private roundProgress = 0;
  private seq = 0;
  private spawning = 0;

  constructor(items: readonly T[], fn: ItemFn<T, R>, collect: boolean, opts: RunOptions) {
    super(items, fn, collect, opts);
    this.width = Math.min(opts.concurrency, this.n);
    this.total = this.n;
    this.shm = native.shmCreate(SLOT_BASE + SLOT_SIZE * this.width);
    if (opts.timeout !== undefined) {
      const every = Math.max(5, Math.min(100, opts.timeout / 4));
      this.addDisposer(libraryInterval(() => this.checkDeadlines(), every));
    }
    if (this.progress.active) {
      this.addDisposer(libraryInterval(() => this.reportProgress(this.doneCount(native.shmLoad(this.shm, DONE))), 50));
    }
  }

  start(): void {
    for (let slot = 0; slot < this.width; slot++) this.spawn(slot);
  }

  override onStop(): void {
    native.shmStore(this.shm, STOP, 1);
  }

  override continueWork(): boolean {
    return this.spawning > 0 || this.startNextRound();
  }

  private spawn(slot: number): void {
    this.spawning++;
    libraryMacrotask(() => {
      this.spawning--;
      if (this.isStopped) return this.maybeFinish();
      const file = `w${slot}.${this.seq++}`;
      native.shmStore(this.shm, SLOT_BASE + slot * SLOT_SIZE, 0);
      const child = forkChild(() => this.childMain(slot, file));
      const live: Live = { child, slot, file, timedOut: false };
      this.live.set(child.pid, live);
      child.exited.then((exit) => this.onExit(live, exit));
    });
  }

  private onExit(live: Live, exit: ChildExit): void {
    this.live.delete(live.child.pid);
    const cur = native.shmLoad(this.shm, SLOT_BASE + live.slot * SLOT_SIZE) - 1;
    const clean = exit.exitCode === 0 && !live.timedOut;
    const ok = this.absorb(live.file, clean, exit.pid);
    if (ok && cur >= 0 && !this.isStopped) {
      // The child died inside an item: a crash, a timeout, or process.exit().
      this.failByParent(cur, this.crashError(cur, exit, live.timedOut));
    } else if (ok && !clean && !this.isStopped) {
      this.stop(this.crashError(undefined, exit, live.timedOut));
    }
    if (!this.isStopped && native.shmLoad(this.shm, STOP) !== 0) {
      // A child stops the pool only after writing the failure that made it
      // stop, but the other children see STOP and exit too, and their exits
      // may be handled first. So wait for every child before concluding; a
      // STOP with still no failure on record then ends the call. Never
      // respawn: every new child would see STOP and exit at once.
      if (this.live.size > 0) return this.maybeFinish();
      this.stop(new WorkerCrashedError(`child ${exit.pid} stopped the pool without reporting a failure`, undefined, exit.pid, exit.exitCode, exit.signal));
    }
    // Keep the pool full while the round still has unclaimed work.
    if (!this.isStopped && native.shmLoad(this.shm, CURSOR) < this.total) this.spawn(live.slot);
    this.maybeFinish();
  }

  /**
   * After a crash in settle mode, items the dead child had claimed but not
   * finished have no outcome. Run them in a new round. A round that settles
   * nothing new fails what is left instead of looping.
   */
  private startNextRound(): boolean {
    if (this.isStopped) return false;
    const missing: number[] = [];
    for (let i = 0; i < this.n; i++) if (this.state[i] === 0) missing.push(i);
    if (missing.length === 0) return false;
    const settled = this.n - missing.length;
    if (this.list !== null && settled === this.roundProgress) {
      for (const i of missing) {
        this.failByParent(i, new WorkerCrashedError(`item ${i} was never completed: its children kept dying`, i, 0, null, null));
      }
      return false;
    }
    this.roundProgress = settled;
    this.list = missing;
    this.total = missing.length;
    native.shmStore(this.shm, CURSOR, 0);
    for (let slot = 0; slot < Math.min(this.width, missing.length); slot++) this.spawn(slot);
    return true;
  }

  private checkDeadlines(): void {
    const t = now();
    for (const l of this.live.values()) {
      const base = SLOT_BASE + l.slot * SLOT_SIZE;
      if (native.shmLoad(this.shm, base) === 0) continue;
      if (t - native.shmLoad(this.shm, base + 1) > this.opts.timeout!) {
        l.timedOut = true;
        l.child.kill('SIGKILL');
      }
    }
  }

  // Runs in the child.
  private childMain(slot: number, file: string): number | Promise<number> {
    const shm = this.shm;
    const base = SLOT_BASE + slot * SLOT_SIZE;
    const list = this.list;
    const total = this.total;
    const divisor = this.width * 4;
    const timed = this.opts.timeout !== undefined;
    const settle = this.opts.settle;
    const out = new BatchWriter(native.scratchOpen(this.dir, file, true), this.key, writeAll);
    let p = 0;
    let end = 0;
    let current = -1;

    onChildFatal((err) => {
      // An uncaught error inside async item code belongs to that item.
      if (current < 0) {
        // Between items there is no item to blame: leave as a crash.
        out.flush();
        process.stderr.write(`cowfork child ${process.pid}: uncaught between items: ${(err as Error)?.stack ?? String(err)}\n`);
        exitChild(native.EXIT_CODES.UNCAUGHT);
      }
      out.add(current, Outcome.Error, err, now());
      out.flush();
      if (!settle) native.shmStore(shm, STOP, 1);
      native.shmStore(shm, base, 0);
      native.shmAdd(shm, DONE, 1);
      exitChild(0);
    });

    const after = (): void => {
      native.shmStore(shm, base, 0);
      native.shmAdd(shm, DONE, 1);
      current = -1;
      if (this.childFailed && !settle) native.shmStore(shm, STOP, 1);
    };
    const finish = (): number => {
      this.flush(out);
      return 0;
    };

    const step = (): number | Promise<number> => {
      for (;;) {
        if (native.shmLoad(shm, STOP) !== 0) return finish();
        if (p >= end) {
          const claim = native.shmClaim(shm, CURSOR, total, divisor, 1024);
          if (claim === null) return finish();
          p = claim[0];
          end = p + claim[1];
        }
        current = list === null ? p : list[p];
        p++;
        // The start time first: the parent reads the index, then the time, so
        // it never pairs this item with the previous item's (or a new slot's
        // zero) start time and kills a child that has only just begun.
        if (timed) native.shmStore(shm, base + 1, Math.floor(now()));
        native.shmStore(shm, base, current + 1);
        const r = this.runItem(out, current, after);
        if (r !== undefined) return r.then(step);
      }
    };
    return step();
  }
}
