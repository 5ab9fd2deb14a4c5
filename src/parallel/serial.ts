// concurrency: 0, for debugging: fn runs in the calling process, one item at
// a time, with no fork, so breakpoints and stack traces work. Results,
// errors and options keep the forked modes' contract: a throw is a
// WorkerError carrying the original error, an abort an AbortError, and an
// item over its timeout a TimeoutError. Nothing can kill an item here, so a
// synchronous item fails with TimeoutError only once it returns, and an
// async one is abandoned (left running) when its timeout fires.
import { TimeoutError, WorkerError } from '../errors';
import { libraryTimeout } from '../fork';
import { type Deferred, deferred, isThenable } from '../util';
import { Call, type CallKind } from './call';
import type { ItemContext, ItemFn, RunOptions } from './options';
import { now } from './shm';
import type { Pulled, Source } from './source';

const TIMED_OUT = Symbol('timed out');
const STOPPED = Symbol('stopped');

export class SerialCall<T, R> extends Call<T, R> {
  private running = false;
  private readonly controller = new AbortController();
  private readonly stopWake: Deferred<typeof STOPPED> = deferred();
  private room: Deferred<void> | undefined;

  constructor(source: Source<T>, fn: ItemFn<T, R>, kind: CallKind, opts: RunOptions) {
    super(source, fn, kind, opts, 0);
  }

  start(): void {
    this.running = true;
    this.loop().then(
      () => this.done(),
      (err: Error) => {
        this.stop(err);
        this.done();
      },
    );
  }

  private done(): void {
    this.running = false;
    this.maybeFinish();
  }

  protected override continueWork(): boolean {
    return this.running;
  }

  protected override onStop(): void {
    this.controller.abort(new Error('the parallel call stopped'));
    this.stopWake.resolve(STOPPED);
    this.room?.resolve();
  }

  protected override onRoom(): void {
    this.room?.resolve();
  }

  private async loop(): Promise<void> {
    const ctx: ItemContext = Object.freeze({ worker: 0, signal: this.controller.signal });
    for (;;) {
      while (!this.isStopped && this.source.pulled - this.released() >= this.window) {
        this.room = deferred();
        await this.room.promise;
      }
      if (this.isStopped) return;
      let r: Pulled<T> | Promise<Pulled<T>> = this.source.next();
      if (isThenable(r)) r = await r;
      if (r.done || this.isStopped) return;
      await this.runItem(r.value, this.source.pulled - 1, ctx);
      this.reportProgress(this.ledger.settled);
    }
  }

  private async runItem(item: T, index: number, ctx: ItemContext): Promise<void> {
    const started = now();
    const timeout = this.opts.timeout;
    let v: R | Promise<R>;
    try {
      v = this.fn(item, index, ctx);
    } catch (err) {
      return this.fail(index, this.itemError(index, err));
    }
    if (isThenable(v)) {
      let cancel: (() => void) | undefined;
      const timer = new Promise<typeof TIMED_OUT>((res) => {
        if (timeout !== undefined) cancel = libraryTimeout(() => res(TIMED_OUT), timeout);
      });
      try {
        const out = await Promise.race([Promise.resolve(v), timer, this.stopWake.promise]);
        if (out === STOPPED) return;
        if (out === TIMED_OUT) return this.fail(index, this.timeoutError(index));
        v = out as R;
      } catch (err) {
        return this.fail(index, this.itemError(index, err));
      } finally {
        cancel?.();
      }
    } else if (timeout !== undefined && now() - started > timeout) {
      return this.fail(index, this.timeoutError(index));
    }
    this.succeed(index, this.kind.sendValues ? v : undefined);
  }

  private itemError(index: number, err: unknown): WorkerError {
    const cause = err instanceof Error ? err : new Error(`non-Error thrown: ${String(err)}`);
    return new WorkerError(`item ${index} failed in process ${process.pid} (concurrency: 0): ${cause.message}`, index, process.pid, cause);
  }

  private timeoutError(index: number): TimeoutError {
    return new TimeoutError(
      `item ${index} exceeded the ${this.opts.timeout} ms timeout (concurrency: 0 cannot interrupt it; a synchronous item is failed once it returns)`,
      index,
      this.opts.timeout!,
    );
  }
}
