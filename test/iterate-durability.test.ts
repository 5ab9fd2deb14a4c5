// iterate under real interrupts: SIGTERM to the parent, kill -9 of an instance,
// kill -9 during checkpoint saves. Every run is its own node process (the
// fixture), and every instance records what it processed in its own
// append-only file, so the test can count each item.
import { type ChildProcess, spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { fileStore } from '../src/index';
import { FIXTURES, ROOT, isAlive, reps, tempDir, waitFor, zombiesOf } from './helpers';

const SIGTERM_REPS = reps(5, 2);

const RUN = path.join(FIXTURES, 'iterate-run.js');
const HAMMER = path.join(FIXTURES, 'iterate-hammer.js');
const REC = 8; // bytes per record: 7 digits and "\n"

const dirs: string[] = [];
const procs: ChildProcess[] = [];
afterEach(() => {
  // A failed test must not leave its fixture running (instances die with it: PR_SET_PDEATHSIG).
  for (const p of procs.splice(0)) if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
  for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
});

function scratch(): string {
  const d = tempDir('cowfork-iterate-');
  dirs.push(d);
  return d;
}

interface Spawned {
  proc: ChildProcess;
  done: Promise<{ code: number | null; signal: NodeJS.Signals | null; out: any }>;
}

function start(script: string, args: string[], detached = false): Spawned {
  const proc = spawn(process.execPath, ['--single-threaded', script, ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'], detached });
  procs.push(proc);
  let stdout = '';
  let stderr = '';
  proc.stdout!.on('data', (d) => (stdout += d));
  proc.stderr!.on('data', (d) => (stderr += d));
  const done = new Promise<{ code: number | null; signal: NodeJS.Signals | null; out: any }>((resolve) => {
    proc.on('close', (code, signal) => {
      const line = stdout.trim().split('\n').pop() ?? '';
      let out: any = null;
      try {
        out = line ? JSON.parse(line) : null;
      } catch {
        out = { unparsed: stdout, stderr };
      }
      if (stderr.trim() !== '' && out !== null) out.stderr = stderr;
      resolve({ code, signal, out });
    });
  });
  return { proc, done };
}

function runFixture(cfg: Record<string, unknown>, detached = false): Spawned {
  return start(RUN, [JSON.stringify(cfg)], detached);
}

/** Records written so far by all runs in `dir`. */
function recordCount(dir: string): number {
  let bytes = 0;
  for (const name of fs.readdirSync(dir)) if (name.startsWith('rec-')) bytes += fs.statSync(path.join(dir, name)).size;
  return Math.floor(bytes / REC);
}

function readRecords(file: string): number[] {
  if (!fs.existsSync(file)) return [];
  const text = fs.readFileSync(file, 'utf8');
  return text === '' ? [] : text.trimEnd().split('\n').map(Number);
}

/** How often each item 0..total-1 was recorded, over every run and instance. */
function tally(dir: string, total: number): Uint32Array {
  const counts = new Uint32Array(total);
  for (const name of fs.readdirSync(dir)) {
    if (!name.startsWith('rec-')) continue;
    for (const n of readRecords(path.join(dir, name))) counts[n]++;
  }
  return counts;
}

function lines(file: string): string[] {
  return fs.existsSync(file) ? fs.readFileSync(file, 'utf8').trim().split('\n').filter(Boolean) : [];
}

function checkpointOf(dir: string): any {
  return JSON.parse(fs.readFileSync(path.join(dir, 'checkpoint.json'), 'utf8'));
}

/** Nothing left behind by the runs: no temp files, no lock. */
function expectCleanDir(dir: string): void {
  const left = fs.readdirSync(dir).filter((n) => n.endsWith('.tmp') || n.endsWith('.lock'));
  expect(left).toEqual([]);
}

const randomInt = (lo: number, hi: number): number => lo + Math.floor(Math.random() * (hi - lo + 1));
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('iterate: SIGTERM to the parent', () => {
  it(`4 instances over 100,000 items, SIGTERM at random points, resumed until complete; ${SIGTERM_REPS} times`, async () => {
    const TOTAL = 100_000;
    for (let rep = 0; rep < SIGTERM_REPS; rep++) {
      const dir = scratch();
      const wanted = randomInt(1, 3);
      let interrupts = 0;
      let complete = false;
      for (let run = 0; !complete; run++) {
        expect(run).toBeLessThan(10);
        const before = recordCount(dir);
        const { proc, done } = runFixture({ dir, label: `r${run}`, instances: 4, total: TOTAL });
        if (interrupts < wanted) {
          // SIGTERM once this run has done a random share of what is left.
          const target = before + randomInt(500, Math.floor((TOTAL - before) * 0.7));
          let exited = false;
          done.then(() => (exited = true));
          while (!exited && recordCount(dir) < target) await sleep(3);
          if (!exited) {
            proc.kill('SIGTERM');
            interrupts++;
          }
        }
        const { code, out } = await done;
        expect(code, JSON.stringify(out)).toBe(0);
        expect(out.error, JSON.stringify(out)).toBeUndefined();
        complete = out.result.complete;
        if (!complete) {
          expect(out.result.interrupted).toBe(true);
          expect(out.result.interruptedBy).toBe('SIGTERM');
          // What the checkpoint says was done is exactly what the instances recorded.
          const saved = checkpointOf(dir).cursors.reduce((a: number, c: any) => a + c.processed, 0);
          expect(saved).toBe(recordCount(dir));
        }
      }
      const counts = tally(dir, TOTAL);
      const missing = counts.findIndex((c) => c === 0);
      expect(missing, `item ${missing} was never processed`).toBe(-1);
      // A graceful stop lets each instance finish and report its item in flight,
      // so at most one item per instance per interrupt can repeat.
      const repeats = counts.reduce((a, c) => a + c, 0) - TOTAL;
      expect(repeats).toBeLessThanOrEqual(4 * interrupts);
      console.log(`iterate SIGTERM round ${rep + 1}: ${interrupts} interrupt(s), ${repeats} repeated item(s)`);
      expect(interrupts).toBeGreaterThanOrEqual(1);
      expect(lines(path.join(dir, 'allcomplete'))).toHaveLength(1);

      // Once complete, a re-run forks nothing and does not call onAllComplete again.
      const again = await runFixture({ dir, label: 'again', instances: 4, total: TOTAL }).done;
      expect(again.out.result.complete).toBe(true);
      expect(again.out.result.instances.every((i: any) => i.processed === 0)).toBe(true);
      expect(lines(path.join(dir, 'starts-again'))).toEqual([]);
      expect(lines(path.join(dir, 'allcomplete'))).toHaveLength(1);
      expectCleanDir(dir);
    }
  });
});

describe('iterate: Ctrl-C to the whole process group', () => {
  it('instances finish their current item instead of dying with the parent\'s group', async () => {
    const dir = scratch();
    const TOTAL = 100_000;
    // detached: the fixture leads its own process group, like a shell job.
    const { proc, done } = runFixture({ dir, label: 'a', instances: 4, total: TOTAL }, true);
    await waitFor(() => recordCount(dir) >= 5000, 20_000, 2);
    process.kill(-proc.pid!, 'SIGINT');
    const { code, out } = await done;
    expect(code).toBe(0);
    expect(out.error, JSON.stringify(out)).toBeUndefined();
    expect(out.result).toMatchObject({ complete: false, interrupted: true, interruptedBy: 'SIGINT' });
    // No instance died: each finished and reported its item, so the checkpoint
    // accounts for every record written.
    const saved = checkpointOf(dir).cursors.reduce((a: number, c: any) => a + c.processed, 0);
    expect(saved).toBe(recordCount(dir));

    const rest = await runFixture({ dir, label: 'b', instances: 4, total: TOTAL }).done;
    expect(rest.out.result.complete).toBe(true);
    const counts = tally(dir, TOTAL);
    expect(counts.findIndex((c) => c !== 1)).toBe(-1);
    expectCleanDir(dir);
  });
});

describe('iterate: a second SIGTERM', () => {
  it('kills instances stuck in a long item; the run still resolves as interrupted and resumes', async () => {
    const dir = scratch();
    // 3 s per item: the first SIGTERM waits for the items in flight, the second does not.
    const { proc, done } = runFixture({ dir, label: 'a', instances: 2, total: 8, spin: 3_000_000, logSignals: true });
    await waitFor(() => lines(path.join(dir, 'starts-a')).length === 2);
    proc.kill('SIGTERM');
    // Two signals sent before the process runs would merge into one.
    await waitFor(() => lines(path.join(dir, 'signals')).length === 1, 10_000, 2);
    proc.kill('SIGTERM');
    const { code, out } = await done;
    expect(code).toBe(0);
    expect(out.error, JSON.stringify(out)).toBeUndefined();
    expect(out.result).toMatchObject({ complete: false, interrupted: true, interruptedBy: 'SIGTERM' });
    // Killed mid-item: nothing was finished, so nothing was saved as done.
    expect(out.result.instances.map((i: any) => i.processed)).toEqual([0, 0]);
    expect(recordCount(dir)).toBe(0);
    const rest = await runFixture({ dir, label: 'b', instances: 2, total: 8, spin: 1000 }).done;
    expect(rest.out.result.complete).toBe(true);
    expect(tally(dir, 8).every((c) => c === 1)).toBe(true);
  });
});

describe('iterate: kill -9', () => {
  it('of one instance: the run reports it, the others finish, the next run resumes it from its saved cursor', async () => {
    const dir = scratch();
    const TOTAL = 40_000;
    const { done } = runFixture({ dir, label: 'a', instances: 4, total: TOTAL, spin: 20 });
    await waitFor(() => lines(path.join(dir, 'starts-a')).length === 4);
    const victim = Number(lines(path.join(dir, 'starts-a'))[2].split(' ')[1]);
    await waitFor(() => fs.existsSync(path.join(dir, 'rec-a-2')) && fs.statSync(path.join(dir, 'rec-a-2')).size >= 300 * REC, 20_000, 2);
    process.kill(victim, 'SIGKILL');
    const first = await done;
    expect(first.out.error).toMatchObject({ name: 'IterateError', code: 'ERR_ITERATE', instance: 2, signal: 'SIGKILL' });
    expect(first.out.error.message).toMatch(/instance 2 of 4 .*killed by SIGKILL/);
    const state = checkpointOf(dir);
    expect(state.cursors.map((c: any) => c.done)).toEqual([true, true, false, true]);
    const saved = state.cursors[2].innerCursor as number;
    const before = readRecords(path.join(dir, 'rec-a-2'));
    // The saved cursor is the last item the instance reported; at most the one in flight went past it.
    expect(before[0]).toBe(20_000);
    expect([saved, saved + 1]).toContain(before[before.length - 1]);
    expect(saved).toBeLessThan(29_999);

    const second = await runFixture({ dir, label: 'b', instances: 4, total: TOTAL }).done;
    expect(second.out.result.complete).toBe(true);
    // Only the unfinished instance ran, and from its saved cursor.
    expect(lines(path.join(dir, 'starts-b'))).toEqual([expect.stringMatching(new RegExp(`^2 \\d+ ${saved}$`))]);
    const after = readRecords(path.join(dir, 'rec-b-2'));
    expect(after[0]).toBe(saved + 1);
    expect(after[after.length - 1]).toBe(29_999);
    const counts = tally(dir, TOTAL);
    expect(counts.findIndex((c) => c === 0)).toBe(-1);
    expect(counts.reduce((a, c) => a + c, 0) - TOTAL).toBeLessThanOrEqual(1);
    expect(lines(path.join(dir, 'allcomplete'))).toHaveLength(1);
    expectCleanDir(dir);
  });

  it('during checkpoint saves never leaves a torn file: the old state or the new one', async () => {
    const dir = scratch();
    const file = path.join(dir, 'checkpoint.json');
    const log = path.join(dir, 'log');
    let kills = 0;
    let midSave = 0;
    let tempsLeft = 0;
    for (let round = 0; round < 20; round++) {
      const { proc, done } = start(HAMMER, [file, log]);
      // Started (it logs "r" after loading the previous state), then killed at a random point.
      await waitFor(() => lines(log).filter((l) => l.startsWith('r')).length === round + 1, 10_000, 2);
      await sleep(randomInt(5, 60));
      proc.kill('SIGKILL');
      const exit = await done;
      expect(exit.signal).toBe('SIGKILL');
      kills++;
      const entries = lines(log);
      const lastBegun = Number(entries.filter((l) => l.startsWith('b')).pop()!.slice(2));
      // The last state known to be on disk: the last save that logged its end, or
      // the state a later round loaded ("r"), since a kill can land between a
      // save's rename and its "e" line.
      const lastEnded = Number((entries.filter((l) => l.startsWith('e') || l.startsWith('r')).pop() ?? 'e 0').slice(2));
      if (lastBegun !== lastEnded) midSave++;
      if (fs.readdirSync(dir).some((n) => n.endsWith('.tmp'))) tempsLeft++;
      if (!fs.existsSync(file)) {
        expect(lastEnded).toBe(0);
        continue;
      }
      const state = JSON.parse(fs.readFileSync(file, 'utf8'));
      expect([lastEnded, lastBegun]).toContain(state.seq);
      expect(state.body).toBe(String(state.seq % 10).repeat(1000 + ((state.seq * 7919) % 60000)));
    }
    expect(kills).toBe(20);
    // The kills did land inside saves (most of this loop's time is in fsync).
    expect(midSave).toBeGreaterThan(0);
    expect(tempsLeft).toBeGreaterThan(0);
    // Many saves were cut short; the next load removes their temp files.
    expect(fileStore(file).load()).not.toBeNull();
    expectCleanDir(dir);
  });

  it('of the parent during frequent saves: every state parses, and resuming completes every item', async () => {
    const dir = scratch();
    const TOTAL = 40_000;
    for (let round = 0; round < 3; round++) {
      const before = recordCount(dir);
      const { proc, done } = runFixture({ dir, label: `k${round}`, instances: 4, total: TOTAL, every: { items: 1 } });
      const target = before + randomInt(500, 5000);
      let exited = false;
      done.then(() => (exited = true));
      while (!exited && recordCount(dir) < target) await sleep(2);
      proc.kill('SIGKILL');
      await done;
      // The instances die with their parent (PR_SET_PDEATHSIG).
      const pids = lines(path.join(dir, `starts-k${round}`)).map((l) => Number(l.split(' ')[1]));
      await waitFor(() => pids.every((p) => !isAlive(p)));
      const state = checkpointOf(dir);
      expect(state.instances).toBe(4);
    }
    const last = await runFixture({ dir, label: 'end', instances: 4, total: TOTAL }).done;
    expect(last.out.result.complete).toBe(true);
    const counts = tally(dir, TOTAL);
    expect(counts.findIndex((c) => c === 0)).toBe(-1);
    expect(lines(path.join(dir, 'allcomplete'))).toHaveLength(1);
    expectCleanDir(dir);
    expect(zombiesOf()).toEqual([]);
  });
});
