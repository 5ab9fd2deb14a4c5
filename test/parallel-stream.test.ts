// stream(): results as they come, in order or not; breaking out or aborting
// stops and reaps every child and leaves nothing behind.
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { AbortError, WorkerError, stream } from '../src/index';
import { childrenOf, fdCount, scratchDirsOf, tempDir, zombiesOf } from './helpers';

function* numbers(n: number, seen?: { pulled: number }): Generator<number> {
  for (let i = 0; i < n; i++) {
    if (seen) seen.pulled = i + 1;
    yield i;
  }
}

function expectNothingLeft(fds: number): void {
  expect(zombiesOf()).toEqual([]);
  expect(childrenOf()).toEqual([]);
  expect(scratchDirsOf()).toEqual([]);
  expect(fdCount()).toBe(fds);
}

async function warm(): Promise<void> {
  for await (const _ of stream([1], (x) => x)) void _;
}

describe('stream', () => {
  it('yields results in input order, the first before the last item is pulled', async () => {
    const seen = { pulled: 0 };
    const n = 20_000;
    const out: number[] = [];
    let pulledAtFirst = -1;
    for await (const v of stream(numbers(n, seen), (x) => x * 2, { concurrency: 2 })) {
      if (out.length === 0) pulledAtFirst = seen.pulled;
      out.push(v);
    }
    expect(pulledAtFirst).toBeGreaterThan(0);
    expect(pulledAtFirst).toBeLessThan(n);
    expect(out).toEqual(Array.from({ length: n }, (_, i) => i * 2));
  });

  it('holds no more than concurrency × readAhead items when the consumer is slow', async () => {
    const seen = { pulled: 0 };
    let taken = 0;
    let maxAhead = 0;
    for await (const v of stream(numbers(2000, seen), (x) => x, { concurrency: 2, readAhead: 8 })) {
      expect(v).toBe(taken);
      taken++;
      maxAhead = Math.max(maxAhead, seen.pulled - taken);
      if (taken % 100 === 0) await new Promise((r) => setTimeout(r, 5));
    }
    expect(taken).toBe(2000);
    expect(maxAhead).toBeLessThanOrEqual(2 * 8);
  });

  it('ordered: false yields as items finish', async () => {
    // Item 0 finishes only once the consumer has received another result (a
    // marker file, bounded wait): in input order that could never happen.
    const dir = tempDir();
    const marker = path.join(dir, 'received');
    const out: number[] = [];
    try {
      for await (const v of stream([0, 1, 2, 3], async (x) => {
        if (x !== 0) return x;
        const deadline = Date.now() + 20_000;
        while (!fs.existsSync(marker) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
        return x;
      }, { concurrency: 4, ordered: false })) {
        out.push(v);
        fs.writeFileSync(marker, String(v));
      }
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
    expect([...out].sort()).toEqual([0, 1, 2, 3]);
    expect(out[0]).not.toBe(0);
  });

  it('break after 10 results leaves no children, no zombies, no scratch dir, no extra fds', async () => {
    await warm();
    const fds = fdCount();
    const seen = { pulled: 0 };
    const got: number[] = [];
    for await (const v of stream(numbers(1_000_000, seen), (x) => x + 1, { concurrency: 2 })) {
      got.push(v);
      if (got.length === 10) break;
    }
    expect(got).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    expect(seen.pulled).toBeLessThan(1_000_000);
    expectNothingLeft(fds);
  });

  it('break in isolation mode and with async items waiting on ctx.signal leaves nothing behind either', async () => {
    await warm();
    const fds = fdCount();
    let n = 0;
    for await (const _ of stream(numbers(100), (x) => x, { isolation: true, concurrency: 2 })) {
      if (++n === 3) break;
    }
    for await (const _ of stream(numbers(100), async (x, _i, ctx) => {
      if (x < 2) return x;
      await new Promise((r) => ctx.signal.addEventListener('abort', r));
      return x;
    }, { concurrency: 2 })) {
      if (++n === 5) break;
    }
    expect(n).toBe(5);
    expectNothingLeft(fds);
  });

  it('an abort rejects the pending next() with AbortError and leaves nothing behind', async () => {
    await warm();
    const fds = fdCount();
    const ac = new AbortController();
    let n = 0;
    const err = await (async () => {
      for await (const _ of stream(numbers(1_000_000), (x) => x, { concurrency: 2, signal: ac.signal })) {
        if (++n === 100) ac.abort(new Error('enough'));
      }
    })().catch((e: unknown) => e as Error);
    expect(err).toBeInstanceOf(AbortError);
    expect(((err as AbortError).cause as Error).message).toBe('enough');
    expectNothingLeft(fds);
  });

  it('a throwing item rejects with its WorkerError after the results before it', async () => {
    const out: number[] = [];
    const err = await (async () => {
      for await (const v of stream(numbers(100), (x) => {
        if (x === 42) throw new TypeError('bad 42');
        return x;
      }, { concurrency: 2 })) {
        out.push(v);
      }
    })().catch((e: unknown) => e as Error);
    expect(err).toBeInstanceOf(WorkerError);
    expect((err as WorkerError).index).toBe(42);
    expect(out).toEqual(Array.from({ length: out.length }, (_, i) => i));
    expect(out.length).toBeLessThanOrEqual(42);
  });

  it('settle: true yields Settled records; bad options throw at once, naming the option', () => {
    expect(() => stream([1], (x) => x, { ordered: 'yes' } as never)).toThrow(/options\.ordered must be a boolean/);
    expect(() => stream([1], (x) => x, { readAhead: 0 })).toThrow(/options\.readAhead must be a positive integer/);
    expect(() => stream(5 as never, (x) => x)).toThrow(/stream: items must be an array, an iterable or an async iterable/);
  });

  it('settle: true yields a Settled record per item', async () => {
    const out: unknown[] = [];
    for await (const s of stream(numbers(5), (x) => {
      if (x === 2) throw new Error('two');
      return x;
    }, { concurrency: 2, settle: true })) {
      out.push(s.status === 'fulfilled' ? s.value : (s.reason as WorkerError).index);
    }
    expect(out).toEqual([0, 1, 2, 3, 4]);
  });
});
