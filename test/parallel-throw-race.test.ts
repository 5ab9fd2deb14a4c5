// A throw in one item must surface as that item's WorkerError, whichever
// child's exit the parent handles first (the failing child's, or that of a
// child that saw the pool stop and left cleanly).
import { describe, expect, it } from 'vitest';
import { WorkerError, map } from '../src/index';

describe('a throwing item under concurrency', () => {
  it('rejects with the WorkerError of that item in 30 of 30 runs, never a WorkerCrashedError', async () => {
    const seen: Record<string, number> = {};
    const items = Array.from({ length: 40 }, (_, k) => k);
    for (let run = 0; run < 30; run++) {
      const err = await map(
        items,
        (x) => {
          if (x === 7) throw new RangeError('boom at 7');
          return x;
        },
        { concurrency: 2, timeout: 10_000 },
      ).catch((e: unknown) => e as Error);
      seen[(err as Error).name] = (seen[(err as Error).name] ?? 0) + 1;
      expect(err).toBeInstanceOf(WorkerError);
      expect((err as WorkerError).index).toBe(7);
      expect(((err as WorkerError).cause as Error).name).toBe('RangeError');
    }
    expect(seen).toEqual({ WorkerError: 30 });
  }, 180_000);
});
