// One worker as the master sees it: forking it from a setup, asking it to
// drain, and describing its exit. The master's loop (master.ts) decides when;
// this file does it.
import { type ChildExit, type ForkedChild, forkChild } from '../fork';
import { type ShmHandle, native } from '../native';
import type { MasterConfig } from './master';
import type { MasterSockets } from './sockets';
import type { ExitReason, WorkerExitEvent, WorkerFn, WorkerState, WorkerStats } from './types';
import { BEAT, SHM_SLOTS, STATE, STATE_STOPPING, type WorkerSetup, runWorker } from './worker';

/** A forked worker, not yet reaped. It holds its num until it is reaped (or, in a reload, until its successor takes it). */
export interface Live {
  num: number;
  pid: number;
  generation: number;
  child: ForkedChild;
  shm: ShmHandle;
  forkedAt: number;
  readyAt: number | null;
  state: WorkerState;
  /** Why the master is stopping it, once it is. */
  retiring: ExitReason | null;
  /** When SIGKILL follows the SIGTERM already sent. */
  killAt: number | null;
}

/** The worker's shared-memory block, made just before its fork, with a first heartbeat in it. */
export function workerShm(): ShmHandle {
  const shm = native.shmCreate(SHM_SLOTS);
  native.shmStore(shm, BEAT, Math.round(performance.now()));
  return shm;
}

/** What every worker's setup starts from: the master's, fixed when it starts. */
export interface SetupBase {
  readonly cfg: MasterConfig;
  readonly sockets: MasterSockets;
  readonly lifeRead: number;
  readonly lifeWrite: number;
  /** The self-pipe's write end. */
  readonly wakeFd: number;
  readonly beatEvery: number;
}

/** Everything the worker of `num` starts from, captured before its fork. */
export function workerSetup(b: SetupBase, num: number, generation: number, worker: WorkerFn | null): WorkerSetup {
  const { cfg } = b;
  return {
    num,
    generation,
    listenFds: b.sockets.listenFdsOf(num),
    // Not the self-pipe's read end: the master's watcher on it is inherited
    // (and silenced); closing a polled fd under libuv aborts the child.
    closeFds: [b.lifeWrite, ...b.sockets.otherSockets(num)],
    lifeRead: b.lifeRead,
    wakeFd: b.wakeFd,
    shm: workerShm(),
    beatEvery: b.beatEvery,
    timeout: cfg.timeout,
    threads: cfg.threads,
    worker,
    module: cfg.module,
    afterFork: cfg.afterFork,
    recycle: cfg.recycle,
    metrics: cfg.metrics,
  };
}

/**
 * Forks a worker that runs `setup`. Throws EAGAIN or ENOMEM as the fork does;
 * in the child it throws the unwind sentinel, which the caller lets pass.
 */
export function forkWorker(setup: WorkerSetup): Live {
  // PR_SET_PDEATHSIG, with the pipe-EOF watch in the worker as the fallback
  // (the only way where there is no PDEATHSIG). The variable is for the
  // test that proves the fallback alone is enough.
  const dieWithParent = process.env.COWFORK_TEST_NO_PDEATHSIG !== '1';
  const child = forkChild(() => runWorker(setup), { keepFds: setup.listenFds, dieWithParent, warnInheritedConnections: 'the prefork master' });
  return {
    num: setup.num,
    pid: child.pid,
    generation: setup.generation,
    child,
    shm: setup.shm,
    forkedAt: performance.now(),
    readyAt: null,
    state: 'starting',
    retiring: null,
    killAt: null,
  };
}

/** Asks a worker to drain (SIGTERM); SIGKILL follows after `grace` ms. */
export function retireWorker(w: Live, reason: ExitReason, grace: number): void {
  w.retiring = reason;
  w.state = 'stopping';
  w.killAt = performance.now() + grace;
  native.shmStore(w.shm, STATE, STATE_STOPPING);
  w.child.kill('SIGTERM');
}

/** How a worker ended, in words: 'exited with code 1', 'was killed by SIGKILL'. */
export function howItEnded(exit: ChildExit): string {
  return exit.signal ? `was killed by ${exit.signal}` : `exited with code ${exit.exitCode}`;
}

export function exitEvent(w: Live, exit: ChildExit): WorkerExitEvent {
  return { num: w.num, pid: w.pid, generation: w.generation, exitCode: exit.exitCode, signal: exit.signal, reason: w.retiring ?? 'crash' };
}

/** The worker as `master.stats()` reports it; `t` is performance.now(). */
export function statsOf(w: Live, restarts: number, t: number): WorkerStats {
  return {
    num: w.num,
    pid: w.pid,
    generation: w.generation,
    state: w.state,
    uptime: Math.round(t - w.forkedAt),
    restarts,
    lastHeartbeat: Math.round(performance.timeOrigin + native.shmLoad(w.shm, BEAT)),
  };
}
