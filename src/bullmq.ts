// cowfork/bullmq: iterate across machines, its partitions leased through
// BullMQ on Redis. bullmq (and ioredis) are optional peer dependencies, loaded
// only when a BullMQEngine is made.
export { BullMQEngine } from './iterate/bullmq';
export type { BullMQEngineOptions, PartitionProgress } from './iterate/bullmq';
export { EngineError, ReshardError, IterateError } from './errors';
