// What pause() and ioWait() return inside a generator fiber: a description
// of the park, which parks the fiber when it is yielded. It costs no promise.
// `yield* op` does the same and types the result. Used as a promise instead
// (awaited, or passed to Promise.all by code the fiber calls), it becomes a
// plain awaitable, as pause()/ioWait() are outside any fiber.
import type { ParkTables } from './parks';

export class Op<T> implements Promise<T> {
  constructor(
    readonly core: ParkTables,
    /** -1 for pause(). */
    readonly fd: number,
    readonly mode: number,
    /** pause's duration, or ioWait's timeout (Infinity for none), in milliseconds. */
    readonly ms: number,
  ) {}

  *[Symbol.iterator](): Generator<Op<T>, T, unknown> {
    return (yield this) as T;
  }

  get [Symbol.toStringTag](): string {
    return 'Promise';
  }

  /** A plain awaitable for this park. Not cached: the scheduler's pause(0) Op is shared. */
  private asPromise(): Promise<T> {
    const c = this.core;
    return (this.fd < 0 ? c.pause(null, this.ms) : c.ioWait(null, this.fd, this.mode, this.ms)) as Promise<T>;
  }

  then<A = T, B = never>(
    onFulfilled?: ((value: T) => A | PromiseLike<A>) | null,
    onRejected?: ((reason: unknown) => B | PromiseLike<B>) | null,
  ): Promise<A | B> {
    return this.asPromise().then(onFulfilled, onRejected);
  }

  catch<B = never>(onRejected?: ((reason: unknown) => B | PromiseLike<B>) | null): Promise<T | B> {
    return this.asPromise().catch(onRejected);
  }

  finally(onFinally?: (() => void) | null): Promise<T> {
    return this.asPromise().finally(onFinally);
  }
}
