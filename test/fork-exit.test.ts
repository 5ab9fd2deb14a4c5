// A child leaves through _exit however it exits (docs/hazards.md §6): also
// through a reference to process.exit taken before the fork, the way a test
// runner's worker or a process manager's agent keeps one. Node's real exit
// path joins the parent's threadpool threads, which do not exist in a child.
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { FIXTURES, runNode } from './helpers';

describe('leaving a child', () => {
  it('a process.exit captured before the fork exits the child with its code, not a crash', async () => {
    const r = await runNode(['--single-threaded', path.join(FIXTURES, 'captured-exit.js')], { timeoutMs: 20_000 });
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout.trim())).toEqual({ name: 'WorkerCrashedError', exitCode: 3, signal: null });
  });
});
