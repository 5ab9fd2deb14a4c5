// The parent's worker_threads at a fork. A Worker's thread takes process-wide
// locks while it starts and while it tears down (Node's options lock while it
// makes the Worker's isolate, the main isolate's interrupt lock when the
// inspector reports the Worker to the main thread, V8's Wasm engine lock on
// Node 24 and 26). A fork inside one of those short sections hands the child a
// lock nobody will release, and the child hangs the first time it needs it
// (docs/hazards.md, "worker_threads"). Such a section never sleeps, so the
// parent waits, bounded, until its Workers' threads are asleep or gone before
// it forks (native/settle.c). That narrows the window to the few microseconds
// between the last look and fork(); it does not close it.
import fs from 'node:fs';
import type { Worker } from 'node:worker_threads';
import { ParentWorkerError } from './errors';
import { LIVE_WORKERS_RULE } from './inspect';
import { native } from './native';
import { ownMethod } from './util';
import { standInForGonePorts, trackWorkerPorts } from './worker-ports';

/**
 * How long a fork waits at most while a Worker has not come online yet: its
 * start (an isolate, Node's bootstrap) takes tens of milliseconds, longer on
 * a loaded machine, and holds locks throughout.
 */
export const SETTLE_STARTING_MAX_MS = 1000;
/**
 * How long a fork waits at most for running Workers' threads: a teardown is
 * a few milliseconds; a Worker busy computing costs each fork this much.
 */
export const SETTLE_RUNNING_MAX_MS = 50;

/** Threads that are not a Worker's own, by name (libuv 1.50+ and Node 24+ name their own threads). */
const NOT_A_WORKER = /libuv-worker|V8Worker|DelayedTaskSche|SignalInspector/;
/**
 * The threads of this process's live Workers. Several Workers made in one
 * tick are announced together, after all their threads started, so the ids
 * are kept as one set, not per Worker; an id leaves it once its thread is gone.
 */
const tids = new Set<number>();
/** Workers announced that have neither come online nor exited. */
let starting = 0;
/** Workers announced that have not exited: in a child, the parent's (see forgetParentWorkers). */
const live = new Set<Worker>();
let known: Set<number> | null = null;
let tracking = false;

function threads(): Array<[number, string]> {
  try {
    return native.threads();
  } catch {
    return []; // not Linux: nothing to wait for
  }
}

function onWorker(worker: Worker): void {
  const now = threads();
  // In a child that has not looked yet, every thread but the main one is new.
  const before = known ?? new Set([process.pid]);
  for (const [tid, name] of now) {
    // Every new thread that is not a pool's. Node 24+ names a Worker's thread
    // 'WorkerThread', but only once that thread runs: a thread that has not
    // yet renamed itself still bears its creator's name, so a match on the
    // name would miss it (a threadpool thread started meanwhile counts too:
    // it only makes a fork wait while it is busy).
    if (!before.has(tid) && !NOT_A_WORKER.test(name)) tids.add(tid);
  }
  known = new Set(now.map(([tid]) => tid));
  starting++;
  live.add(worker);
  let counted = true;
  const started = (): void => {
    if (counted) starting--;
    counted = false;
  };
  worker.once('online', started);
  worker.once('exit', () => {
    started();
    live.delete(worker);
    // The Worker's thread has been joined: drop every id whose thread is gone.
    for (const tid of tids) if (!fs.existsSync(`/proc/self/task/${tid}`)) tids.delete(tid);
  });
}

/** Starts noting the threads of the Workers this process makes ('worker' on process). */
export function trackWorkers(): void {
  if (tracking) return;
  tracking = true;
  trackWorkerPorts();
  known = new Set(threads().map(([tid]) => tid));
  process.on('worker', onWorker);
}

/**
 * Before a fork: has the fork wait, first thing in cf_fork, before its
 * MADV_DOFORK pass and census (native/fork.c, native/settle.c), until every
 * live Worker's thread is asleep or gone: up to SETTLE_STARTING_MAX_MS while a Worker is
 * still starting, otherwise up to SETTLE_RUNNING_MAX_MS. Returns how many
 * threads the fork will look at.
 */
export function settleWorkers(): number {
  if (tids.size === 0) return 0;
  return native.settleBeforeFork(Int32Array.from(tids), starting > 0 ? SETTLE_STARTING_MAX_MS : SETTLE_RUNNING_MAX_MS);
}

/** After a fork that failed: the fork's wait must not carry over to the next one. */
export function forgetSettle(): void {
  if (tids.size > 0) native.settleBeforeFork(new Int32Array(0), 0);
}

/** How many Workers this process made that have not exited (made since cowfork was loaded). */
export function liveWorkers(): number {
  return live.size;
}

/**
 * In a forked child, a Worker of the parent's is an object whose thread does
 * not exist: what is posted to it is never answered, and its `terminate()`
 * used to wait forever for a thread that will never stop. Its methods now say
 * so at once: `postMessage()` throws a ParentWorkerError naming the Worker,
 * the process that started it and the fix; `terminate()` resolves, as it does
 * for a Worker that has exited (there is nothing to stop); `getHeapSnapshot()`
 * rejects with the error. A MessagePort whose other end the parent handed to
 * the Worker (a piscina pool's task port) throws the error from postMessage()
 * too (src/worker-ports.ts). 'exit' is not emitted: a library that writes to its
 * Worker's shared memory (a pino transport) would fail on every log line,
 * where the parent's warning (COWFORK_LIVE_WORKERS) already names the recipe.
 */
function standInForGoneThread(worker: Worker, ownerPid: number): void {
  const gone = (what: string): ParentWorkerError =>
    new ParentWorkerError(
      `${what} a worker_threads Worker (threadId ${worker.threadId}) that process ${ownerPid} started before it ` +
        `forked this child: the child has none of that process's threads, so nothing sent to it is ever answered. ` +
        LIVE_WORKERS_RULE,
      worker.threadId,
      ownerPid,
    );
  ownMethod(worker, 'postMessage', () => {
    throw gone('postMessage() to');
  });
  ownMethod(worker, 'terminate', () => Promise.resolve(undefined));
  ownMethod(worker, 'getHeapSnapshot', () => Promise.reject(gone('getHeapSnapshot() of')));
  standInForGonePorts(worker, () => gone('postMessage() on a MessagePort whose other end was handed to'));
}

/** In a child: the parent's Workers are not this process's (and its threads are not known until needed). */
export function forgetParentWorkers(): void {
  for (const worker of live) standInForGoneThread(worker, process.ppid);
  live.clear();
  tids.clear();
  starting = 0;
  known = null;
}
