// The engine behind map / each / Parallel. One `Call` owns everything a call
// creates: its children, its scratch directory, its HMAC key, its timers, and
// its outcome. Two strategies feed it:
//
// - pool (the default): `concurrency` long-lived children claim chunks of
//   indexes from a counter in shared memory. Items are never copied: each child
//   holds them copy-on-write. Each child appends authenticated records to one
//   results file.
// - isolation: one fresh fork per item, the seed's model, with a per-index
//   results file.
import {
  AbortError,
  ResultIntegrityError,
  TimeoutError,
  WorkerCrashedError,
  WorkerError,
} from '../errors';
import {
  type ChildExit,
  type ForkedChild,
  exitChild,
  forkChild,
  killAndReapSync,
  libraryInterval,
  libraryMacrotask,
  libraryTimeout,
  onChildFatal,
  onInterrupt,
} from '../fork';
import { BatchWriter, type FrameError, Outcome, type SerializedError, decodeAll, decodeBatch, fromSerializedError, newKey } from '../frame';
import { foreignThreadsNote } from '../inspect';
import { type ShmHandle, native } from '../native';
import { Progress } from '../progress';
import { createScratch, readScratch, removeScratch, writeAll } from '../scratch';

export type ItemFn<T, R> = (item: T, index: number) => R | Promise<R>;

export type Settled<R> = { status: 'fulfilled'; value: R } | { status: 'rejected'; reason: Error };

export interface RunOptions {
  concurrency: number;
  isolation: boolean;
  timeout?: number;
  signal?: AbortSignal;
  settle: boolean;
  onProgress?: (done: number, total: number) => void;
  progress: boolean;
}

// Shared-memory layout of a pool call.
const DONE = 0; // items with a record written
const STOP = 1; // set when a fail-fast call must stop claiming
const CURSOR = 2; // next position in the current round's list
const SLOT_BASE = 4;
const SLOT_SIZE = 2; // per child: current index + 1 (0 = idle), start time (ms)

const enum State {
  Pending = 0,
  Done = 1,
  Failed = 2,
}

interface Live {
  child: ForkedChild;
  slot: number;
  file: string;
  timedOut: boolean;
  index?: number; // isolation mode: the child's item
}

const now = (): number => performance.now();

function isThenable(v: unknown): v is PromiseLike<unknown> {
  return v !== null && (typeof v === 'object' || typeof v === 'function') && typeof (v as PromiseLike<unknown>).then === 'function';
}

class Call<T, R> {
  readonly n: number;
  readonly values: (R | undefined)[];
  readonly reasons = new Map<number, Error>();
  readonly state: Uint8Array;
  readonly key = newKey();
  readonly dir = createScratch();
  readonly live = new Map<number, Live>();
  readonly progress: Progress;
  private failedByParent = 0;
  private stopped = false;
  private outcome: Error | undefined;
  private finished = false;
  private readonly disposers: (() => void)[] = [];
  private resolve!: (v: (R | undefined)[] | Settled<R | undefined>[]) => void;
  private reject!: (e: Error) => void;
  readonly promise: Promise<(R | undefined)[] | Settled<R | undefined>[]>;

  constructor(
    readonly items: readonly T[],
    readonly fn: ItemFn<T, R>,
    readonly collect: boolean,
    readonly opts: RunOptions,
  ) {
    this.n = items.length;
    this.values = new Array(this.n);
    this.state = new Uint8Array(this.n);
    this.promise = new Promise((res, rej) => {
      this.resolve = res;
      this.reject = rej;
    });
    this.progress = new Progress(this.n, opts.onProgress, opts.progress);
    this.disposers.push(
      onInterrupt(() => {
        for (const pid of this.live.keys()) killAndReapSync(pid);
        removeScratch(this.dir);
      }),
    );
    const signal = opts.signal;
    if (signal) {
      const onAbort = (): void => this.stop(new AbortError('The operation was aborted', { cause: signal.reason }));
      signal.addEventListener('abort', onAbort, { once: true });
      this.disposers.push(() => signal.removeEventListener('abort', onAbort));
    }
  }

  get isStopped(): boolean {
    return this.stopped;
  }

  // -- outcomes ------------------------------------------------------------

  succeed(index: number, value: R | undefined): void {
    if (this.state[index] !== State.Pending) return;
    this.state[index] = State.Done;
    this.values[index] = value;
  }

  fail(index: number, reason: Error): void {
    if (this.state[index] !== State.Pending) return;
    this.state[index] = State.Failed;
    this.reasons.set(index, reason);
    if (!this.opts.settle) this.stop(reason);
  }

  failByParent(index: number, reason: Error): void {
    if (this.state[index] === State.Pending) this.failedByParent++;
    this.fail(index, reason);
  }

  /** Absorbs the records in one results file. Returns false if the file was bad. */
  absorb(name: string, exitedCleanly: boolean, pid: number): boolean {
    const buf = readScratch(this.dir, name);
    if (buf === null) return true;
    let records;
    try {
      records = decodeAll(this.key, buf, !exitedCleanly);
    } catch (err) {
      const msg = (err as FrameError).message;
      this.stop(
        new ResultIntegrityError(`results file ${name} from child ${pid} is corrupt: ${msg}; its contents were discarded`, undefined, name),
      );
      return false;
    }
    for (const r of records) {
      const { indexes, kinds, values } = decodeBatch(r.payload);
      for (let k = 0; k < indexes.length; k++) {
        const index = indexes[k];
        if (!(index >= 0 && index < this.n)) {
          this.stop(new ResultIntegrityError(`results file ${name} names item ${index}, outside 0..${this.n - 1}`, index, name));
          return false;
        }
        if (kinds[k] === Outcome.Error) {
          const cause = fromSerializedError(values[k] as SerializedError);
          this.fail(index, new WorkerError(`item ${index} failed in child ${pid}: ${cause.message}`, index, pid, cause));
        } else {
          this.succeed(index, values[k] as R | undefined);
        }
      }
    }
    return true;
  }

  crashError(index: number | undefined, exit: ChildExit, timedOut: boolean): Error {
    const what = index === undefined ? 'between items' : `on item ${index}`;
    if (timedOut) {
      const msg = `item ${index} exceeded the ${this.opts.timeout} ms timeout; child ${exit.pid} was killed${foreignThreadsNote()}`;
      return new TimeoutError(msg, index, this.opts.timeout!);
    }
    const how = exit.signal !== null ? `was killed by ${exit.signal}` : `exited with code ${exit.exitCode}`;
    return new WorkerCrashedError(`child ${exit.pid} ${how} ${what}`, index, exit.pid, exit.exitCode, exit.signal);
  }

  doneCount(extra: number): number {
    return extra + this.failedByParent;
  }

  reportProgress(done: number): void {
    if (!this.progress.active) return;
    try {
      this.progress.update(Math.min(done, this.n));
    } catch (err) {
      this.stop(err as Error);
    }
  }

  // -- stopping and finishing ----------------------------------------------

  /** Stops new work and kills every child; the call settles once they are reaped. */
  stop(reason: Error): void {
    if (this.stopped) return;
    this.stopped = true;
    this.outcome = reason;
    this.onStop();
    for (const l of this.live.values()) l.child.kill('SIGKILL');
    this.maybeFinish();
  }

  onStop(): void {}

  maybeFinish(): void {
    if (this.finished || this.live.size > 0) return;
    if (!this.stopped && this.continueWork()) return;
    this.finished = true;
    for (const d of this.disposers) d();
    let cleanupError: Error | undefined;
    try {
      removeScratch(this.dir);
    } catch (err) {
      cleanupError = err as Error;
    }
    if (this.outcome) return this.reject(this.outcome);
    if (cleanupError) return this.reject(cleanupError);
    try {
      if (this.progress.active) this.progress.finish(this.n);
    } catch (err) {
      return this.reject(err as Error);
    }
    if (!this.opts.settle) return this.resolve(this.values);
    const settled: Settled<R | undefined>[] = new Array(this.n);
    for (let i = 0; i < this.n; i++) {
      settled[i] =
        this.state[i] === State.Failed
          ? { status: 'rejected', reason: this.reasons.get(i)! }
          : { status: 'fulfilled', value: this.values[i] };
    }
    this.resolve(settled);
  }

  /** Called once no child is live: true if the call goes on (a pool may start a new round). */
  continueWork(): boolean {
    return false;
  }

  addDisposer(fn: () => void): void {
    this.disposers.push(fn);
  }

  // -- the child side ------------------------------------------------------

  /**
   * Runs one item in a child and adds its outcome to the batch. Returns a
   * promise only for async items. The batch is flushed when it is full, old,
   * or holds a failure, and before an async item is awaited.
   */
  runItem(out: BatchWriter, index: number, after: () => void): void | Promise<void> {
    let v: R | Promise<R>;
    try {
      v = this.fn(this.items[index], index);
    } catch (err) {
      out.add(index, Outcome.Error, err, now());
      this.flush(out);
      return after();
    }
    if (!isThenable(v)) {
      out.add(index, this.collect ? Outcome.Value : Outcome.Done, this.collect ? v : undefined, now());
      if (out.size >= 256 || out.age(now()) >= 2) this.flush(out);
      return after();
    }
    this.flush(out);
    return Promise.resolve(v).then(
      (value) => {
        out.add(index, this.collect ? Outcome.Value : Outcome.Done, this.collect ? value : undefined, now());
        this.flush(out);
        after();
      },
      (err) => {
        out.add(index, Outcome.Error, err, now());
        this.flush(out);
        after();
      },
    );
  }

  flush(out: BatchWriter): void {
    if (out.flush()) this.childFailed = true;
  }

  childFailed = false;
}

// ---------------------------------------------------------------------------
// Pool mode.

class PoolCall<T, R> extends Call<T, R> {
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
        exitChild(70);
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

// ---------------------------------------------------------------------------
// Isolation mode: one fork per item.

class IsolatedCall<T, R> extends Call<T, R> {
  private next = 0;
  private scheduled = false;
  private doneItems = 0;

  start(): void {
    this.schedulePump();
  }

  override continueWork(): boolean {
    return this.scheduled || this.next < this.n;
  }

  private schedulePump(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    libraryMacrotask(() => {
      this.scheduled = false;
      if (this.isStopped) return this.maybeFinish();
      while (this.live.size < this.opts.concurrency && this.next < this.n) this.spawnItem(this.next++);
    });
  }

  private spawnItem(index: number): void {
    const file = String(index);
    const child = forkChild(() => this.childMain(index, file));
    const live: Live = { child, slot: 0, file, timedOut: false, index };
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
      const clean = exit.exitCode === 0 && !live.timedOut;
      if (this.absorb(file, clean, exit.pid) && this.state[index] === 0 && !this.isStopped) {
        this.failByParent(index, this.crashError(index, exit, live.timedOut));
      }
      this.doneItems++;
      this.reportProgress(this.doneItems);
      if (!this.isStopped && this.next < this.n) this.schedulePump();
      this.maybeFinish();
    });
  }

  // Runs in the child.
  private childMain(index: number, file: string): number | Promise<number> {
    const out = new BatchWriter(native.scratchOpen(this.dir, file, true), this.key, writeAll);
    onChildFatal((err) => {
      out.add(index, Outcome.Error, err, now());
      out.flush();
      exitChild(0);
    });
    const r = this.runItem(out, index, () => this.flush(out));
    return r === undefined ? 0 : r.then(() => 0);
  }
}

export function run<T, R>(
  items: readonly T[],
  fn: ItemFn<T, R>,
  collect: boolean,
  opts: RunOptions,
): Promise<(R | undefined)[] | Settled<R | undefined>[]> {
  if (opts.signal?.aborted) {
    return Promise.reject(new AbortError('The operation was aborted', { cause: opts.signal.reason }));
  }
  if (items.length === 0) return Promise.resolve([]);
  const call = opts.isolation ? new IsolatedCall(items, fn, collect, opts) : new PoolCall(items, fn, collect, opts);
  call.start();
  return call.promise;
}
