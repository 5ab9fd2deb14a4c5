// The same fibers driven by tick and by the event loop, in a forked child, at
// the top level of CommonJS and ES modules, and unobserved failures.
import fs from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { Scheduler, map } from '../src/index';
import { FIXTURES, runNode } from './helpers';
import { macrotask, pipe } from './scheduler-helpers';

const cleanups: (() => void)[] = [];
afterEach(() => {
  for (const c of cleanups.splice(0)) c();
});

/** One fiber body, used unchanged by every driver below. */
async function body(s: Scheduler, fd: number, log: string[]): Promise<string> {
  log.push('start');
  await s.pause(0.01);
  log.push('paused');
  const bits = await s.ioWait(fd, Scheduler.READ, 10);
  log.push(`ready ${bits}`);
  // Still readable: it returns at once; the long timeout only keeps a loaded
  // machine from letting the timer win the race with the fd watcher.
  const timedOut = await s.ioWait(fd, Scheduler.WRITE | Scheduler.READ, 5);
  log.push(`again ${timedOut & Scheduler.READ}`);
  await s.pause(0);
  log.push('end');
  return log.join(',');
}

const EXPECTED = 'start,paused,ready 1,again 1,end';

describe('scheduler: the same fiber under each driver', () => {
  it('driven by tick alone (eventLoop: false), with the write between ticks', async () => {
    const s = new Scheduler({ eventLoop: false });
    const p = pipe();
    cleanups.push(() => p.close());
    const log: string[] = [];
    const f = s.spawn(() => body(s, p.r, log));
    const out = f.done;
    await macrotask(() => {
      let passes = 0;
      while (s.size > 0) {
        s.tick(5);
        if (++passes === 3) fs.writeSync(p.w, 'x');
      }
    });
    expect(await out).toBe(EXPECTED);
  });

  it('driven by the event loop alone, with the write from a timer', async () => {
    const s = new Scheduler();
    const p = pipe();
    cleanups.push(() => p.close());
    const log: string[] = [];
    const f = s.spawn(() => body(s, p.r, log));
    setTimeout(() => fs.writeSync(p.w, 'x'), 30);
    expect(await f.done).toBe(EXPECTED);
  });

  it('started by tick, finished by the event loop', async () => {
    const s = new Scheduler();
    const p = pipe();
    cleanups.push(() => p.close());
    const log: string[] = [];
    const f = s.spawn(() => body(s, p.r, log));
    const out = f.done;
    await macrotask(() => {
      s.tick();
      s.runFor(0.05); // through the pause, into the ioWait
      expect(log).toEqual(['start', 'paused']);
    });
    fs.writeSync(p.w, 'x'); // no driver runs now: the watcher wakes it
    expect(await out).toBe(EXPECTED);
  });
});

describe('scheduler: per-process registry', () => {
  it('a map child gets a fresh default scheduler, and its fibers run there under both drivers', async () => {
    const p = pipe();
    cleanups.push(() => p.close());
    // The parent has a fiber parked on a timer and one on a pipe.
    const parentTimer = Scheduler.spawn(() => Scheduler.pause(30));
    const parentIo = Scheduler.spawn(() => Scheduler.ioWait(p.r, Scheduler.READ, 30));
    await new Promise((r) => setTimeout(r, 10));
    expect(Scheduler.default.size).toBe(2);
    expect(Scheduler.default.watchers).toBe(1);

    const results = await map([1, 2], async (n) => {
      const inherited = { size: Scheduler.default.size, timers: Scheduler.default.pendingTimers, watchers: Scheduler.default.watchers };
      const order: number[] = [];
      // Event-loop mode in the child.
      const fibers = [30, 10, 20].map((ms) =>
        Scheduler.spawn(async () => {
          await Scheduler.pause(ms / 1000);
          order.push(ms);
        }),
      );
      await Promise.all(fibers.map((f) => f.done));
      // A synchronous driver in the child, from a macrotask.
      const q = pipe();
      const synced = await new Promise<number>((resolve) =>
        setImmediate(() => {
          const f = Scheduler.spawn(() => Scheduler.ioWait(q.w, Scheduler.WRITE, 5));
          Scheduler.runUntilEmpty();
          void f.done.then(resolve);
        }),
      );
      q.close();
      return { n, pid: process.pid, inherited, order, synced, after: Scheduler.default.size };
    });
    for (const r of results) {
      expect(r.pid).not.toBe(process.pid);
      expect(r.inherited).toEqual({ size: 0, timers: 0, watchers: 0 });
      expect(r.order).toEqual([10, 20, 30]);
      expect(r.synced).toBe(Scheduler.WRITE);
      expect(r.after).toBe(0);
    }
    // The parent's fibers are untouched by the fork.
    expect(parentTimer.state).toBe('parked');
    expect(parentIo.state).toBe('parked');
    fs.writeSync(p.w, 'x');
    await expect(parentIo.done).resolves.toBe(Scheduler.READ);
    parentTimer.cancel();
    await expect(parentTimer.done).rejects.toThrow(/cancelled/);
  });
});

describe('scheduler: top level and failures, in a fresh node', () => {
  it('drives synchronously at the top level of a CommonJS script', async () => {
    // Well inside the test's timeout: a hang then reports what the script printed.
    const r = await runNode(['--single-threaded', `${FIXTURES}/scheduler-toplevel.js`], { timeoutMs: 20_000 });
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual({ order: [10, 20, 30], resumed: 6, left: 0 });
  });

  it('at the top level of an ES module the drivers throw SchedulerError, and the event loop still runs the fiber', async () => {
    const code = `
      import { Scheduler } from ${JSON.stringify(`${process.cwd()}/dist/index.mjs`)};
      const f = Scheduler.spawn(async () => { await Scheduler.pause(0.01); return 'ran'; });
      try { Scheduler.runUntilEmpty(); console.log('no error'); } catch (e) { console.log(e.name, e.code); }
      console.log(await f.done);
    `;
    const r = await runNode(['--input-type=module', '-e', code]);
    expect(r.stderr).toBe('');
    expect(r.stdout.trim().split('\n')).toEqual(['SchedulerError ERR_SCHEDULER', 'ran']);
  });

  it('the examples run and print what the docs say', async () => {
    const basic = await runNode(['examples/scheduler-basic.js']);
    expect(basic.code).toBe(0);
    expect(basic.stdout.trim().split('\n')).toEqual([
      'slept 10 ms',
      'slept 20 ms',
      'slept 30 ms',
      'pipe ready (bits 1): hello from another fiber',
      'all fibers done after 10 resumes',
    ]);
    const cancel = await runNode(['examples/scheduler-cancel.js']);
    expect(cancel.code).toBe(0);
    expect(cancel.stdout).toMatch(/stuck fiber: finally ran/);
    expect(cancel.stdout).toMatch(/stuck fiber: CancelledError, cause watchdog/);
    expect(cancel.stdout).toMatch(/left: fibers 0, timers 0, watchers 0/);
  });

  it('an unobserved failure in event-loop mode becomes an unhandled rejection', async () => {
    const r = await runNode([`${FIXTURES}/scheduler-unobserved.js`]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/fiber exploded/);
  });

  it('an observed failure goes to its owner only', async () => {
    const r = await runNode([`${FIXTURES}/scheduler-unobserved.js`, 'observed']);
    expect(r.code).toBe(0);
    expect(r.stdout.trim()).toBe('caught: fiber exploded');
  });
});
