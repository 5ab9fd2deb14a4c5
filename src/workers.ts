// The parent's worker_threads at a fork. A Worker's thread takes process-wide
// locks while it starts and while it tears down (the main isolate's interrupt
// lock, V8's Wasm engine lock, the platform's per-isolate lock). A fork inside
// one of those short sections hands the child a lock nobody will release, and
// the child hangs the first time it needs it (docs/hazards.md, "worker_threads").
// Such a section never sleeps, so the parent waits, bounded, until each of its
// Workers' threads is asleep or gone before it forks (native/settle.c).
import type { Worker } from 'node:worker_threads';
import { native } from './native';

/**
 * How long a fork waits at most for the thread of a Worker that has not come
 * online yet: its start (an isolate, Node's bootstrap) takes tens of
 * milliseconds, longer on a loaded machine, and holds locks throughout.
 */
export const SETTLE_STARTING_MAX_MS = 1000;
/**
 * How long a fork waits at most for the thread of a running Worker: a
 * teardown is a few milliseconds; a Worker busy computing costs each fork this much.
 */
export const SETTLE_RUNNING_MAX_MS = 50;

interface Tracked {
  tids: number[];
  online: boolean;
}

/** Threads that are not a Worker's own, by name (libuv 1.50+ and Node 24+ name their own threads). */
const NOT_A_WORKER = /libuv-worker|V8Worker|DelayedTaskSche|SignalInspector/;

const live = new Map<Worker, Tracked>();
let known: Set<number> | null = null;
let tracking = false;

function threads(): Array<[number, string]> {
  try {
    return native.threads();
  } catch {
    return []; // not Linux: nothing to wait for
  }
}

/**
 * Starts noting each Worker's thread(s): those that appeared since the last
 * look, when Node announces the Worker ('worker' on process, after its thread
 * has started). Node 24+ names it "WorkerThread"; before that every thread
 * is "node", so the Worker's is the new one.
 */
export function trackWorkers(): void {
  if (tracking) return;
  tracking = true;
  known = new Set(threads().map(([tid]) => tid));
  process.on('worker', (worker: Worker) => {
    const now = threads();
    // In a child that has not looked yet, every thread but the main one is new.
    const before = known ?? new Set([process.pid]);
    const fresh = now.filter(([tid, name]) => !before.has(tid) && !NOT_A_WORKER.test(name));
    known = new Set(now.map(([tid]) => tid));
    if (fresh.length === 0) return;
    const entry: Tracked = { tids: fresh.map(([tid]) => tid), online: false };
    live.set(worker, entry);
    worker.once('online', () => (entry.online = true));
    worker.once('exit', () => live.delete(worker));
  });
}

/**
 * Before a fork: waits until every live Worker's thread is asleep or gone,
 * up to SETTLE_STARTING_MAX_MS for Workers still starting, then up to
 * SETTLE_RUNNING_MAX_MS for all. Returns how many were still running (0: none).
 */
export function settleWorkers(): number {
  if (live.size === 0) return 0;
  const entries = [...live.values()];
  const starting = entries.filter((e) => !e.online).flatMap((e) => e.tids);
  if (starting.length > 0) native.settleThreads(Int32Array.from(starting), SETTLE_STARTING_MAX_MS);
  return native.settleThreads(Int32Array.from(entries.flatMap((e) => e.tids)), SETTLE_RUNNING_MAX_MS);
}

/** In a child: the parent's Workers are not this process's (and its threads are not known until needed). */
export function forgetParentWorkers(): void {
  live.clear();
  known = null;
}
