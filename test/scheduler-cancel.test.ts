// Cancellation: CancelledError raised inside the fiber at its park, its
// finally runs, and no timer or fd watcher is left behind, in both modes.
import { afterEach, describe, expect, it } from 'vitest';
import { CancelledError, Scheduler } from '../src/index';
import fs from 'node:fs';
import { fdCount, waitFor } from './helpers';
import { macrotask, pipe } from './scheduler-helpers';

const cleanups: (() => void)[] = [];
afterEach(() => {
  for (const c of cleanups.splice(0)) c();
});

/** Node-level timers alive in this process (what a leaked loop timer would show up as). */
function nodeTimers(): number {
  return process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length;
}

type Park = 'pause' | 'ioWait';

function parkedFiber(s: Scheduler, how: Park, fd: number, log: string[]) {
  return s.spawn(async () => {
    try {
      if (how === 'pause') await s.pause(30);
      else await s.ioWait(fd, Scheduler.READ, 30);
      log.push('resumed normally');
    } catch (err) {
      log.push(err instanceof CancelledError ? 'CancelledError' : `other: ${String(err)}`);
      throw err;
    } finally {
      log.push('finally');
    }
  });
}

describe('scheduler: cancel', () => {
  for (const how of ['pause', 'ioWait'] as Park[]) {
    it(`cancelling a fiber parked in ${how} (synchronous driver) raises CancelledError inside it`, async () => {
      const s = new Scheduler();
      const p = pipe();
      cleanups.push(() => p.close());
      const fds = fdCount();
      const timers = nodeTimers();
      const log: string[] = [];
      const f = parkedFiber(s, how, p.r, log);
      const outcome = f.done.catch((e: unknown) => e);
      await macrotask(() => {
        s.tick();
        expect(f.state).toBe('parked');
        expect(s.pendingTimers).toBe(1);
        expect(s.watchers).toBe(how === 'ioWait' ? 1 : 0);
        f.cancel('stop');
        // Gone at once, before the fiber even resumes.
        expect(s.pendingTimers).toBe(0);
        expect(s.watchers).toBe(0);
        expect(f.state).toBe('ready');
        expect(s.tick()).toBe(1);
      });
      expect(log).toEqual(['CancelledError', 'finally']);
      const err = await outcome;
      expect(err).toBeInstanceOf(CancelledError);
      expect((err as CancelledError).code).toBe('ERR_CANCELLED');
      expect((err as CancelledError).cause).toBe('stop');
      expect(f.state).toBe('done');
      expect(s.size).toBe(0);
      expect(nodeTimers()).toBe(timers);
      expect(fdCount()).toBe(fds);
    });

    it(`cancelling a fiber parked in ${how} (event loop) raises CancelledError inside it`, async () => {
      const s = new Scheduler();
      const p = pipe();
      cleanups.push(() => p.close());
      const timers = nodeTimers();
      const log: string[] = [];
      const f = parkedFiber(s, how, p.r, log);
      await new Promise((r) => setTimeout(r, 10));
      expect(f.state).toBe('parked');
      expect(nodeTimers()).toBe(timers + 1); // the scheduler's one loop timer
      f.cancel();
      await expect(f.done).rejects.toBeInstanceOf(CancelledError);
      expect(log).toEqual(['CancelledError', 'finally']);
      await new Promise((r) => setImmediate(r));
      expect(s.pendingTimers).toBe(0);
      expect(s.watchers).toBe(0);
      expect(nodeTimers()).toBe(timers);
    });
  }

  it('a fiber that never started settles with CancelledError without running', async () => {
    const s = new Scheduler({ eventLoop: false });
    let ran = false;
    const f = s.spawn(() => {
      ran = true;
    });
    f.cancel();
    const outcome = f.done.catch((e: unknown) => e);
    await macrotask(() => s.runUntilEmpty());
    expect(ran).toBe(false);
    expect(await outcome).toBeInstanceOf(CancelledError);
  });

  it('cancellation is level-triggered: every later park raises again, so the fiber ends', async () => {
    const s = new Scheduler({ eventLoop: false });
    const seen: string[] = [];
    const f = s.spawn(async () => {
      for (let i = 0; i < 3; i++) {
        try {
          await s.pause(10);
        } catch (err) {
          seen.push((err as Error).name);
        }
      }
      return 'caught them all';
    });
    const outcome = f.done;
    await macrotask(() => {
      s.tick();
      f.cancel();
      s.runUntilEmpty();
    });
    expect(seen).toEqual(['CancelledError', 'CancelledError', 'CancelledError']);
    await expect(outcome).resolves.toBe('caught them all');
  });

  it('a fiber awaiting two parks at once has both removed', async () => {
    const s = new Scheduler();
    const p = pipe();
    cleanups.push(() => p.close());
    const f = s.spawn(() => Promise.all([s.pause(10), s.ioWait(p.r, Scheduler.READ)]));
    const outcome = f.done.catch((e: unknown) => e);
    await macrotask(() => {
      s.tick();
      expect(s.pendingTimers).toBe(1);
      expect(s.watchers).toBe(1);
      f.cancel();
      expect(s.pendingTimers).toBe(0);
      expect(s.watchers).toBe(0);
      s.runUntilEmpty();
    });
    expect(await outcome).toBeInstanceOf(CancelledError);
  });

  it('a fiber keeps its identity across awaits of foreign promises, so cancel still reaches it', async () => {
    const s = new Scheduler();
    const log: string[] = [];
    const f = s.spawn(async () => {
      await fs.promises.readFile(__filename); // settled by the event loop, not by the scheduler
      log.push(Scheduler.current() === f ? 'still the fiber' : 'lost');
      try {
        await Scheduler.pause(30); // the static pause finds the fiber's own scheduler
      } finally {
        log.push('finally');
      }
    });
    const outcome = f.done.catch((e: unknown) => e);
    await waitFor(() => f.state === 'parked');
    expect(s.pendingTimers).toBe(1);
    f.cancel();
    expect(await outcome).toBeInstanceOf(CancelledError);
    expect(log).toEqual(['still the fiber', 'finally']);
    expect(s.pendingTimers).toBe(0);
  });

  it('cancel after the fiber is done is a no-op', async () => {
    const s = new Scheduler({ eventLoop: false });
    const f = s.spawn(async () => 7);
    await macrotask(() => s.runUntilEmpty());
    f.cancel();
    await expect(f.done).resolves.toBe(7);
  });
});
