// How native/immediates.c finds Node's queue of callbacks from other threads
// (docs/hazards.md, the Worker-join row). It looks, past the Environment's
// async handle, for a run of members that must match exactly once. Empty
// queues, a free mutex and a true bool are only zeros and a 1, and on Node 24
// under vitest other memory 5.4 KB further on sometimes held just that: two
// matches, so the locate gave up and the first fork warned
// COWFORK_IMMEDIATES_UNKNOWN. The at-exit list just before the run now tells
// the two apart (its nodes point back at its own address).
import { describe, expect, it } from 'vitest';
import { map } from '../src/index';
import { native } from '../src/native';

describe("locating Node's queue of callbacks from other threads", () => {
  it('finds the run alone when memory near it holds the bytes of an empty run (a decoy at every offset)', () => {
    const [planted, missed] = native.testImmediatesDecoys();
    // The 8 KB window less the run itself: about a thousand placements.
    expect(planted).toBeGreaterThan(500);
    expect(missed).toBe(0);
  });

  it('a fork in a vitest worker finds it: no COWFORK_IMMEDIATES_UNKNOWN warning', async () => {
    const warnings: string[] = [];
    const onWarning = (w: Error): void => void warnings.push(String((w as NodeJS.ErrnoException).code));
    process.on('warning', onWarning);
    try {
      expect(await map([1, 2], (x) => x * 2, { concurrency: 2, timeout: 30_000 })).toEqual([2, 4]);
      // process.emitWarning delivers on the next tick.
      await new Promise((resolve) => setImmediate(resolve));
    } finally {
      process.removeListener('warning', onWarning);
    }
    expect(native.immediatesFound()).toBe(true);
    expect(warnings).not.toContain('COWFORK_IMMEDIATES_UNKNOWN');
  });
});
