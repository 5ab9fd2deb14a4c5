// The CI version of `npm run stress` (scripts/stress.js): 1,000 forks (250 under
// COWFORK_TEST_LIGHT) through
// map, each and prefork under a busy threadpool, random kill -9 of children,
// and children running full collections and starting worker_threads. The run
// is its own process, so that its children, fds and scratch directories are
// counted alone.
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ROOT, reps, runNode } from './helpers';

const FORKS = reps(1000, 250);

describe(`stress: ${FORKS.toLocaleString('en-US')} forks`, () => {
  it('finish with 0 hangs, 0 unexpected failures, 0 zombies, 0 leaked fds and 0 leftover scratch directories', async () => {
    const seed = Math.floor(Math.random() * 1_000_000);
    const r = await runNode(['--single-threaded', '--expose-gc', path.join(ROOT, 'scripts', 'stress.js'), '--forks', String(FORKS), '--seed', String(seed)], {
      timeoutMs: 570_000,
    });
    const line = r.stdout.split('\n').find((l) => l.startsWith('STRESS-RESULT '));
    // On failure, the run's own report (violations, leftover children, fds) is the message.
    expect(line, `${r.stdout}\n${r.stderr}`).toBeDefined();
    const result = JSON.parse(line!.slice('STRESS-RESULT '.length));
    const report = `seed ${seed}:\n${r.stdout}`;
    expect({ hangs: result.hangs, unexpected: result.unexpected, wrongResults: result.wrongResults }, report).toEqual({ hangs: 0, unexpected: 0, wrongResults: 0 });
    expect({ zombies: result.zombies, leakedFds: result.leakedFds, leftoverDirs: result.leftoverDirs }, report).toEqual({ zombies: 0, leakedFds: 0, leftoverDirs: 0 });
    expect(result.forks).toBeGreaterThanOrEqual(FORKS);
    // Every ingredient was there: kills, each kind of call, work done.
    expect(result.kills).toBeGreaterThan(0);
    expect(result.calls.isolation).toBeGreaterThan(0);
    expect(result.calls.pool).toBeGreaterThan(0);
    expect(result.calls.prefork).toBeGreaterThan(0);
    expect(result.items.ok).toBeGreaterThan(FORKS);
    expect(result.pbkdf2Calls).toBeGreaterThan(0);
    expect(r.code).toBe(0);
  }, 600_000);
});
