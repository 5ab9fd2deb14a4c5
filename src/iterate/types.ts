// The types of iterate's engine and public API: what `each` gets, what a run
// returns, and the options the facade (index.ts) hands the engine (run.ts).
import type { IterateError } from '../errors';
import type { Builder } from './builders';
import type { CursorStore } from './store';

export interface EachContext<C = unknown> {
  instance: number;
  instances: number;
  /** The cursor of the item being processed; it is saved once `each` returns. */
  cursor: C;
  /** Aborted when the run is stopping; finish or abandon the item quickly. */
  signal: AbortSignal;
}

export type EachFn<I, C> = (item: I, ctx: EachContext<C>) => unknown;

export interface InstanceResult<C = unknown> {
  instance: number;
  /** Items finished in this run. */
  processed: number;
  /** Items finished over all runs. */
  processedTotal: number;
  /** The cursor of the last finished item; null if none has finished yet. */
  cursor: C | null;
  /** True once the instance has walked its whole partition. */
  done: boolean;
  /** Set when the instance failed in this run. */
  error?: IterateError;
}

export type InterruptReason = 'SIGINT' | 'SIGTERM' | 'abort' | 'maxRuntime' | 'failFast' | 'error';

export interface IterateResult<C = unknown> {
  /** Every instance has walked its whole partition. */
  complete: boolean;
  /** The run was stopped before completing; a later run resumes it. */
  interrupted: boolean;
  /** What stopped the run, or null. */
  interruptedBy: InterruptReason | null;
  instances: InstanceResult<C>[];
}

export interface StartInfo<C = unknown> {
  instance: number;
  instances: number;
  /** The cursor the instance resumes after; null on its first run. */
  cursor: C | null;
  pid: number;
}

/** A partition handed to this process by a lease engine, with where it resumes. */
export interface LeasedPartition {
  instance: number;
  /** The saved cursor to resume after; null on its first lease. */
  cursor: unknown;
  /** Items finished over all earlier leases. */
  processed: number;
}

/** How a leased partition's instance ended in this process. */
export interface LeaseOutcome {
  /** 'done': walked; 'failed': `each`/`build` threw or the instance crashed; 'stopped': released unfinished. */
  end: 'done' | 'failed' | 'stopped';
  cursor: unknown;
  processed: number;
  error?: IterateError;
}

/** What the run loop gives a lease engine. */
export interface LeaseRun {
  /** Walks a leased partition in an instance; resolves once the instance has ended. */
  work(p: LeasedPartition): Promise<LeaseOutcome>;
  /** The lease was lost (its lock expired): stop that instance after its current item; the engine saves nothing more for it. */
  revoke(instance: number): void;
  onAllComplete?: (r: IterateResult) => unknown;
}

/**
 * What a cross-machine engine (cowfork/bullmq) provides to the run loop in
 * place of a CursorStore: partitions leased one at a time, and where their
 * cursors are saved.
 */
export interface LeaseEngine {
  /** How many partitions this process works on at once. */
  readonly concurrency: number;
  /**
   * Leases partitions until the run has ended everywhere or stop() is called:
   * `work` walks one and resolves once its instance has ended. Resolves to the
   * run-wide result when this process saw the run end, null when it stopped first.
   */
  lease(run: LeaseRun): Promise<IterateResult | null>;
  /** Saves a leased partition's cursor; rejects when the save failed. */
  save(instance: number, cursor: unknown, processed: number): Promise<void>;
  /** Takes no new partitions; leased ones end as their instances stop. */
  stop(): void;
}

export interface EngineOptions<I, C> {
  instances: number;
  store: CursorStore;
  /** Set for a cross-machine run: partitions come from here, and cursors go here instead of `store`. */
  lease?: LeaseEngine;
  /** What to call the checkpoint in errors. */
  where: string;
  /** Set for file checkpoints: the file to lock. */
  lockFile?: string;
  build: Builder<I, C>;
  each: EachFn<I, C>;
  maxRuntime?: number;
  every: { items: number; ms: number };
  onStart?: (info: StartInfo<C>) => unknown;
  onComplete?: (info: InstanceResult<C>) => unknown;
  onAllComplete?: (result: IterateResult<C>) => unknown;
  onProgress?: (counts: InstanceResult<C>[]) => unknown;
  signal?: AbortSignal;
  failFast: boolean;
  reshard: 'refuse' | 'restart';
}
