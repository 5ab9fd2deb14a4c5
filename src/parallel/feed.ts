// Feed mode: lazy input over long-lived children. The parent pulls items
// only as children free up, and keeps at most `window` items between the
// input and the results it has released. Items pulled before a child's fork
// are in its memory copy-on-write; later ones travel down a pipe as
// authenticated records. Each child sends its outcomes up a second pipe as
// it goes, so results stream. A child that exits (recycled, crashed) is
// replaced by a fresh fork with the same worker number, and the items it had
// been sent but not finished go to the next child.
import v8 from 'node:v8';
import { type ChildExit, forkChild, isChildUnwind, libraryMacrotask } from '../fork';
import { BatchWriter, Kind, type RecordOut, encode } from '../frame';
import { HUP, READ, type WatchHandle, native } from '../native';
import { CHILD_FORK, Call, type CallKind, type Live } from './call';
import { FrameReader, PipeWriter, writeBlocking } from './channel';
import type { ItemFn, RunOptions } from './options';
import { now, slotBase } from './shm';
import type { Source } from './source';

interface Feeder {
  readonly worker: number;
  readonly live: Live;
  readonly tasks: PipeWriter;
  readonly resultFd: number;
  readonly reader: FrameReader;
  readonly watch: WatchHandle;
  /** Items with an index below this are in the child's memory copy-on-write. */
  readonly cowBelow: number;
  /** Indexes sent, oldest first, from `head` on. */
  sent: number[];
  head: number;
  /** Sent minus outcomes received. */
  outstanding: number;
  /** How many more items it may be sent (maxItemsPerChild). */
  quota: number;
  lastAt: number;
}

// A batch should hold about this much work, so the pipes cost little per item.
const BATCH_MS = 2;

export class FeedCall<T, R> extends Call<T, R> {
  private readonly held = new Map<number, T>();
  private ready: number[] = [];
  private readyHead = 0;
  private retry: number[] = [];
  private readonly feeders: (Feeder | undefined)[];
  private spawnScheduled = false;
  private ended = false;
  private perItemMs = NaN;
  private draining = false;
  private windowFull = false;
  private readonly maxBatch: number;

  constructor(source: Source<T>, fn: ItemFn<T, R>, kind: CallKind, opts: RunOptions) {
    super(source, fn, kind, opts, Math.min(opts.concurrency, source.array?.length ?? Infinity));
    this.feeders = new Array(this.width).fill(undefined);
    this.maxBatch = Math.max(1, Math.floor(opts.readAhead / 2));
    if (opts.timeout !== undefined) this.watchDeadlines();
  }

  start(): void {
    this.schedulePump();
  }

  // -- the loop ----------------------------------------------------------------
  // Every event (a result, a child's exit, an item pulled, a stream consumer
  // taking a result) runs the same steps: pull what the children have room
  // for, hand it out, fork children for free worker numbers, and end the
  // children's input once every item has settled.

  private pump(): void {
    if (this.isStopped) return this.maybeFinish();
    this.fill();
    // Fork before handing out: handing out may settle promises (an item that
    // cannot be serialized fails), and their reactions must not run in a child.
    this.spawnFree();
    this.feed();
    this.maybeFinish();
  }

  private schedulePump(): void {
    if (this.spawnScheduled) return;
    this.spawnScheduled = true;
    libraryMacrotask(() => {
      this.spawnScheduled = false;
      this.pump();
    });
  }

  /** Everything but forking, for events outside a library macrotask. */
  private feed(): void {
    if (this.isStopped || this.draining) return;
    this.fill();
    this.dispatchAll();
    if (this.feeders.includes(undefined) && this.available() > 0) this.schedulePump();
    this.endIfDone();
  }

  protected override onRoom(): void {
    // Results drive the loop; a consumer's take matters only when the window stopped the pulling.
    if (!this.windowFull) return;
    this.windowFull = false;
    this.feed();
  }

  protected override continueWork(): boolean {
    return this.spawnScheduled || this.pulling || !this.allSettled();
  }

  protected override settledItem(index: number): void {
    this.held.delete(index);
  }

  private allSettled(): boolean {
    return this.sourceExhausted() && this.ledger.settled === this.source.pulled;
  }

  private sourceExhausted(): boolean {
    const a = this.source.array;
    return a !== undefined ? this.source.pulled >= a.length : this.source.done;
  }

  private available(): number {
    return this.retry.length + this.ready.length - this.readyHead;
  }

  private batchSize(): number {
    if (!(this.perItemMs > 0)) return 1;
    return Math.max(1, Math.min(this.maxBatch, Math.floor(BATCH_MS / this.perItemMs)));
  }

  /** How many more items a child (or a free worker number) may be sent now. */
  private room(f: Feeder | undefined): number {
    const cap = Math.min(this.opts.readAhead, 2 * this.batchSize());
    if (f === undefined) return Math.min(cap, this.opts.maxItemsPerChild ?? Infinity);
    return Math.max(0, Math.min(cap - f.outstanding, f.quota));
  }

  // -- pulling -----------------------------------------------------------------

  private fill(): void {
    if (this.pulling) return;
    let want = 0;
    for (const f of this.feeders) want += this.room(f);
    want -= this.available();
    while (want > 0 && !this.sourceExhausted()) {
      if (this.source.pulled - this.released() >= this.window) {
        this.windowFull = true;
        return;
      }
      const r = this.pullNext((v) => {
        if (!v.done) this.accept(v.value);
        this.feed();
        this.maybeFinish();
      });
      if (r === null) return;
      if (r.done) break;
      this.accept(r.value);
      want--;
    }
  }

  private accept(item: T): void {
    const index = this.source.pulled - 1;
    if (this.source.array === undefined) this.held.set(index, item);
    this.ready.push(index);
  }

  private take(): number {
    if (this.retry.length > 0) return this.retry.shift()!;
    const i = this.ready[this.readyHead++];
    if (this.readyHead > 1024 && this.readyHead * 2 > this.ready.length) {
      this.ready = this.ready.slice(this.readyHead);
      this.readyHead = 0;
    }
    return i;
  }

  // -- handing out -------------------------------------------------------------

  /** One batch per child per pass, so idle children all get work before any child gets a second batch. */
  private dispatchAll(): void {
    for (let sent = true; sent; ) {
      sent = false;
      for (const f of this.feeders) if (f !== undefined && this.dispatchOne(f)) sent = true;
    }
  }

  private dispatchOne(f: Feeder): boolean {
    const b = Math.min(this.room(f), this.batchSize(), this.available());
    if (b <= 0) return false;
    // Wait for a fuller batch while the child still has work, unless no more is coming.
    if (b < this.batchSize() && f.outstanding > 0 && !this.sourceExhausted()) return false;
    const indexes: number[] = [];
    for (let k = 0; k < b; k++) indexes.push(this.take());
    this.send(f, indexes);
    return true;
  }

  private send(f: Feeder, indexes: number[]): void {
    const carried = new Uint8Array(indexes.length);
    const items: unknown[] = new Array(indexes.length);
    for (let k = 0; k < indexes.length; k++) {
      const i = indexes[k];
      if (this.source.array !== undefined || i < f.cowBelow) continue;
      carried[k] = 1;
      items[k] = this.held.get(i);
    }
    let payload: Buffer;
    try {
      payload = v8.serialize([indexes, carried, items]);
    } catch {
      return this.sendSerializable(f, indexes, carried, items);
    }
    f.sent.push(...indexes);
    f.outstanding += indexes.length;
    f.quota -= indexes.length;
    f.tasks.write(encode(this.key, Kind.Batch, indexes.length, payload));
  }

  /** An item v8.serialize rejects fails on its own, with a clear message; the rest of its batch goes. */
  private sendSerializable(f: Feeder, indexes: number[], carried: Uint8Array, items: unknown[]): void {
    const keep: number[] = [];
    for (let k = 0; k < indexes.length; k++) {
      try {
        if (carried[k]) v8.serialize(items[k]);
        keep.push(indexes[k]);
      } catch (err) {
        const msg =
          `item ${indexes[k]} cannot be sent to a child (${(err as Error).message}): items pulled after the fork travel ` +
          'through v8.serialize; pass an array, or items it supports';
        this.failByParent(indexes[k], new TypeError(msg));
      }
    }
    if (keep.length > 0 && !this.isStopped) this.send(f, keep);
  }

  // -- children ----------------------------------------------------------------

  /**
   * Runs in a library macrotask: forks a child for each free worker number
   * while there is work the live children cannot take. With
   * maxItemsPerChild, "cannot take" counts the items each live child may
   * still be sent, so over an input of known length the last children end
   * exactly at their quota: n items make ceil(n / maxItemsPerChild) forks.
   */
  private spawnFree(): void {
    const quota = this.opts.maxItemsPerChild;
    let waiting = this.available() + this.unpulled();
    if (quota !== undefined) for (const f of this.feeders) if (f !== undefined) waiting -= f.quota;
    for (let w = 0; w < this.width && waiting > 0 && this.available() > 0 && !this.isStopped; w++) {
      if (this.feeders[w] !== undefined) continue;
      this.spawn(w);
      waiting -= quota ?? 1;
    }
  }

  /** Items the input still holds: exact for an array, unbounded for a lazy input that has not ended. */
  private unpulled(): number {
    const a = this.source.array;
    if (a !== undefined) return a.length - this.source.pulled;
    return this.source.done ? 0 : Infinity;
  }

  private spawn(worker: number): void {
    const [taskRead, taskWrite] = native.pipe(true);
    const [resultRead, resultWrite] = native.pipe(true);
    native.shmStore(this.shm!, slotBase(worker), 0);
    const cowBelow = this.source.pulled;
    let child;
    try {
      child = forkChild(() => this.childMain(worker, taskRead, taskWrite, resultRead, resultWrite), CHILD_FORK);
    } catch (err) {
      if (isChildUnwind(err)) throw err;
      for (const fd of [taskRead, taskWrite, resultRead, resultWrite]) native.close(fd);
      return this.stop(err as Error);
    }
    native.close(taskRead);
    native.close(resultWrite);
    const live: Live = { child, worker, timedOut: false };
    this.live.set(child.pid, live);
    const f: Feeder = {
      worker,
      live,
      tasks: new PipeWriter(taskWrite),
      resultFd: resultRead,
      reader: new FrameReader(resultRead, this.key),
      watch: native.watch(resultRead, READ | HUP, () => this.onReadable(f)),
      cowBelow,
      sent: [],
      head: 0,
      outstanding: 0,
      quota: this.opts.maxItemsPerChild ?? Infinity,
      lastAt: now(),
    };
    this.feeders[worker] = f;
    child.exited.then((exit) => this.onExit(f, exit));
  }

  private onReadable(f: Feeder): void {
    if (this.feeders[f.worker] !== f) return;
    this.drain(f);
    this.feed();
    this.maybeFinish();
  }

  /** Applies what the child has written. Returns false at end of file. */
  private drain(f: Feeder): boolean {
    // A stream's consumer may take results while they are applied; the feed
    // that follows the drain hands out the room it makes.
    this.draining = true;
    try {
      return f.reader.drain((records) => this.received(f, records));
    } catch (err) {
      this.stop(err as Error);
      return false;
    } finally {
      this.draining = false;
    }
  }

  private received(f: Feeder, records: RecordOut[]): void {
    let count = 0;
    for (const r of records) count += r.count;
    const t = now();
    if (f.outstanding > 0 && count > 0) {
      // A sample includes the pipes' latency, which inflates it for tiny
      // items: follow a smaller sample at once, a larger one slowly.
      const sample = (t - f.lastAt) / count;
      this.perItemMs = !(sample >= this.perItemMs) ? sample : 0.9 * this.perItemMs + 0.1 * sample;
    }
    f.lastAt = t;
    f.outstanding = Math.max(0, f.outstanding - count);
    this.absorbRecords(records, f.live.child.pid, `the results pipe of child ${f.live.child.pid}`);
    while (f.head < f.sent.length && this.ledger.has(f.sent[f.head])) f.head++;
    if (f.head > 1024 && f.head * 2 > f.sent.length) {
      f.sent = f.sent.slice(f.head);
      f.head = 0;
    }
    this.reportProgress(this.ledger.settled);
  }

  private onExit(f: Feeder, exit: ChildExit): void {
    // The child is gone: everything it wrote is in the pipe.
    this.drain(f);
    native.unwatch(f.watch);
    native.close(f.resultFd);
    f.tasks.abandon();
    this.live.delete(f.live.child.pid);
    this.feeders[f.worker] = undefined;
    const cur = native.shmLoad(this.shm!, slotBase(f.worker)) - 1;
    const clean = exit.exitCode === 0 && !f.live.timedOut;
    if (!this.isStopped && cur >= 0 && !this.ledger.has(cur)) {
      // The child died inside an item: a crash, a timeout, or process.exit().
      this.failByParent(cur, this.crashError(cur, exit, f.live.timedOut));
    } else if (!this.isStopped && !clean) {
      this.stop(this.crashError(undefined, exit, f.live.timedOut));
    }
    // What it was sent but did not finish (it was recycled, or crashed) goes to the next child.
    if (!this.isStopped) {
      for (let k = f.head; k < f.sent.length; k++) if (!this.ledger.has(f.sent[k])) this.retry.push(f.sent[k]);
      this.schedulePump();
    }
    this.maybeFinish();
  }

  /** Once every item has settled and the input has ended, the children read end of file and exit. */
  private endIfDone(): void {
    if (this.ended || !this.allSettled()) return;
    this.ended = true;
    for (const f of this.feeders) f?.tasks.close();
  }

  protected override onStop(): void {
    for (const f of this.feeders) f?.tasks.abandon();
  }

  // -- the child side ------------------------------------------------------------

  private childMain(worker: number, taskRead: number, taskWrite: number, resultRead: number, resultWrite: number): number | Promise<number> {
    native.close(taskWrite);
    native.close(resultRead);
    // Other children's task pipes, inherited from the parent, are not this
    // child's to hold open: each would keep the other from ever reading end of file.
    for (const f of this.feeders) {
      if (f === undefined) continue;
      f.tasks.closeInChild();
    }
    const tasks = new FrameReader(taskRead, this.key);
    const queue: number[] = [];
    let head = 0;
    const carried = new Map<number, unknown>();
    const array = this.source.array;
    const held = this.held;
    const next = (idle: () => void): number | null => {
      if (head >= queue.length) {
        queue.length = 0;
        head = 0;
        idle();
        const records = tasks.readBlocking();
        if (records === null) return null;
        for (const r of records) {
          const [indexes, flags, items] = v8.deserialize(r.payload) as [number[], Uint8Array, unknown[]];
          for (let k = 0; k < indexes.length; k++) {
            queue.push(indexes[k]);
            if (flags[k]) carried.set(indexes[k], items[k]);
          }
        }
      }
      return queue[head++];
    };
    const item = (i: number): T => {
      if (array !== undefined) return array[i];
      if (carried.has(i)) {
        const v = carried.get(i) as T;
        carried.delete(i);
        return v;
      }
      return held.get(i) as T;
    };
    return this.runChild({
      stopOnFailure: false,
      worker,
      out: new BatchWriter(resultWrite, this.key, writeBlocking),
      next,
      item,
      timed: this.opts.timeout !== undefined,
      maxItems: this.opts.maxItemsPerChild,
      maxMemory: this.opts.maxMemoryPerChild,
    });
  }
}
