// Scheduler basics: ordering, the tick contract, fairness, errors, fibers
// outside and across schedulers, and bad input.
import { describe, expect, it } from 'vitest';
import { CancelledError, FiberFailedError, Scheduler, SchedulerError } from '../src/index';
import fs from 'node:fs';
import { macrotask, pipe } from './scheduler-helpers';

describe('scheduler: ordering and the tick contract', () => {
  it('three fibers pausing 30, 10 and 20 ms finish 10, 20, 30 under runUntilEmpty', async () => {
    const s = new Scheduler({ eventLoop: false });
    const order: number[] = [];
    for (const ms of [30, 10, 20]) {
      s.spawn(async () => {
        await s.pause(ms / 1000);
        order.push(ms);
      });
    }
    const resumed = await macrotask(() => s.runUntilEmpty());
    expect(order).toEqual([10, 20, 30]);
    expect(resumed).toBe(6); // three starts, three wake-ups
    expect(s.size).toBe(0);
    expect(s.pendingTimers).toBe(0);
  });

  it('the static API uses the default scheduler the same way', async () => {
    const order: number[] = [];
    // Spawned and driven in one macrotask, so the event loop cannot start them first.
    await macrotask(() => {
      for (const ms of [30, 10, 20]) {
        Scheduler.spawn(async () => {
          await Scheduler.pause(ms / 1000);
          order.push(ms);
        });
      }
      expect(Scheduler.default.size).toBe(3);
      expect(Scheduler.runUntilEmpty()).toBe(6);
    });
    expect(order).toEqual([10, 20, 30]);
    expect(Scheduler.default.size).toBe(0);
  });

  it('when tick returns, each resumed fiber has run to its next park', async () => {
    const s = new Scheduler({ eventLoop: false });
    const log: string[] = [];
    const f = s.spawn(async () => {
      log.push('start');
      await null; // a microtask hop inside the fiber is still part of the step
      log.push('before pause');
      await s.pause(0);
      log.push('after pause');
      await Promise.resolve();
      log.push('end');
      return 42;
    });
    expect(f.state).toBe('new');
    const n1 = await macrotask(() => {
      const n = s.tick();
      expect(log).toEqual(['start', 'before pause']);
      expect(f.state).toBe('ready'); // pause(0) yields: ready for the next pass
      return n;
    });
    expect(n1).toBe(1);
    await macrotask(() => {
      expect(s.tick()).toBe(1);
      expect(log).toEqual(['start', 'before pause', 'after pause', 'end']);
      expect(f.state).toBe('done');
    });
    await expect(f.done).resolves.toBe(42);
    await macrotask(() => expect(s.tick(50)).toBe(0)); // nothing parked: returns at once
  });

  it('a pass resumes only the fibers that were ready when it began', async () => {
    const s = new Scheduler({ eventLoop: false });
    const log: string[] = [];
    s.spawn(async () => {
      log.push('a1');
      s.spawn(async () => log.push('b1')); // spawned during the pass: next pass
      await s.pause(0); // ready again at once: next pass
      log.push('a2');
    });
    await macrotask(() => {
      s.tick();
      expect(log).toEqual(['a1']);
      s.tick();
      expect(log).toEqual(['a1', 'b1', 'a2']);
    });
  });

  it('runFor drives for the given time, then returns with later timers still parked', async () => {
    const s = new Scheduler();
    let steps = 0;
    const f = s.spawn(async () => {
      for (;;) {
        await s.pause(0.005);
        steps++;
        if (steps === 3) await s.pause(30);
      }
    });
    await macrotask(() => s.runFor(0.1));
    expect(steps).toBe(3);
    expect(f.state).toBe('parked');
    f.cancel();
    await expect(f.done).rejects.toBeInstanceOf(CancelledError);
  });
});

describe('scheduler: the time base of a pass', () => {
  // Four fibers start in one pass, in this order: one parks for 30 ms, one for
  // 10 ms, one computes for 15 ms (a slow fiber, or a process the kernel kept
  // off the CPU that long), one parks for 20 ms. Counted from each park's own
  // instant, the 20 ms park would be due after the 30 ms one (at 35 ms against
  // 30). Counted from the pass's time, as Node's timers count from libuv's
  // loop time, they fire in the order of their delays.
  const spawnAll = (order: number[]): Promise<unknown>[] =>
    [30, 10, -15, 20].map((ms) =>
      Scheduler.spawn(async () => {
        if (ms < 0) {
          const end = performance.now() - ms;
          while (performance.now() < end);
          return;
        }
        await Scheduler.pause(ms / 1000);
        order.push(ms);
      }).done,
    );

  it('parks made in one slow pass fire in the order of their delays (event loop)', async () => {
    const order: number[] = [];
    await Promise.all(spawnAll(order));
    expect(order).toEqual([10, 20, 30]);
  });

  it('parks made in one slow pass fire in the order of their delays (runUntilEmpty)', async () => {
    const order: number[] = [];
    await macrotask(() => {
      spawnAll(order);
      Scheduler.runUntilEmpty();
    });
    expect(order).toEqual([10, 20, 30]);
  });
});

describe('scheduler: errors', () => {
  it("a fiber's error rejects fiber.done and never escapes tick", async () => {
    const s = new Scheduler({ eventLoop: false });
    const boom = new Error('boom');
    const f = s.spawn(async () => {
      await s.pause(0);
      throw boom;
    });
    const ok = s.spawn(async () => 'fine');
    const outcome = f.done.catch((e: unknown) => e); // reading done: the caller owns the error
    await macrotask(() => {
      expect(() => s.tick()).not.toThrow();
      expect(() => s.tick()).not.toThrow();
    });
    expect(await outcome).toBe(boom);
    await expect(ok.done).resolves.toBe('fine');
  });

  it('a synchronous throw in the fiber function also rejects done', async () => {
    const s = new Scheduler();
    const f = s.spawn(() => {
      throw new TypeError('sync');
    });
    const outcome = f.done.catch((e: unknown) => e);
    await macrotask(() => s.runUntilEmpty());
    expect(await outcome).toBeInstanceOf(TypeError);
  });

  it('runUntilEmpty reports failures nobody observed, after draining everything', async () => {
    const s = new Scheduler();
    let last = false;
    s.spawn(async () => {
      throw new Error('first');
    });
    s.spawn(async () => {
      await s.pause(0.01);
      throw new Error('second');
    });
    s.spawn(async () => {
      await s.pause(0.02);
      last = true;
    });
    const err = await macrotask(() => {
      try {
        s.runUntilEmpty();
      } catch (e) {
        return e;
      }
      return null;
    });
    expect(err).toBeInstanceOf(FiberFailedError);
    expect((err as FiberFailedError).code).toBe('ERR_FIBER_FAILED');
    expect((err as FiberFailedError).errors.map((e) => (e as Error).message)).toEqual(['first', 'second']);
    expect(last).toBe(true);
    expect(s.size).toBe(0);
  });

  it('a cancelled fiber that lets CancelledError propagate is not reported as a failure', async () => {
    const s = new Scheduler();
    const f = s.spawn(async () => {
      await s.pause(10);
    });
    await macrotask(() => {
      s.tick();
      f.cancel();
      expect(() => s.runUntilEmpty()).not.toThrow();
    });
    expect(f.state).toBe('done');
  });

  it('runUntilEmpty throws SchedulerError instead of hanging on fibers that wait on the event loop', async () => {
    const s = new Scheduler();
    const f = s.spawn(async () => {
      await new Promise((r) => setTimeout(r, 20)); // not a park: only the event loop settles it
      return 'later';
    });
    const err = await macrotask(() => {
      try {
        s.runUntilEmpty();
      } catch (e) {
        return e;
      }
      return null;
    });
    expect(err).toBeInstanceOf(SchedulerError);
    expect((err as Error).message).toMatch(/event loop/);
    // The event loop still finishes it.
    await expect(f.done).resolves.toBe('later');
  });

  it('a fiber cannot drive its own scheduler', async () => {
    const s = new Scheduler();
    const f = s.spawn(() => s.tick());
    const outcome = f.done.catch((e: unknown) => e);
    await macrotask(() => s.runUntilEmpty());
    expect(await outcome).toBeInstanceOf(SchedulerError);
  });
});

describe('scheduler: outside a fiber', () => {
  it('pause outside any fiber is a plain awaitable timer driven by the event loop', async () => {
    expect(Scheduler.current()).toBe(null);
    const t0 = performance.now();
    await Scheduler.pause(0.02);
    expect(performance.now() - t0).toBeGreaterThanOrEqual(19.5);
    expect(Scheduler.default.pendingTimers).toBe(0);
  });

  it('ioWait outside any fiber is a plain awaitable too: 0 on timeout, READ when written', async () => {
    const p = pipe();
    try {
      expect(await Scheduler.ioWait(p.r, Scheduler.READ, 0.01)).toBe(0);
      setTimeout(() => fs.writeSync(p.w, 'x'), 5);
      expect(await Scheduler.ioWait(p.r, Scheduler.READ, 5)).toBe(Scheduler.READ);
      expect(Scheduler.default.watchers).toBe(0);
      expect(Scheduler.default.pendingTimers).toBe(0);
    } finally {
      p.close();
    }
  });

  it('pause outside any fiber is also woken by a synchronous driver', async () => {
    const s = new Scheduler();
    let woke = false;
    void s.pause(0).then(() => (woke = true));
    await macrotask(() => {
      s.tick();
      expect(woke).toBe(true);
    });
  });

  it('inside a fiber the static pause parks on the fiber’s own scheduler', async () => {
    const s = new Scheduler();
    let seen: unknown = undefined;
    s.spawn(async (fiber) => {
      seen = Scheduler.current() === fiber;
      await Scheduler.pause(0.01);
    });
    await macrotask(() => {
      s.tick();
      expect(s.pendingTimers).toBe(1);
      expect(Scheduler.default.pendingTimers).toBe(0);
      s.runUntilEmpty();
    });
    expect(seen).toBe(true);
  });

  it('an instance pause from a fiber of another scheduler rejects with SchedulerError', async () => {
    const a = new Scheduler();
    const b = new Scheduler();
    const f = a.spawn(() => b.pause(0));
    const outcome = f.done.catch((e: unknown) => e);
    await macrotask(() => a.runUntilEmpty());
    expect(await outcome).toBeInstanceOf(SchedulerError);
    expect(b.pendingTimers).toBe(0);
  });
});

describe('scheduler: bad input', () => {
  it('pause rejects bad seconds with TypeError/RangeError naming the argument', async () => {
    await expect(Scheduler.pause(-1)).rejects.toThrow(RangeError);
    await expect(Scheduler.pause(-1)).rejects.toThrow(/seconds/);
    await expect(Scheduler.pause(Infinity)).rejects.toThrow(RangeError);
    await expect(Scheduler.pause(Number.NaN)).rejects.toThrow(TypeError);
    await expect(Scheduler.pause('1' as unknown as number)).rejects.toThrow(/seconds must be a number/);
  });

  it('ioWait rejects a bad fd, mode or timeout, naming it', async () => {
    await expect(Scheduler.ioWait(-1, Scheduler.READ)).rejects.toThrow(RangeError);
    await expect(Scheduler.ioWait(-1, Scheduler.READ)).rejects.toThrow(/fd must be/);
    await expect(Scheduler.ioWait(1.5, Scheduler.READ)).rejects.toThrow(TypeError);
    await expect(Scheduler.ioWait(0, 4)).rejects.toThrow(/mode must be Scheduler.READ/);
    await expect(Scheduler.ioWait(0, 4)).rejects.toThrow(RangeError);
    await expect(Scheduler.ioWait(0, 'r' as unknown as number)).rejects.toThrow(TypeError);
    await expect(Scheduler.ioWait(0, Scheduler.READ, -2)).rejects.toThrow(/timeout must be a non-negative/);
  });

  it('the synchronous methods and the constructor throw on bad input', () => {
    expect(() => new Scheduler({ eventLoop: 1 } as unknown as { eventLoop: boolean })).toThrow(/options.eventLoop must be a boolean/);
    expect(() => new Scheduler({ loop: true } as never)).toThrow(/options.loop is not a known option/);
    const s = new Scheduler();
    expect(() => s.spawn(42 as unknown as () => void)).toThrow(/spawn\(fn\): fn must be a function/);
    expect(() => s.tick(-5)).toThrow(RangeError);
    expect(() => s.tick('x' as unknown as number)).toThrow(/timeoutMs/);
    expect(() => s.runFor(-1)).toThrow(/runFor\(seconds\): seconds/);
  });

  it('constants match the spec', () => {
    expect([Scheduler.READ, Scheduler.WRITE, Scheduler.READ | Scheduler.WRITE]).toEqual([1, 2, 3]);
  });
});
