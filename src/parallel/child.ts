// The one child body every strategy runs. A strategy feeds it a setup object:
// where the next item comes from, how it reaches the item, and where the
// outcomes go. The body runs items one at a time, records which item it is
// in (for crash and timeout attribution), flushes outcomes in batches,
// aborts ctx.signal when the call stops, and leaves cleanly when the child
// is due for recycling.
import { exitChild, onChildFatal } from '../child-exit';
import { type BatchWriter, Outcome } from '../frame';
import { type ShmHandle, native } from '../native';
import { isThenable } from '../util';
import { type ItemContext, type ItemFn } from './options';
import { DONE, SLOT_ASYNC, SLOT_START, STOP, now, slotBase } from './shm';

/** The next index to run, or null when there is none. `idle` flushes pending outcomes before the source blocks. */
export type NextIndex = (idle: () => void) => number | null;

export interface ChildSetup<T, R> {
  fn: ItemFn<T, R>;
  /** true: send values back (map, stream); false: only completion (each). */
  collect: boolean;
  settle: boolean;
  /** Pool mode: a failure sets STOP so the other children claim nothing more. Elsewhere the parent stops the call itself. */
  stopOnFailure: boolean;
  worker: number;
  shm: ShmHandle;
  out: BatchWriter;
  next: NextIndex;
  item(index: number): T;
  timed: boolean;
  maxItems?: number;
  maxMemory?: number;
}

// How often a child awaiting an async item checks whether the call stopped.
const STOP_POLL_MS = 10;

export class ChildBody<T, R> {
  private readonly base: number;
  private readonly controller = new AbortController();
  private readonly ctx: ItemContext;
  private current = -1;
  private readonly idle = (): void => this.flush();
  private done = 0;
  private failed = false;

  constructor(private readonly s: ChildSetup<T, R>) {
    this.base = slotBase(s.worker);
    this.ctx = Object.freeze({ worker: s.worker, signal: this.controller.signal });
    onChildFatal((err) => this.fatal(err));
  }

  /** Runs items until there are none, the call stops, or the child is due for recycling; resolves to the exit code. */
  run(): number | Promise<number> {
    const s = this.s;
    for (;;) {
      if (this.stopped() || this.recycleDue()) return this.finish();
      const index = s.next(this.idle);
      if (index === null) return this.finish();
      const r = this.runItem(index);
      if (r !== undefined) return r.then(() => this.run());
    }
  }

  private stopped(): boolean {
    return native.shmLoad(this.s.shm, STOP) !== 0;
  }

  private recycleDue(): boolean {
    const s = this.s;
    if (s.maxItems !== undefined && this.done >= s.maxItems) return true;
    return s.maxMemory !== undefined && this.done > 0 && process.memoryUsage.rss() > s.maxMemory;
  }

  private finish(): number {
    this.flush();
    return 0;
  }

  private flush(): void {
    if (this.s.out.flush()) this.failed = true;
  }

  private begin(index: number): void {
    this.current = index;
    // The start time first: the parent reads the index, then the time, so it
    // never pairs this item with the previous item's start time and kills a
    // child that has only just begun.
    if (this.s.timed) native.shmStore(this.s.shm, this.base + SLOT_START, Math.floor(now()));
    native.shmStore(this.s.shm, this.base, index + 1);
  }

  private end(): void {
    native.shmStore(this.s.shm, this.base, 0);
    native.shmAdd(this.s.shm, DONE, 1);
    this.current = -1;
    this.done++;
    if (this.failed && this.s.stopOnFailure && !this.s.settle) native.shmStore(this.s.shm, STOP, 1);
  }

  /** Runs one item and adds its outcome to the batch. Returns a promise only for an async item. */
  private runItem(index: number): void | Promise<void> {
    const { s } = this;
    const out = s.out;
    this.begin(index);
    let v: R | Promise<R>;
    try {
      v = s.fn(s.item(index), index, this.ctx);
    } catch (err) {
      out.add(index, Outcome.Error, err, now());
      this.flush();
      return this.end();
    }
    if (!isThenable(v)) {
      out.add(index, s.collect ? Outcome.Value : Outcome.Done, s.collect ? v : undefined, now());
      if (out.size >= 256 || out.age(now()) >= 2) this.flush();
      return this.end();
    }
    this.flush();
    return this.awaitItem(index, v);
  }

  private awaitItem(index: number, v: PromiseLike<R>): Promise<void> {
    const { s } = this;
    // The parent lets a child in an async wait finish reacting to ctx.signal
    // for a short grace before it kills it; a child in sync code it kills at once.
    native.shmStore(s.shm, this.base + SLOT_ASYNC, 1);
    const poll = setInterval(() => {
      if (this.stopped()) this.controller.abort(new Error('the parallel call stopped'));
    }, STOP_POLL_MS);
    const settle = (kind: Outcome, value: unknown): void => {
      clearInterval(poll);
      native.shmStore(s.shm, this.base + SLOT_ASYNC, 0);
      s.out.add(index, kind, value, now());
      this.flush();
      this.end();
    };
    return Promise.resolve(v).then(
      (value) => settle(s.collect ? Outcome.Value : Outcome.Done, s.collect ? value : undefined),
      (err) => settle(Outcome.Error, err),
    );
  }

  private fatal(err: unknown): void {
    const s = this.s;
    // An uncaught error inside async item code belongs to that item.
    if (this.current < 0) {
      // Between items there is no item to blame: leave as a crash.
      s.out.flush();
      process.stderr.write(`cowfork child ${process.pid}: uncaught between items: ${(err as Error)?.stack ?? String(err)}\n`);
      exitChild(native.EXIT_CODES.UNCAUGHT);
    }
    s.out.add(this.current, Outcome.Error, err, now());
    s.out.flush();
    if (s.stopOnFailure && !s.settle) native.shmStore(s.shm, STOP, 1);
    native.shmStore(s.shm, this.base, 0);
    native.shmAdd(s.shm, DONE, 1);
    exitChild(0);
  }
}
