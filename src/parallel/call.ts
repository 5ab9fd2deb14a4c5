// The parent engine behind map / each / stream. One `Call` owns everything a
// call creates: its children, its scratch directory, its HMAC key, its shared
// memory, its timers, and its outcome. Strategies extend it: `PoolCall`
// (pool.ts, an array over long-lived children), `FeedCall` (feed.ts, lazy
// input over long-lived children), `IsolatedCall` (isolated.ts, a fork per
// item) and `SerialCall` (serial.ts, concurrency: 0); run.ts picks one.
// Children run the one body in child.ts.
import { AbortError, ResultIntegrityError, TimeoutError, WorkerCrashedError, WorkerError } from '../errors';
import { type ChildExit, type ForkOptions, type ForkedChild, describeExit, killAndReapSync, libraryInterval, libraryTimeout } from '../fork';
import { onInterrupt } from '../interrupt';
import { type FrameError, Outcome, type RecordOut, type SerializedError, decodeAll, decodeBatch, fromSerializedError, newKey } from '../frame';
import { hangCauseNote } from '../inspect';
import { type ShmHandle, native } from '../native';
import { Progress } from '../progress';
import { createScratch, readScratch, removeScratch } from '../scratch';
import { deferred, isThenable } from '../util';
import { ChildBody, type ChildSetup } from './child';
import { type Collect, Ledger } from './ledger';
import type { ItemFn, RunOptions } from './options';
import { SLOT_ASYNC, SLOT_START, STOP, now, shmCount, slotBase } from './shm';
import type { Pulled, Source } from './source';

export interface Live {
  child: ForkedChild;
  worker: number;
  timedOut: boolean;
  /** Pool and isolation modes: the child's results file. */
  file?: string;
  /** Isolation mode: the child's item. */
  index?: number;
}

/** How long a child awaiting an async item may react to ctx.signal after the call stops, before it is killed. */
export const STOP_GRACE_MS = 250;

/** How every strategy forks: a child runs only its items, never the parent's pending timers (src/timers.ts). */
export const CHILD_FORK: ForkOptions = { dropParentWork: true };

/** A stop that is nobody's failure: a stream's consumer left. The stream swallows it. */
export class ConsumerLeft extends Error {}

/** What a call does with outcomes. */
export interface CallKind {
  /** Where the ledger puts outcomes. */
  collect: Collect;
  /** Whether children send values back (map, stream) or only completion (each). */
  sendValues: boolean;
  /** A stream's sink. */
  emit?: (out: unknown) => void;
}

export abstract class Call<T, R> {
  readonly key = newKey();
  readonly live = new Map<number, Live>();
  readonly ledger: Ledger;
  readonly progress: Progress;
  readonly shm: ShmHandle | undefined;
  /** Stream mode: results the consumer has taken. */
  consumed = 0;
  private scratchDir: string | undefined;
  /** The process that made this call: only there may it stop, finish or settle. */
  private readonly ownerPid = process.pid;
  private failedByParent = 0;
  private stopped = false;
  private outcome: Error | undefined;
  private finished = false;
  private readonly disposers: (() => void)[] = [];
  private readonly outcomeOf = deferred<unknown>();
  /** Settles once every child is reaped and the scratch is gone. */
  readonly promise = this.outcomeOf.promise;

  constructor(
    readonly source: Source<T>,
    readonly fn: ItemFn<T, R>,
    readonly kind: CallKind,
    readonly opts: RunOptions,
    /** Worker numbers 0..width-1; 0 for a call without children. */
    readonly width: number,
  ) {
    const { collect, emit } = kind;
    this.ledger = new Ledger({ collect, settle: opts.settle, ordered: opts.ordered, onResult: opts.onResult, emit }, source.array?.length);
    this.progress = new Progress(source.array?.length ?? NaN, opts.onProgress, opts.progress);
    this.shm = width > 0 ? native.shmCreate(shmCount(width)) : undefined;
    this.disposers.push(
      onInterrupt(() => {
        if (process.pid !== this.ownerPid) return;
        for (const pid of this.live.keys()) killAndReapSync(pid);
        if (this.scratchDir !== undefined) removeScratch(this.scratchDir);
      }),
    );
    const signal = opts.signal;
    if (signal) {
      const onAbort = (): void => this.stop(new AbortError('The operation was aborted', { cause: signal.reason }));
      signal.addEventListener('abort', onAbort, { once: true });
      this.disposers.push(() => signal.removeEventListener('abort', onAbort));
    }
  }

  abstract start(): void;

  get isStopped(): boolean {
    return this.stopped;
  }

  /** The scratch directory for results files. Pool and isolation mode make it before their first fork (feed mode needs none). */
  get dir(): string {
    if (this.scratchDir === undefined) throw new Error('cowfork internal error: no scratch directory was made for this call');
    return this.scratchDir;
  }

  protected makeScratch(): void {
    this.scratchDir = createScratch();
  }

  /** True while an async input is producing the next item. */
  protected pulling = false;

  /**
   * The input's next item when it gives one synchronously; null while an
   * async input works on it (`resume` gets it then) or when the input
   * failed (the call is stopped with its InputError).
   */
  protected pullNext(resume: (r: Pulled<T>) => void): Pulled<T> | null {
    let r: Pulled<T> | Promise<Pulled<T>>;
    try {
      r = this.source.next();
    } catch (err) {
      this.stop(err as Error);
      return null;
    }
    if (!isThenable(r)) return r;
    this.pulling = true;
    r.then(
      (v) => {
        this.pulling = false;
        resume(v);
      },
      (err: Error) => {
        this.pulling = false;
        this.stop(err);
      },
    );
    return null;
  }

  /** Items whose outcomes the engine may forget: the consumer took them (stream), or they were released in order. */
  released(): number {
    return this.kind.collect === 'stream' ? this.consumed : this.ledger.prefix;
  }

  /** How many items may be pulled but not yet released. */
  get window(): number {
    return Math.max(1, this.width) * this.opts.readAhead;
  }

  // -- outcomes ------------------------------------------------------------

  succeed(index: number, value: unknown): void {
    this.record(index, true, value);
  }

  fail(index: number, reason: Error): void {
    if (this.record(index, false, reason) && !this.opts.settle) this.stop(reason);
  }

  failByParent(index: number, reason: Error): void {
    if (!this.ledger.has(index)) this.failedByParent++;
    this.fail(index, reason);
  }

  private record(index: number, ok: boolean, value: unknown): boolean {
    // A stopped call has its outcome: what still arrives is not released.
    if (this.stopped) return false;
    let fresh: boolean;
    try {
      fresh = this.ledger.record(index, ok, value);
    } catch (err) {
      // The user's onResult threw: that ends the call.
      this.stop(err as Error);
      return true;
    }
    if (fresh) this.settledItem(index);
    return fresh;
  }

  /** Called once per item as it settles. */
  protected settledItem(_index: number): void {}

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
    return this.absorbRecords(records, pid, name);
  }

  /** Applies authenticated records of outcomes. Returns false (and stops the call) if one names an item never handed out. */
  absorbRecords(records: RecordOut[], pid: number, where: string): boolean {
    for (const r of records) {
      const { indexes, kinds, values } = decodeBatch(r.payload);
      for (let k = 0; k < indexes.length; k++) {
        const index = indexes[k];
        if (!(Number.isInteger(index) && index >= 0 && index < this.source.pulled)) {
          this.stop(new ResultIntegrityError(`results from child ${pid} name item ${index}, outside 0..${this.source.pulled - 1}`, index, where));
          return false;
        }
        if (kinds[k] === Outcome.Error) {
          const cause = fromSerializedError(values[k] as SerializedError);
          this.fail(index, new WorkerError(`item ${index} failed in child ${pid}: ${cause.message}`, index, pid, cause));
        } else {
          this.succeed(index, values[k]);
        }
      }
    }
    return true;
  }

  crashError(index: number | undefined, exit: ChildExit, timedOut: boolean): Error {
    const what = index === undefined ? 'between items' : `on item ${index}`;
    if (timedOut) {
      const msg = `item ${index} exceeded the ${this.opts.timeout} ms timeout; child ${exit.pid} was killed${hangCauseNote()}`;
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
      const total = this.source.length;
      this.progress.update(total === undefined ? done : Math.min(done, total));
    } catch (err) {
      this.stop(err as Error);
    }
  }

  /** Pool children: kills a child whose current item has run past the timeout (its slot says which and since when). */
  watchDeadlines(): void {
    const timeout = this.opts.timeout!;
    const shm = this.shm!;
    const check = (): void => {
      const t = now();
      for (const l of this.live.values()) {
        const base = slotBase(l.worker);
        if (native.shmLoad(shm, base) === 0) continue;
        if (t - native.shmLoad(shm, base + SLOT_START) > timeout) {
          l.timedOut = true;
          l.child.kill('SIGKILL');
        }
      }
    };
    this.addDisposer(libraryInterval(check, Math.max(5, Math.min(100, timeout / 4))));
  }

  // -- stopping and finishing ----------------------------------------------

  /**
   * Stops new work and kills every child; the call settles once they are
   * reaped. A child awaiting an async item first sees ctx.signal abort and
   * gets STOP_GRACE_MS; a child in synchronous code is killed at once.
   */
  stop(reason: Error): void {
    // A forked child's copy of this call is the parent's: a user timer or
    // signal the child inherited (an AbortController aborted from a
    // setTimeout) must not stop it, or the parent's `await map()` would go on
    // running in the child.
    if (this.stopped || process.pid !== this.ownerPid) return;
    this.stopped = true;
    this.outcome = reason;
    if (this.shm !== undefined) native.shmStore(this.shm, STOP, 1);
    this.source.close();
    this.onStop();
    for (const l of this.live.values()) {
      const awaiting = this.shm !== undefined && native.shmLoad(this.shm, slotBase(l.worker) + SLOT_ASYNC) !== 0;
      if (!awaiting) l.child.kill('SIGKILL');
      else this.disposers.push(libraryTimeout(() => l.child.kill('SIGKILL'), STOP_GRACE_MS));
    }
    this.maybeFinish();
  }

  protected onStop(): void {}

  maybeFinish(): void {
    if (this.finished || this.live.size > 0 || process.pid !== this.ownerPid) return;
    if (!this.stopped && this.continueWork()) return;
    this.finished = true;
    for (const d of this.disposers) d();
    let cleanupError: Error | undefined;
    try {
      if (this.scratchDir !== undefined) removeScratch(this.scratchDir);
    } catch (err) {
      cleanupError = err as Error;
    }
    if (this.outcome) return this.outcomeOf.reject(this.outcome);
    if (cleanupError) return this.outcomeOf.reject(cleanupError);
    const n = this.source.pulled;
    try {
      if (this.progress.active) this.progress.finish(n);
    } catch (err) {
      return this.outcomeOf.reject(err as Error);
    }
    if (this.kind.collect === 'array') return this.outcomeOf.resolve(this.ledger.result(n));
    this.outcomeOf.resolve(undefined);
  }

  /** Called once no child is live: true if the call goes on. */
  protected continueWork(): boolean {
    return false;
  }

  /** A stream's consumer took a result: there may be room to pull more. */
  consume(): void {
    this.consumed++;
    this.onRoom();
  }

  protected onRoom(): void {}

  /** Runs in a child: the one child body, fed this call's part of the setup and the strategy's. */
  protected runChild(setup: Omit<ChildSetup<T, R>, 'fn' | 'collect' | 'settle' | 'shm'>): number | Promise<number> {
    return new ChildBody<T, R>({ fn: this.fn, collect: this.kind.sendValues, settle: this.opts.settle, shm: this.shm!, ...setup }).run();
  }

  addDisposer(fn: () => void): void {
    this.disposers.push(fn);
  }
}
