// /metrics merged across workers with prom-client, keyed by the durable num:
// counts survive a kill -9 (up to the last snapshot), a rolling restart and
// recycling, nothing is counted twice, and the number of series stays the
// same. Real requests, real signals, real kill -9.
import fs from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { prefork } from '../src/index';
import { ROOT, waitFor } from './helpers';
import { type Ev, type Proc, httpGet as get, readyMaster, sleep, startProcess, stopAll } from './prefork-helpers';

const CLI = path.join(ROOT, 'bin', 'cowfork.js');
const started: Proc[] = [];

afterEach(async () => {
  const masters = started.map((m) => m.pid);
  await stopAll(started);
  // A stopped master removes its snapshot directory (cowfork-metrics-<master pid>-*).
  const left = fs.readdirSync('/dev/shm').filter((n) => masters.some((pid) => n.startsWith(`cowfork-metrics-${pid}-`)));
  expect(left).toEqual([]);
});

/** Sends `n` requests, `concurrency` at a time, each on a new connection; all must succeed. */
async function send(port: number, n: number, concurrency = 8): Promise<void> {
  let next = 0;
  const one = async (): Promise<void> => {
    while (next < n) {
      next++;
      const r = await get(port, '/');
      expect(r.status).toBe(200);
    }
  };
  await Promise.all(Array.from({ length: concurrency }, one));
}

interface Scrape {
  text: string;
  /** Sample lines (not comments). */
  series: string[];
  /** app_requests_total per worker label. */
  byWorker: Map<string, number>;
  total: number;
}

async function scrape(port: number): Promise<Scrape> {
  const r = await get(port, '/metrics');
  expect(r.status).toBe(200);
  expect(r.headers['content-type']).toMatch(/^text\/plain/);
  const series = r.body.split('\n').filter((l) => l !== '' && !l.startsWith('#'));
  const byWorker = new Map<string, number>();
  for (const line of series) {
    const m = /^app_requests_total\{route="\/",worker="(\d+)"\} (\d+)$/.exec(line);
    if (m) byWorker.set(m[1], Number(m[2]));
  }
  return { text: r.body, series, byWorker, total: [...byWorker.values()].reduce((a, b) => a + b, 0) };
}

/** Waits until the master has a ready worker for each of `n` nums and none in a replacement. */
async function steady(m: Proc, n: number): Promise<void> {
  await sleep(300);
  await waitFor(() => {
    const live = m.liveWorkers();
    return live.length === n && live.every((w: Ev) => m.events.some((e: Ev) => e.event === 'ready' && e.pid === w.pid));
  }, 10_000);
}

const master = (options: object): Promise<Proc> =>
  readyMaster(started, { app: 'prefork-metrics-app.js', metrics: { port: 0, host: '127.0.0.1' }, ...options });

describe('/metrics across workers', () => {
  it('1,000 requests count 1,000; after a kill -9 and 500 more, 1,500; the series stay the same', async () => {
    const m = await master({ workers: 2, timeout: 10_000 });
    await send(m.port, 1000);
    const first = await scrape(m.metricsPort);
    expect(first.total).toBe(1000);
    expect([...first.byWorker.keys()].sort()).toEqual(['0', '1']);
    // The master's own metrics, per num.
    expect(first.text).toMatch(/^cowfork_worker_restarts_total\{worker="0"\} 0$/m);
    expect(first.text).toMatch(/^cowfork_worker_heartbeat_age_seconds\{worker="1"\} [\d.e-]+$/m);
    expect(first.text).toMatch(/^cowfork_workers 2$/m);
    // A histogram merges too: one count per request.
    const count = [...first.text.matchAll(/^app_latency_seconds_count\{worker="\d"\} (\d+)$/gm)].reduce((a, x) => a + Number(x[1]), 0);
    expect(count).toBe(1000);

    // Past the last snapshot (every second), a kill -9 loses nothing.
    await sleep(1500);
    const victim = m.liveWorkers().find((w: Ev) => w.num === 1)!;
    const from = m.events.length;
    process.kill(victim.pid, 'SIGKILL');
    await m.waitEvent((e: Ev) => e.event === 'ready' && e.num === 1 && e.pid !== victim.pid, 10_000, from);
    await send(m.port, 500);
    const second = await scrape(m.metricsPort);
    expect(second.total).toBe(1500);
    expect(second.series.length).toBe(first.series.length);
    expect(second.text).toMatch(/^cowfork_worker_restarts_total\{worker="1"\} 1$/m);

    // Scraping again changes nothing: no snapshot is counted twice.
    expect((await scrape(m.metricsPort)).total).toBe(1500);
  });

  it('a rolling restart and recycling lose no count and count nothing twice', async () => {
    const m = await master({ workers: 2, timeout: 10_000, maxRequests: 150, maxRequestsJitter: 0 });
    // 1,000 requests: each worker is recycled several times along the way.
    await send(m.port, 1000);
    await m.waitEvent((e: Ev) => e.event === 'exit' && e.reason === 'recycle', 10_000);
    await steady(m, 2);
    const a = await scrape(m.metricsPort);
    expect(a.total).toBe(1000);
    m.send('restart');
    await m.waitEvent((e: Ev) => e.event === 'restarted', 20_000);
    const b = await scrape(m.metricsPort);
    expect(b.total).toBe(1000);
    await send(m.port, 100);
    await steady(m, 2);
    const c = await scrape(m.metricsPort);
    expect(c.total).toBe(1100);
    // Series stay bounded by the nums, whatever the replacements.
    expect([...c.byWorker.keys()].sort()).toEqual(['0', '1']);
    expect(c.series.length).toBe(a.series.length);
    // The gauge is the live worker's, not a sum over its predecessors.
    expect([...c.text.matchAll(/^app_worker_up\{worker="\d"\} (\d+)$/gm)].map((x) => x[1])).toEqual(['1', '1']);
  });

  it('rejects bad metrics options with the option path', () => {
    const worker = (): void => {};
    expect(() => prefork({ worker, metrics: 9100 as never })).toThrow(/options\.metrics must be an object/);
    expect(() => prefork({ worker, metrics: {} as never })).toThrow(/options\.metrics\.port must be a port/);
    expect(() => prefork({ worker, metrics: { port: 70000 } })).toThrow(RangeError);
    expect(() => prefork({ worker, metrics: { port: 9100, path: '/m' } as never })).toThrow(/options\.metrics\.path is not a known option/);
    expect(() => prefork({ worker: 'app.js', threads: 2, metrics: { port: 9100 } })).toThrow(/options\.metrics cannot merge the registries of hybrid threads/);
  });

  it('cowfork serve --metrics-port serves the merged /metrics', async () => {
    const proc = startProcess([CLI, 'serve', 'test/fixtures/prefork-metrics-app.js', '--workers', '2', '--host', '127.0.0.1', '--port', '0', '--metrics-port', '0']);
    started.push(proc);
    const stderr = await proc.waitStderr((s: string) => /ready on http:\/\/127\.0\.0\.1:\d+/.test(s) && /metrics on/.test(s), 20_000);
    const port = Number(/ready on http:\/\/127\.0\.0\.1:(\d+)/.exec(stderr)![1]);
    const metricsPort = Number(/metrics on http:\/\/127\.0\.0\.1:(\d+)\/metrics/.exec(stderr)![1]);
    await send(port, 100);
    expect((await scrape(metricsPort)).total).toBe(100);
    expect((await get(metricsPort, '/other')).status).toBe(404);
  });
});
