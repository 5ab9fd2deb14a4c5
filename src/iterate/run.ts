// The engine behind iterate. One `Run` owns a call's instances, pipes, timers,
// signal handlers and checkpoint saves.
//
// The parent is the only writer of the checkpoint. Each instance is a forked
// child that walks its own partition and, after every item whose `each`
// finished, writes that item's cursor to a pipe. The parent keeps the newest
// cursor of each instance and saves the combined state every
// checkpointEvery.items / .ms, whenever an instance ends, and at the end.
// A stop (signal, AbortSignal, maxRuntime, failFast) sets a flag in shared
// memory; each instance sees it between items, finishes nothing more, and
// exits once its current item is done and reported. The instance itself, the
// child's side, is instance.ts.
//
// A cross-machine run (options.engine, cowfork/bullmq) has the same loop with
// the partitions leased: the engine hands this process one partition at a
// time (up to its concurrency), each gets a slot and an instance, cursors are
// saved to the engine per partition, and the engine says when the run has
// ended on every machine. What a slot (one instance or lease) holds and
// reports is slots.ts.
import { CheckpointError, IterateError, ReshardError } from '../errors';
import {
  type ChildExit,
  type ForkedChild,
  forkChild,
  isChildUnwind,
  libraryInterval,
  libraryMacrotask,
  libraryTimeout,
} from '../fork';
import { HUP, READ, type ShmHandle, native } from '../native';
import { isThenable } from '../util';
import { RecordReader } from './channel';
import { crashError, failureError } from './failures';
import { STOP, runInstance } from './instance';
import { Saves } from './saves';
import { type Slot, cursorOf, newSlot, reportedSlots, resultOf, snapshotOf } from './slots';
import { type IterateState, acquireLock, checkState } from './store';
import type { EngineOptions, InterruptReason, IterateResult, LeaseEngine, LeaseOutcome, LeasedPartition } from './types';

const PROGRESS_MS = 100;

class Run<I, C> {
  /** The parent's pid: the parent-side callbacks below never act in an instance. */
  private readonly owner = process.pid;
  private readonly shm: ShmHandle = native.shmCreate(1);
  private readonly slots: Slot[];
  private readonly disposers: (() => void)[] = [];
  private live = 0;
  private forking = false;
  private stopping = false;
  private forced = false;
  private finished = false;
  private interruptedBy: InterruptReason | null = null;
  private fatal: Error | undefined;
  private progressDirty = false;
  private readonly saves = new Saves(
    () => (this.opts.lease !== undefined ? this.saveLeased() : this.opts.store.save(snapshotOf(this.slots, this.opts.instances, this.allComplete))),
    (err) => this.saveFailed(err),
  );
  private readonly pending = new Set<Promise<void>>();
  /** A leased run: the engine is still handing out partitions. */
  private leasing = false;
  /** A leased run: the run-wide result, once the engine saw the run end. */
  private runResult: IterateResult | null = null;
  private resolve!: (r: IterateResult<C>) => void;
  private reject!: (e: Error) => void;
  readonly promise: Promise<IterateResult<C>>;

  constructor(
    private readonly opts: EngineOptions<I, C>,
    state: IterateState | null,
    private allComplete: boolean,
  ) {
    const count = opts.lease === undefined ? opts.instances : 0;
    this.slots = Array.from({ length: count }, (_, i) => {
      const saved = state?.cursors[i];
      return newSlot(i, saved?.innerCursor ?? null, saved?.processed ?? 0, saved?.done ?? false);
    });
    this.promise = new Promise((res, rej) => {
      this.resolve = res;
      this.reject = rej;
    });
  }

  start(): Promise<IterateResult<C>> {
    const { every, onProgress, lease } = this.opts;
    if (lease !== undefined) {
      this.leasing = true;
    } else if (this.slots.every((s) => s.done)) {
      this.finished = true;
      void this.finish();
      return this.promise;
    } else {
      // Record the instance count before any instance starts, so a later run with
      // another count is refused even if this one is killed at once.
      this.forking = true;
      this.saves.dirty = true;
      this.save();
    }
    this.disposers.push(libraryInterval(() => this.saves.dirty && this.save(), every.ms));
    if (onProgress) this.disposers.push(libraryInterval(() => this.reportProgress(), PROGRESS_MS));
    this.installStops();
    if (lease === undefined) libraryMacrotask(() => this.forkAll());
    else this.startLeasing(lease);
    return this.promise;
  }

  /** A leased run: the engine hands out partitions until the run has ended or this process stops. */
  private startLeasing(engine: LeaseEngine): void {
    const onAllComplete = this.opts.onAllComplete as ((r: IterateResult) => unknown) | undefined;
    engine.lease({ work: (p) => this.leased(p), revoke: (i) => this.revoke(i), onAllComplete }).then(
      (r) => {
        if (process.pid !== this.owner) return;
        this.runResult = r;
        this.leasing = false;
        this.maybeFinish();
      },
      (err) => {
        if (process.pid !== this.owner) return;
        this.leasing = false;
        this.fail(err as Error);
      },
    );
  }

  /** The engine leased a partition to this process: walk it in an instance. */
  private leased(p: LeasedPartition): Promise<LeaseOutcome> {
    const slot = newSlot(p.instance, p.cursor, p.processed, false);
    const outcome = new Promise<LeaseOutcome>((resolve) => {
      slot.ended = resolve;
    });
    this.slots.push(slot);
    this.progressDirty = true;
    this.forking = true;
    // A fork runs in a macrotask of the library's own, never inside the engine's promise chain.
    libraryMacrotask(() => {
      this.forking = false;
      if (this.stopping) this.endLease(slot);
      else this.forkSlot(slot);
      this.maybeFinish();
    });
    return outcome;
  }

  /** Another machine may hold the partition now: its instance stops after its current item. */
  private revoke(instance: number): void {
    if (process.pid !== this.owner) return;
    for (const s of this.slots) {
      if (s.instance !== instance || s.ended === undefined) continue;
      s.revoked = true;
      s.child?.kill('SIGTERM');
    }
  }

  /** Settles a leased slot's lease once its last cursor is saved. */
  private endLease(slot: Slot): void {
    const ended = slot.ended;
    if (ended === undefined) return;
    slot.ended = undefined;
    const end = slot.done ? 'done' : slot.error !== undefined ? 'failed' : 'stopped';
    const outcome: LeaseOutcome = { end, cursor: cursorOf(slot), processed: slot.processedBefore + slot.processed };
    if (slot.error !== undefined) outcome.error = slot.error;
    // The engine marks the partition done or releases it only after its cursor is saved.
    void this.settleSaves().then(() => ended(outcome));
  }

  // -- stopping ------------------------------------------------------------

  private installStops(): void {
    // SIGINT/SIGTERM: the first asks the instances to stop after their current
    // item; a second kills them (their in-flight items repeat on the next run).
    const onSignal = (sig: NodeJS.Signals): void => {
      if (this.stopping) this.force();
      else this.stop(sig as InterruptReason);
    };
    for (const sig of ['SIGINT', 'SIGTERM'] as const) {
      process.on(sig, onSignal);
      this.disposers.push(() => process.removeListener(sig, onSignal));
    }
    const { signal, maxRuntime } = this.opts;
    if (signal) {
      const onAbort = (): void => this.stop('abort');
      if (signal.aborted) this.stop('abort');
      else {
        signal.addEventListener('abort', onAbort, { once: true });
        this.disposers.push(() => signal.removeEventListener('abort', onAbort));
      }
    }
    if (maxRuntime !== undefined) this.disposers.push(libraryTimeout(() => this.stop('maxRuntime'), maxRuntime));
  }

  private stop(reason: InterruptReason): void {
    // An instance inherits the parent's pending promises (an async save, the
    // engine's lease loop); one that settles there must not set the shared
    // STOP flag, which would stop every instance of the parent.
    if (this.stopping || process.pid !== this.owner) return;
    this.stopping = true;
    this.interruptedBy = reason;
    native.shmStore(this.shm, STOP, 1);
    this.opts.lease?.stop();
    this.maybeFinish();
  }

  private force(): void {
    this.forced = true;
    for (const s of this.slots) s.child?.kill('SIGKILL');
  }

  private fail(err: Error): void {
    if (process.pid !== this.owner) return;
    this.fatal ??= err;
    this.stop('error');
  }

  // -- instances -------------------------------------------------------------

  private forkAll(): void {
    this.forking = false;
    for (const slot of this.slots) {
      if (slot.done || this.stopping) continue;
      if (!this.forkSlot(slot)) break;
    }
    this.maybeFinish();
  }

  /** Forks the slot's instance; false when the fork failed (the run is failing). */
  private forkSlot(slot: Slot): boolean {
    const [readFd, writeFd] = native.pipe(true);
    let child: ForkedChild;
    try {
      child = forkChild(
        () =>
          runInstance({
            instance: slot.instance,
            instances: this.opts.instances,
            startCursor: slot.startCursor as C | null,
            build: this.opts.build,
            each: this.opts.each,
            shm: this.shm,
            readFd,
            fd: writeFd,
          }),
        { dieWithParent: true, dropParentWork: true },
      );
    } catch (err) {
      // In the child, forkChild unwinds back to the event loop by throwing: let it pass.
      if (isChildUnwind(err)) throw err;
      native.close(readFd);
      native.close(writeFd);
      this.fail(err as Error);
      if (slot.ended !== undefined) {
        slot.error = new IterateError(`iterate could not fork an instance for partition ${slot.instance}: ${(err as Error).message}`, slot.instance, undefined, undefined, null, null, { cause: err });
        this.endLease(slot);
      }
      return false;
    }
    native.close(writeFd);
    this.live++;
    slot.child = child;
    slot.readFd = readFd;
    slot.reader = new RecordReader(readFd, {
      cursors: (count, last) => {
        slot.processed += count;
        slot.cursorText = last;
        slot.unsaved = true;
        this.saves.itemsSinceSave += count;
        this.saves.dirty = true;
        this.progressDirty = true;
      },
      done: () => {
        slot.done = true;
        this.saves.dirty = true;
        this.progressDirty = true;
      },
      failed: (f) => {
        slot.failure ??= f;
      },
      stopped: (sig) => {
        slot.stoppedBy = sig === 'SIGINT' ? 'SIGINT' : 'SIGTERM';
      },
    });
    slot.watch = native.watch(readFd, READ | HUP, () => this.onReadable(slot));
    child.exited.then((exit) => this.onExit(slot, exit));
    this.callback(() =>
      this.opts.onStart?.({ instance: slot.instance, instances: this.opts.instances, cursor: slot.startCursor as C | null, pid: child.pid }),
    );
    return true;
  }

  private onReadable(slot: Slot): void {
    // An instance inherits the parent's watchers (silenced by fork hygiene);
    // reading a silenced fd there would block forever.
    if (process.pid !== this.owner) return;
    this.drain(slot);
    if (this.saves.itemsSinceSave >= this.opts.every.items) this.save();
  }

  private drain(slot: Slot): void {
    if (slot.reader === undefined) return;
    let open: boolean;
    try {
      open = slot.reader.drain();
    } catch (err) {
      open = false;
      this.fail(err as Error);
    }
    if (!open) {
      native.unwatch(slot.watch!);
      native.close(slot.readFd!);
      slot.reader = undefined;
    }
  }

  private onExit(slot: Slot, exit: ChildExit): void {
    if (process.pid !== this.owner) return;
    // The instance is gone: everything it wrote is in the pipe.
    this.drain(slot);
    if (slot.reader !== undefined) {
      native.unwatch(slot.watch!);
      native.close(slot.readFd!);
      slot.reader = undefined;
    }
    this.live--;
    slot.child = undefined;
    this.saves.dirty = true;
    this.progressDirty = true;
    this.save();
    if (slot.done) {
      this.callback(() => this.opts.onComplete?.(resultOf<C>(slot)));
    } else if (slot.failure !== undefined) {
      slot.error = failureError(slot.instance, this.opts.instances, slot.failure, exit);
    } else if (slot.revoked && (exit.exitCode === 0 || exit.signal === 'SIGTERM')) {
      // Stopped because its lease was lost: the partition goes on elsewhere.
    } else if (slot.stoppedBy !== undefined && exit.exitCode === 0) {
      // Signalled directly (Ctrl-C reaches the whole group, often before the
      // parent's own handler runs): an interruption, not a failure.
      this.interruptedBy ??= slot.stoppedBy;
    } else if (exit.signal === 'SIGINT' || exit.signal === 'SIGTERM') {
      // Killed by a stop signal before its handler was installed (the moment
      // after fork): also an interruption. The item it was on, if any, repeats.
      this.interruptedBy ??= exit.signal;
    } else if (!(this.stopping && (exit.exitCode === 0 || this.forced))) {
      slot.error = crashError(slot.instance, this.opts.instances, exit, slot.processed, cursorOf(slot));
    }
    if (slot.error !== undefined && this.opts.failFast) this.stop('failFast');
    this.endLease(slot);
    this.maybeFinish();
  }

  /**
   * Runs a user callback in the parent; a throw or rejection stops the run and
   * becomes its error. The run settles only after async callbacks have.
   */
  private callback(fn: () => unknown): void {
    try {
      const r = fn();
      if (!isThenable(r)) return;
      const p = Promise.resolve(r).then(
        () => undefined,
        (err) => this.fail(err as Error),
      );
      this.pending.add(p);
      p.finally(() => this.pending.delete(p));
    } catch (err) {
      this.fail(err as Error);
    }
  }

  // -- checkpoints -------------------------------------------------------------

  /** A leased run saves each partition whose cursor moved, to the engine. */
  private saveLeased(): Promise<unknown> {
    const engine = this.opts.lease!;
    const saves: Promise<void>[] = [];
    for (const s of this.slots) {
      if (!s.unsaved) continue;
      s.unsaved = false;
      saves.push(engine.save(s.instance, cursorOf(s), s.processedBefore + s.processed));
    }
    return Promise.all(saves);
  }

  private save(): void {
    this.saves.save();
  }

  private saveFailed(err: unknown): void {
    const msg = err instanceof Error ? err.message : String(err);
    this.fail(new CheckpointError(`saving checkpoint ${this.opts.where} failed: ${msg}`, this.opts.where, { cause: err }));
  }

  private settleSaves(): Promise<void> {
    return this.saves.settle();
  }

  // -- progress and results ------------------------------------------------------

  private result(): IterateResult<C> {
    const complete = this.opts.lease === undefined ? this.slots.every((s) => s.done) : this.runResult?.complete === true;
    return {
      complete,
      interrupted: !complete && this.interruptedBy !== null,
      interruptedBy: complete ? null : this.interruptedBy,
      instances: this.reported().map((s) => resultOf<C>(s)),
    };
  }

  /** The slots to report (slots.ts): a leased partition counts by its last lease here. */
  private reported(): Slot[] {
    return reportedSlots(this.slots, this.opts.lease !== undefined);
  }

  private reportProgress(): void {
    if (!this.progressDirty || this.opts.onProgress === undefined) return;
    this.progressDirty = false;
    const counts = this.reported().map((s) => {
      const r = resultOf<C>(s);
      delete r.error;
      return r;
    });
    this.callback(() => this.opts.onProgress!(counts));
  }

  // -- finishing -----------------------------------------------------------------

  private maybeFinish(): void {
    if (this.finished || this.live > 0 || this.forking || this.leasing) return;
    this.finished = true;
    void this.finish();
  }

  private async finish(): Promise<void> {
    try {
      this.reportProgress();
      while (this.pending.size > 0) await Promise.all(this.pending);
      await this.settleSaves();
      // A leased partition that failed is the run's to report (onAllComplete, after its
      // attempts), not this process's: here it is only in the result.
      const errors = this.opts.lease !== undefined ? [] : this.slots.flatMap((s) => (s.error === undefined ? [] : [s.error]));
      const result = this.result();
      // A leased run's onAllComplete is the engine's: it runs once across machines.
      if (this.opts.lease === undefined && result.complete && errors.length === 0 && this.fatal === undefined && !this.allComplete) {
        await this.opts.onAllComplete?.(result);
        this.allComplete = true;
        this.saves.dirty = true;
        await this.settleSaves();
      }
      if (this.fatal !== undefined) throw this.fatal;
      if (errors.length > 0) {
        const first = errors[0];
        first.errors = errors;
        first.result = result;
        throw first;
      }
      this.resolve(result);
    } catch (err) {
      this.reject(err as Error);
    } finally {
      for (const d of this.disposers.splice(0)) d();
    }
  }
}

export async function runIterate<I, C>(opts: EngineOptions<I, C>): Promise<IterateResult<C>> {
  if (opts.lease !== undefined) return new Run(opts, null, false).start();
  const unlock = opts.lockFile === undefined ? () => undefined : acquireLock(opts.lockFile);
  try {
    const raw = await opts.store.load();
    let state = raw === null || raw === undefined ? null : checkState(raw, opts.where);
    if (state !== null && state.instances !== opts.instances) {
      if (opts.reshard !== 'restart') {
        throw new ReshardError(
          `checkpoint ${opts.where} was written by a run with instances: ${state.instances}, but this run has instances: ${opts.instances}. ` +
            'Cursors of one partitioning cannot resume another. Run with the saved count, or pass ' +
            "reshard: 'restart' to discard the saved cursors and start over.",
          state.instances,
          opts.instances,
        );
      }
      state = null;
    }
    return await new Run(opts, state, state?.allComplete ?? false).start();
  } finally {
    unlock();
  }
}
