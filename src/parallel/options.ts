// The options of map / each / stream / Parallel, validated once, with messages
// that name the option path.
import os from 'node:os';
import type { ProgressCallback } from '../progress';
import {
  boolean,
  nonNegativeInteger,
  optionalFunction,
  optionalSignal,
  optionsObject,
  positiveInteger,
  positiveNumber,
  rejectUnknown,
} from '../validate';

/** What `fn` gets as its third argument. */
export interface ItemContext {
  /** 0..concurrency-1: stable for a pool child's lifetime and reused by its replacement. 0 with concurrency: 0. */
  readonly worker: number;
  /** Aborts when the call stops (a failure elsewhere, an abort, the consumer leaving a stream). */
  readonly signal: AbortSignal;
}

export type ItemFn<T, R> = (item: T, index: number, ctx: ItemContext) => R | Promise<R>;

export type Settled<R> = { status: 'fulfilled'; value: R } | { status: 'rejected'; reason: Error };

/** Anything map / each / stream accept as items. */
export type Items<T> = Iterable<T> | AsyncIterable<T>;

export interface ParallelOptions {
  /** How many children run at once. Default: os.availableParallelism(). 0 runs fn in this process, serially (for debugging). */
  concurrency?: number;
  /** false (default): a pool of long-lived children; true: one fresh fork per item. */
  isolation?: boolean;
  /** Per-item limit in ms; the child is killed and the item fails with TimeoutError. */
  timeout?: number;
  /** Kills the children and rejects with AbortError. */
  signal?: AbortSignal;
  /** true: resolve to per-item { status, value | reason } instead of failing fast. */
  settle?: boolean;
  /** Called as items finish. The total is NaN while a lazy input has not ended. */
  onProgress?: ProgressCallback;
  /** true: draw a progress bar on stderr when it is a TTY. */
  progress?: boolean;
  /** Called in the parent with each result, in input order, as soon as it and every earlier result are in. */
  onResult?: (value: unknown, index: number) => void;
  /** A pool child exits cleanly after this many items; a fresh fork takes its place, with the same worker number. */
  maxItemsPerChild?: number;
  /** A pool child whose RSS exceeds this many bytes exits cleanly after its current item; a fresh fork takes its place. */
  maxMemoryPerChild?: number;
  /** Items pulled from the input but not yet delivered, per child (default 512): memory is bounded by concurrency × readAhead items. */
  readAhead?: number;
}

export interface StreamOptions extends ParallelOptions {
  /** true (default): yield results in input order; false: as they finish. */
  ordered?: boolean;
}

export interface RunOptions {
  concurrency: number;
  isolation: boolean;
  timeout?: number;
  signal?: AbortSignal;
  settle: boolean;
  onProgress?: ProgressCallback;
  progress: boolean;
  onResult?: (value: unknown, index: number) => void;
  maxItemsPerChild?: number;
  maxMemoryPerChild?: number;
  readAhead: number;
  ordered: boolean;
}

const KNOWN = [
  'concurrency',
  'isolation',
  'timeout',
  'signal',
  'settle',
  'onProgress',
  'progress',
  'onResult',
  'maxItemsPerChild',
  'maxMemoryPerChild',
  'readAhead',
] as const;

export function resolveOptions(raw: unknown, streamed = false): RunOptions {
  const o = optionsObject(raw);
  rejectUnknown(o, streamed ? [...KNOWN, 'ordered'] : KNOWN);
  const opts: RunOptions = {
    concurrency: nonNegativeInteger(o.concurrency, 'options.concurrency', os.availableParallelism()),
    isolation: boolean(o.isolation, 'options.isolation', false),
    timeout: positiveNumber(o.timeout, 'options.timeout'),
    signal: optionalSignal(o.signal, 'options.signal'),
    settle: boolean(o.settle, 'options.settle', false),
    onProgress: optionalFunction<ProgressCallback>(o.onProgress, 'options.onProgress'),
    progress: boolean(o.progress, 'options.progress', false),
    onResult: optionalFunction<(value: unknown, index: number) => void>(o.onResult, 'options.onResult'),
    maxItemsPerChild: o.maxItemsPerChild === undefined ? undefined : positiveInteger(o.maxItemsPerChild, 'options.maxItemsPerChild', 0),
    maxMemoryPerChild: o.maxMemoryPerChild === undefined ? undefined : positiveInteger(o.maxMemoryPerChild, 'options.maxMemoryPerChild', 0),
    readAhead: positiveInteger(o.readAhead, 'options.readAhead', 512),
    ordered: boolean(o.ordered, 'options.ordered', true),
  };
  if (opts.isolation && (opts.maxItemsPerChild !== undefined || opts.maxMemoryPerChild !== undefined)) {
    throw new TypeError('options.maxItemsPerChild and options.maxMemoryPerChild apply to pool children; with options.isolation every item already gets a fresh fork');
  }
  return opts;
}
