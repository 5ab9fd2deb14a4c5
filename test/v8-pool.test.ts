// §2 of docs/hazards.md: the V8 platform's worker threads that fork() leaves
// behind, and the repair in native/waiters.c. Even under --single-threaded,
// V8 11 (Node 20) hands a full collection's weak-reference clearing to its
// pool, and V8 14 (Node 26) a scavenge of many survivors; V8 12 and 13
// (Node 22, 24) were not seen to hand it anything. Where this Node does, the
// hazard tests show the hang; the repair is exercised on every version.
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { map } from '../src/index';
import { native } from '../src/native';
import { POOL_REPAIR_WARNING, poolRepairMessage } from '../src/pool-repair';
import { FIXTURES, libuvNamesItsThreads, runNode } from './helpers';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const work = require('./fixtures/pool-work.js') as {
  poolWork(): number;
  poolRunsTasks(): boolean;
  futexWaits(pid?: number | 'self'): { tid: number; word: bigint }[];
  blockedNear(pid: number, words: bigint[], span: number): boolean;
};
const sleep = (ms: number): void => void Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);

/** The child's status once it exits, waiting at most `ms` (then it is killed and null returned). */
function reapWithin(pid: number, ms: number): [number, number, number] | null {
  let status = native.waitpid(pid, true);
  for (const deadline = Date.now() + ms; status === null && Date.now() < deadline; status = native.waitpid(pid, true)) sleep(10);
  if (status === null) {
    process.kill(pid, 'SIGKILL');
    native.waitpid(pid, false);
  }
  return status;
}

let tried = false;
let everSplit = false;
/** Whether the pool's waiters are split across glibc's groups after pool work. Where they never were (Node 22, 24), tried once. */
function poolRunsTasks(): boolean {
  if (tried && !everSplit) return false;
  tried = true;
  const split = work.poolRunsTasks();
  everSplit ||= split;
  return split;
}

interface ChildReport {
  status: [number, number, number] | null;
  /** It stopped making progress while blocked on the pool's condvar (then it was killed). */
  hung: boolean;
  rounds: number;
  released: number;
  emptied: number;
}

/** Forks a child that runs up to 4 rounds of pool work, and watches it: it exits, or it hangs on the pool's condvar. */
function forkPoolWorkChild(flags: number): ChildReport {
  const parked = work.futexWaits().map((w) => w.word);
  const shm = native.shmCreate(3);
  const pid = native.fork([], flags);
  if (pid === 0) {
    native.shmStore(shm, 0, native.forkWaitersReleased());
    native.shmStore(shm, 1, native.forkPoolEmptied() ? 1 : 0);
    for (let i = 1; i <= 4; i++) {
      work.poolWork();
      native.shmStore(shm, 2, i);
    }
    native.exit(7);
  }
  // A child this slow machine merely delays keeps making progress; a hung
  // one sits on the pool's condvar. 120 s bounds both.
  let status = native.waitpid(pid, true);
  let hung = false;
  let rounds = -1;
  let since = Date.now();
  for (const deadline = Date.now() + 120_000; status === null && !hung && Date.now() < deadline; ) {
    sleep(20);
    status = native.waitpid(pid, true);
    if (native.shmLoad(shm, 2) !== rounds) [rounds, since] = [native.shmLoad(shm, 2), Date.now()];
    else if (status === null && Date.now() - since > 3000) hung = work.blockedNear(pid, parked, 8);
  }
  if (status === null) {
    process.kill(pid, 'SIGKILL');
    native.waitpid(pid, false);
  }
  return { status, hung, rounds: native.shmLoad(shm, 2), released: native.shmLoad(shm, 0), emptied: native.shmLoad(shm, 1) };
}

describe("§2 the V8 platform's parked worker threads across fork", () => {
  it('without the repair, a child blocks forever in pthread_cond_signal where V8 hands its pool work', () => {
    // The child hangs once it signals more often than glibc's older group has
    // unsignalled waiters. How often V8 posts depends on the heap's state, so
    // where the first child gets through, the parent's pool runs tasks again
    // (its threads park in other groups) and another child tries.
    let sawSplit = false;
    let hung = false;
    for (let attempt = 0; attempt < 3 && !hung; attempt++) {
      if (attempt > 0) work.poolWork();
      const split = poolRunsTasks();
      sawSplit ||= split;
      const r = forkPoolWorkChild(native.FORK_FLAGS.SKIP_WAITERS);
      expect(r).toMatchObject({ released: 0, emptied: 0 });
      hung = r.hung;
      if (!hung) expect(r.status).toEqual([expect.any(Number), 7, 0]);
      if (!sawSplit) break; // Node 22, 24: nothing was ever posted to the pool
    }
    // Node 20, 26: the child waits for the phantom group to drain, forever.
    expect(hung).toBe(sawSplit);
  });

  it('with the repair (the default), the child re-initializes that condvar, empties the pool, and does its work', () => {
    poolRunsTasks();
    const r = forkPoolWorkChild(0);
    expect(native.forkPoolLocated()).toBe(1);
    expect(r).toMatchObject({ status: [expect.any(Number), 7, 0], hung: false, rounds: 4, emptied: 1 });
    expect(r.released).toBeGreaterThanOrEqual(1);
  });

  it('the emptied pool alone (no condvar reset, as where glibc is 2.41+ or musl) keeps the child from signalling the phantom waiters', () => {
    poolRunsTasks();
    const r = forkPoolWorkChild(native.FORK_FLAGS.SKIP_COND_RESET);
    expect(r).toMatchObject({ status: [expect.any(Number), 7, 0], hung: false, rounds: 4, released: 0, emptied: 1 });
  });
});

describe('§2 a worker_thread started in a child after pool work', () => {
  const fixture = path.join(FIXTURES, 'pool-worker.js');
  async function run(flags: number) {
    const r = await runNode(['--single-threaded', fixture, String(flags)], { timeoutMs: 240_000 });
    expect(r.stderr).toBe('');
    return JSON.parse(r.stdout.trim()) as {
      poolRan: boolean;
      located: number;
      released: number;
      emptied: number;
      message: number;
      status: [number, number, number] | null;
      drainHang: boolean;
    };
  }

  it('without the pool emptied, it hangs at exit draining the vanished pool, where V8 handed that pool work', async () => {
    const r = await run(native.FORK_FLAGS.SKIP_POOL);
    expect(r).toMatchObject({ emptied: 0, message: 42 });
    // Node 20, 26: the tasks posted in the child stay outstanding forever.
    expect(r.drainHang).toBe(r.poolRan);
    if (!r.poolRan) expect(r.status).toEqual([expect.any(Number), 0, 0]);
  });

  it('with the repair (the default), it runs and exits', async () => {
    const r = await run(0);
    expect(r).toMatchObject({ located: 1, emptied: 1, message: 42, status: [expect.any(Number), 0, 0] });
    expect(r.released).toBeGreaterThanOrEqual(1);
  });

  it('through the layout-independent path alone (condvar reset skipped), it runs and exits', async () => {
    const r = await run(native.FORK_FLAGS.SKIP_COND_RESET);
    expect(r).toMatchObject({ located: 1, released: 0, emptied: 1, message: 42, status: [expect.any(Number), 0, 0] });
  });
});

describe('§2 what the census waits for', () => {
  /** Other threads of this process that are on a CPU or runnable now (this one reads as in its read syscall), with their names. */
  const running = (): string[] =>
    fs
      .readdirSync('/proc/self/task')
      .filter((tid) => fs.readFileSync(`/proc/self/task/${tid}/syscall`, 'utf8').startsWith('running'))
      .map((tid) => fs.readFileSync(`/proc/self/task/${tid}/comm`, 'utf8').trim());

  it("a busy libuv threadpool holds a fork up briefly where libuv names its threads (22+), never until its tasks end; without knowing the V8 pool's threads the census waits for any", async () => {
    let busy = true;
    // Each call keeps a libuv thread busy for well over the forks below.
    const spin = (): void => crypto.pbkdf2('pw', 'salt', 1_000_000, 32, 'sha256', () => busy && spin());
    for (let i = 0; i < 4; i++) spin();
    /** For 8 forks with `flags`, each taken while libuv threads run: the census passes, and the libuv threads still running when fork() returned. */
    const forks = async (flags: number): Promise<{ passes: number[]; stillBusy: number[] }> => {
      const passes: number[] = [];
      const stillBusy: number[] = [];
      while (passes.length < 8) {
        await new Promise((r) => setTimeout(r, 20));
        if (running().length === 0) continue;
        const pid = native.fork([], flags);
        if (pid === 0) native.exit(0);
        // No JavaScript ran since the fork began, so no task was queued meanwhile: a thread busy now had the same task then.
        stillBusy.push(running().filter((name) => name === 'libuv-worker').length);
        passes.push(native.forkCensusPasses());
        expect(reapWithin(pid, 30_000)).toEqual([pid, 0, 0]);
      }
      return { passes, stillBusy };
    };
    try {
      const named = libuvNamesItsThreads();
      const settled = await forks(0);
      const unsettled = await forks(native.FORK_FLAGS.SKIP_WORK_SETTLE);
      const blind = await forks(native.FORK_FLAGS.SKIP_POOL | native.FORK_FLAGS.SKIP_WORK_SETTLE);
      // Without the libuv wait, one pass: the V8 pool's threads were parked, and
      // nothing else was waited for. A pool thread briefly busy with a task may cost a pass or two.
      expect(unsettled.passes.filter((p) => p === 1).length).toBeGreaterThanOrEqual(6);
      if (named) {
        // With it, the census waited for the running libuv threads (native/waiters.c, CF__WORK_SETTLE_NS)...
        expect(settled.passes.filter((p) => p > 1).length).toBeGreaterThanOrEqual(6);
        // ...but gave up while their long tasks still ran.
        expect(settled.stillBusy.filter((n) => n > 0).length).toBeGreaterThanOrEqual(6);
      } else {
        // Node 20's libuv leaves its threads unnamed: nothing tells them apart, and nothing is waited for.
        expect(settled.passes.filter((p) => p === 1).length).toBeGreaterThanOrEqual(6);
      }
      // Blind to the V8 pool, the census waits for any running thread: the libuv
      // threads were running, so it yielded (until its time budget ran out).
      expect(blind.passes.some((p) => p > 1)).toBe(true);
    } finally {
      busy = false;
    }
  });
});

describe('§2 memory safety of the census', () => {
  /** Whether some other thread is blocked in a futex wait on `word`. */
  const parkedOn = (word: string): boolean => work.futexWaits().some((w) => w.word === BigInt(word));

  for (const [kind, what] of [
    [0, 'a PROT_NONE page'],
    [1, 'an unmapped page'],
  ] as const) {
    it(`a thread parked on the first word of a page after ${what}: the parent and every child survive`, () => {
      const [handle, word] = native.testPark(kind);
      try {
        for (let k = 0; k < 50 && !parkedOn(word); k++) sleep(10);
        expect(parkedOn(word)).toBe(true);
        for (let k = 0; k < 3; k++) {
          const pid = native.fork([], 0);
          if (pid === 0) native.exit(native.forkWaitersReleased() >= 0 ? 5 : 6);
          // Reading the 40 bytes below that word would be SIGSEGV (signal 11).
          expect(reapWithin(pid, 30_000)).toEqual([pid, 5, 0]);
        }
      } finally {
        native.testUnpark(handle);
      }
      // A second unpark finds the thread joined: an error, not a use after free.
      expect(() => native.testUnpark(handle)).toThrow(expect.objectContaining({ code: 'EINVAL' }));
    });
  }
});

describe('§2 when the repair cannot apply', () => {
  it('forks on this machine find the pool, and emit no warning', async () => {
    const warnings: Error[] = [];
    const onWarning = (w: Error): void => void warnings.push(w);
    process.on('warning', onWarning);
    try {
      expect(await map([1, 2], (x) => x * 2, { isolation: true })).toEqual([2, 4]);
      await new Promise((r) => setImmediate(r));
    } finally {
      process.removeListener('warning', onWarning);
    }
    expect(native.forkPoolLocated()).toBe(1);
    expect(warnings.filter((w) => (w as NodeJS.ErrnoException).code === POOL_REPAIR_WARNING)).toEqual([]);
  });

  it('the warning says why, what can hang, and what to do', () => {
    expect(poolRepairMessage(1)).toBeNull();
    expect(poolRepairMessage(0)).toBeNull();
    const none = poolRepairMessage(-os.constants.errno.ENOENT)!;
    expect(none).toMatch(/no match was found/);
    expect(none).toMatch(/worker_thread started in that child can hang/);
    expect(none).toMatch(/--v8-pool-size=1/);
    expect(poolRepairMessage(-os.constants.errno.ENOSYS)).toMatch(/has no \/proc\/self\/task/);
  });
});
