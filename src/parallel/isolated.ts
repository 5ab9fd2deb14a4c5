// Isolation mode: one fresh fork per item, with a per-index results file.
// Each item is pulled just before its fork, so the child reads it
// copy-on-write whatever the input is; a fork takes a free worker number.
import { forkChild, libraryMacrotask, libraryTimeout } from '../fork';
import { BatchWriter } from '../frame';
import { native } from '../native';
import { writeAll } from '../scratch';
import { CHILD_FORK, Call, type CallKind, type Live } from './call';
import type { ItemFn, RunOptions } from './options';
import { slotBase } from './shm';
import type { Source } from './source';

export class IsolatedCall<T, R> extends Call<T, R> {
  private scheduled = false;
  private doneItems = 0;
  private readonly free: number[] = [];

  constructor(source: Source<T>, fn: ItemFn<T, R>, kind: CallKind, opts: RunOptions) {
    super(source, fn, kind, opts, Math.min(opts.concurrency, source.array?.length ?? Infinity));
    for (let w = this.width - 1; w >= 0; w--) this.free.push(w);
    this.makeScratch();
  }

  start(): void {
    this.schedulePump();
  }

  protected override continueWork(): boolean {
    return this.scheduled || this.pulling || !this.source.done;
  }

  protected override onRoom(): void {
    this.schedulePump();
  }

  private schedulePump(): void {
    if (this.scheduled || this.pulling) return;
    this.scheduled = true;
    libraryMacrotask(() => {
      this.scheduled = false;
      this.pump();
    });
  }

  /** Runs in a library macrotask: pulls items and forks one child for each while there is room. */
  private pump(): void {
    while (!this.isStopped && this.free.length > 0 && !this.source.done && this.source.pulled - this.released() < this.window) {
      const r = this.pullNext((v) => {
        // Forking must happen in a library macrotask: hand the item to one.
        if (!v.done) this.forkLater(this.source.pulled - 1, v.value);
        else this.maybeFinish();
        this.schedulePump();
      });
      if (r === null) return;
      if (r.done) break;
      this.spawnItem(this.source.pulled - 1, r.value);
    }
    this.maybeFinish();
  }

  private forkLater(index: number, item: T): void {
    this.scheduled = true;
    libraryMacrotask(() => {
      this.scheduled = false;
      if (this.isStopped) return this.maybeFinish();
      this.spawnItem(index, item);
      this.pump();
    });
  }

  private spawnItem(index: number, item: T): void {
    const file = String(index);
    const worker = this.free.pop()!;
    native.shmStore(this.shm!, slotBase(worker), 0);
    const child = forkChild(() => this.childMain(worker, index, item, file), CHILD_FORK);
    const live: Live = { child, worker, file, timedOut: false, index };
    this.live.set(child.pid, live);
    let cancelTimer: (() => void) | undefined;
    if (this.opts.timeout !== undefined) {
      cancelTimer = libraryTimeout(() => {
        live.timedOut = true;
        child.kill('SIGKILL');
      }, this.opts.timeout);
    }
    child.exited.then((exit) => {
      cancelTimer?.();
      this.live.delete(child.pid);
      this.free.push(worker);
      const clean = exit.exitCode === 0 && !live.timedOut;
      if (this.absorb(file, clean, exit.pid) && !this.ledger.has(index) && !this.isStopped) {
        this.failByParent(index, this.crashError(index, exit, live.timedOut));
      }
      this.doneItems++;
      this.reportProgress(this.doneItems);
      if (!this.isStopped) this.schedulePump();
      this.maybeFinish();
    });
  }

  // Runs in the child.
  private childMain(worker: number, index: number, item: T, file: string): number | Promise<number> {
    let given = false;
    return this.runChild({
      stopOnFailure: false,
      worker,
      out: new BatchWriter(native.scratchOpen(this.dir, file, true), this.key, writeAll),
      next: () => (given ? null : ((given = true), index)),
      item: () => item,
      timed: false,
    });
  }
}
