// The input of a call, pulled one item at a time. An array is read in place
// (children see it copy-on-write); any other iterable or async iterable is
// pulled only when the engine has room for another item.
import { InputError } from '../errors';
import { isThenable } from '../util';

export type Pulled<T> = { done: false; value: T } | { done: true };

export class Source<T> {
  /** Set when the input is an array: every item exists before any fork. */
  readonly array: readonly T[] | undefined;
  /** How many items have been pulled. */
  pulled = 0;
  /** True once the input has ended (or failed). */
  done = false;
  private readonly iterator: Iterator<T> | AsyncIterator<T> | undefined;

  constructor(items: unknown, api: string) {
    if (Array.isArray(items)) {
      this.array = items;
      return;
    }
    const it = items as Partial<AsyncIterable<T> & Iterable<T>> | null | undefined;
    const asyncOpen = it?.[Symbol.asyncIterator];
    const syncOpen = it?.[Symbol.iterator];
    if (typeof asyncOpen === 'function') {
      this.iterator = asyncOpen.call(it);
    } else if (typeof syncOpen === 'function') {
      this.iterator = syncOpen.call(it);
    } else {
      throw new TypeError(`${api}: items must be an array, an iterable or an async iterable`);
    }
  }

  /** The number of items, when known: an array's length, or the count once the input ended. */
  get length(): number | undefined {
    if (this.array !== undefined) return this.array.length;
    return this.done ? this.pulled : undefined;
  }

  /**
   * The next item: synchronously for an array or a sync iterable, as a
   * promise for an async iterable. What the input throws becomes an
   * InputError (thrown or rejected).
   */
  next(): Pulled<T> | Promise<Pulled<T>> {
    if (this.done) return { done: true };
    if (this.array !== undefined) {
      if (this.pulled >= this.array.length) {
        this.done = true;
        return { done: true };
      }
      return { done: false, value: this.array[this.pulled++] };
    }
    let r: IteratorResult<T> | Promise<IteratorResult<T>>;
    try {
      r = this.iterator!.next();
    } catch (err) {
      throw this.failed(err);
    }
    if (!isThenable(r)) return this.accept(r);
    return Promise.resolve(r).then(
      (v) => this.accept(v),
      (err) => {
        throw this.failed(err);
      },
    );
  }

  /** Ends the input early (a failure, an abort, a break): runs its finally blocks, ignoring what they throw. */
  close(): void {
    if (this.done) return;
    this.done = true;
    try {
      const r = this.iterator?.return?.();
      if (isThenable(r)) Promise.resolve(r).catch(() => undefined);
    } catch {
      // The call already has its outcome.
    }
  }

  private accept(r: IteratorResult<T>): Pulled<T> {
    if (r === null || typeof r !== 'object') throw this.failed(new TypeError(`the iterator's next() returned ${String(r)}, not an object`));
    if (r.done) {
      this.done = true;
      return { done: true };
    }
    this.pulled++;
    return { done: false, value: r.value };
  }

  private failed(err: unknown): InputError {
    this.done = true;
    const index = this.pulled;
    const what = err instanceof Error ? err.message : String(err);
    return new InputError(`the input failed while producing item ${index}: ${what}`, index, err);
  }
}
