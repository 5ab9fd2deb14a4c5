// iterate across machines: the partitions of a run are jobs of a BullMQ flow
// on Redis (cowfork/bullmq).
//
// A run is one queue, named after it. engine.enqueue({ instances }) adds one
// flow: a parent job ("all-complete") whose children are the partitions
// ("partition-<i>"). Each machine's iterate() runs a BullMQ Worker with its
// concurrency; the Worker's processor is the lease: it forks an instance for
// the partition (run.ts) and resolves once the instance has ended.
// - The cursor lives in the partition job's data, saved after `each` with the
//   run loop's batching (job.updateData).
// - A machine that dies loses its job locks; BullMQ's stalled-job check moves
//   the jobs back to wait, and another machine resumes from the saved cursor.
//   maxStalledCount is unbounded: a stall resumes, it never fails.
// - A stop (SIGTERM, maxRuntime, abort) moves the job back to wait
//   (job.moveToWait + WaitingError): released, not failed.
// - A failure throws from the processor; BullMQ retries up to `attempts`.
//   Children carry ignoreDependencyOnFailure, so a failed partition still lets
//   the parent run (without it the parent stays in waiting-children forever,
//   BullMQ #3362), and the parent lists it among its ignored failures.
// - The parent runs onAllComplete, once, on whichever machine takes it after
//   the last partition ended, and returns the run-wide result; every machine
//   ends its iterate() when it sees the parent finished.
import os from 'node:os';
import type { ConnectionOptions, Job, Queue, Worker } from 'bullmq';
import { EngineError, IterateError, ReshardError } from '../errors';
import { libraryAtFork } from '../fork';
import { isPlainObject, optionsObject, positiveInteger, positiveNumber, rejectUnknown } from '../validate';
import type { InstanceResult, IterateResult, LeaseEngine, LeaseOutcome, LeaseRun } from './types';

type BullMQ = typeof import('bullmq');

const PARENT = 'all-complete';
const PARTITION = 'partition';
/** How long a run with no lease to give waits before it looks at the parent again. */
const POLL_MS = 250;

/** The data of a partition job: where it resumes, and who holds it. */
interface PartitionData {
  instance: number;
  instances: number;
  cursor: unknown;
  processed: number;
  /** host:pid of the machine that holds the lease; null when none does. */
  holder: string | null;
}

/** What the parent job returns: the run-wide result, as JSON. */
interface RunSummary {
  complete: boolean;
  instances: { instance: number; processedTotal: number; cursor: unknown; done: boolean; failedReason?: string }[];
}

export interface BullMQEngineOptions {
  /** Redis connection options (ioredis), e.g. { host: '127.0.0.1', port: 6379 }. */
  connection: ConnectionOptions;
  /** The run's name: its queue. A new backfill gets a new name. */
  name: string;
  /** BullMQ key prefix. Default 'bull'. */
  prefix?: string;
  /** Attempts of a partition before it fails; a retry resumes from the saved cursor. Default 3. */
  attempts?: number;
  /** ms between a partition's attempts. Default 1000. */
  backoff?: number;
  /** ms a machine's lease lasts without renewal: how soon another machine resumes a dead machine's partition. Default 30000. */
  lockDuration?: number;
  /** ms to wait for Redis before failing with EngineError. Default 10000. */
  connectTimeout?: number;
}

/** A partition's state across machines (engine.progress()). */
export interface PartitionProgress {
  instance: number;
  /** BullMQ's job state: 'waiting', 'active', 'delayed', 'completed', 'failed', ... */
  state: string;
  /** Items finished over all leases, as last saved. */
  processed: number;
  cursor: unknown;
  /** host:pid of the machine holding it, or null. */
  holder: string | null;
  attemptsMade: number;
  failedReason?: string;
}

function loadBullMQ(name: string): BullMQ {
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    return require('bullmq') as BullMQ;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'MODULE_NOT_FOUND' && /'bullmq'/.test((err as Error).message)) {
      throw new EngineError('cowfork/bullmq needs the bullmq package (and ioredis), an optional peer dependency: npm install bullmq ioredis', name, {
        cause: err,
      });
    }
    throw err;
  }
}

function where(connection: ConnectionOptions): string {
  const c = connection as { host?: string; port?: number; path?: string; options?: { host?: string; port?: number } };
  if (typeof c.path === 'string') return c.path;
  const host = c.host ?? c.options?.host ?? '127.0.0.1';
  const port = c.port ?? c.options?.port ?? 6379;
  return `${host}:${port}`;
}

function validate(raw: unknown): Required<Omit<BullMQEngineOptions, 'prefix'>> & { prefix: string } {
  if (raw === undefined) throw new TypeError('new BullMQEngine(options): options must be an object');
  const o = optionsObject(raw);
  rejectUnknown(o, ['connection', 'name', 'prefix', 'attempts', 'backoff', 'lockDuration', 'connectTimeout']);
  if (!isPlainObject(o.connection) && (typeof o.connection !== 'object' || o.connection === null)) {
    throw new TypeError("options.connection must be Redis connection options such as { host: '127.0.0.1', port: 6379 }");
  }
  if (typeof o.name !== 'string' || o.name === '' || o.name.includes(':')) {
    throw new TypeError('options.name must be a non-empty string without ":" (it names the run\'s queue)');
  }
  if (o.prefix !== undefined && (typeof o.prefix !== 'string' || o.prefix === '')) throw new TypeError('options.prefix must be a non-empty string');
  return {
    connection: o.connection as ConnectionOptions,
    name: o.name,
    prefix: (o.prefix as string | undefined) ?? 'bull',
    attempts: positiveInteger(o.attempts, 'options.attempts', 3),
    backoff: o.backoff === 0 ? 0 : (positiveNumber(o.backoff, 'options.backoff') ?? 1000),
    lockDuration: positiveInteger(o.lockDuration, 'options.lockDuration', 30_000),
    connectTimeout: positiveNumber(o.connectTimeout, 'options.connectTimeout') ?? 10_000,
  };
}

/** Rejects with `onTimeout()` when `p` has not settled within `ms`. */
function within<T>(p: Promise<T>, ms: number, onTimeout: () => Error): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(onTimeout()), ms);
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}

/** The few Redis commands the engine issues itself, on the queue's own connection. */
interface RedisCommands {
  hget(key: string, field: string): Promise<string | null>;
  hsetnx(key: string, field: string, value: string): Promise<number>;
  del(key: string): Promise<number>;
}

/** The queue's Redis client: queue.backend.client in bullmq 6 (queue.client before it). */
function redisOf(queue: Queue): Promise<RedisCommands> {
  const q = queue as unknown as { backend?: { client?: Promise<RedisCommands> }; client?: Promise<RedisCommands> };
  return (q.backend?.client ?? q.client)!;
}

function partitionId(i: number): string {
  return `${PARTITION}-${i}`;
}

/**
 * Runs an iterate across machines through BullMQ on Redis. Enqueue the run
 * once, then pass the engine to iterate() on every machine in place of
 * `checkpoint` and `instances`.
 */
export class BullMQEngine {
  readonly name: string;
  private readonly opts: ReturnType<typeof validate>;
  private readonly bullmq: BullMQ;
  private queuePromise: Promise<Queue> | null = null;

  constructor(options: BullMQEngineOptions) {
    this.opts = validate(options);
    this.name = this.opts.name;
    this.bullmq = loadBullMQ(this.name);
  }

  private get metaKey(): string {
    return `${this.opts.prefix}:${this.name}:cowfork`;
  }

  /** The run's queue, connected; rejects with EngineError when Redis does not answer. */
  private queue(): Promise<Queue> {
    this.queuePromise ??= this.connect();
    return this.queuePromise;
  }

  private async connect(): Promise<Queue> {
    const { connection, prefix, connectTimeout } = this.opts;
    const queue = new this.bullmq.Queue(this.name, { connection, prefix });
    let last: Error | undefined;
    queue.on('error', (err) => {
      last = err;
    });
    try {
      await within(queue.waitUntilReady(), connectTimeout, () => new Error('no answer'));
      return queue;
    } catch (err) {
      this.queuePromise = null;
      void queue.disconnect().catch(() => undefined);
      const why = last?.message ?? (err as Error).message;
      throw new EngineError(`cannot reach Redis at ${where(connection)} for iterate run "${this.name}" within ${connectTimeout} ms: ${why}`, this.name, {
        cause: last ?? err,
      });
    }
  }

  /** The run's partition count, or null when it was never enqueued. */
  private async storedInstances(queue: Queue): Promise<number | null> {
    const client = await redisOf(queue);
    const v = await client.hget(this.metaKey, 'instances');
    return v === null ? null : Number(v);
  }

  /**
   * Adds the run's partitions, once: with the stored count it does nothing,
   * with another count it rejects with ReshardError.
   */
  async enqueue(options: { instances: number }): Promise<{ created: boolean }> {
    const o = optionsObject(options, 'options');
    rejectUnknown(o, ['instances']);
    if (o.instances === undefined) throw new TypeError('options.instances must be a positive integer');
    const instances = positiveInteger(o.instances, 'options.instances', 1);
    const queue = await this.queue();
    const client = await redisOf(queue);
    await client.hsetnx(this.metaKey, 'instances', String(instances));
    const stored = await this.storedInstances(queue);
    if (stored !== instances) {
      throw new ReshardError(
        `iterate run "${this.name}" was enqueued with instances: ${stored}, not ${instances}. ` +
          'Cursors of one partitioning cannot resume another: enqueue with the same count, or use a new run name.',
        stored ?? 0,
        instances,
      );
    }
    // The count is recorded first; a crash before the flow is added leaves no
    // parent job, and the next enqueue adds it.
    if ((await queue.getJob(PARENT)) !== undefined) return { created: false };
    const { prefix, attempts, backoff } = this.opts;
    const flow = new this.bullmq.FlowProducer({ connection: this.opts.connection, prefix });
    try {
      await flow.add({
        name: PARENT,
        queueName: this.name,
        data: { instances },
        opts: { jobId: PARENT, removeOnComplete: false, removeOnFail: false },
        children: Array.from({ length: instances }, (_, i) => ({
          name: PARTITION,
          queueName: this.name,
          data: { instance: i, instances, cursor: null, processed: 0, holder: null } satisfies PartitionData,
          opts: {
            jobId: partitionId(i),
            attempts,
            backoff: { type: 'fixed', delay: backoff },
            ignoreDependencyOnFailure: true,
            removeOnComplete: false,
            removeOnFail: false,
          },
        })),
      });
    } finally {
      await flow.close();
    }
    return { created: true };
  }

  /** Each partition's state, count and holder, as Redis has them now. */
  async progress(): Promise<PartitionProgress[]> {
    const queue = await this.queue();
    const n = await this.storedInstances(queue);
    if (n === null) return [];
    return Promise.all(
      Array.from({ length: n }, async (_, i) => {
        const job = await queue.getJob(partitionId(i));
        const d = (job?.data ?? {}) as Partial<PartitionData>;
        const p: PartitionProgress = {
          instance: i,
          state: job === undefined ? 'unknown' : await job.getState(),
          processed: d.processed ?? 0,
          cursor: d.cursor ?? null,
          holder: d.holder ?? null,
          attemptsMade: job?.attemptsMade ?? 0,
        };
        if (job?.failedReason) p.failedReason = job.failedReason;
        return p;
      }),
    );
  }

  /** Deletes the run's queue and keys from Redis (a finished run, or a test's). */
  async destroy(): Promise<void> {
    const queue = await this.queue();
    const client = await redisOf(queue);
    await queue.obliterate({ force: true });
    await client.del(this.metaKey);
  }

  /** Closes the engine's own Redis connection. */
  async close(): Promise<void> {
    const q = this.queuePromise;
    this.queuePromise = null;
    if (q !== null) await (await q.catch(() => null))?.close();
  }

  /** For iterate(): checks the run and returns this machine's leases. */
  async openLeases(concurrency: number): Promise<LeaseEngine & { readonly instances: number }> {
    const queue = await this.queue();
    const instances = await this.storedInstances(queue);
    if (instances === null) {
      throw new EngineError(`iterate run "${this.name}" was never enqueued: call engine.enqueue({ instances }) once first`, this.name);
    }
    return new Leases(this.bullmq, this.opts, queue, instances, concurrency);
  }
}

/** One iterate() call's leases: a BullMQ Worker whose processor walks partitions. */
class Leases implements LeaseEngine {
  private worker: Worker | null = null;
  private readonly held = new Map<number, { job: Job<PartitionData>; token: string }>();
  /** Partitions whose lock this machine lost while walking them. */
  private readonly lost = new Set<number>();
  private readonly holder = `${os.hostname()}:${process.pid}`;
  private stopped = false;
  private wake: (() => void) | null = null;

  constructor(
    private readonly bullmq: BullMQ,
    private readonly opts: ReturnType<typeof validate>,
    private readonly queue: Queue,
    readonly instances: number,
    readonly concurrency: number,
  ) {}

  async lease(run: LeaseRun): Promise<IterateResult | null> {
    const { connection, prefix, lockDuration, name } = this.opts;
    let ranParent: Error | null = null;
    const worker = new this.bullmq.Worker(
      name,
      async (job: Job, token?: string) => {
        if (job.name === PARENT) {
          try {
            return await this.allComplete(job, run.onAllComplete);
          } catch (err) {
            ranParent = err as Error;
            throw err;
          }
        }
        return this.walk(job as Job<PartitionData>, token!, run);
      },
      {
        connection,
        prefix,
        concurrency: this.concurrency,
        lockDuration,
        stalledInterval: lockDuration,
        // A stall (a dead machine) resumes the partition; it never fails it.
        maxStalledCount: Number.MAX_SAFE_INTEGER,
        drainDelay: 1,
      },
    );
    this.worker = worker;
    worker.on('error', () => {
      // Connection errors are retried by the Worker; the parent poll below notices a lasting outage.
    });
    // A lock that could not be renewed in time (this machine stalled longer than
    // lockDuration) may be another machine's now: stop walking that partition
    // and write nothing more to it.
    worker.on('lockRenewalFailed', (jobIds: string[]) => {
      for (const [instance, h] of this.held) {
        if (!jobIds.includes(h.job.id!)) continue;
        this.lost.add(instance);
        run.revoke(instance);
      }
    });
    // A forked instance inherits this Worker, its timers and its Redis clients.
    // Their sockets are dead in the child, but ioredis would reconnect and the
    // Worker would take jobs there: close the child's copies at once (their
    // writes only reach the dead sockets, never the parent's connections).
    const owner = process.pid;
    const unhook = libraryAtFork({
      child: () => {
        void worker.close(true).catch(() => undefined);
        void this.queue.disconnect().catch(() => undefined);
      },
    });
    try {
      for (;;) {
        if (this.stopped) return null;
        const parent = await this.queue.getJob(PARENT);
        if (parent === undefined) {
          throw new EngineError(`iterate run "${name}" has no parent job: it was destroyed, or enqueue did not finish; call engine.enqueue again`, name);
        }
        const state = await parent.getState();
        if (state === 'completed') {
          // The job may have completed after getJob() read it, without its return value: read it again.
          const done = (parent.returnvalue ?? (await this.queue.getJob(PARENT))?.returnvalue) as RunSummary | null | undefined;
          if (done != null) return reviveSummary(done, this.instances);
        }
        if (state === 'failed') {
          if (ranParent !== null) throw ranParent;
          throw new EngineError(`iterate run "${name}": onAllComplete failed on another machine: ${parent.failedReason}`, name);
        }
        await new Promise<void>((resolve) => {
          const t = setTimeout(resolve, POLL_MS);
          this.wake = () => {
            clearTimeout(t);
            resolve();
          };
        });
        this.wake = null;
      }
    } catch (err) {
      // The child's copy of a Redis call the parent had in flight fails there: not the run's error.
      if (process.pid !== owner) return new Promise<never>(() => undefined);
      throw err;
    } finally {
      if (process.pid === owner) {
        unhook();
        this.worker = null;
        await worker.close();
      }
    }
  }

  /** The processor of a partition job: one lease. */
  private async walk(job: Job<PartitionData>, token: string, run: LeaseRun): Promise<unknown> {
    const d = job.data;
    if (this.stopped) return this.release(job, token);
    this.held.set(d.instance, { job, token });
    this.lost.delete(d.instance);
    let out: LeaseOutcome;
    try {
      await job.updateData({ ...d, holder: this.holder });
      out = await run.work({ instance: d.instance, cursor: d.cursor ?? null, processed: d.processed ?? 0 });
    } finally {
      this.held.delete(d.instance);
    }
    if (this.lost.delete(d.instance)) {
      // BullMQ cannot move a job whose lock is gone; the partition is another machine's.
      throw new Error(`iterate partition ${d.instance}: this machine lost its lease (its lock was not renewed within lockDuration)`);
    }
    if (out.end === 'done') {
      await job.updateData({ ...job.data, cursor: out.cursor, processed: out.processed, holder: null });
      return { processed: out.processed, cursor: out.cursor };
    }
    if (out.end === 'failed') throw out.error ?? new Error(`partition ${d.instance} failed`);
    return this.release(job, token);
  }

  /** Gives the partition back unfinished: waiting again, its cursor saved, not an attempt. */
  private async release(job: Job<PartitionData>, token: string): Promise<never> {
    await job.updateData({ ...job.data, holder: null });
    await job.moveToWait(token);
    throw new this.bullmq.WaitingError();
  }

  /** The processor of the parent job: every partition has ended. */
  private async allComplete(job: Job, onAllComplete?: (r: IterateResult) => unknown): Promise<RunSummary> {
    const failures = await job.getIgnoredChildrenFailures();
    const summary: RunSummary = { complete: true, instances: [] };
    for (let i = 0; i < this.instances; i++) {
      const child = await this.queue.getJob(partitionId(i));
      const d = (child?.data ?? {}) as Partial<PartitionData>;
      const key = child === undefined ? undefined : `${this.opts.prefix}:${this.opts.name}:${child.id}`;
      const reason = key === undefined ? 'the partition job is missing' : failures[key];
      const entry: RunSummary['instances'][number] = { instance: i, processedTotal: d.processed ?? 0, cursor: d.cursor ?? null, done: reason === undefined };
      if (reason !== undefined) {
        entry.failedReason = reason;
        summary.complete = false;
      }
      summary.instances.push(entry);
    }
    await onAllComplete?.(reviveSummary(summary, this.instances));
    return summary;
  }

  async save(instance: number, cursor: unknown, processed: number): Promise<void> {
    const h = this.held.get(instance);
    if (h === undefined || this.lost.has(instance)) return;
    await h.job.updateData({ ...h.job.data, cursor, processed, holder: this.holder });
  }

  stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    // No new leases; the leased ones end as their instances stop, then release.
    void this.worker?.close().catch(() => undefined);
    this.wake?.();
  }
}

function reviveSummary(s: RunSummary, instances: number): IterateResult {
  const list: InstanceResult[] = s.instances.map((e) => {
    const r: InstanceResult = { instance: e.instance, processed: 0, processedTotal: e.processedTotal, cursor: e.cursor, done: e.done };
    if (e.failedReason !== undefined) {
      r.error = new IterateError(`iterate partition ${e.instance} of ${instances} failed after its attempts: ${e.failedReason}`, e.instance, undefined, e.cursor, null, null);
    }
    return r;
  });
  return { complete: s.complete, interrupted: false, interruptedBy: null, instances: list };
}
