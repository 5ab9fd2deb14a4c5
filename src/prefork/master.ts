// The prefork master. It reads as one loop, the way unicorn's `join` does:
//
//   reap -> signals -> overdue workers -> keep the count -> sleep on a self-pipe
//
// Everything that happens to the master (a worker exits, a signal arrives, a
// worker becomes ready) only enqueues and writes a byte to the self-pipe; the
// loop does the work. Each turn runs at the top of a library-owned macrotask,
// where forking is safe. The parts the loop drives live next to this file:
// the self-pipe, the signal queue, the sockets, the collection before a fork,
// each num's history, and the orphan reaper for a master that is PID 1.
import type { EventEmitter } from 'node:events';
import { WorkerBootError } from '../errors';
import {
  type ChildExit,
  type ForkedChild,
  forkChild,
  isChildUnwind,
  libraryMacrotask,
  libraryTimeout,
} from '../fork';
import { type ShmHandle, native } from '../native';
import { PreForkGc } from './heap';
import { BACKOFF_BASE_MS, CRASH_WINDOW_MS, Histories, backoff } from './history';
import type { Address, Endpoint } from './listen';
import type { MetricsSetup } from './metrics';
import { OrphanReaper } from './reaper';
import { RECYCLE_NONE, type RecycleLimits, recycleCause } from './recycle';
import { SelfPipe } from './selfpipe';
import { SignalQueue } from './signals';
import { MasterSockets } from './sockets';
import type { ExitReason, ForkInfo, WorkerContext, WorkerExitEvent, WorkerFn, WorkerState, WorkerStats } from './types';
import { BEAT, RECYCLE, REQUEST_LIMIT, SHM_SLOTS, STATE, STATE_READY, STATE_STOPPING, type WorkerSetup, runWorker } from './worker';

export interface MasterConfig {
  workers: number;
  endpoints: Endpoint[];
  timeout: number;
  shutdownTimeout: number;
  threads: number;
  reusePort: boolean;
  backlog: number;
  signals: boolean;
  worker: WorkerFn | null;
  module: string | null;
  beforeFork?: (info: ForkInfo) => void;
  afterFork?: (ctx: WorkerContext) => void;
  recycle: RecycleLimits;
  /** Set once the metrics exporter exists (index.ts), before the first fork. */
  metrics: MetricsSetup | null;
}

/** A live worker: forked, not yet reaped. It holds its num until it is reaped. */
interface Live {
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

type Phase = 'booting' | 'running' | 'stopping' | 'stopped';

const now = (): number => performance.now();

export class MasterImpl {
  readonly ready: Promise<void>;
  private phase: Phase = 'booting';
  private target: number;
  private generation = 0;
  private readonly live = new Map<number, Live>();
  private readonly history = new Histories();
  private readonly sockets: MasterSockets;
  private readonly exits: { worker: Live; exit: ChildExit }[] = [];
  private readonly signals = new SignalQueue();
  private readonly pipe: SelfPipe;
  private readonly lifeRead: number;
  private readonly lifeWrite: number;
  private readonly beatEvery: number;
  private readonly gc = new PreForkGc();
  private readonly orphans = new OrphanReaper();
  private scheduled = false;
  private cancelSleep: (() => void) | null = null;
  private restartWaiters: { generation: number; resolve: () => void }[] = [];
  private stopWaiters: (() => void)[] = [];
  private readyResolve!: () => void;
  private readyReject!: (err: Error) => void;
  /** Events and promise settlements of this turn, delivered after its forks. */
  private readonly outbox: (() => void)[] = [];

  constructor(
    private readonly cfg: MasterConfig,
    private readonly events: EventEmitter,
  ) {
    this.target = cfg.workers;
    this.beatEvery = Math.max(10, Math.min(1000, Math.floor(cfg.timeout / 4)));
    this.ready = new Promise((resolve, reject) => {
      this.readyResolve = resolve;
      this.readyReject = reject;
    });
    this.ready.catch(() => {}); // The caller may never await it.

    this.sockets = new MasterSockets(cfg.endpoints, cfg.backlog, cfg.reusePort);
    this.pipe = new SelfPipe(() => this.schedule());
    [this.lifeRead, this.lifeWrite] = native.pipe(false);
    if (cfg.signals) this.signals.install(() => this.wake());
    this.orphans.start(() => this.wake());
  }

  get addresses(): Address[] {
    return this.sockets.addresses;
  }

  /** Starts supervising, once the worker function is known (a module path is imported first). */
  start(worker: WorkerFn | null): void {
    if (this.phase !== 'booting') return;
    this.cfg.worker = worker;
    this.schedule();
  }

  /** The worker module could not be loaded: nothing was forked; release everything. */
  fail(err: Error): void {
    this.readyReject(err);
    this.phase = 'stopping';
    this.finish();
  }

  // -- the public surface (the facade in index.ts validates) ----------------

  stats(): WorkerStats[] {
    const t = now();
    return [...this.live.values()]
      .sort((a, b) => a.num - b.num)
      .map((w) => ({
        num: w.num,
        pid: w.pid,
        generation: w.generation,
        state: w.state,
        uptime: Math.round(t - w.forkedAt),
        restarts: this.history.of(w.num).restarts,
        lastHeartbeat: Math.round(performance.timeOrigin + native.shmLoad(w.shm, BEAT)),
      }));
  }

  get workers(): number {
    return this.target;
  }

  restart(): Promise<void> {
    if (this.phase === 'stopping' || this.phase === 'stopped') {
      return Promise.reject(new Error('prefork: cannot restart, the master is stopping'));
    }
    this.generation++;
    const generation = this.generation;
    return new Promise((resolve) => {
      this.restartWaiters.push({ generation, resolve });
      this.wake();
    });
  }

  scale(n: number): void {
    if (this.phase === 'stopping' || this.phase === 'stopped') return;
    this.target = n;
    this.wake();
  }

  stop(): Promise<void> {
    if (this.phase === 'stopped') return Promise.resolve();
    return new Promise((resolve) => {
      this.stopWaiters.push(resolve);
      this.beginStop();
      this.wake();
    });
  }

  // -- the loop --------------------------------------------------------------

  /** Wakes the loop. Safe from anywhere: it only writes a byte to the self-pipe. */
  private wake(): void {
    if (this.phase === 'stopped') return;
    this.pipe.wake();
  }

  private schedule(): void {
    if (this.scheduled || this.phase === 'stopped') return;
    this.scheduled = true;
    libraryMacrotask(() => this.turn());
  }

  /** One turn of the supervision loop. */
  private turn(): void {
    this.scheduled = false;
    if (this.phase === 'stopped') return;
    this.pipe.drain();
    this.reap();
    this.reapOrphans();
    this.handleSignals();
    this.killOverdue();
    this.recycle();
    this.keepCount();
    this.settle();
    this.sleep();
    // A replacement forks before the collection (see spawn); the collection
    // runs now, so the next fork finds a clean heap.
    this.gc.collectIfDeferred();
    this.deliver();
  }

  /**
   * Queues an event or a promise settlement for the end of the turn. A fork
   * must find the microtask queue empty, or the worker would run the master's
   * continuations (docs/hazards.md §8); listeners and promise reactions could
   * queue microtasks, so they run after this turn's forks.
   */
  private notify(fn: () => void): void {
    this.outbox.push(fn);
  }

  private deliver(): void {
    for (const fn of this.outbox.splice(0)) fn();
  }

  /** Step 1: account for workers that exited. */
  private reap(): void {
    for (const { worker, exit } of this.exits.splice(0)) {
      this.live.delete(worker.num);
      const h = this.history.of(worker.num);
      const t = now();
      const crashed =
        worker.retiring === null && (worker.readyAt === null || t - worker.readyAt < CRASH_WINDOW_MS);
      const reason: ExitReason = worker.retiring ?? 'crash';
      h.streak = crashed ? h.streak + 1 : 0;
      h.lost = worker.retiring === null || worker.retiring === 'timeout';
      h.notBefore = t + backoff(h.streak);
      if (worker.num < this.target && this.phase !== 'stopping') h.restarts++;
      const event: WorkerExitEvent = {
        num: worker.num,
        pid: worker.pid,
        generation: worker.generation,
        exitCode: exit.exitCode,
        signal: exit.signal,
        reason,
      };
      this.notify(() => this.events.emit('exit', event));
      if (this.phase === 'booting' && worker.readyAt === null && reason !== 'stop') {
        this.phase = 'running';
        const how = exit.signal ? `was killed by ${exit.signal}` : `exited with code ${exit.exitCode}`;
        const err = new WorkerBootError(`prefork worker ${worker.num} (pid ${worker.pid}) ${how} before it was ready`, worker.num, worker.pid, exit.exitCode, exit.signal);
        this.notify(() => this.readyReject(err));
      }
      if (this.sockets.hasOwn(worker.num) && worker.num >= this.target) this.sockets.closeOwn(worker.num);
    }
  }

  /** Step 1b: as PID 1, reap the orphans the kernel handed us (reaper.ts). */
  private reapOrphans(): void {
    this.orphans.reap((pid) => this.isWorker(pid), now());
  }

  /** Step 2: act on the signals the handlers queued. */
  private handleSignals(): void {
    for (const sig of this.signals.take()) {
      switch (sig) {
        case 'SIGTERM':
        case 'SIGINT':
        case 'SIGQUIT':
          // A second stop signal while draining means "now".
          if (this.phase === 'stopping') for (const w of this.live.values()) w.child.kill('SIGKILL');
          else this.beginStop();
          break;
        case 'SIGHUP':
          this.restart().catch(() => {});
          break;
        case 'SIGTTIN':
          this.scale(this.target + 1);
          break;
        case 'SIGTTOU':
          this.scale(Math.max(0, this.target - 1));
          break;
      }
    }
  }

  /** Step 3: notice readiness and heartbeats; kill workers that are overdue. */
  private killOverdue(): void {
    const t = now();
    for (const w of this.live.values()) {
      if (w.state === 'starting' && native.shmLoad(w.shm, STATE) === STATE_READY) {
        w.state = 'ready';
        w.readyAt = t;
        this.notify(() => this.events.emit('ready', { num: w.num, pid: w.pid, generation: w.generation }));
      }
      if (w.killAt !== null) {
        if (t >= w.killAt) {
          w.child.kill('SIGKILL');
          w.killAt = Infinity;
        }
        continue;
      }
      if (t - native.shmLoad(w.shm, BEAT) > this.cfg.timeout) {
        this.notify(() => this.events.emit('timeout', { num: w.num, pid: w.pid, generation: w.generation }));
        this.retire(w, 'timeout', Math.min(this.cfg.timeout, 5000));
      }
    }
  }

  /**
   * Step 3b: retire one worker that asked to be recycled (maxRequests,
   * maxMemory), only while every other worker is ready and none is draining,
   * so recycling never takes more than one worker out of service.
   */
  private recycle(): void {
    if (this.phase !== 'running' || !this.steady()) return;
    for (const w of this.live.values()) {
      const code = native.shmLoad(w.shm, RECYCLE);
      if (code === RECYCLE_NONE) continue;
      const limit = native.shmLoad(w.shm, REQUEST_LIMIT);
      const event = { num: w.num, pid: w.pid, generation: w.generation, cause: recycleCause(code), requestLimit: limit === 0 ? null : limit };
      this.notify(() => this.events.emit('recycle', event));
      this.retire(w, 'recycle');
      return;
    }
  }

  /** Whether every num below the target has a ready worker that is not being retired. */
  private steady(): boolean {
    for (let num = 0; num < this.target; num++) {
      const w = this.live.get(num);
      if (w === undefined || w.state !== 'ready' || w.retiring !== null) return false;
    }
    return true;
  }

  /** Step 4: retire extra workers, fork missing ones, advance a rolling restart. */
  private keepCount(): void {
    if (this.phase === 'stopping') return;
    for (const w of this.live.values()) if (w.num >= this.target && w.retiring === null) this.retire(w, 'scale');
    this.forkMissing();
    this.rollOne();
  }

  /** Forks a worker for each missing num whose backoff is over, lowest num first. */
  private forkMissing(): void {
    const due = this.missingNums();
    if (due.length === 0) return;
    for (const num of due) this.spawn(num);
  }

  private missingNums(): number[] {
    const t = now();
    const due: number[] = [];
    for (let num = 0; num < this.target; num++) {
      if (!this.live.has(num) && this.history.of(num).notBefore <= t) due.push(num);
    }
    return due;
  }

  /** A rolling restart retires one old-generation worker at a time, once every other worker is ready. */
  private rollOne(): void {
    if (this.restartWaiters.length === 0 || !this.steady()) return;
    for (let num = 0; num < this.target; num++) {
      const w = this.live.get(num)!;
      if (w.generation < this.generation) return this.retire(w, 'restart', this.cfg.shutdownTimeout);
    }
  }

  /** Resolves promises whose condition now holds. */
  private settle(): void {
    const allReady = (gen: number): boolean => {
      for (let num = 0; num < this.target; num++) {
        const w = this.live.get(num);
        if (w === undefined || w.state !== 'ready' || w.generation < gen) return false;
      }
      return true;
    };
    if (this.phase === 'booting' && allReady(0)) {
      this.phase = 'running';
      this.notify(() => this.readyResolve());
    }
    if (this.phase !== 'stopping') {
      this.restartWaiters = this.restartWaiters.filter((r) => {
        if (!allReady(r.generation)) return true;
        this.notify(() => r.resolve());
        return false;
      });
    }
    if (this.phase === 'stopping' && this.live.size === 0) this.finish();
  }

  /** Step 5: sleep until the self-pipe wakes us or the next deadline comes. */
  private sleep(): void {
    if (this.phase === 'stopped') return;
    this.cancelSleep?.();
    const t = now();
    let next = Math.min(this.beatEvery, this.history.nextDue(t), this.orphans.nextDue(t));
    for (const w of this.live.values()) if (w.killAt !== null && w.killAt !== Infinity) next = Math.min(next, w.killAt - t);
    this.cancelSleep = libraryTimeout(() => {
      this.cancelSleep = null;
      this.schedule();
    }, Math.max(1, Math.ceil(next)));
  }

  // -- workers -----------------------------------------------------------------

  private spawn(num: number): void {
    const generation = this.generation;
    const h = this.history.of(num);
    // Replacing a lost worker comes first: its collection waits for the end of this turn.
    if (h.lost) this.gc.defer();
    else this.gc.collect();
    h.lost = false;
    this.cfg.beforeFork?.({ num, generation });
    const shm = native.shmCreate(SHM_SLOTS);
    native.shmStore(shm, BEAT, Math.round(now()));
    const listenFds = this.sockets.listenFdsOf(num);
    const setup: WorkerSetup = {
      num,
      generation,
      listenFds,
      // Not the self-pipe's read end: the master's watcher on it is inherited
      // (and silenced); closing a polled fd under libuv aborts the child.
      closeFds: [this.lifeWrite, ...this.sockets.otherSockets(num)],
      lifeRead: this.lifeRead,
      wakeFd: this.pipe.writeFd,
      shm,
      beatEvery: this.beatEvery,
      timeout: this.cfg.timeout,
      threads: this.cfg.threads,
      worker: this.cfg.worker,
      module: this.cfg.module,
      afterFork: this.cfg.afterFork,
      recycle: this.cfg.recycle,
      metrics: this.cfg.metrics,
    };
    let child: ForkedChild;
    try {
      // PR_SET_PDEATHSIG, with the pipe-EOF watch in the worker as the fallback
      // (the only way where there is no PDEATHSIG). The variable is for the
      // test that proves the fallback alone is enough.
      const dieWithParent = process.env.COWFORK_TEST_NO_PDEATHSIG !== '1';
      child = forkChild(() => runWorker(setup), { keepFds: listenFds, dieWithParent, warnInheritedConnections: 'the prefork master' });
    } catch (err) {
      // In the child, forkChild unwinds the master's stack; let it pass.
      if (isChildUnwind(err)) throw err;
      // EAGAIN or ENOMEM: treat like a crash, so the retry backs off.
      const h = this.history.of(num);
      h.streak++;
      h.notBefore = now() + Math.max(BACKOFF_BASE_MS, backoff(h.streak));
      this.notify(() => this.events.emit('forkError', err));
      return;
    }
    const w: Live = {
      num,
      pid: child.pid,
      generation,
      child,
      shm,
      forkedAt: now(),
      readyAt: null,
      state: 'starting',
      retiring: null,
      killAt: null,
    };
    this.live.set(num, w);
    child.exited.then((exit) => {
      this.exits.push({ worker: w, exit });
      this.wake();
    });
    this.notify(() => this.events.emit('spawn', { num, pid: child.pid, generation }));
  }

  /** Asks a worker to drain (SIGTERM); SIGKILL follows after `grace` ms. */
  private retire(w: Live, reason: ExitReason, grace = this.cfg.shutdownTimeout): void {
    w.retiring = reason;
    w.state = 'stopping';
    w.killAt = now() + grace;
    native.shmStore(w.shm, STATE, STATE_STOPPING);
    w.child.kill('SIGTERM');
  }

  private isWorker(pid: number): boolean {
    for (const w of this.live.values()) if (w.pid === pid) return true;
    return false;
  }

  // -- stopping ----------------------------------------------------------------

  private beginStop(): void {
    if (this.phase === 'stopping' || this.phase === 'stopped') return;
    if (this.phase === 'booting') {
      const err = new Error('prefork: stopped before every worker was ready');
      this.notify(() => this.readyReject(err));
    }
    this.phase = 'stopping';
    for (const w of this.live.values()) if (w.retiring === null || w.retiring === 'restart' || w.retiring === 'scale') this.retire(w, 'stop');
  }

  private finish(): void {
    this.phase = 'stopped';
    this.cancelSleep?.();
    this.pipe.close();
    for (const fd of [this.lifeRead, this.lifeWrite]) native.close(fd);
    this.sockets.closeAll();
    this.signals.uninstall();
    this.orphans.stop();
    for (const r of this.restartWaiters.splice(0)) r.resolve();
    // Nothing forks after this point: deliver now (fail() calls this outside a turn).
    this.deliver();
    this.events.emit('stop');
    for (const resolve of this.stopWaiters.splice(0)) resolve();
  }
}
