// Lazy input: map / each over generators and async iterables, pulled only as
// children free up, within the read-ahead bound; an input that throws fails
// the call and leaves nothing behind.
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { InputError, TimeoutError, each, map } from '../src/index';
import { childrenOf, fdCount, scratchDirsOf, tempDir, zombiesOf } from './helpers';

function* numbers(n: number, seen?: { pulled: number }): Generator<number> {
  for (let i = 0; i < n; i++) {
    if (seen) seen.pulled = i + 1;
    yield i;
  }
}

async function* slowly(n: number): AsyncGenerator<{ id: number }> {
  for (let i = 0; i < n; i++) {
    if (i % 7 === 0) await new Promise((r) => setTimeout(r, 1));
    yield { id: i };
  }
}

function expectNothingLeft(fds: number): void {
  expect(zombiesOf()).toEqual([]);
  expect(childrenOf()).toEqual([]);
  expect(scratchDirsOf()).toEqual([]);
  expect(fdCount()).toBe(fds);
}

describe('lazy input', () => {
  it('map over a generator of 100,000 items returns what a serial map returns', async () => {
    const f = (x: number, i: number): string => `${x * 3}:${i}`;
    const serial = Array.from(numbers(100_000), (x, i) => f(x, i));
    const out = await map(numbers(100_000), f, { concurrency: 2 });
    expect(out).toEqual(serial);
  });

  it('pulls the generator lazily: items pulled but not yet released never exceed concurrency × readAhead', async () => {
    const seen = { pulled: 0 };
    const readAhead = 16;
    let maxAhead = 0;
    let released = 0;
    const out = await map(numbers(3000, seen), (x) => x + 1, {
      concurrency: 2,
      readAhead,
      onResult: (_v, index) => {
        expect(index).toBe(released);
        released++;
        maxAhead = Math.max(maxAhead, seen.pulled - released);
      },
    });
    expect(out.length).toBe(3000);
    expect(released).toBe(3000);
    expect(maxAhead).toBeGreaterThan(0);
    expect(maxAhead).toBeLessThanOrEqual(2 * readAhead);
  });

  it('map and each over an async iterable; items pulled after the fork travel to the children', async () => {
    const out = await map(slowly(500), (o, i) => ({ id: o.id, i, pid: process.pid }), { concurrency: 2 });
    expect(out.map((o) => o.id)).toEqual(Array.from({ length: 500 }, (_, i) => i));
    expect(out.map((o) => o.i)).toEqual(Array.from({ length: 500 }, (_, i) => i));
    expect(out.every((o) => o.pid !== process.pid)).toBe(true);
    const dir = tempDir();
    try {
      await each(slowly(60), (o) => fs.writeFileSync(path.join(dir, String(o.id)), 'x'), { concurrency: 2 });
      expect(fs.readdirSync(dir).length).toBe(60);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('an item that cannot be sent to a child fails on its own, with a clear message', async () => {
    // The function is pulled long after the child's fork, so it cannot reach
    // the child copy-on-write; the items around it still run.
    async function* withFunction(): AsyncGenerator<unknown> {
      yield 1;
      await new Promise((r) => setTimeout(r, 300));
      yield () => 2;
      yield 3;
    }
    const out = await map(withFunction(), (x) => typeof x, { concurrency: 1, settle: true });
    expect(out[0]).toEqual({ status: 'fulfilled', value: 'number' });
    expect(out[1].status).toBe('rejected');
    expect((out[1] as { reason: Error }).reason).toBeInstanceOf(TypeError);
    expect((out[1] as { reason: Error }).reason.message).toMatch(/item 1 cannot be sent to a child/);
    expect(out[2]).toEqual({ status: 'fulfilled', value: 'number' });
  });

  for (const kind of ['sync', 'async'] as const) {
    it(`an input (${kind}) that throws at item 50 rejects with InputError and leaves nothing behind`, async () => {
      await map([1], (x) => x);
      const fds = fdCount();
      let closed = false;
      function* bad(): Generator<number> {
        try {
          for (let i = 0; ; i++) {
            if (i === 50) throw new RangeError('the source broke');
            yield i;
          }
        } finally {
          closed = true;
        }
      }
      async function* badAsync(): AsyncGenerator<number> {
        for (let i = 0; ; i++) {
          if (i === 50) throw new RangeError('the source broke');
          await null;
          yield i;
        }
      }
      const err = await map(kind === 'sync' ? bad() : badAsync(), (x) => x, { concurrency: 2 }).catch((e: unknown) => e as Error);
      expect(err).toBeInstanceOf(InputError);
      expect((err as InputError).index).toBe(50);
      expect((err as InputError).code).toBe('ERR_INPUT');
      expect(((err as InputError).cause as Error).message).toBe('the source broke');
      expect((err as Error).message).toMatch(/the input failed while producing item 50: the source broke/);
      if (kind === 'sync') expect(closed).toBe(true);
      expectNothingLeft(fds);
    });
  }

  it('a timeout, a crash and onProgress work over a lazy input too', async () => {
    const err = await map(numbers(20), (x) => {
      if (x === 3) for (;;);
      return x;
    }, { concurrency: 2, timeout: 1_000 }).catch((e: unknown) => e as Error);
    expect(err).toBeInstanceOf(TimeoutError);
    expect((err as TimeoutError).index).toBe(3);
    const done: number[] = [];
    const out = await map(numbers(30), (x) => {
      if (x === 7) process.kill(process.pid, 'SIGKILL');
      return x;
    }, { concurrency: 2, settle: true, onProgress: (d) => done.push(d) });
    expect(out.filter((s) => s.status === 'fulfilled').length).toBe(29);
    expect(out[7].status).toBe('rejected');
    expect(done[done.length - 1]).toBe(30);
    for (let k = 1; k < done.length; k++) expect(done[k]).toBeGreaterThan(done[k - 1]);
  });

  it('isolation mode pulls each item just before its fork', async () => {
    const seen = { pulled: 0 };
    const out = await map(numbers(20, seen), (x, i) => x * 10 + i, { isolation: true, concurrency: 2 });
    expect(out).toEqual(Array.from({ length: 20 }, (_, i) => i * 11));
    expect(seen.pulled).toBe(20);
  });
});
