// The public Parallel API: map, each, Parallel and ParallelWorker. Each is a
// thin facade: validate, check fork safety, delegate to the engine in run.ts.
import os from 'node:os';
import { forkUnsafeError, isForkSafe } from '../fork';
import type { ProgressCallback } from '../progress';
import {
  boolean,
  optionalFunction,
  optionalSignal,
  optionsObject,
  positiveInteger,
  positiveNumber,
  rejectUnknown,
} from '../validate';
import { type ItemFn, type RunOptions, type Settled, run } from './run';

export type { Settled } from './run';

export interface ParallelOptions {
  /** How many children run at once. Default: os.availableParallelism(). */
  concurrency?: number;
  /** false (default): a pool of long-lived children; true: one fresh fork per item. */
  isolation?: boolean;
  /** Per-item limit in ms; the child is killed and the item fails with TimeoutError. */
  timeout?: number;
  /** Kills the children and rejects with AbortError. */
  signal?: AbortSignal;
  /** true: resolve to per-item { status, value | reason } instead of failing fast. */
  settle?: boolean;
  /** Called as items finish. */
  onProgress?: ProgressCallback;
  /** true: draw a progress bar on stderr when it is a TTY. */
  progress?: boolean;
}

const KNOWN = ['concurrency', 'isolation', 'timeout', 'signal', 'settle', 'onProgress', 'progress'] as const;

function resolveOptions(raw: unknown): RunOptions {
  const o = optionsObject(raw);
  rejectUnknown(o, KNOWN);
  return {
    concurrency: positiveInteger(o.concurrency, 'options.concurrency', os.availableParallelism()),
    isolation: boolean(o.isolation, 'options.isolation', false),
    timeout: positiveNumber(o.timeout, 'options.timeout'),
    signal: optionalSignal(o.signal, 'options.signal'),
    settle: boolean(o.settle, 'options.settle', false),
    onProgress: optionalFunction<ProgressCallback>(o.onProgress, 'options.onProgress'),
    progress: boolean(o.progress, 'options.progress', false),
  };
}

function toArray<T>(items: unknown, api: string): readonly T[] {
  if (Array.isArray(items)) return items;
  if (items !== null && items !== undefined && typeof (items as Iterable<T>)[Symbol.iterator] === 'function') {
    return Array.from(items as Iterable<T>);
  }
  throw new TypeError(`${api}: items must be an array or a synchronous iterable`);
}

function prepare<T>(api: string, items: unknown, fn: unknown, options: unknown): [readonly T[], RunOptions] {
  const list = toArray<T>(items, api);
  if (typeof fn !== 'function') throw new TypeError(`${api}: fn must be a function`);
  const opts = resolveOptions(options);
  if (!isForkSafe()) throw forkUnsafeError(api);
  return [list, opts];
}

/**
 * Runs `fn` over `items` in forked children and resolves to the results in
 * input order. `fn` may close over any parent state: children see it
 * copy-on-write, nothing is serialized on the way in.
 */
export function map<T, R>(items: Iterable<T>, fn: ItemFn<T, R>, options: ParallelOptions & { settle: true }): Promise<Settled<Awaited<R>>[]>;
export function map<T, R>(items: Iterable<T>, fn: ItemFn<T, R>, options?: ParallelOptions): Promise<Awaited<R>[]>;
export async function map<T, R>(items: Iterable<T>, fn: ItemFn<T, R>, options?: ParallelOptions): Promise<unknown[]> {
  const [list, opts] = prepare<T>('map', items, fn, options);
  return run(list, fn, true, opts);
}

/**
 * Runs `fn` over `items` in forked children for its side effects and resolves
 * once every child has exited. With `settle: true` it resolves to per-item
 * outcomes.
 */
export function each<T>(items: Iterable<T>, fn: ItemFn<T, unknown>, options: ParallelOptions & { settle: true }): Promise<Settled<undefined>[]>;
export function each<T>(items: Iterable<T>, fn: ItemFn<T, unknown>, options?: ParallelOptions): Promise<void>;
export async function each<T>(items: Iterable<T>, fn: ItemFn<T, unknown>, options?: ParallelOptions): Promise<unknown> {
  const [list, opts] = prepare<T>('each', items, fn, options);
  const out = await run(list, fn, false, opts);
  return opts.settle ? out : undefined;
}

/** The seed's worker shape: subclass and implement process(item). */
export abstract class ParallelWorker<In = unknown, Out = unknown> {
  abstract process(item: In, index: number): Out | Promise<Out>;
}

/** Seed-shaped facade: new Parallel(worker).mapProcesses(items). */
export class Parallel<In, Out> {
  private readonly options: ParallelOptions;

  constructor(
    private readonly worker: ParallelWorker<In, Out>,
    options: ParallelOptions = {},
  ) {
    if (worker === null || typeof worker !== 'object' || typeof (worker as ParallelWorker).process !== 'function') {
      throw new TypeError('new Parallel(worker): worker must be an object with a process(item) method, e.g. a ParallelWorker subclass');
    }
    resolveOptions(options);
    this.options = options;
  }

  /** One entry per input, in input order. */
  mapProcesses(items: Iterable<In>): Promise<Awaited<Out>[]> {
    return map(items, (item, index) => this.worker.process(item, index), this.options as ParallelOptions);
  }

  /** Resolves 0 once every child has exited. */
  async eachProcess(items: Iterable<In>): Promise<0> {
    await each(items, (item, index) => this.worker.process(item, index), this.options as ParallelOptions);
    return 0;
  }
}
