// Worker recycling: a worker past maxRequests (with its jitter) or maxMemory
// is replaced gracefully, one at a time, under real load, with 0 failed
// requests. Also the options' validation and the CLI's --max-requests and
// --max-memory.
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { prefork } from '../src/index';
import { ROOT, runNode } from './helpers';
import { type Ev, type Proc, readyMaster, sleep, startProcess, stopAll } from './prefork-helpers';
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { load } = require('./fixtures/prefork-load.js');

const CLI = path.join(ROOT, 'bin', 'cowfork.js');
const started: Proc[] = [];
const master = (options: object): Promise<Proc> => readyMaster(started, options);

afterEach(() => stopAll(started));

describe('worker recycling', () => {
  it('maxRequests: 200 under load: workers are replaced one at a time, and 0 requests fail', async () => {
    const m = await master({ workers: 2, timeout: 10_000, maxRequests: 200, maxRequestsJitter: 40 });
    const gen = load({ port: m.port, connections: 6, durationMs: 60_000 });
    // Six recycles: at least three per num on average.
    for (let k = 0; k < 6; k++) await m.waitEvent((e: Ev) => e.event === 'exit' && m.events.filter((x: Ev) => x.event === 'exit').length > k, 30_000);
    const stats = await gen.stop();

    expect(stats.failures).toEqual([]);
    expect(stats.refused).toBe(0);
    expect(stats.non2xx).toBe(0);
    const recycles = m.events.filter((e: Ev) => e.event === 'recycle');
    const exits = m.events.filter((e: Ev) => e.event === 'exit');
    expect(recycles.length).toBeGreaterThanOrEqual(6);
    for (const e of exits) expect([e.reason, e.exitCode]).toEqual(['recycle', 0]);
    for (const r of recycles) {
      expect(r.cause).toBe('maxRequests');
      expect(r.requestLimit).toBeGreaterThanOrEqual(200);
      expect(r.requestLimit).toBeLessThanOrEqual(240);
    }
    // Every recycled worker that has exited served at least its own limit.
    for (const e of exits) {
      const r = recycles.find((x: Ev) => x.pid === e.pid)!;
      expect(stats.byPid.get(e.pid)).toBeGreaterThanOrEqual(r.requestLimit!);
    }
    // One at a time: the next recycle starts only after the previous worker exited.
    for (let i = 1; i < recycles.length; i++) {
      const prevExit = exits.find((e: Ev) => e.pid === recycles[i - 1].pid);
      expect(prevExit).toBeDefined();
      expect(recycles[i].t).toBeGreaterThan(prevExit!.t);
    }
    // The limits are drawn per worker: they are not all the same.
    expect(new Set(recycles.map((r: Ev) => r.requestLimit)).size).toBeGreaterThan(1);
  });

  it('maxMemory: a worker that leaks past the limit is replaced, and 0 requests fail', async () => {
    const m = await master({ workers: 1, timeout: 10_000, maxMemory: 96 * 1024 * 1024 });
    const gen = load({ port: m.port, connections: 2, durationMs: 60_000 });
    await sleep(1500);
    // Below the limit, nothing is recycled.
    expect(m.events.filter((e: Ev) => e.event === 'recycle')).toEqual([]);
    const leaker = m.liveWorkers()[0];
    const r = await fetch(`http://127.0.0.1:${m.port}/grow?mb=128`);
    expect(r.status).toBe(200);
    const recycle = await m.waitEvent((e: Ev) => e.event === 'recycle', 10_000);
    expect([recycle.pid, recycle.cause, recycle.requestLimit]).toEqual([leaker.pid, 'maxMemory', null]);
    const exit = await m.waitEvent((e: Ev) => e.event === 'exit' && e.pid === leaker.pid, 15_000);
    expect([exit.reason, exit.exitCode]).toEqual(['recycle', 0]);
    const ready = await m.waitEvent((e: Ev) => e.event === 'ready' && e.num === 0 && e.pid !== leaker.pid, 10_000);
    await sleep(1500);
    const stats = await gen.stop();
    expect(stats.failures).toEqual([]);
    expect(stats.non2xx).toBe(0);
    expect(stats.byPid.get(ready.pid)).toBeGreaterThan(0);
    // The replacement starts small again.
    expect(m.events.filter((e: Ev) => e.event === 'recycle')).toHaveLength(1);
  });

  it('rejects bad recycling options with the option path', () => {
    const worker = (): void => {};
    expect(() => prefork({ worker, maxRequests: 0 })).toThrow(RangeError);
    expect(() => prefork({ worker, maxRequests: 0 })).toThrow(/options\.maxRequests must be a positive integer, got 0/);
    expect(() => prefork({ worker, maxRequests: '200' as never })).toThrow(TypeError);
    expect(() => prefork({ worker, maxRequests: 10, maxRequestsJitter: -1 })).toThrow(/options\.maxRequestsJitter must be a non-negative integer/);
    expect(() => prefork({ worker, maxRequestsJitter: 5 })).toThrow(/options\.maxRequestsJitter needs options\.maxRequests/);
    expect(() => prefork({ worker: 'app.js', threads: 2, maxRequests: 10 })).toThrow(/options\.maxRequests cannot count the requests of hybrid threads/);
    expect(() => prefork({ worker, maxMemory: -1 })).toThrow(/options\.maxMemory must be a positive finite number/);
    expect(() => prefork({ worker, maxMemory: 'lots' as never })).toThrow(TypeError);
  });
});

describe('cowfork serve --max-requests / --max-memory', () => {
  it.each([
    [['--max-requests', 'many'], /--max-requests must be a positive integer, got 'many'/],
    [['--max-requests', '0'], /--max-requests must be a positive integer, got '0'/],
    [['--max-memory', '12X'], /--max-memory must be a size in bytes, such as 536870912, 512M or 2G, got '12X'/],
    [['--max-memory=0'], /--max-memory must be a size in bytes/],
  ])('cowfork serve app.js %j fails clearly', async (args, message) => {
    const r = await runNode([CLI, 'serve', 'app.js', ...args]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(message);
  });

  it('recycles workers under load and logs it', async () => {
    const proc = startProcess([CLI, 'serve', 'test/fixtures/prefork-app.js', '--workers', '2', '--host', '127.0.0.1', '--port', '0', '--max-requests', '100', '--max-memory', '1G']);
    started.push(proc);
    const stderr = await proc.waitStderr((s: string) => /ready on http:\/\/127\.0\.0\.1:\d+/.test(s), 20_000);
    const port = Number(/ready on http:\/\/127\.0\.0\.1:(\d+)/.exec(stderr)![1]);
    const gen = load({ port, connections: 4, durationMs: 60_000 });
    await proc.waitStderr((s: string) => (s.match(/exited with code 0 \(recycle\)/g) ?? []).length >= 2, 20_000);
    const stats = await gen.stop();
    expect(stats.failures).toEqual([]);
    expect(proc.stderr).toMatch(/worker \d \(pid \d+\) reached maxRequests; replacing it/);
  });
});
