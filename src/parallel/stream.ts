// stream(): the results of a call as an async iterable. The call starts on
// the first next(). Results wait in a queue for the consumer; the engine
// pulls no more input than the consumer's read-ahead window allows, so
// memory stays bounded whatever the input's size. Leaving the loop (break,
// return, throw) stops the call and waits until every child is reaped and
// the scratch is gone.
import { type Deferred, deferred } from '../util';
import { type Call, ConsumerLeft } from './call';

export class ResultStream<R> implements AsyncIterableIterator<R> {
  private queue: unknown[] = [];
  private head = 0;
  private waiter: Deferred<IteratorResult<R>> | undefined;
  private call: Call<unknown, unknown> | undefined;
  private ended = false;
  private error: Error | undefined;

  /** `create` builds the call with `emit` as its sink; it runs on the first next(). */
  constructor(private readonly create: (emit: (out: unknown) => void) => Call<unknown, unknown> | Error | null) {}

  [Symbol.asyncIterator](): this {
    return this;
  }

  next(): Promise<IteratorResult<R>> {
    if (this.call === undefined && !this.ended) this.begin();
    if (this.head < this.queue.length) {
      const value = this.queue[this.head] as R;
      this.queue[this.head++] = undefined;
      if (this.head > 1024 && this.head * 2 > this.queue.length) {
        this.queue = this.queue.slice(this.head);
        this.head = 0;
      }
      this.call!.consume();
      return Promise.resolve({ value, done: false });
    }
    if (this.ended) {
      const err = this.error;
      this.error = undefined;
      return err ? Promise.reject(err) : Promise.resolve({ value: undefined, done: true });
    }
    this.waiter = deferred();
    return this.waiter.promise;
  }

  async return(): Promise<IteratorResult<R>> {
    const call = this.call;
    if (call !== undefined && !this.ended) {
      call.stop(new ConsumerLeft('the stream consumer left'));
      await call.promise.catch(() => undefined);
    }
    this.ended = true;
    this.error = undefined;
    this.queue = [];
    this.head = 0;
    return { value: undefined, done: true };
  }

  async throw(err?: unknown): Promise<IteratorResult<R>> {
    await this.return();
    throw err;
  }

  private begin(): void {
    const made = this.create((out) => this.emit(out));
    if (made === null || made instanceof Error) return this.end(made ?? undefined);
    this.call = made;
    made.promise.then(
      () => this.end(undefined),
      (err: Error) => this.end(err instanceof ConsumerLeft ? undefined : err),
    );
    made.start();
  }

  private emit(out: unknown): void {
    const w = this.waiter;
    if (w === undefined) {
      this.queue.push(out);
      return;
    }
    this.waiter = undefined;
    this.call!.consume();
    w.resolve({ value: out as R, done: false });
  }

  private end(err: Error | undefined): void {
    if (this.ended) return;
    this.ended = true;
    this.error = err;
    const w = this.waiter;
    if (w === undefined) return;
    this.waiter = undefined;
    this.error = undefined;
    if (err) w.reject(err);
    else w.resolve({ value: undefined, done: true });
  }
}
