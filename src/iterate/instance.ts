// One iterate instance: the body of a forked child. It walks its partition
// from the cursor it was given, runs `each` on every item, and after each item
// that finished writes that item's cursor to the parent's pipe (channel.ts).
// It stops between items when the parent sets the STOP flag in shared memory
// or when it gets SIGINT/SIGTERM itself, and reports a failure as one record.
import util from 'node:util';
import { exitChild, onChildFatal } from '../child-exit';
import { type ShmHandle, native } from '../native';
import { isThenable } from '../util';
import type { Builder } from './builders';
import { type Failure, writeRecord } from './channel';
import type { EachFn } from './types';

/** Shared memory: one flag, set when instances must stop after their current item. */
export const STOP = 0;
// How often an instance running synchronous items returns to its event loop to
// notice its own signals, and how often one waiting on an async item polls STOP.
const YIELD_MS = 50;
const POLL_MS = 20;

/** What the parent hands an instance at the fork. */
export interface InstanceSetup<I, C> {
  instance: number;
  instances: number;
  /** The cursor to resume after, or null to start at the beginning. */
  startCursor: C | null;
  build: Builder<I, C>;
  each: EachFn<I, C>;
  /** The STOP flag. */
  shm: ShmHandle;
  /** The parent's end of the pipe, closed here. */
  readFd: number;
  /** This instance's end: cursors, failures, the signal it stopped on. */
  fd: number;
}

function describe(item: unknown): string {
  const s = util.inspect(item, { depth: 2, breakLength: Infinity, maxStringLength: 200, maxArrayLength: 20 });
  return s.length > 300 ? `${s.slice(0, 300)}...` : s;
}

function failureRecord(err: unknown, stage: string, current: readonly [unknown, unknown] | undefined): string {
  const e = err instanceof Error ? err : new Error(String(err));
  const f: Failure = { name: e.name, message: e.message, stack: e.stack, stage };
  const code = (e as NodeJS.ErrnoException).code;
  if (code !== undefined) f.code = code;
  if (current !== undefined) {
    f.item = describe(current[0]);
    try {
      f.itemCursor = JSON.parse(JSON.stringify(current[1]) ?? 'null');
    } catch {
      f.itemCursor = describe(current[1]);
    }
  }
  return `e${JSON.stringify(f)}\n`;
}

/** Runs the instance; resolves to the child's exit code. */
export function runInstance<I, C>(setup: InstanceSetup<I, C>): Promise<number> {
const { build, each, instances, instance, shm, fd } = setup;
native.close(setup.readFd);
  const controller = new AbortController();
  let stopping = false;
  let signalled: NodeJS.Signals | undefined;
  const requestStop = (): void => {
    if (stopping) return;
    stopping = true;
    controller.abort(new Error(`iterate instance ${instance} is stopping`));
  };
  // Ctrl-C reaches the whole process group. The instance finishes its
  // current item rather than dying with it, and tells the parent why it stopped.
  const onSignal = (sig: NodeJS.Signals): void => {
    signalled ??= sig;
    requestStop();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  const shouldStop = (): boolean => {
    if (!stopping && native.shmLoad(shm, STOP) !== 0) requestStop();
    return stopping;
  };
  let current: readonly [unknown, unknown] | undefined;
  const fail = (err: unknown, stage: string): number => {
    writeRecord(fd, failureRecord(err, stage, current));
    return 1;
  };
  onChildFatal((err) => exitChild(fail(err, current === undefined ? 'iterator' : 'each')));

  const stopped = (): number => {
    if (signalled !== undefined) writeRecord(fd, `s${signalled}\n`);
    return 0;
  };

  const walk = async (): Promise<number> => {
    let iterator: Iterator<unknown> | AsyncIterator<unknown>;
    try {
      const iterable = build(instance, instances, setup.startCursor) as unknown;
      const make =
        (iterable as AsyncIterable<unknown>)?.[Symbol.asyncIterator] ?? (iterable as Iterable<unknown>)?.[Symbol.iterator];
      if (typeof make !== 'function') throw new TypeError(`build must return an iterable or async iterable, got ${describe(iterable)}`);
      iterator = make.call(iterable);
    } catch (err) {
      return fail(err, 'build');
    }
    let poller: NodeJS.Timeout | undefined;
    let lastYield = Date.now();
    try {
      for (;;) {
        if (shouldStop()) return stopped();
        if (Date.now() - lastYield >= YIELD_MS) {
          await new Promise((r) => setImmediate(r));
          lastYield = Date.now();
          if (shouldStop()) return stopped();
        }
        let step: IteratorResult<unknown>;
        try {
          const r = iterator.next();
          step = isThenable(r) ? await r : (r as IteratorResult<unknown>);
        } catch (err) {
          return fail(err, 'iterator');
        }
        if (step.done) {
          writeRecord(fd, 'd\n');
          return 0;
        }
        const pair = step.value;
        if (!Array.isArray(pair) || pair.length !== 2) {
          return fail(new TypeError(`build must yield [item, cursor] pairs, got ${describe(pair)}`), 'iterator');
        }
        current = pair as [unknown, unknown];
        let text: string | undefined;
        try {
          text = JSON.stringify(pair[1]);
        } catch {
          text = undefined;
        }
        if (text === undefined) return fail(new TypeError(`the cursor ${describe(pair[1])} is not a JSON value`), 'iterator');
        try {
          const v = each(pair[0] as I, { instance, instances, cursor: pair[1] as C, signal: controller.signal });
          if (isThenable(v)) {
            poller ??= setInterval(shouldStop, POLL_MS);
            await v;
          }
        } catch (err) {
          return fail(err, 'each');
        }
        current = undefined;
        // The parent is gone (no one can save this cursor): stop quietly.
        if (!writeRecord(fd, `c${text}\n`)) return 0;
      }
    } finally {
      if (poller !== undefined) clearInterval(poller);
      try {
        const r = iterator.return?.();
        if (isThenable(r)) await r;
      } catch {
        // Closing the iterator is best effort.
      }
    }
  };
  return walk();
}
