// withTimeout(seconds, fn): trio's fail_after. Opens a deadline over the
// running fiber; if it passes before fn ends, the fiber's park (the one it
// waits in then, and every later one until the scope closes) raises
// TimeoutError, so fn's `finally` blocks run. Closing the scope removes its
// timer. A generator fn gives a generator to `yield*`; any other fn, a promise.
import { SchedulerError } from '../errors';
import { isGeneratorFunction } from './args';
import { currentFiber, type FiberImpl } from './fiber';

function runningFiber(): FiberImpl<any> {
  const f = currentFiber();
  if (f === null) {
    throw new SchedulerError('withTimeout() was called outside any fiber; its deadline raises at a fiber\u2019s park, so call it inside one');
  }
  return f;
}

function* scopedGenerator<T>(ms: number, fn: () => Generator<unknown, T, unknown>): Generator<unknown, T, unknown> {
  const f = runningFiber();
  const d = f.core.openDeadline(f, ms, true);
  try {
    return yield* fn();
  } finally {
    f.core.closeDeadline(d);
  }
}

async function scopedAsync<T>(ms: number, fn: () => T | PromiseLike<T>): Promise<T> {
  const f = runningFiber();
  const d = f.core.openDeadline(f, ms, true);
  try {
    return await fn();
  } finally {
    f.core.closeDeadline(d);
  }
}

export function withTimeout(ms: number, fn: () => unknown): unknown {
  return isGeneratorFunction(fn) ? scopedGenerator(ms, fn as () => Generator<unknown, unknown, unknown>) : scopedAsync(ms, fn);
}
