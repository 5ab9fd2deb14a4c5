// Pool mode over an array, the fast path: `width` long-lived children claim
// chunks of indexes from a counter in shared memory. Items are never copied:
// each child holds them copy-on-write. Each child appends authenticated
// records to one results file, read when it exits. A crash in settle mode
// starts a new round for the items the dead child had claimed.
import { WorkerCrashedError } from '../errors';
import { type ChildExit, forkChild, libraryInterval, libraryMacrotask } from '../fork';
import { BatchWriter } from '../frame';
import { native } from '../native';
import { writeAll } from '../scratch';
import { CHILD_FORK, Call, type CallKind, type Live } from './call';
import type { ItemFn, RunOptions } from './options';
import { CURSOR, DONE, STOP, slotBase } from './shm';
import type { Source } from './source';

export class PoolCall<T, R> extends Call<T, R> {
  private readonly items: readonly T[];
  private readonly n: number;
  private list: number[] | null = null; // null: positions are indexes
  private total: number;
  private roundProgress = 0;
  private seq = 0;
  private spawning = 0;

  constructor(source: Source<T>, fn: ItemFn<T, R>, kind: CallKind, opts: RunOptions) {
    const items = source.array!;
    super(source, fn, kind, opts, Math.min(opts.concurrency, items.length));
    this.items = items;
    this.n = items.length;
    this.total = this.n;
    this.makeScratch();
    // Every item is handed out by index: mark them pulled.
    source.pulled = this.n;
    source.done = true;
    if (opts.timeout !== undefined) this.watchDeadlines();
    if (this.progress.active) {
      this.addDisposer(libraryInterval(() => this.reportProgress(this.doneCount(native.shmLoad(this.shm!, DONE))), 50));
    }
  }

  start(): void {
    for (let worker = 0; worker < this.width; worker++) this.spawn(worker);
  }

  protected override continueWork(): boolean {
    return this.spawning > 0 || this.startNextRound();
  }

  private spawn(worker: number): void {
    this.spawning++;
    libraryMacrotask(() => {
      this.spawning--;
      if (this.isStopped) return this.maybeFinish();
      const file = `w${worker}.${this.seq++}`;
      native.shmStore(this.shm!, slotBase(worker), 0);
      const child = forkChild(() => this.childMain(worker, file), CHILD_FORK);
      const live: Live = { child, worker, file, timedOut: false };
      this.live.set(child.pid, live);
      child.exited.then((exit) => this.onExit(live, exit));
    });
  }

  private onExit(live: Live, exit: ChildExit): void {
    this.live.delete(live.child.pid);
    const shm = this.shm!;
    const cur = native.shmLoad(shm, slotBase(live.worker)) - 1;
    const clean = exit.exitCode === 0 && !live.timedOut;
    const ok = this.absorb(live.file!, clean, exit.pid);
    if (ok && cur >= 0 && !this.isStopped) {
      // The child died inside an item: a crash, a timeout, or process.exit().
      this.failByParent(cur, this.crashError(cur, exit, live.timedOut));
    } else if (ok && !clean && !this.isStopped) {
      this.stop(this.crashError(undefined, exit, live.timedOut));
    }
    if (!this.isStopped && native.shmLoad(shm, STOP) !== 0) {
      // A child stops the pool only after writing the failure that made it
      // stop, but the other children see STOP and exit too, and their exits
      // may be handled first. So wait for every child before concluding; a
      // STOP with still no failure on record then ends the call. Never
      // respawn: every new child would see STOP and exit at once.
      if (this.live.size > 0) return this.maybeFinish();
      this.stop(new WorkerCrashedError(`child ${exit.pid} stopped the pool without reporting a failure`, undefined, exit.pid, exit.exitCode, exit.signal));
    }
    // Keep the pool full while the round still has unclaimed work.
    if (!this.isStopped && native.shmLoad(shm, CURSOR) < this.total) this.spawn(live.worker);
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
    for (let i = 0; i < this.n; i++) if (!this.ledger.has(i)) missing.push(i);
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
    native.shmStore(this.shm!, CURSOR, 0);
    for (let worker = 0; worker < Math.min(this.width, missing.length); worker++) this.spawn(worker);
    return true;
  }

  // Runs in the child.
  private childMain(worker: number, file: string): number | Promise<number> {
    const shm = this.shm!;
    const list = this.list;
    const total = this.total;
    const divisor = this.width * 4;
    let p = 0;
    let end = 0;
    const next = (): number | null => {
      if (p >= end) {
        const claim = native.shmClaim(shm, CURSOR, total, divisor, 1024);
        if (claim === null) return null;
        p = claim[0];
        end = p + claim[1];
      }
      return list === null ? p++ : list[p++];
    };
    return this.runChild({
      stopOnFailure: true,
      worker,
      out: new BatchWriter(native.scratchOpen(this.dir, file, true), this.key, writeAll),
      next,
      item: (i) => this.items[i],
      timed: this.opts.timeout !== undefined,
    });
  }
}
