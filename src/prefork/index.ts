// prefork: a Unicorn-class supervisor. Workers are forked from a warm master,
// so they start in milliseconds and share its heap copy-on-write. This file is
// the facade: it validates the options and delegates to MasterImpl.
import { EventEmitter } from 'node:events';
import os from 'node:os';
import path from 'node:path';
import { forkUnsafeError, isForkSafe } from '../fork';
import {
  boolean,
  nonNegativeInteger,
  optionalFunction,
  isPlainObject,
  optionsObject,
  positiveInteger,
  positiveNumber,
  rejectUnknown,
} from '../validate';
import { type Address, type Endpoint, type ListenSpec, parseListen } from './listen';
import { type MasterConfig, MasterImpl } from './master';
import { MetricsExporter, loadPromClient } from './metrics';
import { defaultJitter } from './recycle';
import { importFresh } from './reload';
import { importModule, workerFromModule } from './serve';
import type {
  ForkInfo,
  PreforkOptions,
  WorkerContext,
  WorkerEvent,
  WorkerExitEvent,
  WorkerFn,
  WorkerRecycleEvent,
  WorkerStats,
} from './types';

export type {
  ExitReason,
  ForkInfo,
  Frame,
  ParentContext,
  PreforkOptions,
  RequestHandler,
  ServeOptions,
  WorkerContext,
  WorkerEvent,
  WorkerExitEvent,
  WorkerFn,
  WorkerRecycleEvent,
  WorkerState,
  WorkerStats,
} from './types';
export type { Address, ListenSpec } from './listen';

const KNOWN = [
  'workers',
  'listen',
  'timeout',
  'shutdownTimeout',
  'threads',
  'reusePort',
  'backlog',
  'signals',
  'worker',
  'beforeFork',
  'afterFork',
  'maxRequests',
  'maxRequestsJitter',
  'maxMemory',
  'metrics',
] as const;

export interface PreforkMasterEvents {
  spawn: [WorkerEvent];
  ready: [WorkerEvent];
  exit: [WorkerExitEvent];
  timeout: [WorkerEvent];
  recycle: [WorkerRecycleEvent];
  reload: [{ generation: number }];
  reloaded: [{ generation: number }];
  reloadError: [Error];
  forkError: [Error];
  stop: [];
}

/** The handle `prefork()` returns. Events: spawn, ready, exit, timeout, recycle, reload, reloaded, reloadError, forkError, stop. */
export class PreforkMaster extends EventEmitter<PreforkMasterEvents> {
  readonly #impl: MasterImpl;
  /**
   * The process that made the master. A worker has a copy of this object, and runs the master's pending timers
   * and their continuations (docs/prefork.md): a master's `await sleep(); master.stop()` ran in a worker forked
   * meanwhile, whose copy sent SIGTERM to the other workers, which the real master then saw exit on their own. In
   * any other process, restart(), reload() and stop() do nothing and never settle, and scale() does nothing.
   */
  readonly #pid = process.pid;
  /** Settles once every worker has reported ready (rejects with WorkerBootError if one dies first). */
  readonly ready: Promise<void>;
  /** The listening sockets the master opened, with the real port for port 0. */
  readonly addresses: readonly Address[];

  /** The socket of `options.metrics` (with the real port for port 0), or null. */
  readonly metricsAddress: Address | null;

  /** @internal Use prefork(). */
  constructor(config: MasterConfig, boot: (impl: MasterImpl) => void, metrics: MetricsExporter | null) {
    super();
    this.#impl = new MasterImpl(config, this as unknown as EventEmitter);
    // Before the first fork (a turn of the loop, not this call): workers need the setup.
    if (metrics !== null) {
      config.metrics = metrics.setup;
      metrics.attach(this);
      this.once('stop', () => metrics.close());
    }
    boot(this.#impl);
    this.ready = this.#impl.ready;
    this.addresses = Object.freeze(this.#impl.addresses.map((a) => Object.freeze({ ...a })));
    this.metricsAddress = metrics === null ? null : Object.freeze({ ...metrics.address });
  }

  /** Per live worker: num, pid, generation, state, uptime, restarts, lastHeartbeat. */
  stats(): WorkerStats[] {
    return this.#impl.stats();
  }

  /** The number of workers the master keeps. */
  get workers(): number {
    return this.#impl.workers;
  }

  /** Rolling restart: one worker at a time drains and is replaced by a fresh fork. */
  restart(): Promise<void> {
    return this.#elsewhere() ?? this.#impl.restart();
  }

  /**
   * Code reload (also SIGUSR2): loads the worker module again in this process
   * (same pid), forks a new worker per num from it, and drains the old ones
   * once every new one is ready. Rejects with ReloadError, and the old
   * workers keep serving, if the new code fails to load or to boot.
   */
  reload(): Promise<void> {
    return this.#elsewhere() ?? this.#impl.reload();
  }

  /** Changes the number of workers; extra ones drain (highest nums first go), missing ones are forked. */
  scale(workers: number): void {
    if (workers === undefined) throw new TypeError('scale(workers): workers must be a non-negative integer');
    const n = nonNegativeInteger(workers, 'scale(workers): workers', 0);
    if (this.#elsewhere() === null) this.#impl.scale(n);
  }

  /** Graceful stop: workers stop accepting and finish in-flight work (SIGKILL after shutdownTimeout). */
  stop(): Promise<void> {
    return this.#elsewhere() ?? this.#impl.stop();
  }

  /** In a process other than the master's (a worker's copy, see #pid): a promise that never settles; else null. */
  #elsewhere(): Promise<void> | null {
    return process.pid === this.#pid ? null : new Promise<void>(() => {});
  }
}

/**
 * Starts a prefork master in this process. Sockets are opened here, before
 * any fork; throws synchronously on bad options, on a process started without
 * --single-threaded (ForkUnsafeError) and when a socket cannot be bound.
 */
export function prefork(options: PreforkOptions): PreforkMaster {
  const opts = optionsObject(options);
  rejectUnknown(opts, KNOWN);
  const worker = opts.worker;
  if (typeof worker !== 'function' && (typeof worker !== 'string' || worker === '')) {
    throw new TypeError('options.worker must be a function or a module path');
  }
  const threads = nonNegativeInteger(opts.threads, 'options.threads', 0);
  if (threads > 0 && typeof worker !== 'string') {
    throw new TypeError(
      'options.worker must be a module path when options.threads > 0: a worker_thread cannot share the master\'s closures',
    );
  }
  const listen = opts.listen === undefined ? [] : Array.isArray(opts.listen) ? opts.listen : [opts.listen];
  const endpoints: Endpoint[] = listen.map((spec: ListenSpec, i: number) =>
    parseListen(spec, Array.isArray(opts.listen) ? `options.listen[${i}]` : 'options.listen'),
  );
  const reusePort = boolean(opts.reusePort, 'options.reusePort', false);
  if (reusePort && endpoints.some((e) => e.kind === 'unix')) {
    throw new TypeError('options.reusePort needs TCP addresses in options.listen (a unix socket cannot be shared that way)');
  }
  const maxRequests = opts.maxRequests === undefined ? null : positiveInteger(opts.maxRequests, 'options.maxRequests', 0);
  if (opts.maxRequestsJitter !== undefined && maxRequests === null) {
    throw new TypeError('options.maxRequestsJitter needs options.maxRequests');
  }
  if (maxRequests !== null && threads > 0) {
    throw new TypeError('options.maxRequests cannot count the requests of hybrid threads (options.threads > 0); use options.maxMemory');
  }
  const config: MasterConfig = {
    workers: positiveInteger(opts.workers, 'options.workers', os.availableParallelism()),
    endpoints,
    timeout: positiveNumber(opts.timeout, 'options.timeout') ?? 30_000,
    shutdownTimeout: positiveNumber(opts.shutdownTimeout, 'options.shutdownTimeout') ?? 10_000,
    threads,
    reusePort,
    backlog: positiveInteger(opts.backlog, 'options.backlog', 511),
    signals: boolean(opts.signals, 'options.signals', true),
    worker: null,
    module: typeof worker === 'string' ? path.resolve(worker) : null,
    beforeFork: optionalFunction<(info: ForkInfo) => void>(opts.beforeFork, 'options.beforeFork'),
    afterFork: optionalFunction<(ctx: WorkerContext) => void>(opts.afterFork, 'options.afterFork'),
    recycle: {
      maxRequests,
      maxRequestsJitter: nonNegativeInteger(opts.maxRequestsJitter, 'options.maxRequestsJitter', defaultJitter(maxRequests)),
      maxMemory: positiveNumber(opts.maxMemory, 'options.maxMemory') ?? null,
    },
    metrics: null,
    load: null,
  };
  if (typeof worker === 'string') {
    const file = config.module!;
    config.load = () => importFresh(file).then((mod) => (threads > 0 ? null : workerFromModule(mod, file)));
  }
  const metricsAt = metricsEndpoint(opts.metrics, threads);
  if (!isForkSafe()) throw forkUnsafeError('prefork()');
  const metrics = metricsAt === null ? null : new MetricsExporter(metricsAt, loadPromClient(config.module ? path.dirname(config.module) : process.cwd()));
  try {
    return startMaster(config, threads, worker as WorkerFn | string, metrics);
  } catch (err) {
    metrics?.close();
    throw err;
  }
}

/** `options.metrics: { port, host? }`: where the merged /metrics is served. */
function metricsEndpoint(v: unknown, threads: number): Endpoint | null {
  if (v === undefined) return null;
  if (!isPlainObject(v)) throw new TypeError('options.metrics must be an object such as { port: 9100 }');
  rejectUnknown(v, ['port', 'host'], 'options.metrics');
  if (v.port === undefined) throw new TypeError('options.metrics.port must be a port from 0 to 65535');
  if (typeof v.port !== 'number') throw new TypeError('options.metrics.port must be a port from 0 to 65535');
  const at = parseListen(v.port, 'options.metrics.port');
  if (v.host !== undefined && typeof v.host !== 'string') throw new TypeError('options.metrics.host must be a string');
  if (threads > 0) throw new TypeError('options.metrics cannot merge the registries of hybrid threads (options.threads > 0)');
  return at.kind === 'tcp' ? { ...at, host: (v.host as string | undefined) ?? '' } : at;
}

function startMaster(config: MasterConfig, threads: number, worker: WorkerFn | string, metrics: MetricsExporter | null): PreforkMaster {
  return new PreforkMaster(config, (impl) => {
    if (typeof worker === 'function') {
      impl.start(worker as WorkerFn);
      return;
    }
    // The module is loaded here, in the master, so that every worker shares it
    // copy-on-write, and so that a bad export fails before any fork.
    const file = config.module!;
    importModule(file)
      .then((mod) => workerFromModule(mod, file))
      .then(
        (fn) => impl.start(threads > 0 ? null : fn),
        (err: Error) => impl.fail(err),
      );
  }, metrics);
}
