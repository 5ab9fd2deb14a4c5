// The parent's pending timers in iterate instances, and what happens where
// Node's timers do not fit src/timers.ts (map children are in
// test/hygiene.test.ts; undici's ticker in test/compat/undici.test.ts).
import fs from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { fromArray, iterate } from '../src/index';
import { runNode, tempDir } from './helpers';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
});

describe("the parent's pending timers", () => {
  it("never run in iterate instances: an immediate, a ref'd timeout and an interval the parent set as the run started", async () => {
    const dir = tempDir('cowfork-timers-');
    dirs.push(dir);
    const log = path.join(dir, 'ran');
    fs.writeFileSync(log, '');
    const note = (what: string) => (): void => fs.appendFileSync(log, `${what} ${process.pid}\n`);
    const pids = new Set<number>();
    const run = iterate({
      instances: 2,
      checkpoint: path.join(dir, 'cp.json'),
      build: fromArray([0, 1, 2, 3]),
      // Async, so each instance's event loop runs while the parent's timers are due.
      each: () => new Promise<void>((r) => setTimeout(r, 150)),
      onStart: (s) => pids.add(s.pid),
    });
    setImmediate(note('immediate'));
    setTimeout(note('timeout'), 50);
    const interval = setInterval(note('interval'), 40);
    try {
      expect((await run).complete).toBe(true);
    } finally {
      clearInterval(interval);
    }
    const lines = fs.readFileSync(log, 'utf8').trim().split('\n');
    expect(pids.size).toBe(2);
    // Without the drop, each instance writes all three.
    expect(lines.filter((l) => !l.endsWith(` ${process.pid}`))).toEqual([]);
    expect(new Set(lines.map((l) => l.split(' ')[0]))).toEqual(new Set(['immediate', 'timeout', 'interval']));
  });

  it('where a timer does not store its callback as expected: no change to timers, one COWFORK_TIMERS_UNKNOWN warning, and map still works', async () => {
    const r = await runNode(['--single-threaded', path.join(__dirname, 'fixtures', 'timers-foreign.js')], { timeoutMs: 30_000 });
    expect(r.code).toBe(0);
    const [first, second, end] = r.stdout.trim().split('\n').map((l) => JSON.parse(l));
    for (const round of [first, second]) {
      expect(round.out).toHaveLength(2);
      // As before cowfork dropped them: each child ran the parent's timer.
      for (const ranInChild of round.out as number[][]) expect(ranInChild.filter((pid) => pid !== round.parent)).toHaveLength(1);
    }
    const timerWarnings = (end.warnings as string[]).filter((w) => w.startsWith('COWFORK_TIMERS_UNKNOWN'));
    expect(timerWarnings).toHaveLength(1);
    expect(timerWarnings[0]).toContain('atFork({ child })');
  });
});
