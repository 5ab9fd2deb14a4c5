// Deadlines (spawn's options.timeout, Scheduler.withTimeout) and cancellation
// of generator fibers: the error is raised at the fiber's park, its finally
// runs, fiber.done rejects with the right class, and no timer or fd watcher
// is left behind, under both drivers.
import { afterEach, describe, expect, it } from 'vitest';
import { CancelledError, Scheduler, SchedulerError, TimeoutError } from '../src/index';
import { macrotask, pipe } from './scheduler-helpers';

const cleanups: (() => void)[] = [];
afterEach(() => {
  for (const c of cleanups.splice(0)) c();
});

/** Node-level timers alive in this process (what a leaked loop timer would show up as). */
function nodeTimers(): number {
  return process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length;
}

type Park = 'pause' | 'ioWait' | 'promise';

/** A generator fiber body parked for long in `how`, logging what reaches it. */
function* parked(s: Scheduler, how: Park, fd: number, log: string[]): Generator<unknown, string, unknown> {
  try {
    if (how === 'pause') yield s.pause(30);
    else if (how === 'ioWait') yield s.ioWait(fd, Scheduler.READ, 30);
    else yield new Promise(() => {});
    log.push('resumed normally');
    return 'ok';
  } catch (err) {
    log.push((err as Error).constructor.name);
    throw err;
  } finally {
    log.push('finally');
  }
}

function leftovers(s: Scheduler) {
  return { pendingTimers: s.pendingTimers, watchers: s.watchers, size: s.size };
}

const NONE = { pendingTimers: 0, watchers: 0, size: 0 };

describe('scheduler: deadlines and cancellation of generator fibers', () => {
  for (const how of ['pause', 'ioWait', 'promise'] as Park[]) {
    for (const loop of [false, true]) {
      const mode = loop ? 'event loop' : 'runUntilEmpty';
      it(`spawn options.timeout raises TimeoutError at a park in ${how} (${mode})`, async () => {
        const s = new Scheduler({ eventLoop: loop });
        const p = pipe();
        cleanups.push(() => p.close());
        const timers = nodeTimers();
        const log: string[] = [];
        const f = s.spawn(
          function* () {
            return yield* parked(s, how, p.r, log);
          },
          { timeout: 0.02 },
        );
        const outcome = f.done.catch((e: unknown) => e);
        if (!loop) s.runUntilEmpty();
        const err = await outcome;
        expect(err).toBeInstanceOf(TimeoutError);
        expect((err as TimeoutError).code).toBe('ERR_TIMEOUT');
        expect((err as TimeoutError).timeout).toBe(0.02);
        expect(log).toEqual(['TimeoutError', 'finally']);
        expect(leftovers(s)).toEqual(NONE);
        await macrotask(() => {}); // let the loop side settle
        expect(nodeTimers()).toBeLessThanOrEqual(timers);
      });

      it(`cancel() raises CancelledError at a park in ${how} (${mode})`, async () => {
        const s = new Scheduler({ eventLoop: loop });
        const p = pipe();
        cleanups.push(() => p.close());
        const timers = nodeTimers();
        const log: string[] = [];
        const f = s.spawn(function* () {
          return yield* parked(s, how, p.r, log);
        });
        const outcome = f.done.catch((e: unknown) => e);
        s.tick();
        expect(f.state).toBe('parked');
        f.cancel('stop');
        // Gone at once, before the fiber even resumes.
        expect([s.pendingTimers, s.watchers]).toEqual([0, 0]);
        if (!loop) s.runUntilEmpty();
        const err = await outcome;
        expect(err).toBeInstanceOf(CancelledError);
        expect((err as Error).cause).toBe('stop');
        expect(log).toEqual(['CancelledError', 'finally']);
        expect(leftovers(s)).toEqual(NONE);
        await macrotask(() => {});
        expect(nodeTimers()).toBeLessThanOrEqual(timers);
      });
    }
  }

  it('withTimeout: a scope that ends in time returns its value and removes its timer; one that does not raises TimeoutError', () => {
    const s = new Scheduler({ eventLoop: false });
    const log: string[] = [];
    const f = s.spawn(function* () {
      const quick: number = yield* Scheduler.withTimeout(5, function* () {
        yield s.pause(0.001);
        return 1;
      });
      log.push(`quick ${quick} timers ${s.pendingTimers}`);
      try {
        yield* Scheduler.withTimeout(0.01, function* () {
          try {
            yield s.pause(30);
          } finally {
            log.push('inner finally');
          }
        });
      } catch (err) {
        log.push((err as Error).constructor.name);
      }
      // The scope is closed: parks work again.
      yield s.pause(0.001);
      log.push('after');
      return 'done';
    });
    s.runUntilEmpty();
    expect(log).toEqual(['quick 1 timers 0', 'inner finally', 'TimeoutError', 'after']);
    expect(leftovers(s)).toEqual(NONE);
    return expect(f.done).resolves.toBe('done');
  });

  it('withTimeout in an async fiber (event loop), and outside any fiber it rejects', async () => {
    const s = new Scheduler();
    const log: string[] = [];
    const f = s.spawn(async () => {
      const parked = () => s.pause(30).finally(() => log.push('finally'));
      await Scheduler.withTimeout(0.01, parked).catch((err: Error) => log.push(err.constructor.name));
      return s.pendingTimers;
    });
    await expect(f.done).resolves.toBe(0);
    expect(log).toEqual(['finally', 'TimeoutError']);
    await expect(Scheduler.withTimeout(1, async () => 1)).rejects.toThrow(SchedulerError);
  });

  it('cancellation is level-triggered: a fiber that catches it gets it again at its next park', () => {
    const s = new Scheduler({ eventLoop: false });
    const caught: string[] = [];
    const f = s.spawn(function* () {
      for (let i = 0; i < 3; i++) {
        try {
          yield s.pause(30);
        } catch (err) {
          caught.push((err as Error).constructor.name);
        }
      }
      yield s.pause(30);
    });
    s.tick();
    f.cancel();
    s.runUntilEmpty();
    expect(caught).toEqual(['CancelledError', 'CancelledError', 'CancelledError']);
    expect(f.state).toBe('done');
  });

  it('a child spawned with fiber.spawn() is cancelled with its parent; a fiber spawned with Scheduler.spawn is not', async () => {
    const s = new Scheduler({ eventLoop: false });
    const log: string[] = [];
    let child!: ReturnType<typeof s.spawn<string>>;
    let free!: ReturnType<typeof s.spawn<string>>;
    const parent = s.spawn(function* (self) {
      child = self.spawn(function* () {
        try {
          yield s.pause(30);
          return 'child ran out';
        } finally {
          log.push('child finally');
        }
      });
      free = s.spawn(function* () {
        yield s.pause(0.01);
        return 'free';
      });
      yield child;
    });
    const outcomes = Promise.all([parent.done, child?.done].map((d) => d?.catch((e: unknown) => e)));
    s.tick();
    s.tick();
    parent.cancel();
    s.runUntilEmpty();
    const [pErr] = await outcomes;
    expect(pErr).toBeInstanceOf(CancelledError);
    await expect(child.done).rejects.toBeInstanceOf(CancelledError);
    await expect(free.done).resolves.toBe('free');
    expect(log).toEqual(['child finally']);
    expect(leftovers(s)).toEqual(NONE);
  });

  it('a fiber that only yields pause(0) is cancelled, and times out, at that yield', () => {
    const s = new Scheduler({ eventLoop: false });
    const spin = (log: string[]) =>
      function* () {
        try {
          for (;;) yield s.pause(0);
        } finally {
          log.push('finally');
        }
      };
    const cancelledLog: string[] = [];
    const timedLog: string[] = [];
    const cancelled = s.spawn(spin(cancelledLog));
    const timed = s.spawn(spin(timedLog), { timeout: 0.01 });
    const outcomes = Promise.all([cancelled.done, timed.done].map((d) => d.catch((e: unknown) => e)));
    s.tick();
    s.tick();
    expect(cancelled.state).toBe('ready');
    cancelled.cancel();
    s.runUntilEmpty();
    expect([cancelledLog, timedLog]).toEqual([['finally'], ['finally']]);
    expect(leftovers(s)).toEqual(NONE);
    return outcomes.then(([c, t]) => {
      expect(c).toBeInstanceOf(CancelledError);
      expect(t).toBeInstanceOf(TimeoutError);
    });
  });
});
