// Every failure a user can branch on is a class here, with a stable `code`.

export abstract class CowforkError extends Error {
  abstract readonly code: string;
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** The item's function threw (or rejected) in the child. `cause` is the child's error, with its stack. */
export class WorkerError extends CowforkError {
  readonly code = 'ERR_WORKER';
  constructor(
    message: string,
    readonly index: number,
    readonly pid: number,
    cause: unknown,
  ) {
    super(message, { cause });
  }
}

/** The child died by a signal or exited non-zero (OOM, kill -9, process.exit). */
export class WorkerCrashedError extends CowforkError {
  readonly code = 'ERR_WORKER_CRASHED';
  constructor(
    message: string,
    readonly index: number | undefined,
    readonly pid: number,
    readonly exitCode: number | null,
    readonly signal: NodeJS.Signals | null,
  ) {
    super(message);
  }
}

/** An item ran longer than `timeout`; its child was killed. */
export class TimeoutError extends CowforkError {
  readonly code = 'ERR_TIMEOUT';
  constructor(
    message: string,
    readonly index: number | undefined,
    readonly timeout: number,
  ) {
    super(message);
  }
}

/** The call's AbortSignal fired; its children were killed. `cause` is the signal's reason. */
export class AbortError extends CowforkError {
  readonly code = 'ERR_ABORTED';
  constructor(message = 'The operation was aborted', options?: { cause?: unknown }) {
    super(message, options);
  }
}

/**
 * In a forked child: a `worker_threads` Worker that the parent started before
 * the fork was asked to do something. The child has none of the parent's
 * threads, so nothing posted to that Worker would ever be answered.
 */
export class ParentWorkerError extends CowforkError {
  readonly code = 'ERR_PARENT_WORKER';
  constructor(
    message: string,
    /** The Worker's `threadId` (the parent's thread). */
    readonly threadId: number,
    /** The pid of the process that started the Worker. */
    readonly ownerPid: number,
  ) {
    super(message);
  }
}

/** The input of map / each / stream threw (or rejected) while an item was pulled from it. `cause` is what it threw. */
export class InputError extends CowforkError {
  readonly code = 'ERR_INPUT';
  constructor(
    message: string,
    /** The position of the item the input failed to produce. */
    readonly index: number,
    cause: unknown,
  ) {
    super(message, { cause });
  }
}

/** The process cannot fork safely: it was started without V8's --single-threaded. */
export class ForkUnsafeError extends CowforkError {
  readonly code = 'ERR_FORK_UNSAFE';
}

/** A result file was truncated or failed HMAC authentication; its contents were not returned. */
export class ResultIntegrityError extends CowforkError {
  readonly code = 'ERR_RESULT_INTEGRITY';
  constructor(
    message: string,
    readonly index: number | undefined,
    readonly file: string,
  ) {
    super(message);
  }
}

// Where two names share a number, the one users know: signal 6 is SIGABRT
// (abort(), failed assertions), not its alias SIGIOT; 29 on Linux is SIGIO,
// not SIGPOLL.
const PREFERRED_SIGNALS = new Set(['SIGABRT', 'SIGIO', 'SIGCHLD', 'SIGSYS']);
const signalNames = new Map<number, NodeJS.Signals>();
export function signalName(signo: number): NodeJS.Signals | null {
  if (signo === 0) return null;
  if (signalNames.size === 0) {
    const { signals } = require('node:os').constants as typeof import('node:os').constants;
    for (const [name, num] of Object.entries(signals)) {
      if (!signalNames.has(num) || PREFERRED_SIGNALS.has(name)) signalNames.set(num, name as NodeJS.Signals);
    }
  }
  return signalNames.get(signo) ?? (`SIG${signo}` as NodeJS.Signals);
}

/**
 * An iterate instance failed: its `each` threw on an item, its `build` threw, or
 * its process died. Its cursor stays at the last item that finished.
 */
export class IterateError extends CowforkError {
  readonly code = 'ERR_ITERATE';
  /** Every failure of the run, this one first (non-enumerable: the result refers back to them). */
  declare errors: IterateError[];
  /** The run's result (cursors, counts), set when iterate rejects with this error (non-enumerable). */
  declare result: unknown;
  constructor(
    message: string,
    readonly instance: number,
    /** The failing item, as util.inspect shows it; undefined when no item was running. */
    readonly item: string | undefined,
    /** The failing item's cursor; undefined when no item was running. */
    readonly itemCursor: unknown,
    readonly exitCode: number | null,
    readonly signal: NodeJS.Signals | null,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    Object.defineProperty(this, 'errors', { value: [this], writable: true, enumerable: false, configurable: true });
    Object.defineProperty(this, 'result', { value: undefined, writable: true, enumerable: false, configurable: true });
  }
}

/** iterate's saved state has a different instance count; pass reshard: 'restart' to start over. */
export class ReshardError extends CowforkError {
  readonly code = 'ERR_ITERATE_RESHARD';
  constructor(
    message: string,
    readonly savedInstances: number,
    readonly instances: number,
  ) {
    super(message);
  }
}

/**
 * iterate's cross-machine engine cannot work: its queue server is unreachable,
 * its client package is missing, or the run was never enqueued.
 */
export class EngineError extends CowforkError {
  readonly code = 'ERR_ITERATE_ENGINE';
  constructor(
    message: string,
    /** The run's name (the queue). */
    readonly run: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** iterate's checkpoint cannot be read, is not an iterate state, or is locked by another run. */
export class CheckpointError extends CowforkError {
  readonly code = 'ERR_CHECKPOINT';
  constructor(
    message: string,
    readonly checkpoint: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/**
 * A fiber was cancelled. Raised inside the fiber at the pause/ioWait it is
 * parked in (and at every later one), and the rejection of `fiber.done` when
 * the fiber lets it propagate. `cause` is the reason given to `cancel()`.
 */
export class CancelledError extends CowforkError {
  readonly code = 'ERR_CANCELLED';
  constructor(message = 'The fiber was cancelled', options?: { cause?: unknown }) {
    super(message, options);
  }
}

/**
 * The Scheduler was driven where it cannot keep its contract: a synchronous
 * driver called inside a microtask or inside one of its own fibers, fibers
 * that wait on something only the event loop can settle, or a park on one
 * scheduler from a fiber of another.
 */
export class SchedulerError extends CowforkError {
  readonly code = 'ERR_SCHEDULER';
}

/** runUntilEmpty: fibers failed and nobody observed their `fiber.done`. `cause` is the first error. */
export class FiberFailedError extends CowforkError {
  readonly code = 'ERR_FIBER_FAILED';
  constructor(
    message: string,
    readonly errors: unknown[],
  ) {
    super(message, { cause: errors[0] });
  }
}

/** A prefork worker died before it was ready while the master was starting; `master.ready` rejects with it. */
export class WorkerBootError extends CowforkError {
  readonly code = 'ERR_WORKER_BOOT';
  constructor(
    message: string,
    readonly num: number,
    readonly pid: number,
    readonly exitCode: number | null,
    readonly signal: NodeJS.Signals | null,
  ) {
    super(message);
  }
}

/**
 * A prefork code reload (USR2, `master.reload()`) failed: the new code did not
 * load, a new worker died before it was ready, or they were not ready in
 * time. The old workers keep serving. `cause` is the load error, if any.
 */
export class ReloadError extends CowforkError {
  readonly code = 'ERR_PREFORK_RELOAD';
}

/** prefork's `metrics` cannot work: prom-client, its optional peer dependency, is not installed. */
export class MetricsError extends CowforkError {
  readonly code = 'ERR_PREFORK_METRICS';
}
