// Generator fibers: parked by yielding pause/ioWait, a promise or another
// fiber, resumed by the drivers directly, so the drivers run anywhere. A test
// body is itself inside a microtask, where async fibers could not be driven.
import fs from 'node:fs';
import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { Scheduler, SchedulerError } from '../src/index';
import { FIXTURES, runNode } from './helpers';
import { pipe } from './scheduler-helpers';

const cleanups: (() => void)[] = [];
afterEach(() => {
  for (const c of cleanups.splice(0)) c();
});

describe('scheduler: generator fibers', () => {
  it('at the top level of an ES module: deadline order, ioWait under runFor, deterministic tick, yielded promises', async () => {
    const r = await runNode(['--single-threaded', `${FIXTURES}/scheduler-esm.mjs`], { timeoutMs: 20_000 });
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual({
      resumed: 6,
      order: [10, 20, 30],
      bits: [0, Scheduler.READ],
      ioStates: ['done', 'done'],
      ticks: [
        [2, 'a0 b0'],
        [2, 'a0 b0 a1 b1'],
        [2, 'a0 b0 a1 b1 a2 b2'],
        [0, 'a0 b0 a1 b1 a2 b2'],
      ],
      promise: '42 no',
      left: [0, 0, 0],
    });
  });

  it('the drivers run them inside a microtask (a test body) with no event-loop turn', () => {
    const s = new Scheduler({ eventLoop: false });
    const log: string[] = [];
    const f = s.spawn(function* () {
      log.push('start');
      yield s.pause(0.005);
      log.push('end');
      return 7;
    });
    expect(s.runUntilEmpty()).toBe(2);
    expect(log).toEqual(['start', 'end']);
    expect(f.state).toBe('done');
  });

  it('async fibers still refuse inside a microtask, and the error points to generator fibers', async () => {
    const s = new Scheduler();
    const f = s.spawn(async () => 1);
    expect(() => s.runUntilEmpty()).toThrow(SchedulerError);
    expect(() => s.runUntilEmpty()).toThrow(/use a generator fiber/i);
    await expect(f.done).resolves.toBe(1);
  });

  for (const mode of ['runUntilEmpty', 'event loop'] as const) {
    it(`a yielded promise resumes with its value or throws its rejection (${mode})`, async () => {
      const s = new Scheduler({ eventLoop: mode === 'event loop' });
      let resolveLater!: (v: string) => void;
      const later = new Promise<string>((r) => {
        resolveLater = r;
      });
      const got: unknown[] = [];
      const f = s.spawn(function* () {
        got.push(yield Promise.resolve('now'));
        try {
          yield Promise.reject(new Error('rejected'));
        } catch (err) {
          got.push((err as Error).message);
        }
        got.push(yield later);
        return got.length;
      });
      // Settled by another fiber while the driver runs, or by a timer in event-loop mode.
      if (mode === 'runUntilEmpty') {
        s.spawn(function* () {
          yield s.pause(0.01);
          resolveLater('later');
        });
        s.runUntilEmpty();
      } else {
        setTimeout(() => resolveLater('later'), 10);
      }
      await expect(f.done).resolves.toBe(3);
      expect(got).toEqual(['now', 'rejected', 'later']);
    });
  }

  it('event-loop mode: ioWait gives READ when a timer writes the pipe, and 0 on timeout; nothing is left armed', async () => {
    const s = new Scheduler();
    const p = pipe();
    cleanups.push(() => p.close());
    const f = s.spawn(function* () {
      const first: number = yield* s.ioWait(p.r, Scheduler.READ, 0.01);
      setTimeout(() => fs.writeSync(p.w, 'x'), 5);
      const second: number = yield* s.ioWait(p.r, Scheduler.READ, 5);
      return [first, second];
    });
    await expect(f.done).resolves.toEqual([0, Scheduler.READ]);
    await new Promise((r) => setImmediate(r));
    expect([s.size, s.pendingTimers, s.watchers]).toEqual([0, 0, 0]);
  });

  it('yield fiber joins it: its value, or its error thrown at the yield; yield* types the result', () => {
    const s = new Scheduler({ eventLoop: false });
    const f = s.spawn(function* () {
      const ok = s.spawn(function* () {
        yield s.pause(0.002);
        return 20;
      });
      const bad = s.spawn(function* () {
        yield s.pause(0);
        throw new Error('child failed');
      });
      const n: number = yield* ok;
      let msg = '';
      try {
        yield bad;
      } catch (err) {
        msg = (err as Error).message;
      }
      return `${n + 1} ${msg}`;
    });
    // The failed child was joined, so it is observed: runUntilEmpty does not report it.
    s.runUntilEmpty();
    return expect(f.done).resolves.toBe('21 child failed');
  });

  it('yield* composes generator helpers', () => {
    const s = new Scheduler({ eventLoop: false });
    function* sleepThenDouble(x: number) {
      yield* s.pause(0.001);
      return x * 2;
    }
    function* twice(x: number) {
      const a: number = yield* sleepThenDouble(x);
      return yield* sleepThenDouble(a);
    }
    const f = s.spawn(function* () {
      return yield* twice(3);
    });
    s.runUntilEmpty();
    return expect(f.done).resolves.toBe(12);
  });

  it('yielding something that is not a park throws TypeError into the fiber', () => {
    const s = new Scheduler({ eventLoop: false });
    const f = s.spawn(function* () {
      try {
        yield 5;
      } catch (err) {
        return (err as Error).constructor.name + ': ' + (err as Error).message;
      }
    });
    s.runUntilEmpty();
    return expect(f.done).resolves.toMatch(/^TypeError: fiber \d+ yielded number/);
  });

  it('a plain function that returns a generator makes a generator fiber too', async () => {
    const s = new Scheduler();
    function* helper(x: number) {
      yield s.pause(0.001);
      return x + 1;
    }
    await expect(s.spawn(() => helper(1)).done).resolves.toBe(2);
  });

  it('Scheduler.current() is the generator fiber while it runs', () => {
    const s = new Scheduler({ eventLoop: false });
    let seen: unknown = null;
    const f = s.spawn(function* () {
      yield s.pause(0);
      seen = Scheduler.current();
    });
    s.runUntilEmpty();
    expect(seen).toBe(f);
    expect(Scheduler.current()).toBe(null);
  });

  it('the static size, pendingTimers and watchers are the default scheduler’s', () => {
    const f = Scheduler.spawn(function* () {
      yield Scheduler.pause(0.001);
    });
    expect(Scheduler.size).toBe(Scheduler.default.size);
    expect(Scheduler.size).toBeGreaterThan(0);
    expect(Scheduler.pendingTimers).toBe(Scheduler.default.pendingTimers);
    expect(Scheduler.watchers).toBe(Scheduler.default.watchers);
    Scheduler.runUntilEmpty();
    expect(f.state).toBe('done');
    expect([Scheduler.size, Scheduler.pendingTimers, Scheduler.watchers]).toEqual([0, 0, 0]);
  });

  it('ioWait on a net.Socket’s fd: EEXIST in event-loop mode; works under { eventLoop: false }', async () => {
    const p = pipe();
    cleanups.push(() => p.close());
    const dup = fs.openSync(`/proc/self/fd/${p.r}`, 'r');
    const sock = new net.Socket({ fd: dup, readable: true, writable: false });
    sock.pause();
    cleanups.push(() => sock.destroy());
    const loop = new Scheduler();
    const err = await loop.ioWait(dup, Scheduler.READ, 1).catch((e: unknown) => e);
    expect((err as NodeJS.ErrnoException).code).toBe('EEXIST');
    expect((err as Error).message).toMatch(/eventLoop: false/);

    const s = new Scheduler({ eventLoop: false });
    fs.writeSync(p.w, 'x');
    const f = s.spawn(function* () {
      return yield* s.ioWait(dup, Scheduler.READ, 5);
    });
    s.runFor(5);
    await expect(f.done).resolves.toBe(Scheduler.READ);
  });

  it('bad input names the argument or option', () => {
    const s = new Scheduler();
    expect(() => s.spawn(function* () {}, { timeout: -1 })).toThrow(RangeError);
    expect(() => s.spawn(function* () {}, { timeout: -1 })).toThrow(/options\.timeout must be a positive/);
    expect(() => s.spawn(function* () {}, { timeout: 'x' as never })).toThrow(TypeError);
    expect(() => s.spawn(function* () {}, { timeot: 1 } as never)).toThrow(/options\.timeot is not a known option/);
    expect(() => s.spawn((async function* () {}) as never)).toThrow(/async generator/);
    expect(() => Scheduler.withTimeout(0, function* () {})).toThrow(/withTimeout\(seconds, fn\): seconds must be a positive/);
    expect(() => Scheduler.withTimeout(1, 5 as never)).toThrow(TypeError);
    expect(s.size).toBe(0);
  });
});
