// Results: order, types, closures over parent state, and the API shapes.
import crypto from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { Parallel, ParallelWorker, each, map } from '../src/index';
import { tempDir } from './helpers';
import fs from 'node:fs';
import path from 'node:path';

describe('map results', () => {
  it('computes over a 50 MB closure without serializing it, in input order', async () => {
    // ~50 MB of parent state, plus members v8.serialize cannot copy: a function
    // and a class instance with a method. A copy of this object could not
    // reach a child through any serializer; fork shares it instead.
    const rows = Array.from({ length: 400 }, (_, i) => {
      const buf = Buffer.alloc(128 * 1024, i & 0xff);
      return { id: i, buf };
    });
    class Scorer {
      constructor(readonly salt: number) {}
      score(b: Buffer): number {
        return crypto.createHash('sha256').update(b).update(String(this.salt)).digest().readUInt32LE(0);
      }
    }
    const state = { rows, scorer: new Scorer(7), weight: (x: number) => x * 3 };
    expect(() => structuredClone(state)).toThrow();
    const total = rows.reduce((n, r) => n + r.buf.length, 0);
    expect(total).toBeGreaterThanOrEqual(50 * 1024 * 1024);

    const indexes = Array.from({ length: 64 }, (_, i) => (i * 37) % rows.length);
    const work = (i: number): number => state.weight(state.scorer.score(state.rows[i].buf)) + state.rows[i].id;
    const serial = indexes.map(work);
    const parallel = await map(indexes, (i) => work(i), { concurrency: 2 });
    expect(parallel).toEqual(serial);
  });

  it('returns what v8.serialize supports: Buffers, typed arrays, Maps, Sets, Dates, nested objects', async () => {
    const out = await map([0, 1, 2, 3, 4, 5], (i) => {
      switch (i) {
        case 0:
          return Buffer.from('hello');
        case 1:
          return new Float64Array([1.5, 2.5]);
        case 2:
          return new Map([['a', { deep: [1, 2] }]]);
        case 3:
          return new Set(['x']);
        case 4:
          return new Date(0);
        default:
          return { big: 10n ** 20n, nil: null, s: 'é' };
      }
    });
    expect(Buffer.from(out[0] as Uint8Array).toString()).toBe('hello');
    expect(Array.from(out[1] as Float64Array)).toEqual([1.5, 2.5]);
    expect(out[2]).toEqual(new Map([['a', { deep: [1, 2] }]]));
    expect(out[3]).toEqual(new Set(['x']));
    expect((out[4] as Date).getTime()).toBe(0);
    expect(out[5]).toEqual({ big: 10n ** 20n, nil: null, s: 'é' });
  });

  it('runs async functions to completion in the child, each on its own loop', async () => {
    const out = await map(
      [30, 10, 20],
      async (ms, i) => {
        await new Promise((r) => setTimeout(r, ms));
        const data = await fs.promises.readFile(__filename, 'utf8');
        return { i, ms, pid: process.pid, len: data.length };
      },
      { concurrency: 3 },
    );
    expect(out.map((o) => o.i)).toEqual([0, 1, 2]);
    expect(out.map((o) => o.ms)).toEqual([30, 10, 20]);
    for (const o of out) {
      expect(o.pid).not.toBe(process.pid);
      expect(o.len).toBe(fs.readFileSync(__filename, 'utf8').length);
    }
  });

  it('keeps input order across thousands of items and passes the index', async () => {
    const items = Array.from({ length: 5000 }, (_, i) => `v${i}`);
    const out = await map(items, (s, i) => `${s}:${i}`, { concurrency: 2 });
    expect(out).toEqual(items.map((s, i) => `${s}:${i}`));
  });

  it('uses at most `concurrency` long-lived children in pool mode', async () => {
    const pids = await map(Array.from({ length: 300 }, (_, i) => i), () => process.pid, { concurrency: 3 });
    const distinct = new Set(pids);
    expect(distinct.size).toBeLessThanOrEqual(3);
    expect(distinct.has(process.pid)).toBe(false);
  });

  it('forks one fresh child per item with isolation: true', async () => {
    const pids = await map(Array.from({ length: 12 }, (_, i) => i), () => process.pid, { isolation: true, concurrency: 3 });
    expect(new Set(pids).size).toBe(12);
  });

  it('accepts any synchronous iterable and an empty input', async () => {
    expect(await map(new Set([1, 2, 3]), (x) => x + 1)).toEqual([2, 3, 4]);
    expect(await map([], (x) => x)).toEqual([]);
  });

  it('runs a map inside a child (nested fork)', async () => {
    const out = await map([1, 2], async (x) => (await map([x, x + 10], (y) => y * 2, { concurrency: 2 })).join(','), { concurrency: 2 });
    expect(out).toEqual(['2,22', '4,24']);
  });
});

describe('each', () => {
  it('runs every item for its side effects and resolves once all children exited', async () => {
    const dir = tempDir();
    try {
      const r = await each(Array.from({ length: 40 }, (_, i) => i), (i) => fs.writeFileSync(path.join(dir, String(i)), String(process.pid)), {
        concurrency: 2,
      });
      expect(r).toBeUndefined();
      expect(fs.readdirSync(dir).length).toBe(40);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('with settle: true resolves to per-item outcomes', async () => {
    const out = await each([1, 2, 3], (x) => {
      if (x === 2) throw new Error('two');
    }, { settle: true });
    expect(out.map((o) => o.status)).toEqual(['fulfilled', 'rejected', 'fulfilled']);
  });
});

describe('settle and progress', () => {
  it('settle: true reports every item, failures included, without failing fast', async () => {
    const out = await map([1, 2, 3, 4], (x) => {
      if (x % 2 === 0) throw new RangeError(`bad ${x}`);
      return x * 10;
    }, { settle: true, concurrency: 2 });
    expect(out[0]).toEqual({ status: 'fulfilled', value: 10 });
    expect(out[2]).toEqual({ status: 'fulfilled', value: 30 });
    for (const i of [1, 3]) {
      const o = out[i];
      expect(o.status).toBe('rejected');
      if (o.status === 'rejected') {
        expect(o.reason.name).toBe('WorkerError');
        expect((o.reason.cause as Error).name).toBe('RangeError');
        expect((o.reason.cause as Error).message).toBe(`bad ${i + 1}`);
      }
    }
  });

  it('onProgress counts up to the total, only in the parent', async () => {
    const calls: [number, number][] = [];
    // Record callers through a file: a child's copy of `calls` is invisible here.
    const dir = tempDir();
    const log = path.join(dir, 'progress-pids');
    try {
      await map(
        Array.from({ length: 20 }, (_, i) => i),
        async (i) => {
          await new Promise((r) => setTimeout(r, 15));
          return i;
        },
        {
          concurrency: 2,
          onProgress: (done, total) => {
            calls.push([done, total]);
            fs.appendFileSync(log, `${process.pid}\n`);
          },
        },
      );
      expect(calls.length).toBeGreaterThan(1);
      expect(calls.at(-1)).toEqual([20, 20]);
      for (let k = 1; k < calls.length; k++) expect(calls[k][0]).toBeGreaterThan(calls[k - 1][0]);
      // The progress timer is a library timer: it must never fire in a child.
      expect(new Set(fs.readFileSync(log, 'utf8').trim().split('\n'))).toEqual(new Set([String(process.pid)]));
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('onProgress is called once per item in isolation mode', async () => {
    const seen: number[] = [];
    await map([1, 2, 3, 4, 5], (x) => x, { isolation: true, onProgress: (done) => seen.push(done) });
    expect(seen).toEqual([1, 2, 3, 4, 5]);
  });
});

describe('Parallel / ParallelWorker (the seed-shaped API)', () => {
  class Doubler extends ParallelWorker<string, string> {
    process(item: string): string {
      return String(Number(item) * 2);
    }
  }

  it('mapProcesses returns one entry per input, in order', async () => {
    expect(await new Parallel(new Doubler()).mapProcesses(['1', '2'])).toEqual(['2', '4']);
    expect(await new Parallel(new Doubler(), { isolation: true }).mapProcesses(['3', '4', '5'])).toEqual(['6', '8', '10']);
  });

  it('eachProcess resolves 0', async () => {
    expect(await new Parallel(new Doubler()).eachProcess(['1', '2', '3'])).toBe(0);
  });

  it('rejects a worker without process()', () => {
    expect(() => new Parallel({} as unknown as Doubler)).toThrow(/worker must be an object with a process\(item\) method/);
  });
});

describe('progress bar', () => {
  it('progress: true draws a bar on a TTY stderr (run under a real pseudo-terminal)', async () => {
    const { spawnSync } = await import('node:child_process');
    const fixture = path.join(__dirname, 'fixtures', 'parallel-progress.js');
    // script(1) gives the fixture a pty for stdout and stderr.
    const r = spawnSync('script', ['-qec', `${process.execPath} --single-threaded ${fixture}`, '/dev/null'], { encoding: 'utf8', timeout: 30_000 });
    expect(r.status).toBe(0);
    const frames = r.stdout.split('\r').map((l) => l.trim());
    expect(frames.some((l) => /^cowfork \[#{10}\] 30\/30 100%/.test(l))).toBe(true);
    expect(frames.some((l) => /^cowfork \[[#.]{10}\] \d+\/30/.test(l))).toBe(true);
    expect(r.stdout).toContain('done 30');
  });

  it('progress: true draws nothing when stderr is not a TTY', async () => {
    const { spawnSync } = await import('node:child_process');
    const fixture = path.join(__dirname, 'fixtures', 'parallel-progress.js');
    const r = spawnSync(process.execPath, ['--single-threaded', fixture], { encoding: 'utf8', timeout: 30_000 });
    expect(r.status).toBe(0);
    expect(r.stdout).toBe('done 30\n');
    expect(r.stderr).toBe('');
  });
});
