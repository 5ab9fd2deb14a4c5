// map / each / stream start here: pick the strategy and build its call.
import { AbortError } from '../errors';
import type { Call, CallKind } from './call';
import { FeedCall } from './feed';
import { IsolatedCall } from './isolated';
import type { ItemFn, RunOptions } from './options';
import { PoolCall } from './pool';
import { SerialCall } from './serial';
import type { Source } from './source';

/**
 * The call for these items and options, not yet started; an AbortError when
 * the signal has already fired; null when there is nothing to do (an empty
 * array).
 */
export function makeCall<T, R>(source: Source<T>, fn: ItemFn<T, R>, kind: CallKind, opts: RunOptions): Call<T, R> | AbortError | null {
  if (opts.signal?.aborted) return new AbortError('The operation was aborted', { cause: opts.signal.reason });
  if (source.array?.length === 0) return null;
  if (opts.concurrency === 0) return new SerialCall(source, fn, kind, opts);
  if (opts.isolation) return new IsolatedCall(source, fn, kind, opts);
  // The fast path: every item exists before the fork, results only at the end.
  const fast =
    source.array !== undefined &&
    kind.collect !== 'stream' &&
    opts.onResult === undefined &&
    opts.maxItemsPerChild === undefined &&
    opts.maxMemoryPerChild === undefined;
  return fast ? new PoolCall(source, fn, kind, opts) : new FeedCall(source, fn, kind, opts);
}

/** Runs a call to its end: map's and each's promise. */
export function run<T, R>(source: Source<T>, fn: ItemFn<T, R>, kind: CallKind, opts: RunOptions): Promise<unknown> {
  const call = makeCall(source, fn, kind, opts);
  if (call === null) return Promise.resolve(kind.collect === 'array' ? [] : undefined);
  if (call instanceof Error) return Promise.reject(call);
  call.start();
  return call.promise;
}
