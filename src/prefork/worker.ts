// The worker side of prefork: what runs in a forked worker process. It keeps
// a heartbeat in shared memory while its event loop turns, tells the master
// when it is ready, drains on SIGTERM, and dies when the master does.
import fs from 'node:fs';
import path from 'node:path';
import { Worker } from 'node:worker_threads';
import { exitChild } from '../child-exit';
import { HUP, READ, type ShmHandle, native } from '../native';
import { BaseContext } from './context';
import { adoptListeners } from './drain';
import { type MetricsSetup, startWorkerMetrics } from './metrics';
import { RECYCLE, REQUEST_LIMIT, type RecycleLimits, Recycler } from './recycle';
import type { Frame, ParentContext, WorkerContext, WorkerFn } from './types';

// Shared-memory slots of one worker, written by the worker and read by the master.
export const BEAT = 0; // performance.now() of the last heartbeat, in ms (a clock fork() keeps shared)
export const STATE = 1; // 0 starting, 1 ready, 2 stopping
// Slots 2 and 3 are recycling's (recycle.ts: RECYCLE, REQUEST_LIMIT).
export const SHM_SLOTS = 4;
export const STATE_STARTING = 0;
export const STATE_READY = 1;
export const STATE_STOPPING = 2;

/** Everything a forked worker needs, captured by the master before the fork. */
export interface WorkerSetup {
  num: number;
  generation: number;
  listenFds: number[];
  /** Fds the worker must not hold: other workers' SO_REUSEPORT sockets, the master's ends of pipes. */
  closeFds: number[];
  /** Read end of a pipe whose write end only the master holds: EOF means the master died. */
  lifeRead: number;
  /** Write end of the master's self-pipe: a byte wakes the master's loop. */
  wakeFd: number;
  shm: ShmHandle;
  beatEvery: number;
  timeout: number;
  threads: number;
  worker: WorkerFn | null;
  module: string | null;
  afterFork?: (ctx: WorkerContext) => void;
  recycle: RecycleLimits;
  /** Where the worker writes its prom-client snapshots (metrics.ts), or null. */
  metrics: MetricsSetup | null;
}

class ProcessContext extends BaseContext {
  readonly kind = 'process' as const;
  readonly parent = null;
  readonly context: readonly Frame[];

  constructor(private readonly setup: WorkerSetup) {
    super(setup.num, setup.generation, Object.freeze([...setup.listenFds]));
    this.context = Object.freeze([Object.freeze({ kind: 'process' as const, num: setup.num })]);
  }

  ready(): void {
    if (this.isReady) return;
    this.isReady = true;
    native.shmStore(this.setup.shm, STATE, STATE_READY);
    wakeMaster(this.setup.wakeFd);
  }

  heartbeat(): void {
    native.shmStore(this.setup.shm, BEAT, Math.round(performance.now()));
  }

  asParent(): ParentContext {
    return { kind: 'process', num: this.num, generation: this.generation, pid: process.pid, context: this.context };
  }
}

/**
 * fork() leaves fds 0-2 alone, so a master that reads its stdin would have
 * every worker's copy of that stream read it too, and steal its input (an
 * operator's commands, a pipe). A worker stops reading before its loop first
 * turns.
 */
function detachStdin(): void {
  // Only a stdin the master is reading is an active handle; touching
  // process.stdin otherwise would create a stream (about 10 ms) for nothing.
  type Stream = NodeJS.ReadableStream & { _handle?: { fd?: number; reading?: boolean; readStop?: () => number } };
  const handles = (process as unknown as { _getActiveHandles?: () => Stream[] })._getActiveHandles?.() ?? [];
  const stdin = handles.find((h) => h?._handle?.fd === 0);
  if (stdin === undefined) return;
  for (const ev of ['data', 'readable', 'end', 'close'] as const) stdin.removeAllListeners(ev);
  stdin.pause();
  // pause() alone lets the stream read on until its buffer fills; stop the
  // libuv read itself.
  const handle = stdin._handle!;
  if (handle.readStop) {
    handle.readStop();
    handle.reading = false;
  }
}

function wakeMaster(fd: number): void {
  try {
    fs.writeSync(fd, Buffer.of(1));
  } catch {
    // EAGAIN: the pipe is full, so the master is waking anyway.
  }
}

/** The body of a forked worker. Resolves to the exit code once it has drained. */
export function runWorker(setup: WorkerSetup): Promise<number> {
  for (const fd of setup.closeFds) {
    try {
      native.close(fd);
    } catch {
      // Not open in this process.
    }
  }
  detachStdin();
  const ctx = new ProcessContext(setup);
  const recycler = new Recycler(setup.recycle, (code) => {
    native.shmStore(setup.shm, RECYCLE, code);
    wakeMaster(setup.wakeFd);
  });
  if (recycler.limit !== Infinity) native.shmStore(setup.shm, REQUEST_LIMIT, recycler.limit);
  // Any server that listens on an inherited fd drains on SIGTERM, not only ctx.serve()'s.
  adoptListeners(ctx, recycler.onRequest);
  let resolveExit!: (code: number) => void;
  const exited = new Promise<number>((r) => (resolveExit = r));

  // The master's death: PR_SET_PDEATHSIG kills us on Linux; everywhere, EOF on
  // this pipe (the master held the only write end) says the same. This watcher
  // is also what keeps the worker's event loop alive.
  native.watch(setup.lifeRead, READ | HUP, () => exitChild(1));

  const finalSnapshot = setup.metrics === null ? null : startWorkerMetrics(setup.metrics, setup.num);
  let stopping = false;
  const threads = setup.threads > 0 ? new ThreadHost(ctx, setup) : null;
  const shutdown = (): void => {
    if (stopping) return;
    stopping = true;
    native.shmStore(setup.shm, STATE, STATE_STOPPING);
    // The last metrics snapshot is taken once everything has drained, so it holds every count.
    void Promise.all([ctx.runShutdown(), threads?.shutdown()])
      .then(() => finalSnapshot?.())
      .then(() => resolveExit(0));
  };
  for (const sig of ['SIGTERM', 'SIGINT', 'SIGQUIT'] as const) process.on(sig, shutdown);
  // A terminal hangup or a stray HUP is the master's business, not a worker's.
  process.on('SIGHUP', () => {});

  // The heartbeat is a timer, so it stops as soon as the event loop stops
  // turning (a `while (true)`, a runaway sync loop).
  ctx.heartbeat();
  const beat = setInterval(() => {
    if (threads === null || threads.allAlive(setup.timeout)) ctx.heartbeat();
    recycler.checkMemory();
  }, setup.beatEvery);
  beat.unref();

  setup.afterFork?.(ctx);
  if (threads !== null) {
    threads.start();
  } else {
    const out = setup.worker!(ctx);
    if (out !== null && typeof out === 'object' && typeof (out as Promise<unknown>).then === 'function') {
      (out as Promise<unknown>).then(() => ctx.ready());
    } else {
      ctx.ready();
    }
  }
  return exited;
}

// ---------------------------------------------------------------------------
// Hybrid: worker_threads inside a forked worker process.

function threadEntry(): string {
  // Under ts-node/vitest this file is src/prefork/worker.ts; threads need the built JavaScript.
  const here = __filename.endsWith('.ts') ? path.join(__dirname, '..', '..', 'dist', 'prefork') : __dirname;
  return path.join(here, 'thread.js');
}

/** Data a thread starts from (structured-cloned into it). */
export interface ThreadSetup {
  num: number;
  generation: number;
  parent: ParentContext;
  listenFds: number[];
  module: string;
  beatEvery: number;
}

export type ThreadMessage = { type: 'ready' } | { type: 'beat' } | { type: 'shutdown' } | { type: 'stopped' };

class ThreadHost {
  private readonly threads: Worker[] = [];
  private readonly lastBeat: number[] = [];
  private readyCount = 0;
  private stopping = false;
  private readonly stopped: Promise<void>[] = [];

  constructor(
    private readonly ctx: ProcessContext,
    private readonly setup: WorkerSetup,
  ) {}

  start(): void {
    for (let i = 0; i < this.setup.threads; i++) {
      // Each thread gets its own duplicate of every listen fd: closing a server
      // closes its fd, which must not pull the socket from under its siblings.
      const listenFds = this.setup.listenFds.map((fd) => native.dup(fd));
      const data: ThreadSetup = {
        num: i,
        generation: this.setup.generation,
        parent: this.ctx.asParent(),
        listenFds,
        module: this.setup.module!,
        beatEvery: this.setup.beatEvery,
      };
      const t = new Worker(threadEntry(), { workerData: data });
      this.lastBeat[i] = performance.now();
      t.on('message', (m: ThreadMessage) => this.onMessage(i, m));
      this.stopped.push(
        new Promise<void>((resolve) => {
          t.once('exit', (code) => {
            if (!this.stopping) {
              process.stderr.write(`prefork worker ${this.ctx.num}: thread ${i} exited with code ${code}\n`);
              exitChild(native.EXIT_CODES.UNCAUGHT);
            }
            resolve();
          });
        }),
      );
      t.on('error', (err) => {
        process.stderr.write(`prefork worker ${this.ctx.num}: thread ${i} failed: ${err?.stack ?? String(err)}\n`);
        exitChild(native.EXIT_CODES.UNCAUGHT);
      });
      this.threads.push(t);
    }
  }

  private onMessage(i: number, m: ThreadMessage): void {
    if (m.type === 'beat') this.lastBeat[i] = performance.now();
    else if (m.type === 'ready' && ++this.readyCount === this.threads.length) this.ctx.ready();
  }

  /** Whether every thread's loop has turned recently; if not, the process stops beating and the master replaces it. */
  allAlive(timeout: number): boolean {
    const now = performance.now();
    return this.lastBeat.every((t) => now - t < timeout / 2);
  }

  shutdown(): Promise<void> {
    this.stopping = true;
    for (const t of this.threads) t.postMessage({ type: 'shutdown' } satisfies ThreadMessage);
    return Promise.all(this.stopped).then(() => undefined);
  }
}
