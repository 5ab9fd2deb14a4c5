// The parent's pending timers and immediates in a map / each / stream or
// iterate child. A child that awaits (an async item) runs its event loop, and
// that loop holds the parent's timer lists and immediate queue: a parent's
// `setTimeout`, `setImmediate`, `setInterval` or `await sleep()` pending at
// the fork ran in every such child, so the parent's own code went on there
// (docs/hazards.md, §9).
//
// Node has no API to list timers. Each Timeout and Immediate stores its
// callback in one property (`_onTimeout`, `_onImmediate`) that its
// constructor assigns, and Node reads that property to decide whether, and
// what, to run: `listOnTimeout` drops a timer whose `_onTimeout` is empty, as
// for a cleared one, and `processImmediate` calls `_onImmediate`. An accessor
// on each prototype records, on that assignment, which process generation
// made the timer; in a child that drops the parent's timers, a timer of an
// earlier generation then reads as cleared (an immediate as a no-op).
//
// What is dropped: every immediate of the parent, and its *ref'd* timers. An
// unref'd timer keeps running: libraries keep their housekeeping tickers
// unref'd (undici's one timer behind every request timeout is created in the
// parent and reused by a child's requests), and a timer that does not keep
// the process alive is rarely the app's own work. One kind of unref'd timer
// is the parent's work all the same, and is dropped too: a socket's idle
// timeout (`socket.setTimeout`, which `http.get(url, { timeout })` and
// `req.setTimeout` use). Kept, it fired in every child, and a parent's
// request ran its 'timeout' and 'error' handlers there (measured: in both map
// children). Such timers are marked as they are made, by a wrapper around
// that call. (An `AbortSignal.timeout()` signal's timer is kept: the child's
// own work may use the signal; src/abort-signals.ts removes the parent's
// listeners from it instead.) A parent timer the child itself refreshes
// (`timer.refresh()`) becomes the child's.
//
// Where Node's layout differs (the accessor is bypassed, or a timer does not
// read as expected), nothing is installed and the first fork warns once.
import net from 'node:net';
import { processState, replaceValue } from './util';
import { warnFromParent } from './warn';

const CALLBACK = Symbol('cowfork.timerCallback');
const GENERATION = Symbol('cowfork.timerGeneration');
/** An unref'd timer that is the parent's work all the same (see above): dropped like a ref'd one. */
const PARENT_WORK = Symbol('cowfork.timerParentWork');

interface Owned {
  [CALLBACK]?: unknown;
  [GENERATION]?: number;
  [PARENT_WORK]?: true;
  hasRef(): boolean;
}

interface TimerState {
  /** This process's generation: a child that drops its parent's timers takes a new one. */
  generation: number;
  /** Whether this process drops the timers of earlier generations. */
  dropping: boolean;
  /** Whether the accessors are on the prototypes. */
  installed: boolean;
  /** Above 0 while a call whose timers are the parent's work is making them (markParentWork). */
  marking: number;
}

// Only the first copy of cowfork in the process installs the accessors.
const state = processState<TimerState>('cowfork.timers', () => ({ generation: 0, dropping: false, installed: false, marking: 0 }));
let checked = false;

const noop = (): void => {};

/**
 * Puts the recording accessor on `proto[key]`. `keep(timer)` says whether a
 * timer of an earlier generation still runs; `dropped` is what it reads as.
 */
function own(proto: object, key: '_onTimeout' | '_onImmediate', keep: (t: Owned) => boolean, dropped: unknown): void {
  Object.defineProperty(proto, key, {
    configurable: true,
    enumerable: false,
    get(this: Owned): unknown {
      const cb = this[CALLBACK];
      if (!state.dropping || this[GENERATION] === state.generation || cb == null || keep(this)) return cb;
      return dropped;
    },
    set(this: Owned, cb: unknown): void {
      this[CALLBACK] = cb;
      this[GENERATION] = state.generation;
      if (state.marking > 0) this[PARENT_WORK] = true;
    },
  });
}

/** Whether timers made now record their generation and read back their callback. */
function works(): boolean {
  const t = setTimeout(noop, 1e9) as unknown as Owned & { _onTimeout: unknown };
  const i = setImmediate(noop) as unknown as Owned & { _onImmediate: unknown };
  try {
    return (
      !Object.hasOwn(t, '_onTimeout') &&
      !Object.hasOwn(i, '_onImmediate') &&
      t._onTimeout === noop &&
      i._onImmediate === noop &&
      t[GENERATION] === state.generation &&
      i[GENERATION] === state.generation
    );
  } finally {
    clearTimeout(t as unknown as NodeJS.Timeout);
    clearImmediate(i as unknown as NodeJS.Immediate);
  }
}

/** At load: installs the accessors, or leaves Node's timers as they are where they do not fit. */
export function recordTimerOwners(): void {
  if (state.installed) return;
  const t = setTimeout(noop, 1e9);
  const i = setImmediate(noop);
  clearTimeout(t);
  clearImmediate(i);
  const timeoutProto = Object.getPrototypeOf(t) as { refresh(): unknown };
  const immediateProto = Object.getPrototypeOf(i) as object;
  // An accessor already there (another copy of cowfork, or Node's own) is not ours to replace.
  if (Object.getOwnPropertyDescriptor(timeoutProto, '_onTimeout') || Object.getOwnPropertyDescriptor(immediateProto, '_onImmediate')) return;
  if (typeof timeoutProto.refresh !== 'function') return;
  own(timeoutProto, '_onTimeout', (timer) => !timer.hasRef() && timer[PARENT_WORK] !== true, null);
  own(immediateProto, '_onImmediate', () => false, noop);
  state.installed = works();
  if (!state.installed) {
    delete (timeoutProto as { _onTimeout?: unknown })._onTimeout;
    delete (immediateProto as { _onImmediate?: unknown })._onImmediate;
    return;
  }
  // A parent timer the child refreshes is the child's from then on (undici re-arms its ticker so).
  const refresh = timeoutProto.refresh;
  replaceValue(timeoutProto, 'refresh', function (this: Owned) {
    this[GENERATION] = state.generation;
    return refresh.call(this);
  });
  markParentWork(net.Socket.prototype, 'setTimeout');
}

/** Wraps `target[key]` so that the timers it makes are dropped in a child even though they are unref'd. */
function markParentWork(target: object, key: string): void {
  const fn = (target as Record<string, unknown>)[key];
  if (typeof fn !== 'function') return;
  replaceValue(target, key, {
    [key](this: unknown, ...args: unknown[]): unknown {
      state.marking++;
      try {
        return Reflect.apply(fn, this, args);
      } finally {
        state.marking--;
      }
    },
  }[key]);
}

/** Before a fork that will drop them: says once where the parent's timers could not be told apart. */
export function warnIfTimersUnknown(): void {
  if (checked) return;
  checked = true;
  if (state.installed) return;
  warnFromParent(
    `cowfork: Node ${process.version}'s timers do not store their callback as cowfork expects, so a timer or ` +
      'immediate the parent had pending at a fork can run in a map or iterate child. Stop your timers in an ' +
      'atFork({ child }) hook (see docs/hazards.md, §9).',
    'COWFORK_TIMERS_UNKNOWN',
  );
}

/** In a child: the timers and immediates pending from earlier generations do not run here (see above). */
export function dropParentTimers(): void {
  state.generation++;
  state.dropping = state.installed;
}
