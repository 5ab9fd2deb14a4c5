// The public types of prefork.
import type http from 'node:http';
import type { ListenSpec } from './listen';

/** One frame of a worker's identity: `[{kind:'process', num:1}, {kind:'thread', num:0}]`. */
export interface Frame {
  readonly kind: 'process' | 'thread';
  readonly num: number;
}

/** What the parent of a hybrid thread looks like from inside the thread: plain data. */
export interface ParentContext {
  readonly kind: 'process';
  readonly num: number;
  readonly generation: number;
  readonly pid: number;
  readonly context: readonly Frame[];
}

export type RequestHandler = (req: http.IncomingMessage, res: http.ServerResponse) => void;

export interface ServeOptions {
  /** Which of `ctx.listenFds` to accept on (default 0). */
  index?: number;
}

/** `ctx`, the argument of `worker(ctx)`, in a forked process or a hybrid thread. */
export interface WorkerContext {
  /** 0..workers-1 (or 0..threads-1 in a thread), durable: a replacement gets the lowest free number. */
  readonly num: number;
  /** The master's rolling-restart generation this worker was started in. */
  readonly generation: number;
  readonly kind: 'process' | 'thread';
  /** In a hybrid thread, its process; otherwise null. */
  readonly parent: ParentContext | null;
  /** The frame stack, outermost first. */
  readonly context: readonly Frame[];
  /** Listening sockets to accept on, in the order of `options.listen`. */
  readonly listenFds: readonly number[];
  /** Marks this worker ready. Called for you once `worker(ctx)` returns (or resolves) or `serve()` listens. */
  ready(): void;
  /** Reports liveness now. Heartbeats are also sent automatically while the event loop turns. */
  heartbeat(): void;
  /** Runs `cb` on graceful shutdown; the worker exits once every callback has settled. */
  onShutdown(cb: () => unknown): void;
  /**
   * Serves HTTP on `listenFds[index]` with a graceful drain on shutdown: stop
   * accepting, answer in-flight requests with `Connection: close`, close idle
   * keep-alive connections, then exit. Marks the worker ready once listening.
   */
  serve(handlerOrServer: RequestHandler | http.Server, options?: ServeOptions): http.Server;
}

export type WorkerFn = (ctx: WorkerContext) => unknown;

export interface ForkInfo {
  readonly num: number;
  readonly generation: number;
}

export interface PreforkOptions {
  /** Number of worker processes (default: os.availableParallelism()). */
  workers?: number;
  /** A port, 'host:port', '[::1]:port', a unix socket path, or an array of them. */
  listen?: ListenSpec | ListenSpec[];
  /** A worker whose heartbeat stops this long (ms) gets SIGTERM, then SIGKILL after a grace (default 30000). */
  timeout?: number;
  /** Graceful stop: how long (ms) a worker may drain before SIGKILL (default 10000). */
  shutdownTimeout?: number;
  /** >0: each worker process runs this many worker_threads, and `worker` runs in each thread (needs a module path). */
  threads?: number;
  /** Give each worker its own SO_REUSEPORT socket instead of one shared accept queue (TCP only). */
  reusePort?: boolean;
  /** listen(2) backlog (default 511). */
  backlog?: number;
  /** Handle TERM/INT/QUIT (stop), HUP (restart), TTIN/TTOU (scale) in this process (default true). */
  signals?: boolean;
  /** Runs in each worker: a function, or the path of a module that exports one (or a request handler). */
  worker: WorkerFn | string;
  /**
   * Runs in the master just before each fork (after the pre-fork collection).
   * Keep it synchronous: the fork follows at once, and microtasks it queued would also run in the worker.
   */
  beforeFork?: (info: ForkInfo) => void;
  /** Runs in each forked worker just after the fork, before `worker(ctx)`. */
  afterFork?: (ctx: WorkerContext) => void;
  /**
   * Recycle a worker (a graceful replacement) once it has served this many
   * HTTP requests, plus its own random jitter of 0..maxRequestsJitter.
   * Counts the requests of every server on an inherited fd.
   */
  maxRequests?: number;
  /** The most requests a worker adds to maxRequests, drawn per worker (default: a tenth of maxRequests). */
  maxRequestsJitter?: number;
  /** Recycle a worker whose memory (PSS on Linux, else RSS) is over this many bytes; checked every second. */
  maxMemory?: number;
  /**
   * Serve one /metrics with every worker's prom-client metrics (its default
   * registry) merged, each series labelled `worker="<num>"`, plus the
   * master's. Needs the prom-client package. `host` defaults to every interface.
   */
  metrics?: { port: number; host?: string };
}

export type WorkerState = 'starting' | 'ready' | 'stopping';

export interface WorkerStats {
  num: number;
  pid: number;
  generation: number;
  state: WorkerState;
  /** ms since the fork. */
  uptime: number;
  /** How many times this num was replaced. */
  restarts: number;
  /** Epoch ms of the last heartbeat the master saw. */
  lastHeartbeat: number;
}

export type ExitReason = 'crash' | 'timeout' | 'restart' | 'scale' | 'stop' | 'recycle' | 'reload';

export interface WorkerEvent {
  num: number;
  pid: number;
  generation: number;
}

export interface WorkerExitEvent extends WorkerEvent {
  exitCode: number | null;
  signal: NodeJS.Signals | null;
  reason: ExitReason;
}

/** A worker over maxRequests or maxMemory is being replaced. */
export interface WorkerRecycleEvent extends WorkerEvent {
  cause: 'maxRequests' | 'maxMemory';
  /** The worker's own request limit (maxRequests plus its jitter), or null without maxRequests. */
  requestLimit: number | null;
}
