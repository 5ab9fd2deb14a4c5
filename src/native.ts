// The one place the addon is loaded, and its one type. Calls are positional
// and take primitives only; validation happens in the public facades.
import path from 'node:path';

/** Opaque handle to a uv_poll_t watcher. */
export type WatchHandle = { readonly __watch: unique symbol };
/** Opaque handle to a MAP_SHARED array of int64 counters. */
export type ShmHandle = { readonly __shm: unique symbol };

export interface Native {
  fork(keepFds: number[], flags: number): number;
  doforkAll(): number;
  exit(code: number): never;
  getpid(): number;
  getppid(): number;
  pipe(nonblock: boolean): [number, number];
  close(fd: number): void;
  /** null while the child runs; else [pid, exitCode (-1 if signalled), signal]. */
  waitpid(pid: number, nohang: boolean): [number, number, number] | null;
  poll(fds: Int32Array, events: Int32Array, revents: Int32Array, timeoutMs: number): number;
  watch(fd: number, mode: number, cb: (bits: number, status: number) => void): WatchHandle;
  watchUpdate(handle: WatchHandle, mode: number): void;
  watchRef(handle: WatchHandle, ref: boolean): void;
  unwatch(handle: WatchHandle): void;
  scratchCreate(base: string): string;
  scratchOpen(dir: string, name: string, forWrite: boolean): number;
  scratchRemove(dir: string): void;
  hmac(key: Uint8Array, data: Uint8Array, offset?: number, length?: number): Buffer;
  memeq(a: Uint8Array, b: Uint8Array): boolean;
  shmCreate(count: number): ShmHandle;
  shmAdd(shm: ShmHandle, slot: number, delta: number): number;
  shmLoad(shm: ShmHandle, slot: number): number;
  shmStore(shm: ShmHandle, slot: number, value: number): void;
  /** Guided self-scheduling claim: [start, count] or null when nothing is left. */
  shmClaim(shm: ShmHandle, slot: number, total: number, divisor: number, maxChunk: number): [number, number] | null;
  execve(file: string, argv: string[], env: string[]): never;
  readonly FORK_FLAGS: {
    readonly SKIP_DOFORK: number;
    readonly SKIP_SILENCE: number;
    readonly SKIP_LOOP_FORK: number;
    readonly SET_PDEATHSIG: number;
  };
}

// eslint-disable-next-line @typescript-eslint/no-require-imports
const load = require('node-gyp-build') as (dir: string) => unknown;

export const native = load(path.join(__dirname, '..')) as Native;

/** Readiness bits shared by poll(2), watchers and the Scheduler. */
export const READ = 1;
export const WRITE = 2;
export const HUP = 4;
export const ERR = 8;
