// Worker recycling: a worker that has served `maxRequests` (plus its own
// jitter, so that workers started together do not all recycle together) or
// whose memory is over `maxMemory` asks the master to replace it. The master
// retires it gracefully, one worker at a time (master.ts, recycle()), and its
// replacement forks from the master's clean heap: a slow leak never outlives
// a worker.
import fs from 'node:fs';
import { type ShmHandle, native } from '../native';
import type { WorkerRecycleEvent } from './types';

/** Why a worker asked to be recycled, as the worker writes it to its RECYCLE slot. */
export const RECYCLE_NONE = 0;
export const RECYCLE_REQUESTS = 1;
export const RECYCLE_MEMORY = 2;

export type RecycleCause = 'maxRequests' | 'maxMemory';

export function recycleCause(code: number): RecycleCause {
  return code === RECYCLE_MEMORY ? 'maxMemory' : 'maxRequests';
}

export interface RecycleLimits {
  maxRequests: number | null;
  /** The most requests a worker's limit adds to maxRequests, drawn at random per worker. */
  maxRequestsJitter: number;
  /** Bytes of PSS (RSS where there is no PSS). */
  maxMemory: number | null;
}

/** How often a worker measures its memory: reading smaps_rollup costs a few hundred µs. */
const MEMORY_EVERY_MS = 1000;

/** The default jitter: a tenth of maxRequests. */
export function defaultJitter(maxRequests: number | null): number {
  return maxRequests === null ? 0 : Math.floor(maxRequests / 10);
}

/**
 * This process's memory: its PSS on Linux, where a worker's pages that are
 * still shared copy-on-write with the master and its siblings count for their
 * share only, so that a fresh fork of a large master is not over the limit at
 * once. Elsewhere its RSS.
 */
export function memoryInUse(): number {
  try {
    const m = /^Pss:\s+(\d+) kB/m.exec(fs.readFileSync('/proc/self/smaps_rollup', 'latin1'));
    if (m) return Number(m[1]) * 1024;
  } catch {
    // No smaps_rollup (not Linux, or a kernel before 4.14).
  }
  return process.memoryUsage.rss();
}

/** The worker's side: counts requests, measures memory, and asks once. */
export class Recycler {
  /** This worker's request limit: maxRequests plus its jitter (Infinity without maxRequests). */
  readonly limit: number;
  private served = 0;
  private asked = false;
  private measuredAt = -Infinity;

  constructor(
    private readonly limits: RecycleLimits,
    private readonly ask: (code: number) => void,
  ) {
    this.limit =
      limits.maxRequests === null ? Infinity : limits.maxRequests + Math.floor(Math.random() * (limits.maxRequestsJitter + 1));
  }

  /** The per-request hook, or null when requests are not counted (no cost per request then). */
  get onRequest(): (() => void) | null {
    if (this.limits.maxRequests === null) return null;
    return () => {
      if (++this.served >= this.limit) this.request(RECYCLE_REQUESTS);
    };
  }

  /** Called on each heartbeat; measures at most once a second. */
  checkMemory(): void {
    if (this.limits.maxMemory === null || this.asked) return;
    const t = performance.now();
    if (t - this.measuredAt < MEMORY_EVERY_MS) return;
    this.measuredAt = t;
    if (memoryInUse() > this.limits.maxMemory) this.request(RECYCLE_MEMORY);
  }

  private request(code: number): void {
    if (this.asked) return;
    this.asked = true;
    this.ask(code);
  }
}

// Shared-memory slots a worker writes for recycling (worker.ts lays out the block).
export const RECYCLE = 2; // why the worker asks to be recycled, RECYCLE_NONE while it does not
export const REQUEST_LIMIT = 3; // the worker's own maxRequests with its jitter, 0 without one

/** The master's side: the first worker that asked to be recycled, with its event; null if none. */
export function dueForRecycling<W extends { num: number; pid: number; generation: number; shm: ShmHandle }>(
  workers: Iterable<W>,
): { worker: W; event: WorkerRecycleEvent } | null {
  for (const w of workers) {
    const code = native.shmLoad(w.shm, RECYCLE);
    if (code === RECYCLE_NONE) continue;
    const limit = native.shmLoad(w.shm, REQUEST_LIMIT);
    return { worker: w, event: { num: w.num, pid: w.pid, generation: w.generation, cause: recycleCause(code), requestLimit: limit === 0 ? null : limit } };
  }
  return null;
}
