// The parent's timed AbortSignals in a child. An `AbortSignal.timeout(ms)`
// signal made in the parent fires in a child too: its timer is unref'd, so a
// child keeps it (src/timers.ts). That is right for the child's own work (a
// deadline the parent made and the items share: `fetch(url, { signal:
// deadline })` in a map item must still abort), but the listeners the parent
// had added before the fork are the parent's: a parent's
// `fetch(url, { signal: AbortSignal.timeout(300) })` in flight at the fork
// rejected in every child and ran the parent's `catch` there (measured: in
// both map children; docs/hazards.md, §9).
//
// cowfork notes (weakly) each signal `AbortSignal.timeout()` and
// `AbortSignal.any()` make. In a child that drops the parent's work, the
// 'abort' listeners such a signal has at the fork (and its `onabort`) are
// removed, through the public `events.getEventListeners`: the signal still
// aborts on time there, and only the child's own listeners run.
import { getEventListeners } from 'node:events';
import { WeakList, processState, replaceValue } from './util';

interface SignalState {
  installed: boolean;
  /** Signals made by AbortSignal.timeout() and AbortSignal.any(). */
  readonly signals: WeakList<AbortSignal>;
}

const state = processState<SignalState>('cowfork.abortSignals', () => ({ installed: false, signals: new WeakList() }));

/** At load: notes the signals `AbortSignal.timeout()` and `AbortSignal.any()` make. */
export function trackTimedSignals(): void {
  if (state.installed || typeof AbortSignal?.timeout !== 'function') return;
  state.installed = true;
  for (const key of ['timeout', 'any'] as const) {
    const make = AbortSignal[key] as ((...args: unknown[]) => AbortSignal) | undefined;
    if (typeof make !== 'function') continue;
    replaceValue(AbortSignal, key, {
      [key](this: unknown, ...args: unknown[]): AbortSignal {
        const signal = Reflect.apply(make, this, args) as AbortSignal;
        state.signals.add(signal);
        return signal;
      },
    }[key]);
  }
}

/** In a child: the parent's listeners on those signals are removed; the signals themselves still abort on time. */
export function dropParentSignalListeners(): void {
  for (const signal of state.signals.live()) {
    if (signal.aborted) continue;
    for (const listener of getEventListeners(signal, 'abort')) {
      signal.removeEventListener('abort', listener as (e: Event) => void);
      signal.removeEventListener('abort', listener as (e: Event) => void, true);
    }
    signal.onabort = null;
  }
}
