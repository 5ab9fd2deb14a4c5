// 10,000 fibers parked at once, then all resumed, with no growth in fds:
// timers need none, and all the fibers on one fd share one watcher.
import fs from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { Scheduler } from '../src/index';
import { fdCount } from './helpers';
import { macrotask, pipe } from './scheduler-helpers';

const N = 10_000;
const cleanups: (() => void)[] = [];
afterEach(() => {
  for (const c of cleanups.splice(0)) c();
});

function spawnMany(s: Scheduler, r: number, counts: { resumed: number }) {
  const fibers = [];
  for (let i = 0; i < N; i++) {
    fibers.push(
      s.spawn(async () => {
        // Half park on timers, half on one pipe's read end. The pause is long
        // enough that starting 10,000 fibers on a loaded machine ends first.
        if (i % 2 === 0) await s.pause(2 + (i % 7) / 1000);
        else expect(await s.ioWait(r, Scheduler.READ, 30)).toBe(Scheduler.READ);
        counts.resumed++;
      }),
    );
  }
  return fibers;
}

describe('scheduler: scale', () => {
  it(`${N} fibers parked at once, driven synchronously: all resume, no new fds`, async () => {
    const s = new Scheduler();
    const p = pipe();
    cleanups.push(() => p.close());
    const before = fdCount();
    const counts = { resumed: 0 };
    const fibers = spawnMany(s, p.r, counts);
    const outcome = Promise.all(fibers.map((f) => f.done));
    await macrotask(() => {
      s.tick();
      expect(fibers.every((f) => f.state === 'parked')).toBe(true);
      expect(s.pendingTimers).toBe(N); // every park has a deadline
      expect(s.watchers).toBe(1);
      expect(fdCount()).toBe(before);
      fs.writeSync(p.w, 'go');
      s.runUntilEmpty();
    });
    await outcome;
    expect(counts.resumed).toBe(N);
    expect(s.size).toBe(0);
    expect(s.pendingTimers).toBe(0);
    expect(s.watchers).toBe(0);
    expect(fdCount()).toBe(before);
  });

  it(`${N} fibers parked at once, driven by the event loop: all resume, no new fds`, async () => {
    const s = new Scheduler();
    const p = pipe();
    cleanups.push(() => p.close());
    const before = fdCount();
    const counts = { resumed: 0 };
    const fibers = spawnMany(s, p.r, counts);
    await new Promise((r) => setTimeout(r, 10));
    expect(fibers.filter((f) => f.state === 'parked').length).toBe(N);
    expect(s.watchers).toBe(1);
    expect(fdCount()).toBe(before);
    setTimeout(() => fs.writeSync(p.w, 'go'), 5);
    await Promise.all(fibers.map((f) => f.done));
    await new Promise((r) => setImmediate(r));
    expect(counts.resumed).toBe(N);
    expect(s.pendingTimers).toBe(0);
    expect(s.watchers).toBe(0);
    expect(fdCount()).toBe(before);
  });

  it(`${N} generator fibers parked at once (pause, ioWait, promise), driven synchronously inside a microtask: all complete, no new fds`, async () => {
    const s = new Scheduler();
    const p = pipe();
    cleanups.push(() => p.close());
    const before = fdCount();
    let release!: () => void;
    const gate = new Promise<void>((r) => {
      release = r;
    });
    const counts = { resumed: 0 };
    const fibers = [];
    for (let i = 0; i < N; i++) {
      fibers.push(
        s.spawn(function* () {
          if (i % 3 === 0) yield s.pause(0.05 + (i % 7) / 1000);
          else if (i % 3 === 1) expect(yield* s.ioWait(p.r, Scheduler.READ, 30)).toBe(Scheduler.READ);
          else yield gate;
          counts.resumed++;
        }),
      );
    }
    s.tick();
    expect(fibers.every((f) => f.state === 'parked')).toBe(true);
    expect(s.watchers).toBe(1);
    expect(fdCount()).toBe(before);
    fs.writeSync(p.w, 'go');
    release();
    s.runUntilEmpty();
    expect(counts.resumed).toBe(N);
    expect(fibers.every((f) => f.state === 'done')).toBe(true);
    expect([s.size, s.pendingTimers, s.watchers]).toEqual([0, 0, 0]);
    expect(fdCount()).toBe(before);
  });
});
