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

export interface EngineOptions<I, C> {
  instances: number;
  store: CursorStore;
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
