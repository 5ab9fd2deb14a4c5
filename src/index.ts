// cowfork: real fork() parallelism for Node.js.
export { map, each, stream, Parallel, ParallelWorker } from './parallel';
export type { ParallelOptions, StreamOptions, ItemContext, ItemFn, Items, Settled } from './parallel';
export { isForkSafe, atFork, isChild } from './fork';
export type { AtForkHooks } from './fork';
export { inspectFork } from './inspect';
export type { ForkInspection, ThreadInfo, SocketInfo } from './inspect';
export { Scheduler } from './scheduler';
export type { Fiber, FiberFunction, FiberOptions, FiberState, GeneratorFiberFunction, Parking, SchedulerOptions } from './scheduler';
export { CancelledError, SchedulerError, FiberFailedError } from './errors';
export { iterate, fromArray, range, lines, byKey, fileStore } from './iterate';
export type {
  IterateOptions,
  IterateResult,
  InstanceResult,
  EachContext,
  StartInfo,
  CursorStore,
  IterateState,
  InstanceCursor,
  Builder,
  SyncBuilder,
  AsyncBuilder,
  ItemOf,
  CursorOf,
} from './iterate';
export { prefork, PreforkMaster } from './prefork';
export type {
  PreforkOptions,
  WorkerContext,
  WorkerStats,
  WorkerState,
  WorkerEvent,
  WorkerExitEvent,
  WorkerRecycleEvent,
  ExitReason,
  Frame,
  ParentContext,
  ForkInfo,
  RequestHandler,
  ServeOptions,
  Address,
  ListenSpec,
} from './prefork';
export {
  CowforkError,
  WorkerError,
  WorkerCrashedError,
  TimeoutError,
  AbortError,
  ForkUnsafeError,
  ResultIntegrityError,
  InputError,
  ParentWorkerError,
  IterateError,
  ReshardError,
  EngineError,
  CheckpointError,
  WorkerBootError,
  ReloadError,
  MetricsError,
} from './errors';
