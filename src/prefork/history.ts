// What the master remembers about each worker num across that num's workers:
// restarts, and the crash streak that drives the backoff.

/** A worker that dies before it is ready, or this soon after, crashed. */
export const CRASH_WINDOW_MS = 1000;
export const BACKOFF_BASE_MS = 100;
const BACKOFF_MAX_MS = 10_000;

export interface NumHistory {
  restarts: number;
  /** Consecutive crashes; drives the backoff. */
  streak: number;
  /** No fork for this num before this time (crash-loop backoff). */
  notBefore: number;
  /** Its last worker died unasked (a crash, kill -9, a timeout): replace it first, collect later. */
  lost: boolean;
}

export class Histories {
  private readonly byNum = new Map<number, NumHistory>();

  of(num: number): NumHistory {
    let h = this.byNum.get(num);
    if (h === undefined) {
      h = { restarts: 0, streak: 0, notBefore: 0, lost: false };
      this.byNum.set(num, h);
    }
    return h;
  }

  /** Milliseconds until the next num's backoff ends, or Infinity. */
  nextDue(now: number): number {
    let next = Infinity;
    for (const h of this.byNum.values()) if (h.notBefore > now) next = Math.min(next, h.notBefore - now);
    return next;
  }
}

/** Consecutive crashes of one num: the first is replaced at once, then 0.1 s, 0.2 s, ... up to 10 s. */
export function backoff(streak: number): number {
  if (streak <= 1) return 0;
  return Math.min(BACKOFF_MAX_MS, BACKOFF_BASE_MS * 2 ** (streak - 2));
}
