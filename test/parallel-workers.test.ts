// ctx.worker and ctx.signal, and recycling: maxItemsPerChild and
// maxMemoryPerChild replace a pool child by a fresh fork with the same
// worker number.
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { WorkerCrashedError, map } from '../src/index';
import { childrenOf, tempDir, zombiesOf } from './helpers';

describe('ctx.worker', () => {
  for (const mode of ['pool (array)', 'pool (generator)', 'isolation'] as const) {
    it(`stays within 0..concurrency-1 and is stable for a child's lifetime: ${mode}`, async () => {
      const items = Array.from({ length: 300 }, (_, i) => i);
      const input = mode === 'pool (generator)' ? items.values() : items;
      const n = mode === 'isolation' ? 30 : 300;
      const out = await map(mode === 'isolation' ? items.slice(0, n) : input, (_x, _i, ctx) => [ctx.worker, process.pid], {
        concurrency: 3,
        isolation: mode === 'isolation',
      });
      expect(out.length).toBe(n);
      const byPid = new Map<number, Set<number>>();
      for (const [worker, pid] of out) {
        expect(worker).toBeGreaterThanOrEqual(0);
        expect(worker).toBeLessThan(3);
        byPid.set(pid, (byPid.get(pid) ?? new Set()).add(worker));
      }
      for (const workers of byPid.values()) expect(workers.size).toBe(1);
    });
  }

  it('a child that crashed is replaced by one with its worker number (settle mode)', async () => {
    const dir = tempDir();
    const note = path.join(dir, 'crashed');
    try {
      const out = await map(
        Array.from({ length: 40 }, (_, i) => i),
        (x, _i, ctx) => {
          if (x === 5) {
            fs.writeFileSync(note, JSON.stringify({ pid: process.pid, worker: ctx.worker }));
            process.kill(process.pid, 'SIGKILL');
          }
          return [ctx.worker, process.pid];
        },
        { concurrency: 2, settle: true, maxItemsPerChild: 1000 },
      );
      expect((out[5] as { reason: Error }).reason).toBeInstanceOf(WorkerCrashedError);
      const crashed = JSON.parse(fs.readFileSync(note, 'utf8')) as { pid: number; worker: number };
      const fulfilled = out.filter((s) => s.status === 'fulfilled').map((s) => (s as { value: number[] }).value);
      expect(fulfilled.length).toBe(39);
      for (const [w] of fulfilled) expect([0, 1]).toContain(w);
      // The replacement: another pid, the same worker number.
      const replacements = fulfilled.filter(([w, pid]) => w === crashed.worker && pid !== crashed.pid);
      expect(replacements.length).toBeGreaterThan(0);
      expect(new Set(fulfilled.map(([, pid]) => pid)).size).toBeLessThanOrEqual(3);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('ctx.signal', () => {
  it('aborts in a child awaiting an async item when another item fails', async () => {
    const dir = tempDir();
    try {
      const err = await map(
        [0, 1],
        async (x, _i, ctx) => {
          if (x === 1) {
            // Fail only once item 0 is waiting.
            const deadline = Date.now() + 20_000;
            while (!fs.existsSync(path.join(dir, 'waiting')) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
            throw new Error('item 1 fails');
          }
          fs.writeFileSync(path.join(dir, 'waiting'), '');
          await new Promise((resolve) => {
            ctx.signal.addEventListener('abort', () => {
              fs.writeFileSync(path.join(dir, 'aborted'), String(ctx.signal.aborted));
              resolve(undefined);
            });
          });
          return x;
        },
        { concurrency: 2 },
      ).catch((e: unknown) => e as Error);
      expect((err as Error).message).toMatch(/item 1 fails/);
      expect(fs.readFileSync(path.join(dir, 'aborted'), 'utf8')).toBe('true');
      expect(childrenOf()).toEqual([]);
      expect(zombiesOf()).toEqual([]);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('recycling', () => {
  it('maxItemsPerChild: 10 over 100 items forks 10 children, each running 10 items, with correct results', async () => {
    const items = Array.from({ length: 100 }, (_, i) => i);
    const out = await map(items, (x, _i, ctx) => ({ y: x * x, pid: process.pid, worker: ctx.worker }), { concurrency: 2, maxItemsPerChild: 10 });
    expect(out.map((o) => o.y)).toEqual(items.map((x) => x * x));
    const perPid = new Map<number, number>();
    for (const o of out) perPid.set(o.pid, (perPid.get(o.pid) ?? 0) + 1);
    expect(perPid.size).toBe(10);
    expect([...perPid.values()]).toEqual(Array(10).fill(10));
    // Replacements reuse the worker numbers: still only 0 and 1.
    expect(new Set(out.map((o) => o.worker))).toEqual(new Set([0, 1]));
  });

  it('maxMemoryPerChild replaces a child whose RSS grew past the limit, after its current item', async () => {
    const keep: Buffer[] = [];
    // A child's RSS at its start, as the limit's base.
    const [base] = await map([0], () => process.memoryUsage.rss(), { concurrency: 1, maxItemsPerChild: 1 });
    const limit = base + 20 * 1024 * 1024;
    const out = await map(
      Array.from({ length: 12 }, (_, i) => i),
      (x) => {
        const rssAtStart = process.memoryUsage.rss();
        // Each item grows the child's RSS by 8 MB: 96 MB in all, far past the limit.
        keep.push(Buffer.alloc(8 * 1024 * 1024, 1));
        return { x, pid: process.pid, held: keep.length, rssAtStart };
      },
      { concurrency: 1, maxMemoryPerChild: limit },
    );
    expect(out.map((o) => o.x)).toEqual(Array.from({ length: 12 }, (_, i) => i));
    expect(new Set(out.map((o) => o.pid)).size).toBeGreaterThan(1);
    // A child over the limit after an item runs no further item: every item
    // but a child's first started with the RSS at or under the limit (1 MB
    // of slack for what the child allocates between two items).
    for (const o of out) if (o.held > 1) expect(o.rssAtStart).toBeLessThanOrEqual(limit + 1024 * 1024);
  });

  it('rejects bad values, naming the option', async () => {
    const bad: [unknown, RegExp, ErrorConstructor][] = [
      [{ maxItemsPerChild: 0 }, /options\.maxItemsPerChild must be a positive integer/, RangeError],
      [{ maxItemsPerChild: 2.5 }, /options\.maxItemsPerChild must be a positive integer/, TypeError],
      [{ maxMemoryPerChild: '1GB' }, /options\.maxMemoryPerChild must be a positive integer/, TypeError],
      [{ maxItemsPerChild: 5, isolation: true }, /apply to pool children/, TypeError],
      [{ onResult: 'log' }, /options\.onResult must be a function/, TypeError],
    ];
    for (const [options, message, type] of bad) {
      const err = await map([1], (x) => x, options as never).catch((e: unknown) => e as Error);
      expect(err).toBeInstanceOf(type);
      expect((err as Error).message).toMatch(message);
    }
  });
});
