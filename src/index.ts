// cowfork: real fork() parallelism for Node.js.
export { map, each, Parallel, ParallelWorker } from './parallel';
export type { ParallelOptions, Settled } from './parallel';
export { isForkSafe, atFork, isChild } from './fork';
export type { AtForkHooks } from './fork';
export {
  CowforkError,
  WorkerError,
  WorkerCrashedError,
  TimeoutError,
  AbortError,
  ForkUnsafeError,
  ResultIntegrityError,
} from './errors';
