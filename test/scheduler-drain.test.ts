// The synchronous drivers rest on process._tickCallback draining microtasks
// synchronously (docs/hazards.md, Appendix). If a Node upgrade removes it
// or changes what it does, these tests fail first, with a clear name.
import { describe, expect, it } from 'vitest';
import { Scheduler, SchedulerError } from '../src/index';
import { drainMicrotasks, hasSyncDrain } from '../src/scheduler/drain';
import { macrotask } from './scheduler-helpers';

describe('scheduler: synchronous microtask drain', () => {
  it('process._tickCallback exists on this Node', () => {
    expect(typeof (process as unknown as { _tickCallback?: unknown })._tickCallback).toBe('function');
    expect(hasSyncDrain()).toBe(true);
  });

  it('drains an async function to completion from a macrotask (a,sync,b,c)', async () => {
    const log = await macrotask(() => {
      const out: string[] = [];
      void (async () => {
        out.push('a');
        await null;
        out.push('b');
        await null;
        out.push('c');
      })();
      out.push('sync');
      const drained = drainMicrotasks();
      return { out, drained };
    });
    expect(log.drained).toBe(true);
    expect(log.out).toEqual(['a', 'sync', 'b', 'c']);
  });

  it('reports that it cannot drain inside a microtask', async () => {
    await null; // now inside a microtask
    expect(drainMicrotasks()).toBe(false);
  });

  it('the drivers refuse, with SchedulerError, to run inside a microtask instead of hanging', async () => {
    const s = new Scheduler();
    const f = s.spawn(async () => 1);
    await null;
    expect(() => s.runUntilEmpty()).toThrow(SchedulerError);
    expect(() => s.tick()).toThrow(/inside a microtask/);
    expect(() => s.runFor(0.01)).toThrow(SchedulerError);
    // The fiber is not lost: the event loop still runs it.
    await expect(f.done).resolves.toBe(1);
  });
});
