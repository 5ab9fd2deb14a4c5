// map / each / Parallel start here: pick the strategy, start it, return its promise.
import { AbortError } from '../errors';
import type { ItemFn, RunOptions, Settled } from './call';
import { IsolatedCall } from './isolated';
import { PoolCall } from './pool';

export type { ItemFn, RunOptions, Settled } from './call';

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
