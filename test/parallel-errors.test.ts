// Each error class comes from a real cause, and failures stop the call cleanly.
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { AbortError, TimeoutError, WorkerCrashedError, WorkerError, each, map } from '../src/index';
import { childrenOf, isAlive, scratchDirsOf, tempDir, waitFor, zombiesOf } from './helpers';

async function rejection(p: Promise<unknown>): Promise<Error> {
  try {
    await p;
  } catch (err) {
    return err as Error;
  }
  throw new Error('expected a rejection');
}

function expectNoLeftovers(): void {
  expect(zombiesOf()).toEqual([]);
  expect(childrenOf().filter((c) => c.state !== 'Z')).toEqual([]);
  expect(scratchDirsOf()).toEqual([]);
}

describe('error classes from real causes', () => {
  it('WorkerError: the child threw; carries the child error (stack, code) as cause, and the index', async () => {
    for (const isolation of [false, true]) {
      const err = await rejection(
        map([1, 2, 3], function failing(x) {
          if (x === 2) throw Object.assign(new Error('boom'), { code: 'E_BOOM', detail: { x } });
          return x;
        }, { isolation, concurrency: 1 }),
      );
      expect(err).toBeInstanceOf(WorkerError);
      const we = err as WorkerError;
      expect(we.code).toBe('ERR_WORKER');
      expect(we.index).toBe(1);
      expect(we.pid).not.toBe(process.pid);
      const cause = we.cause as Error & { code: string; detail: unknown };
      expect(cause.message).toBe('boom');
      expect(cause.code).toBe('E_BOOM');
      expect(cause.detail).toEqual({ x: 2 });
      expect(cause.stack).toContain('failing');
    }
    expectNoLeftovers();
  });

  it('WorkerError from an async rejection and from an uncaught error inside async item code', async () => {
    const rejected = await rejection(map([1], async () => Promise.reject(new TypeError('nope'))));
    expect(rejected).toBeInstanceOf(WorkerError);
    expect((rejected.cause as Error).name).toBe('TypeError');

    const uncaught = await rejection(
      map([1], () => new Promise(() => setTimeout(() => {
        throw new Error('thrown from a timer');
      }, 5))),
    );
    expect(uncaught).toBeInstanceOf(WorkerError);
    expect((uncaught as WorkerError).index).toBe(0);
    expect((uncaught.cause as Error).message).toBe('thrown from a timer');
    expectNoLeftovers();
  });

  it('WorkerCrashedError: a child killed with SIGKILL from outside', async () => {
    const dir = tempDir();
    try {
      const call = map(
        [0, 1, 2, 3],
        (i) => {
          if (i === 2) {
            fs.writeFileSync(path.join(dir, 'victim'), String(process.pid));
            for (;;) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 1000);
          }
          return i;
        },
        { concurrency: 2 },
      );
      await waitFor(() => fs.existsSync(path.join(dir, 'victim')) && fs.readFileSync(path.join(dir, 'victim'), 'utf8') !== '');
      const victim = Number(fs.readFileSync(path.join(dir, 'victim'), 'utf8'));
      process.kill(victim, 'SIGKILL');
      const err = (await rejection(call)) as WorkerCrashedError;
      expect(err).toBeInstanceOf(WorkerCrashedError);
      expect(err.code).toBe('ERR_WORKER_CRASHED');
      expect(err.signal).toBe('SIGKILL');
      expect(err.exitCode).toBeNull();
      expect(err.index).toBe(2);
      expect(err.pid).toBe(victim);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
    expectNoLeftovers();
  });

  it('WorkerCrashedError: process.exit() inside an item, with the exit code', async () => {
    const err = (await rejection(map([1, 2], (x) => (x === 2 ? process.exit(3) : x), { concurrency: 1 }))) as WorkerCrashedError;
    expect(err).toBeInstanceOf(WorkerCrashedError);
    expect(err.exitCode).toBe(3);
    expect(err.index).toBe(1);
  });

  it('TimeoutError: a busy loop past `timeout` is killed and the index named', async () => {
    // 1 s: item 0 (a fresh child's first item) stays well inside it on a loaded machine.
    for (const isolation of [false, true]) {
      const started = Date.now();
      const err = (await rejection(
        map([0, 1, 2], (i) => {
          if (i === 1) for (;;);
          return i;
        }, { timeout: 1000, isolation, concurrency: 2 }),
      )) as TimeoutError;
      expect(err).toBeInstanceOf(TimeoutError);
      expect(err.code).toBe('ERR_TIMEOUT');
      expect(err.index).toBe(1);
      expect(err.timeout).toBe(1000);
      expect(err.message).toMatch(/item 1 exceeded the 1000 ms timeout/);
      expect(Date.now() - started).toBeGreaterThanOrEqual(1000);
    }
    expectNoLeftovers();
  });

  it('TimeoutError under settle fails only the slow item; the rest complete', async () => {
    const out = await map([0, 1, 2, 3, 4, 5], (i) => {
      if (i === 3) for (;;);
      return i * 2;
    }, { timeout: 150, settle: true, concurrency: 2 });
    expect(out.map((o) => o.status)).toEqual(['fulfilled', 'fulfilled', 'fulfilled', 'rejected', 'fulfilled', 'fulfilled']);
    expect(out.filter((o) => o.status === 'fulfilled').map((o) => (o as { value: number }).value)).toEqual([0, 2, 4, 8, 10]);
    const bad = out[3];
    expect(bad.status === 'rejected' && bad.reason).toBeInstanceOf(TimeoutError);
    expectNoLeftovers();
  });

  it('a crashed child in settle mode: its unfinished items are re-run by a new child', async () => {
    const dir = tempDir();
    try {
      const out = await map(
        Array.from({ length: 40 }, (_, i) => i),
        (i) => {
          if (i === 5 && !fs.existsSync(path.join(dir, 'crashed'))) {
            fs.writeFileSync(path.join(dir, 'crashed'), '1');
            process.kill(process.pid, 'SIGKILL');
          }
          return i;
        },
        { settle: true, concurrency: 2 },
      );
      const failed = out.flatMap((o, i) => (o.status === 'rejected' ? [i] : []));
      expect(failed).toEqual([5]);
      const r = out[5];
      expect(r.status === 'rejected' && r.reason).toBeInstanceOf(WorkerCrashedError);
      for (let i = 0; i < 40; i++) if (i !== 5) expect(out[i]).toEqual({ status: 'fulfilled', value: i });
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
    expectNoLeftovers();
  });

  it('AbortError: aborting kills the children and rejects with the reason as cause', async () => {
    for (const isolation of [false, true]) {
      const ac = new AbortController();
      const call = map([1, 2, 3, 4], () => new Promise(() => setInterval(() => {}, 1000)), { signal: ac.signal, isolation, concurrency: 2 });
      await waitFor(() => childrenOf().length >= 2);
      const pids = childrenOf().map((c) => c.pid);
      ac.abort(new Error('user cancelled'));
      const err = await rejection(call);
      expect(err).toBeInstanceOf(AbortError);
      expect((err as AbortError).code).toBe('ERR_ABORTED');
      expect((err.cause as Error).message).toBe('user cancelled');
      for (const pid of pids) expect(isAlive(pid)).toBe(false);
    }
    expectNoLeftovers();
  });

  it('an already-aborted signal rejects without forking', async () => {
    const err = await rejection(map([1], (x) => x, { signal: AbortSignal.abort() }));
    expect(err).toBeInstanceOf(AbortError);
  });

  it('a result that cannot be serialized fails that item with a clear message', async () => {
    const err = (await rejection(map([1, 2], (x) => (x === 2 ? { fn: () => 1 } : x), { concurrency: 1 }))) as WorkerError;
    expect(err).toBeInstanceOf(WorkerError);
    expect(err.index).toBe(1);
    expect(err.message).toMatch(/result of item 1 cannot be serialized/);
    const settled = await map([1, 2], (x) => (x === 2 ? Symbol('s') : x), { settle: true });
    expect(settled[0]).toEqual({ status: 'fulfilled', value: 1 });
    expect(settled[1].status).toBe('rejected');
  });
});

describe('fail-fast', () => {
  it('the first failure stops new work, kills running children and rejects', async () => {
    const dir = tempDir();
    try {
      const started = Date.now();
      const err = await rejection(
        each(Array.from({ length: 50 }, (_, i) => i), async (i) => {
          fs.writeFileSync(path.join(dir, String(i)), '');
          if (i === 0) throw new Error('first');
          await new Promise((r) => setTimeout(r, 30_000));
        }, { concurrency: 2 }),
      );
      expect(err).toBeInstanceOf(WorkerError);
      expect((err as WorkerError).index).toBe(0);
      // The sleeping child was killed rather than waited for, and the other 48 never started.
      expect(Date.now() - started).toBeLessThan(30_000);
      expect(fs.readdirSync(dir).length).toBeLessThanOrEqual(3);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
    expectNoLeftovers();
  });
});

describe('bad input', () => {
  const bad: [unknown, RegExp, ErrorConstructor][] = [
    [{ concurrency: -1 }, /options\.concurrency must be a non-negative integer/, RangeError],
    [{ concurrency: 1.5 }, /options\.concurrency must be a non-negative integer/, TypeError],
    [{ concurrency: '2' }, /options\.concurrency must be a non-negative integer/, TypeError],
    [{ timeout: -1 }, /options\.timeout must be a positive finite number/, RangeError],
    [{ timeout: 'soon' }, /options\.timeout must be a positive number/, TypeError],
    [{ isolation: 'yes' }, /options\.isolation must be a boolean/, TypeError],
    [{ settle: 1 }, /options\.settle must be a boolean/, TypeError],
    [{ signal: {} }, /options\.signal must be an AbortSignal/, TypeError],
    [{ onProgress: 5 }, /options\.onProgress must be a function/, TypeError],
    [{ progress: 'on' }, /options\.progress must be a boolean/, TypeError],
    [{ concurency: 2 }, /options\.concurency is not a known option/, TypeError],
    ['fast', /options must be an object/, TypeError],
  ];
  for (const [options, message, type] of bad) {
    it(`rejects ${JSON.stringify(options)}`, async () => {
      const err = await rejection(map([1], (x) => x, options as never));
      expect(err).toBeInstanceOf(type);
      expect(err.message).toMatch(message);
    });
  }

  it('rejects bad items and a missing function, naming the argument', async () => {
    expect((await rejection(map(42 as never, (x) => x))).message).toMatch(/map: items must be an array, an iterable or an async iterable/);
    expect((await rejection(map([1], 'fn' as never))).message).toMatch(/map: fn must be a function/);
    expect((await rejection(each(null as never, (x) => x))).message).toMatch(/each: items must be an array/);
  });

  it('an onProgress callback that throws fails the call and leaves nothing behind', async () => {
    const err = await rejection(
      map([1, 2, 3], (x) => x, { isolation: true, onProgress: () => {
        throw new Error('progress broke');
      } }),
    );
    expect(err.message).toBe('progress broke');
    expectNoLeftovers();
  });
});
