// The engine behind map / each / Parallel. One `Call` owns everything a call
// creates: its children, its scratch directory, its HMAC key, its timers, and
// its outcome. Two strategies extend it: `PoolCall` (pool.ts) and
// `IsolatedCall` (isolated.ts); run.ts picks one.
import { AbortError, ResultIntegrityError, TimeoutError, WorkerCrashedError, WorkerError } from '../errors';
import { type ChildExit, type ForkedChild, describeExit, killAndReapSync, onInterrupt } from '../fork';
import { BatchWriter, type FrameError, Outcome, type SerializedError, decodeAll, decodeBatch, fromSerializedError, newKey } from '../frame';
import { foreignThreadsNote } from '../inspect';
import { Progress } from '../progress';
import { createScratch, readScratch, removeScratch } from '../scratch';

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
export const DONE = 0; // items with a record written
export const STOP = 1; // set when a fail-fast call must stop claiming
export const CURSOR = 2; // next position in the current round's list
export const SLOT_BASE = 4;
export const SLOT_SIZE = 2; // per child: current index + 1 (0 = idle), start time (ms)

export const enum State {
  Pending = 0,
  Done = 1,
  Failed = 2,
}

export interface Live {
  child: ForkedChild;
  slot: number;
  file: string;
  timedOut: boolean;
  index?: number; // isolation mode: the child's item
}

export const now = (): number => performance.now();

function isThenable(v: unknown): v is PromiseLike<unknown> {
  return v !== null && (typeof v === 'object' || typeof v === 'function') && typeof (v as PromiseLike<unknown>).then === 'function';
}

export class Call<T, R> {
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
    return new WorkerCrashedError(`child ${exit.pid} ${describeExit(exit)} ${what}`, index, exit.pid, exit.exitCode, exit.signal);
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
