// The one place the addon is loaded, and its one type. Calls are positional
// and take primitives only. The public facades validate options with messages
// in their users' terms; the addon checks every argument again itself and
// throws a TypeError (ERR_INVALID_ARG_TYPE, ERR_INVALID_ARG_VALUE) or
// RangeError (ERR_OUT_OF_RANGE) naming the call and the argument, so no bad
// value ever reaches the C core.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

/** Opaque handle to a uv_poll_t watcher. */
export type WatchHandle = { readonly __watch: unique symbol };
/** Opaque handle to a test-only parked thread. */
export type ParkHandle = { readonly __park: unique symbol };
/** Opaque handle to a MAP_SHARED array of int64 counters. */
export type ShmHandle = { readonly __shm: unique symbol };

export interface Native {
  /** Forks; returns 0 in the child. Every argument is read before the fork, so one that throws forks nothing. */
  fork(keepFds: number[], flags: number): number;
  /** _exit(2): an int32; the parent sees its low 8 bits. */
  /** MADV_DOFORK over every mapping; returns the madvise() calls made. flags: DOFORK.FORCE_WALK / FORGET_SPECIAL (tests). */
  doforkAll(flags?: number): number;
  /** [path, calls] of the last MADV_DOFORK pass: path is DOFORK.RANGED or DOFORK.WALK (0 before the first). */
  doforkLast(): [number, number];
  /** Fills bytes with fresh randomness from the kernel (getrandom(2)); no OpenSSL. */
  randomFill(bytes: Uint8Array): void;
  /** Bench only: fork + _exit + reap with nothing else; returns the child's pid. */
  benchForkRoundtrip(): number;
  /** Bench only: CPU time this process has used, in ns. */
  benchCpuNs(): number;
  /** Bench only: a forked child's ns to write `pages` pages, by faulting each or with one MADV_POPULATE_WRITE. */
  benchCowNs(pages: number, populate: boolean): number;
  /** Bench only: [CPU the parent forked on, CPU the new child first ran on] (Linux). */
  benchForkCpu(): [number, number];
  /** Bench only: wall ns of `children` forked children each spinning `iters` times (0: this process, once); `pin` binds child k to CPU k. */
  benchSpinNs(children: number, iters: number, pin: boolean): number;
  exit(code: number): never;
  getpid(): number;
  getppid(): number;
  pipe(nonblock: boolean): [number, number];
  close(fd: number): void;
  /** Reaps one child, pid > 0 (never -1 or a group, which would steal libuv's children): null while it runs; else [pid, exitCode (-1 if signalled), signal]. */
  waitpid(pid: number, nohang: boolean): [number, number, number] | null;
  /** A close-on-exec fd that polls readable when pid terminates (Linux >= 5.3); ENOSYS elsewhere. */
  pidfdOpen(pid: number): number;
  /** poll(2); a negative or infinite timeoutMs waits forever, a fractional one is rounded up. */
  poll(fds: Int32Array, events: Int32Array, revents: Int32Array, timeoutMs: number): number;
  watch(fd: number, mode: number, cb: (bits: number, status: number) => void): WatchHandle;
  /** Changes the events of interest (0 pauses); EBADF after unwatch. */
  watchUpdate(handle: WatchHandle, mode: number): void;
  /** Stops and closes the watcher; a second call does nothing. */
  unwatch(handle: WatchHandle): void;
  scratchCreate(base: string): string;
  scratchOpen(dir: string, name: string, forWrite: boolean): number;
  scratchRemove(dir: string): void;
  /** HMAC-SHA256 of data[offset, offset + length); a range outside data is a RangeError. */
  hmac(key: Uint8Array, data: Uint8Array, offset?: number, length?: number): Buffer;
  memeq(a: Uint8Array, b: Uint8Array): boolean;
  shmCreate(count: number): ShmHandle;
  shmAdd(shm: ShmHandle, slot: number, delta: number): number;
  shmLoad(shm: ShmHandle, slot: number): number;
  shmStore(shm: ShmHandle, slot: number, value: number): void;
  /** Guided self-scheduling claim: [start, count] or null when nothing is left. */
  shmClaim(shm: ShmHandle, slot: number, total: number, divisor: number, maxChunk: number): [number, number] | null;
  execve(file: string, argv: string[], env: string[]): never;
  /** A close-on-exec listening TCP socket; host '' is the dual-stack wildcard. [fd, boundPort] */
  listenTcp(host: string, port: number, backlog: number, reusePort: boolean): [number, number];
  /** A close-on-exec listening unix socket; a stale socket file is replaced. */
  listenUnix(path: string, backlog: number): number;
  /** A close-on-exec duplicate of fd. */
  dup(fd: number): number;
  /** In a forked child: how many of the parent's condition variables its fork re-initialized; -1 if not forked. */
  forkWaitersReleased(): number;
  /** In a forked child: whether its fork made Node's V8 worker pool report zero threads (so V8 posts it nothing). */
  forkPoolEmptied(): boolean;
  /** In a forked child: [the parent's finished threadpool requests its fork dropped, the slow I/O count it reset, callbacks other threads had queued for the parent that it dropped, Node's options lock re-initialized (1) or free (0)]; -1 where not done. */
  forkParentWork(): [number, number, number, number];
  /** In a child: stops every active fs_event and fs_poll handle (the parent's file watchers); returns how many. */
  stopWatchers(): number;
  /** Requests the event loop counts as active (libuv's active_reqs). */
  loopRequests(): number;
  /** Trace categories of Node's threadpool work registered before this process's first fork: 2, 0 where the controller is not V8's, -1 before any fork. */
  forkTraceCategories(): number;
  /** Whether this Node's queue of callbacks from other threads can be found, so children can drop the parent's. */
  immediatesFound(): boolean;
  /** Tests only: [decoys of that queue planted in a copy of the memory around it, how many made the locate miss it (-1: not found)]. */
  testImmediatesDecoys(): [number, number];
  /** Whether Node's process-wide options lock can be found, so children can release it when a parent's Worker held it. */
  optionsLockFound(): boolean;
  /** Tests only: a thread holds Node's options lock for ms (as a starting Worker does); returns once it does. ENOENT where not found. */
  testHoldOptionsLock(ms: number): void;
  /** Test only: a libuv threadpool task holds a lock while it spins for us microseconds, or until a fork's census has waited for it; returns once it holds it. */
  testTaskHold(us: number, untilWaited: boolean): void;
  /** Test only: whether that lock is held (in a child: whether it was held at the fork). */
  testTaskLockHeld(): boolean;
  /** Test-only: whether the last testTaskHold task saw the fork's census wait for it (in a child: before the fork). */
  testTaskNoticed(): boolean;
  /** In a forked child: the peer address of the parent's connection that fd was, or null. */
  inheritedPeer(fd: number): string | null;
  /** In a forked child: how many of the parent's connections it inherited (dead: writes fail with EPIPE). */
  inheritedCount(): number;
  /** The loop's handles: [libuv type name ('tcp', 'pipe', 'timer', ...), fd, sock (0 other, 1 listening, 2 connected), active, ref, closing, address]. */
  inspectHandles(): Array<[string, number, number, number, number, number, string]>;
  /** The process's threads as [tid, name] (Linux; ENOSYS elsewhere). */
  threads(): Array<[number, string]>;
  /** How many threads the process has (Linux; ENOSYS elsewhere). */
  threadCount(): number;
  /** Waits up to maxMs until none of these threads is running; returns how many still were (Linux; 0 elsewhere). */
  settleThreads(tids: Int32Array, maxMs: number): number;
  /** The next fork waits up to maxMs, just before fork(), until none of these threads is running; returns how many it kept. */
  settleBeforeFork(tids: Int32Array, maxMs: number): number;
  readonly DOFORK: {
    readonly RANGED: number;
    readonly WALK: number;
    readonly FORCE_WALK: number;
    readonly FORGET_SPECIAL: number;
  };
  /** In a parent: how many passes its last fork's census of the other threads took (1: it did not wait). */
  forkCensusPasses(): number;
  /** In a parent: whether its last fork found Node's V8 worker pool to empty in the child: 1, 0 (not yet), or a negative errno (ENOENT: no match; ENOSYS: no census on this platform). */
  forkPoolLocated(): number;
  /** Tests only: a thread parked on the first word of a page after a PROT_NONE (0) or unmapped (1) page; [handle, "0x<word>"]. */
  testPark(kind: 0 | 1): [ParkHandle, string];
  testUnpark(handle: ParkHandle): void;
  readonly FORK_FLAGS: {
    readonly SKIP_DOFORK: number;
    readonly SKIP_SILENCE: number;
    readonly SKIP_LOOP_FORK: number;
    readonly SET_PDEATHSIG: number;
    readonly SKIP_WAITERS: number;
    readonly SKIP_PARENT_WORK: number;
    readonly SKIP_PARENT_IMMEDIATES: number;
    readonly SKIP_COND_RESET: number;
    readonly SKIP_POOL: number;
    readonly SKIP_SETTLE_WORKERS: number;
    readonly SKIP_NODE_LOCKS: number;
    readonly EARLY_DOFORK: number;
    readonly SHORT_POOL_WAIT: number;
    readonly SKIP_WORK_SETTLE: number;
    readonly SKIP_PARENT_REQUESTS: number;
    readonly SKIP_REARM: number;
    readonly SKIP_PARENT_WRITES: number;
    readonly SKIP_PARENT_STDIO: number;
  };
  /** Exit codes of a forked child that cowfork itself failed (native/cowfork.h); describeExit() names them. */
  readonly EXIT_CODES: {
    /** JavaScript in the child threw and nothing caught it. */
    readonly UNCAUGHT: number;
    /** uv_loop_fork() failed in the child. */
    readonly LOOP_FORK: number;
    /** The child could not silence the sockets it inherited. */
    readonly SILENCE: number;
  };
}

interface NodeGypBuild {
  (dir: string): unknown;
  resolve(dir: string): string;
}
// eslint-disable-next-line @typescript-eslint/no-require-imports
const nodeGypBuild = require('node-gyp-build') as NodeGypBuild;

/** The package root: where build/ and prebuilds/ live. */
const ROOT = path.join(__dirname, '..');

/**
 * Where a binary is looked for, in node-gyp-build's order: a build you
 * compiled (build/Release, build/Debug), then the prebuild for this platform
 * shipped in the package, then one next to the node executable. A build/
 * directory exists in an installed package only when the install compiled
 * (no prebuild fitted, or `--build-from-source`), so the prebuild is what
 * loads otherwise. COWFORK_PREBUILD=<dir> makes node-gyp-build look in <dir>.
 */
export function nativeCandidates(dir = ROOT): string[] {
  const base = process.env.COWFORK_PREBUILD || dir;
  const tuple = `${process.env.npm_config_platform || os.platform()}-${process.env.npm_config_arch || os.arch()}`;
  const out: string[] = [];
  const addBinaries = (folder: string, fallback: string) => {
    const found = listNodeFiles(folder);
    out.push(...(found.length ? found : [path.join(folder, fallback)]));
  };
  const libc = os.platform() !== 'linux' ? '' : process.env.LIBC || (fs.existsSync('/etc/alpine-release') ? 'musl' : 'glibc');
  addBinaries(path.join(base, 'build', 'Release'), 'cowfork.node');
  addBinaries(path.join(base, 'build', 'Debug'), 'cowfork.node');
  for (const prebuilds of [path.join(base, 'prebuilds'), path.join(path.dirname(process.execPath), 'prebuilds')]) {
    addBinaries(path.join(prebuilds, tuple), libc ? `cowfork.${libc}.node` : 'cowfork.node');
  }
  return out;
}

function listNodeFiles(folder: string): string[] {
  try {
    return fs.readdirSync(folder).filter((name) => name.endsWith('.node')).map((name) => path.join(folder, name));
  } catch {
    return [];
  }
}

function describePath(file: string): string {
  return fs.existsSync(file) ? `${file} (present)` : `${file} (missing)`;
}

/** Loads the addon; on failure, throws an error listing every path tried. */
function loadNative(dir: string): { native: Native; path: string } {
  let picked: string | undefined;
  try {
    picked = nodeGypBuild.resolve(dir);
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    return { native: require(picked) as Native, path: picked };
  } catch (cause) {
    const why = picked
      ? `${picked} was found but failed to load: ${(cause as Error).message}`
      : `no binary matches ${os.platform()}-${os.arch()} (node ${process.versions.node}, N-API ${process.versions.napi}).`;
    const err = new Error(
      [
        `cowfork: cannot load the native addon: ${why}`,
        'Paths tried, in order:',
        ...nativeCandidates(dir).map((file) => `  ${describePath(file)}`),
        'To build it from source (needs python3, make and a C compiler): npm rebuild cowfork',
      ].join('\n'),
      { cause },
    );
    Object.assign(err, { code: 'ERR_COWFORK_NATIVE_LOAD' });
    throw err;
  }
}

const loaded = loadNative(ROOT);

export const native = loaded.native;

/** The file the addon was loaded from (a prebuild, or build/Release). */
export const nativePath = loaded.path;

/** Readiness bits shared by poll(2), watchers and the Scheduler. */
export const READ = 1;
export const WRITE = 2;
export const HUP = 4;
export const ERR = 8;
