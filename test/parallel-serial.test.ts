// concurrency: 0 runs fn in the calling process, serially, with the forked
// modes' results, error classes and options.
import { describe, expect, it } from 'vitest';
import { AbortError, TimeoutError, WorkerError, each, map, stream } from '../src/index';
import { childrenOf } from './helpers';

const modes = [
  { name: 'concurrency: 0', opts: { concurrency: 0 } },
  { name: 'pool', opts: { concurrency: 2 } },
  { name: 'isolation', opts: { concurrency: 2, isolation: true } },
] as const;

describe('concurrency: 0', () => {
  it('runs in this process, one item at a time, with ctx.worker 0', async () => {
    let running = 0;
    let most = 0;
    const out = await map(
      [1, 2, 3, 4],
      async (x, i, ctx) => {
        most = Math.max(most, ++running);
        await new Promise((r) => setTimeout(r, 2));
        running--;
        return { x, i, pid: process.pid, worker: ctx.worker };
      },
      { concurrency: 0 },
    );
    expect(out).toEqual([1, 2, 3, 4].map((x, i) => ({ x, i, pid: process.pid, worker: 0 })));
    expect(most).toBe(1);
    expect(childrenOf()).toEqual([]);
  });

  it('gives the forked modes\' results for an array, a generator, each, stream and onResult', async () => {
    const f = (x: number, i: number): string => `${x * 7}/${i}`;
    function* gen(): Generator<number> {
      for (let i = 0; i < 6; i++) yield i * 3;
    }
    const expected = Array.from(gen(), f);
    for (const { opts } of modes) {
      expect(await map(Array.from(gen()), f, opts)).toEqual(expected);
      expect(await map(gen(), f, opts)).toEqual(expected);
      const order: number[] = [];
      await map(gen(), f, { ...opts, onResult: (_v, index) => order.push(index) });
      expect(order).toEqual(expected.map((_, i) => i));
      const streamed: string[] = [];
      for await (const v of stream(gen(), f, opts)) streamed.push(v);
      expect(streamed).toEqual(expected);
      expect(await each(gen(), () => undefined, opts)).toBeUndefined();
    }
  });

  for (const { name, opts } of modes) {
    it(`a throw is a WorkerError carrying the item's error: ${name}`, async () => {
      const err = await map([0, 1, 2], (x) => {
        if (x === 1) throw new RangeError('one is bad');
        return x;
      }, opts).catch((e: unknown) => e as Error);
      expect(err).toBeInstanceOf(WorkerError);
      expect((err as WorkerError).index).toBe(1);
      expect(((err as WorkerError).cause as Error).name).toBe('RangeError');
      expect(((err as WorkerError).cause as Error).message).toBe('one is bad');
      const settled = await map([0, 1], (x) => {
        if (x === 1) throw new RangeError('one is bad');
        return x;
      }, { ...opts, settle: true });
      expect(settled[0]).toEqual({ status: 'fulfilled', value: 0 });
      expect((settled[1] as { reason: Error }).reason).toBeInstanceOf(WorkerError);
    });

    it(`an async item past its timeout is a TimeoutError: ${name}`, async () => {
      // A generous timeout: a loaded machine must not time item 0 out too.
      const err = await map([0, 1], async (x) => {
        if (x === 1) await new Promise((r) => setTimeout(r, 30_000).unref());
        return x;
      }, { ...opts, timeout: 1_500 }).catch((e: unknown) => e as Error);
      expect(err).toBeInstanceOf(TimeoutError);
      expect((err as TimeoutError).index).toBe(1);
    });

    it(`an abort is an AbortError carrying the reason: ${name}`, async () => {
      const ac = new AbortController();
      setTimeout(() => ac.abort(new Error('stop now')), 100);
      const err = await map([0, 1, 2], async () => new Promise((r) => setTimeout(r, 5_000)), { ...opts, signal: ac.signal }).catch(
        (e: unknown) => e as Error,
      );
      expect(err).toBeInstanceOf(AbortError);
      expect(((err as AbortError).cause as Error).message).toBe('stop now');
      expect(childrenOf()).toEqual([]);
    });
  }

  it('a synchronous item past its timeout fails with TimeoutError once it returns (it cannot be interrupted)', async () => {
    const err = await map([0], () => {
      const end = Date.now() + 120;
      while (Date.now() < end);
      return 0;
    }, { concurrency: 0, timeout: 50 }).catch((e: unknown) => e as Error);
    expect(err).toBeInstanceOf(TimeoutError);
  });

  it('ctx.signal aborts when the call is aborted', async () => {
    const ac = new AbortController();
    let seen = false;
    setTimeout(() => ac.abort(), 50);
    await map([0], async (_x, _i, ctx) => {
      await new Promise((r) => ctx.signal.addEventListener('abort', r));
      seen = ctx.signal.aborted;
    }, { concurrency: 0, signal: ac.signal }).catch(() => undefined);
    await new Promise((r) => setTimeout(r, 10));
    expect(seen).toBe(true);
  });
});
