// The public Parallel API: map, each, stream, Parallel and ParallelWorker.
// Each is a thin facade: validate, check fork safety, delegate to the engine
// (run.ts picks a strategy; call.ts is the parent engine; child.ts the body
// every child runs).
import { forkUnsafeError, isForkSafe } from '../fork';
import type { CallKind } from './call';
import { type ItemFn, type Items, type ParallelOptions, type RunOptions, type Settled, type StreamOptions, resolveOptions } from './options';
import { makeCall, run } from './run';
import { Source } from './source';
import { ResultStream } from './stream';

export type { ItemContext, ItemFn, Items, ParallelOptions, Settled, StreamOptions } from './options';

function prepare<T>(api: string, items: unknown, fn: unknown, options: unknown, streamed = false): [Source<T>, RunOptions] {
  if (typeof fn !== 'function') throw new TypeError(`${api}: fn must be a function`);
  const opts = resolveOptions(options, streamed);
  if (opts.concurrency > 0 && !isForkSafe()) throw forkUnsafeError(api);
  return [new Source<T>(items, api), opts];
}

/**
 * Runs `fn` over `items` in forked children and resolves to the results in
 * input order. `fn` may close over any parent state: children see it
 * copy-on-write. `items` may be an array, an iterable or an async iterable;
 * a lazy input is pulled only as fast as children free up.
 */
export function map<T, R>(items: Items<T>, fn: ItemFn<T, R>, options: ParallelOptions & { settle: true }): Promise<Settled<Awaited<R>>[]>;
export function map<T, R>(items: Items<T>, fn: ItemFn<T, R>, options?: ParallelOptions): Promise<Awaited<R>[]>;
export async function map<T, R>(items: Items<T>, fn: ItemFn<T, R>, options?: ParallelOptions): Promise<unknown> {
  const [source, opts] = prepare<T>('map', items, fn, options);
  return run(source, fn, { collect: 'array', sendValues: true }, opts);
}

/**
 * Runs `fn` over `items` in forked children for its side effects and resolves
 * once every child has exited. With `settle: true` it resolves to per-item
 * outcomes.
 */
export function each<T>(items: Items<T>, fn: ItemFn<T, unknown>, options: ParallelOptions & { settle: true }): Promise<Settled<undefined>[]>;
export function each<T>(items: Items<T>, fn: ItemFn<T, unknown>, options?: ParallelOptions): Promise<void>;
export async function each<T>(items: Items<T>, fn: ItemFn<T, unknown>, options?: ParallelOptions): Promise<unknown> {
  const [source, opts] = prepare<T>('each', items, fn, options);
  const kind: CallKind = opts.settle ? { collect: 'array', sendValues: false } : { collect: 'none', sendValues: false };
  return run(source, fn, kind, opts);
}

/**
 * Runs `fn` over `items` in forked children and yields the results as they
 * come: in input order, or as they finish with `ordered: false` (with
 * `settle: true`, Settled records). Memory stays bounded by concurrency ×
 * readAhead items. Leaving the loop stops and reaps every child. Bad
 * arguments throw at once; failures of the call reject the pending next().
 */
export function stream<T, R>(items: Items<T>, fn: ItemFn<T, R>, options: StreamOptions & { settle: true }): AsyncIterableIterator<Settled<Awaited<R>>>;
export function stream<T, R>(items: Items<T>, fn: ItemFn<T, R>, options?: StreamOptions): AsyncIterableIterator<Awaited<R>>;
export function stream<T, R>(items: Items<T>, fn: ItemFn<T, R>, options?: StreamOptions): AsyncIterableIterator<unknown> {
  const [source, opts] = prepare<T>('stream', items, fn, options, true);
  return new ResultStream((emit) => makeCall(source, fn, { collect: 'stream', sendValues: true, emit }, opts) as never);
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
  mapProcesses(items: Items<In>): Promise<Awaited<Out>[]> {
    return map(items, (item, index) => this.worker.process(item, index), this.options as ParallelOptions);
  }

  /** Resolves 0 once every child has exited. */
  async eachProcess(items: Items<In>): Promise<0> {
    await each(items, (item, index) => this.worker.process(item, index), this.options as ParallelOptions);
    return 0;
  }
}
