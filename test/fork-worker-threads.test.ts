// The parent's worker_threads at a fork. First, a Worker that has answered
// but not yet been joined when the parent forks. Its thread leaves Node a "join me" callback queued for the main
// thread; a child that ran it joined its own Worker's thread instead (glibc
// reuses the vanished thread's pthread_t) and aborted at that Worker's own
// join (docs/hazards.md). The children here run as a user's would, through
// map, in a fixture with core dumps off (`ulimit -c 0`): the hazard is a real
// abort. Second, Workers that start and finish while the parent forks: a fork
// inside one of their locked sections hangs the child (src/workers.ts).
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { native } from '../src/native';
import { FIXTURES, reps, runCommand, unsafeFlagsEnv } from './helpers';

/** 20 runs of 8: issue 10's acceptance. */
const RUNS = reps(20, 4);
const CHURN_CHILDREN = reps(50, 30);

interface Outcome {
  ok: number;
  crashes: string[];
  errors: string[];
}

/** Runs the fixture; `unsafeFlags` adds to any COWFORK_TEST_UNSAFE_FLAGS already set. */
async function runFixture(runs: number, children: number, unsafeFlags = 0): Promise<Outcome> {
  const script = `ulimit -c 0; exec "$0" --single-threaded "$1" ${runs} ${children}`;
  const r = await runCommand('/bin/sh', ['-c', script, process.execPath, path.join(FIXTURES, 'worker-join.js')], {
    env: unsafeFlagsEnv(unsafeFlags),
    // A Worker starts in ~50 ms on an idle machine; allow for a loaded one.
    timeoutMs: 280_000,
  });
  expect(r.code, r.stderr.slice(-2000)).toBe(0);
  return JSON.parse(r.stdout.trim().split('\n').pop()!) as Outcome;
}

describe("worker_threads: a parent's Worker that has not been joined yet", () => {
  it('without the repair, children that start Workers abort, reported as SIGABRT', async () => {
    const out = await runFixture(3, 8, native.FORK_FLAGS.SKIP_PARENT_IMMEDIATES);
    expect(out.crashes.length).toBeGreaterThan(0);
    // Signal 6 carries the name users know, not its alias SIGIOT.
    expect(new Set(out.crashes)).toEqual(new Set(['SIGABRT']));
    expect(out.errors).toEqual([]);
  }, 300_000);

  it(`with the repair (the default), ${RUNS} runs of 8 such children: no aborts, every Worker answers`, async () => {
    expect(native.immediatesFound()).toBe(true);
    const out = await runFixture(RUNS, 8);
    expect(out).toEqual({ ok: RUNS * 8, crashes: [], errors: [] });
  }, 300_000);
});

interface Churn {
  ok: number;
  churned: number;
  failures: string[];
}

/** test/fixtures/worker-churn.js: `children` isolation children, each running a Worker, while 3 Workers churn in the parent. */
async function churn(children: number, unsafeFlags = 0): Promise<Churn> {
  const r = await runCommand(process.execPath, ['--single-threaded', path.join(FIXTURES, 'worker-churn.js'), String(children), '3', '3000'], {
    env: unsafeFlagsEnv(unsafeFlags),
    timeoutMs: 120_000,
  });
  expect(r.code, r.stderr.slice(-2000)).toBe(0);
  return JSON.parse(r.stdout.trim().split('\n').pop()!) as Churn;
}

describe('worker_threads: Workers starting and finishing in the parent while it forks', () => {
  it('without letting them settle, some children hang (a lock a Worker held at the fork)', async () => {
    // About 1 child in 30 to 40 hangs; up to 8 rounds of 40 so that the hazard
    // shows (all 320 pass by chance about once in 3,000 runs). The census's long
    // wait for V8's pool (native/waiters.c) also covers part of a Worker's
    // start, where the start hands the pool work: it is left out here too
    // (with it, Node 22 showed no hang in 200 children), and so is its short
    // wait for busy libuv threads (a Worker's start also runs threadpool
    // work; with it, one fresh-clone CI run on Node 22 saw no hang in 320).
    const failures: string[] = [];
    for (let round = 0; round < 8 && failures.length === 0; round++) {
      const out = await churn(40, native.FORK_FLAGS.SKIP_SETTLE_WORKERS | native.FORK_FLAGS.SHORT_POOL_WAIT | native.FORK_FLAGS.SKIP_WORK_SETTLE);
      expect(out.churned).toBeGreaterThan(10);
      failures.push(...out.failures);
    }
    expect(failures.length).toBeGreaterThan(0);
    // A hang mostly; on Node 26 a child has also crashed on the inherited lock's state.
    for (const f of failures) expect(f).toMatch(/^(TimeoutError|WorkerCrashedError SIG[A-Z]+)$/);
  }, 600_000);

  // On Node 24 and 26 about 1 child in 300 still hangs here (1 in 30 before
  // the options-lock release), on a lock neither layer covers
  // (docs/hazards.md): there at most one of these children may; on 20 and 22
  // none was seen, and none may.
  const residual = Number(process.versions.node.split('.')[0]) >= 24 ? 1 : 0;
  it(`with the settling (the default), ${CHURN_CHILDREN} such children: ${residual ? `all but at most ${residual} run their Worker` : 'every one runs its Worker'} to the end`, async () => {
    const out = await churn(CHURN_CHILDREN);
    expect(out.churned).toBeGreaterThan(10);
    expect(out.failures.length, out.failures.join(', ')).toBeLessThanOrEqual(residual);
    for (const f of out.failures) expect(f).toBe('TimeoutError');
    expect(out.ok).toBe(CHURN_CHILDREN - out.failures.length);
  }, 300_000);
});

interface OptionsLock {
  ok: number;
  released: number[];
  failures: string[];
}

/**
 * test/fixtures/worker-options-lock.js: 4 children forked while a thread holds
 * Node's options lock; each item times out after `timeoutMs` (a hung child is
 * a TimeoutError; a Worker in a child takes seconds on a loaded machine).
 */
async function optionsLock(timeoutMs: number, unsafeFlags = 0): Promise<OptionsLock> {
  const r = await runCommand(process.execPath, ['--single-threaded', path.join(FIXTURES, 'worker-options-lock.js'), '4', String(timeoutMs)], {
    env: unsafeFlagsEnv(unsafeFlags),
    timeoutMs: 60_000,
  });
  expect(r.code, r.stderr.slice(-2000)).toBe(0);
  return JSON.parse(r.stdout.trim().split('\n').pop()!) as OptionsLock;
}

describe("worker_threads: Node's options lock held by a thread of the parent at the fork", () => {
  // Settling narrows the window in which a parent's Worker holds it; this
  // holds it for certain, as the residue of that window does (native/locks.c).
  it('is found by name on this Node', () => {
    expect(native.optionsLockFound()).toBe(true);
  });

  it("without the release, every child that starts a Worker hangs on it", async () => {
    const out = await optionsLock(5_000, native.FORK_FLAGS.SKIP_NODE_LOCKS);
    expect(out).toEqual({ ok: 0, released: [], failures: ['TimeoutError', 'TimeoutError', 'TimeoutError', 'TimeoutError'] });
  }, 90_000);

  it('with the release (the default), every child re-initializes it and its Worker answers', async () => {
    const out = await optionsLock(30_000);
    expect(out).toEqual({ ok: 4, released: [1, 1, 1, 1], failures: [] });
  }, 90_000);
});
