// The public iterate API: resumable parallel iteration with durable cursors.
// A thin facade: validate, check fork safety, delegate to the engine in run.ts.
import path from 'node:path';
import { forkUnsafeError, isForkSafe } from '../fork';
import {
  boolean,
  isPlainObject,
  optionalFunction,
  optionalSignal,
  optionsObject,
  positiveInteger,
  positiveNumber,
  rejectUnknown,
} from '../validate';
import type { Builder } from './builders';
import { runIterate } from './run';
import type { EachFn, EngineOptions, InstanceResult, IterateResult, LeaseEngine, StartInfo } from './types';
import { type CursorStore, fileStore } from './store';

export { byKey, fromArray, lines, range } from './builders';
export type { AsyncBuilder, Builder, ByKeyOptions, LinesOptions, Pair, SyncBuilder } from './builders';
export { fileStore } from './store';
export type { CursorStore, InstanceCursor, IterateState } from './store';
export type { EachContext, EachFn, InstanceResult, InterruptReason, IterateResult, StartInfo } from './types';

type Produced<B> = B extends (...args: never[]) => infer R ? R : never;
type PairOf<R> = R extends Iterable<infer P> ? P : R extends AsyncIterable<infer P> ? P : never;
/** The item type of a builder. */
export type ItemOf<B> = PairOf<Produced<B>> extends readonly [infer I, unknown] ? I : unknown;
/** The cursor type of a builder. */
export type CursorOf<B> = PairOf<Produced<B>> extends readonly [unknown, infer C] ? C : unknown;

/** A cross-machine engine (BullMQEngine from cowfork/bullmq): partitions are leased from it. */
export interface IterateEngine {
  /** Connects and checks the run; called once per iterate() call. */
  openLeases(concurrency: number): Promise<LeaseEngine & { readonly instances: number }>;
}

interface LocalOptions {
  /** How many forked instances walk the work, each its own partition. Must match the saved state. */
  instances: number;
  /** A JSON file path, saved atomically, or a CursorStore { load(), save(state) }. */
  checkpoint: string | CursorStore;
  engine?: undefined;
  concurrency?: undefined;
}

interface EngineRunOptions {
  /** Leases partitions across machines (cowfork/bullmq); the partition count is the enqueued run's. */
  engine: IterateEngine;
  /** How many partitions this process works on at once, each in its own instance. Default 1. */
  concurrency?: number;
  instances?: undefined;
  checkpoint?: undefined;
}

export type IterateOptions<I, C> = (LocalOptions | EngineRunOptions) & CommonOptions<I, C>;

interface CommonOptions<I, C> {
  /** Called in each instance: an (async) iterable of [item, cursor] pairs starting after `cursor` (null on a first run). */
  build: Builder<I, C>;
  /** Called in the instance for each item. A throw fails the instance. */
  each: EachFn<I, C>;
  /** ms after which the run stops cleanly (a later run resumes it). */
  maxRuntime?: number;
  /** Save after this many finished items and/or ms, whichever comes first. Default: { ms: 1000 }. */
  checkpointEvery?: { items?: number; ms?: number };
  /** Per instance, in the parent, when it starts in this run. */
  onStart?: (info: StartInfo<C>) => unknown;
  /** Per instance, in the parent, once it has walked its whole partition. */
  onComplete?: (info: InstanceResult<C>) => unknown;
  /** Once, in the parent, in the run where the last instance completes. */
  onAllComplete?: (result: IterateResult<C>) => unknown;
  /** Counts per instance, about every 100 ms while they change. */
  onProgress?: (counts: InstanceResult<C>[]) => unknown;
  /** Aborting stops the run cleanly, like SIGINT. */
  signal?: AbortSignal;
  /** Stop every instance when one fails. Default false: the others go on. */
  failFast?: boolean;
  /** 'refuse' (default): a saved state with another instance count is an error. 'restart': discard it. */
  reshard?: 'refuse' | 'restart';
}

const KNOWN = [
  'instances',
  'checkpoint',
  'engine',
  'concurrency',
  'build',
  'each',
  'maxRuntime',
  'checkpointEvery',
  'onStart',
  'onComplete',
  'onAllComplete',
  'onProgress',
  'signal',
  'failFast',
  'reshard',
] as const;

type WithoutBuild<T> = T extends unknown ? Omit<T, 'build'> : never;

type Resolved<I, C> = EngineOptions<I, C> & { engine?: IterateEngine; concurrency: number };

const noStore: CursorStore = {
  load: () => null,
  save: () => undefined,
};

function resolveOptions<I, C>(raw: unknown): Resolved<I, C> {
  if (raw === undefined) throw new TypeError('iterate(options): options must be an object');
  const o = optionsObject(raw);
  rejectUnknown(o, KNOWN);
  let engine: IterateEngine | undefined;
  let instances = 0;
  let concurrency = 1;
  if (o.engine !== undefined) {
    if (typeof (o.engine as Partial<IterateEngine> | null)?.openLeases !== 'function') {
      throw new TypeError('options.engine must be an engine such as new BullMQEngine(...) from cowfork/bullmq');
    }
    if (o.checkpoint !== undefined) {
      throw new TypeError('options.engine and options.checkpoint cannot be combined: with an engine, cursors are saved to the engine');
    }
    if (o.instances !== undefined) {
      throw new TypeError('options.instances cannot be combined with options.engine: the partition count is set by engine.enqueue({ instances })');
    }
    engine = o.engine as IterateEngine;
    concurrency = positiveInteger(o.concurrency, 'options.concurrency', 1);
  } else {
    if (o.concurrency !== undefined) throw new TypeError('options.concurrency needs options.engine; a local run forks options.instances');
    if (o.instances === undefined) throw new TypeError('options.instances must be a positive integer');
    instances = positiveInteger(o.instances, 'options.instances', 1);
  }

  let store: CursorStore;
  let where: string;
  let lockFile: string | undefined;
  if (engine !== undefined) {
    store = noStore;
    where = 'options.engine';
  } else if (typeof o.checkpoint === 'string' && o.checkpoint !== '') {
    const fs = fileStore(o.checkpoint);
    store = fs;
    where = fs.path;
    lockFile = fs.path;
  } else if (isPlainObject(o.checkpoint)) {
    const c = o.checkpoint as Partial<CursorStore>;
    if (typeof c.load !== 'function') throw new TypeError('options.checkpoint.load must be a function');
    if (typeof c.save !== 'function') throw new TypeError('options.checkpoint.save must be a function');
    store = c as CursorStore;
    where = 'options.checkpoint';
  } else {
    throw new TypeError('options.checkpoint must be a file path or a CursorStore { load(), save(state) }');
  }

  if (typeof o.build !== 'function') throw new TypeError('options.build must be a function (instance, instances, cursor) => iterable');
  if (typeof o.each !== 'function') throw new TypeError('options.each must be a function (item, ctx)');

  const every = optionsObject(o.checkpointEvery, 'options.checkpointEvery');
  rejectUnknown(every, ['items', 'ms'], 'options.checkpointEvery');
  const reshard = o.reshard ?? 'refuse';
  if (reshard !== 'refuse' && reshard !== 'restart') {
    throw new TypeError(`options.reshard must be 'refuse' or 'restart', got ${JSON.stringify(reshard)}`);
  }
  return {
    engine,
    concurrency,
    instances,
    store,
    where,
    lockFile: lockFile === undefined ? undefined : path.resolve(lockFile),
    build: o.build as Builder<I, C>,
    each: o.each as EachFn<I, C>,
    maxRuntime: positiveNumber(o.maxRuntime, 'options.maxRuntime'),
    every: {
      items: positiveInteger(every.items, 'options.checkpointEvery.items', Number.POSITIVE_INFINITY),
      ms: positiveNumber(every.ms, 'options.checkpointEvery.ms') ?? 1000,
    },
    onStart: optionalFunction(o.onStart, 'options.onStart'),
    onComplete: optionalFunction(o.onComplete, 'options.onComplete'),
    onAllComplete: optionalFunction(o.onAllComplete, 'options.onAllComplete'),
    onProgress: optionalFunction(o.onProgress, 'options.onProgress'),
    signal: optionalSignal(o.signal, 'options.signal'),
    failFast: boolean(o.failFast, 'options.failFast', false),
    reshard,
  };
}

/**
 * Walks work in `instances` forked processes, each over its own partition,
 * saving each instance's cursor after every finished item (in batches) so an
 * interrupted run (SIGINT/SIGTERM, AbortSignal, maxRuntime, a crash) resumes
 * where it stopped. Resolves once every instance has exited: `complete` when
 * all partitions are walked, `interrupted` when stopped early. Rejects with
 * IterateError when an instance failed, after the others have finished or
 * stopped.
 */
export async function iterate<B extends Builder<any, any>>(
  options: WithoutBuild<IterateOptions<ItemOf<B>, CursorOf<B>>> & { build: B },
): Promise<IterateResult<CursorOf<B>>> {
  type I = ItemOf<B>;
  type C = CursorOf<B>;
  const opts = resolveOptions<I, C>(options);
  if (!isForkSafe()) throw forkUnsafeError('iterate');
  if (opts.engine === undefined) return runIterate(opts);
  const lease = await opts.engine.openLeases(opts.concurrency);
  return runIterate({ ...opts, instances: lease.instances, lease });
}
