// The prefork master. It reads as one loop, the way unicorn's `join` does:
//
//   reap -> signals -> overdue workers (and recycling) -> keep the count
//   (and a code reload) -> sleep on a self-pipe
//
// Everything that happens to the master (a worker exits, a signal arrives, a
// worker becomes ready) only enqueues and writes a byte to the self-pipe; the
// loop does the work. Each turn runs at the top of a library-owned macrotask,
// where forking is safe. The parts the loop drives live next to this file:
// the self-pipe, the signal queue, the sockets, the collection before a fork,
// each num's history, the orphan reaper for a master that is PID 1, one
// worker's fork and drain (live.ts), recycling and code reload.
import type { EventEmitter } from 'node:events';
import { ReloadError, WorkerBootError } from '../errors';
import { type ChildExit, isChildUnwind, libraryMacrotask, libraryTimeout } from '../fork';
import { native } from '../native';
import { PreForkGc } from './heap';
import { BACKOFF_BASE_MS, CRASH_WINDOW_MS, Histories, backoff } from './history';
import type { Address, Endpoint } from './listen';
import type { MetricsSetup } from './metrics';
import { OrphanReaper } from './reaper';
import { type Live, type SetupBase, exitEvent, forkWorker, howItEnded, retireWorker, statsOf, workerSetup } from './live';
import { QuietGate } from './quiet';
import { type RecycleLimits, dueForRecycling } from './recycle';
import { type Reload, type ReloadHost, loadReload } from './reload';
import { SelfPipe } from './selfpipe';
import { type SignalActions, SignalQueue, actOn } from './signals';
import { MasterSockets } from './sockets';
import type { ExitReason, ForkInfo, WorkerContext, WorkerFn, WorkerStats } from './types';
import { BEAT, STATE, STATE_READY } from './worker';

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
  /** Loads the worker module again, for a reload (null: `worker` is a function). */
  load: (() => Promise<WorkerFn | null>) | null;
}

type Phase = 'booting' | 'running' | 'stopping' | 'stopped';

const now = (): number => performance.now();

export class MasterImpl implements ReloadHost {
  readonly ready: Promise<void>;
  private phase: Phase = 'booting';
  private target: number;
  private generation = 0;
  readonly live = new Map<number, Live>();
  /** Forked workers that hold no num (yet): a reload's new workers, or ones it gave up on. By pid. */
  readonly extra = new Map<number, Live>();
  private reloading: Reload | null = null;
  private loadingCode = false;
  private readonly history = new Histories();
  private readonly sockets: MasterSockets;
  private readonly exits: { worker: Live; exit: ChildExit }[] = [];
  private readonly signals = new SignalQueue();
  private readonly pipe: SelfPipe;
  private readonly lifeRead: number;
  private readonly lifeWrite: number;
  private readonly beatEvery: number;
  private readonly setupBase: SetupBase;
  private readonly gc = new PreForkGc();
  private readonly quiet = new QuietGate();
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
    this.setupBase = { cfg, sockets: this.sockets, lifeRead: this.lifeRead, lifeWrite: this.lifeWrite, wakeFd: this.pipe.writeFd, beatEvery: this.beatEvery };
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
    return this.all()
      .sort((a, b) => a.num - b.num || a.generation - b.generation)
      .map((w) => statsOf(w, this.history.of(w.num).restarts, t));
  }

  get workers(): number {
    return this.target;
  }

  /** ReloadHost: the heartbeat timeout, which also bounds a reload's wait for readiness. */
  get timeout(): number {
    return this.cfg.timeout;
  }

  restart(): Promise<void> {
    if (this.phase === 'stopping' || this.phase === 'stopped') {
      return Promise.reject(new Error('prefork: cannot restart, the master is stopping'));
    }
    if (this.reloading !== null || this.loadingCode) return Promise.reject(new ReloadError('prefork: cannot restart during a reload'));
    this.generation++;
    const generation = this.generation;
    return new Promise((resolve) => {
      this.restartWaiters.push({ generation, resolve });
      this.wake();
    });
  }

  reload(): Promise<void> {
    if (this.phase === 'stopping' || this.phase === 'stopped') return Promise.reject(new ReloadError('prefork: cannot reload, the master is stopping'));
    const load = this.cfg.load;
    if (load === null) return Promise.reject(new TypeError('prefork: reload() needs options.worker to be a module path (a function cannot be loaded again)'));
    if (this.reloading !== null || this.loadingCode || this.restartWaiters.length > 0) {
      return Promise.reject(new ReloadError('prefork: a reload or a rolling restart is in progress'));
    }
    this.loadingCode = true;
    const generation = this.generation + 1;
    return loadReload(load, generation, this.events, (reload) => {
      this.loadingCode = false;
      if (reload === null) return;
      if (this.phase !== 'running') {
        reload.abort(this, new ReloadError('prefork: the reload was cut short: the master is stopping or not yet ready'));
        return this.wake(); // The settlement waits in the outbox for a turn.
      }
      this.reloading = reload;
      this.wake();
    }, (fn) => this.notify(fn));
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
    this.quiet.newTurn();
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
      if (this.live.get(worker.num) !== worker) {
        this.reapExtra(worker, exit);
        continue;
      }
      this.live.delete(worker.num);
      this.reloading?.promote(this, worker.num);
      const h = this.history.of(worker.num);
      const t = now();
      const crashed =
        worker.retiring === null && (worker.readyAt === null || t - worker.readyAt < CRASH_WINDOW_MS);
      const reason: ExitReason = worker.retiring ?? 'crash';
      h.streak = crashed ? h.streak + 1 : 0;
      h.lost = worker.retiring === null || worker.retiring === 'timeout';
      h.notBefore = t + backoff(h.streak);
      if (worker.num < this.target && this.phase !== 'stopping') h.restarts++;
      const event = exitEvent(worker, exit);
      this.notify(() => this.events.emit('exit', event));
      if (this.phase === 'booting' && worker.readyAt === null && reason !== 'stop') {
        this.phase = 'running';
        const err = new WorkerBootError(`prefork worker ${worker.num} (pid ${worker.pid}) ${howItEnded(exit)} before it was ready`, worker.num, worker.pid, exit.exitCode, exit.signal);
        this.notify(() => this.readyReject(err));
      }
      if (this.sockets.hasOwn(worker.num) && worker.num >= this.target) this.sockets.closeOwn(worker.num);
    }
  }

  /** A worker that held no num: a reload's new worker, or one a failed reload stopped. */
  private reapExtra(worker: Live, exit: ChildExit): void {
    this.extra.delete(worker.pid);
    if (this.reloading !== null && !this.reloading.exited(this, worker, howItEnded(exit))) this.reloading = null;
    const event = exitEvent(worker, exit);
    this.notify(() => this.events.emit('exit', event));
  }

  /** Step 4b: advance a reload (reload.ts). */
  private advanceReload(): void {
    if (this.reloading !== null && !this.reloading.advance(this, now())) this.reloading = null;
  }

  /** ReloadHost: the reload's code and generation become the master's. */
  adopt(r: Reload): void {
    this.generation = r.generation;
    if (this.cfg.worker !== null) this.cfg.worker = r.worker;
  }

  /** Every forked worker not yet reaped: the nums' workers and the extra ones. */
  private all(): Live[] {
    return [...this.live.values(), ...this.extra.values()];
  }

  /** Step 1b: as PID 1, reap the orphans the kernel handed us (reaper.ts). */
  private reapOrphans(): void {
    this.orphans.reap((pid) => this.isWorker(pid), now());
  }

  /** Step 2: act on the signals the handlers queued. */
  private handleSignals(): void {
    const actions: SignalActions = {
      stop: () => {
        if (this.phase !== 'stopping') return this.beginStop();
        // A second stop signal while draining means "now".
        for (const w of this.all()) w.child.kill('SIGKILL');
      },
      restart: () => void this.restart().catch(() => {}),
      // Failures are reported as 'reloadError' events.
      reload: () => void this.reload().catch(() => {}),
      scaleBy: (delta) => this.scale(Math.max(0, this.target + delta)),
    };
    for (const sig of this.signals.take()) actOn(sig, actions);
  }

  /** Step 3: notice readiness and heartbeats; kill workers that are overdue. */
  private killOverdue(): void {
    const t = now();
    for (const w of this.all()) {
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
    if (this.phase !== 'running' || this.reloading !== null || !this.steady()) return;
    const pick = dueForRecycling(this.live.values());
    if (pick === null) return;
    this.notify(() => this.events.emit('recycle', pick.event));
    this.retire(pick.worker, 'recycle');
  }

  /** Whether every num below the target has a ready worker that is not being retired. */
  private steady(): boolean {
    return this.everyReady((w) => w.retiring === null);
  }

  /** Whether every num below the target has a ready worker for which `ok` holds. */
  private everyReady(ok: (w: Live) => boolean): boolean {
    for (let num = 0; num < this.target; num++) {
      const w = this.live.get(num);
      if (w === undefined || w.state !== 'ready' || !ok(w)) return false;
    }
    return true;
  }

  /** Step 4: retire extra workers, fork missing ones, advance a rolling restart. */
  private keepCount(): void {
    if (this.phase === 'stopping') return;
    for (const w of this.live.values()) if (w.num >= this.target && w.retiring === null) this.retire(w, 'scale');
    this.forkMissing();
    this.rollOne();
    this.advanceReload();
  }

  /** Forks a worker for each missing num whose backoff is over, lowest num first. */
  private forkMissing(): void {
    const t = now();
    for (let num = 0; num < this.target; num++) {
      if (!this.live.has(num) && this.history.of(num).notBefore <= t) this.spawn(num);
    }
  }

  /** A rolling restart retires one old-generation worker at a time, once every other worker is ready. */
  private rollOne(): void {
    if (this.restartWaiters.length === 0 || this.reloading !== null || !this.steady()) return;
    for (let num = 0; num < this.target; num++) {
      const w = this.live.get(num)!;
      if (w.generation < this.generation) return this.retire(w, 'restart', this.cfg.shutdownTimeout);
    }
  }

  /** Resolves promises whose condition now holds. */
  private settle(): void {
    const allReady = (gen: number): boolean => this.everyReady((w) => w.generation >= gen);
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
    if (this.phase === 'stopping' && this.live.size === 0 && this.extra.size === 0) this.finish();
  }

  /** Step 5: sleep until the self-pipe wakes us or the next deadline comes. */
  private sleep(): void {
    if (this.phase === 'stopped') return;
    this.cancelSleep?.();
    const t = now();
    // A fork waiting for the master's requests (quiet.ts) looks again in a millisecond.
    let next = this.quiet.waiting ? 1 : Math.min(this.beatEvery, this.history.nextDue(t), this.orphans.nextDue(t));
    for (const w of this.all()) if (w.killAt !== null && w.killAt !== Infinity) next = Math.min(next, w.killAt - t);
    this.cancelSleep = libraryTimeout(() => {
      this.cancelSleep = null;
      this.schedule();
    }, Math.max(1, Math.ceil(next)));
  }

  // -- workers -----------------------------------------------------------------

  /** Forks the worker of `num`; in a reload, a new-code worker that holds no num yet. */
  spawn(num: number, reload: Reload | null = null): void {
    // Not yet: the caller's step asks again next turn.
    if (!this.quiet.open(now())) return;
    const generation = reload?.generation ?? this.generation;
    const h = this.history.of(num);
    // Replacing a lost worker comes first: its collection waits for the end of this turn.
    if (h.lost) this.gc.defer();
    else this.gc.collect();
    h.lost = false;
    this.cfg.beforeFork?.({ num, generation });
    let w: Live;
    try {
      w = forkWorker(workerSetup(this.setupBase, num, generation, reload === null ? this.cfg.worker : reload.worker));
    } catch (err) {
      // In the child, forkChild unwinds the master's stack; let it pass.
      if (isChildUnwind(err)) throw err;
      // EAGAIN or ENOMEM: treat like a crash, so the retry backs off.
      h.streak++;
      h.notBefore = now() + Math.max(BACKOFF_BASE_MS, backoff(h.streak));
      this.notify(() => this.events.emit('forkError', err));
      return;
    }
    if (reload === null) {
      this.live.set(num, w);
    } else {
      reload.incoming.set(num, w);
      this.extra.set(w.pid, w);
    }
    w.child.exited.then((exit) => {
      this.exits.push({ worker: w, exit });
      this.wake();
    });
    this.notify(() => this.events.emit('spawn', { num, pid: w.pid, generation }));
  }

  /** Asks a worker to drain (SIGTERM); SIGKILL follows after `grace` ms. */
  retire(w: Live, reason: ExitReason, grace = this.cfg.shutdownTimeout): void {
    retireWorker(w, reason, grace);
  }

  private isWorker(pid: number): boolean {
    return this.live.size + this.extra.size > 0 && this.all().some((w) => w.pid === pid);
  }

  // -- stopping ----------------------------------------------------------------

  private beginStop(): void {
    if (this.phase === 'stopping' || this.phase === 'stopped') return;
    if (this.phase === 'booting') {
      const err = new Error('prefork: stopped before every worker was ready');
      this.notify(() => this.readyReject(err));
    }
    this.phase = 'stopping';
    this.reloading?.abort(this, new ReloadError('prefork: the reload was cut short: the master is stopping'));
    this.reloading = null;
    for (const w of this.all()) if (w.retiring === null || w.retiring === 'restart' || w.retiring === 'scale' || w.retiring === 'reload') this.retire(w, 'stop');
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
