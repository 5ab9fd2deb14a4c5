// prefork under real HTTP load: kill -9 of workers, a wedged worker, rolling
// restarts. The master runs in its own process (test/fixtures/prefork-master.js);
// the load comes from this one, over real sockets.
import { afterEach, describe, expect, it } from 'vitest';
import { isAlive } from './helpers';
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { startMaster } = require('./fixtures/prefork-harness.js');
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { load } = require('./fixtures/prefork-load.js');

type Ev = { event: string; t: number; wall: number; num: number; pid: number; generation: number; reason?: string; signal?: string | null; exitCode?: number | null };
type Master = Awaited<ReturnType<typeof startMaster>>;

const started: Master[] = [];
async function master(options: object): Promise<Master> {
  const m = await startMaster(options);
  started.push(m);
  return m;
}

afterEach(async () => {
  for (const m of started.splice(0)) {
    if (m.child.exitCode === null && m.child.signalCode === null) {
      m.send('stop');
      const t = setTimeout(() => m.child.kill('SIGKILL'), 15_000);
      await m.exited;
      clearTimeout(t);
    }
    // No worker outlives its master.
    for (const w of m.events.filter((e: Ev) => e.event === 'spawn')) expect(isAlive(w.pid)).toBe(false);
  }
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('prefork under load', () => {
  it('replaces each kill -9ed worker with the same num; only requests in flight on it fail', async () => {
    const m = await master({ workers: 4, timeout: 10_000 });
    await m.waitEvent((e: Ev) => e.event === 'allready');
    const CONNECTIONS = 8;
    const DURATION = 10_000;
    const gen = load({ port: m.port, connections: CONNECTIONS, durationMs: DURATION });
    const kills: { pid: number; num: number; bound: number; from: number; at: number }[] = [];
    const t0 = Date.now();
    for (let k = 1; k * 1000 < DURATION - 500; k++) {
      await sleep(t0 + k * 1000 - Date.now());
      // The oldest worker: every kill hits a worker that served for a while.
      const victim = m.liveWorkers().sort((a: Ev, b: Ev) => a.t - b.t)[0];
      const from = m.events.length;
      // At most the connections this worker holds (or that no worker answered yet) can lose a request.
      kills.push({ pid: victim.pid, num: victim.num, bound: gen.attachedTo(victim.pid), from, at: Date.now() });
      process.kill(victim.pid, 'SIGKILL');
    }
    const stats = await gen.done;

    // The load was real: at least 500 requests per second over the 10 s.
    expect(stats.ok).toBeGreaterThanOrEqual((500 * DURATION) / 1000);
    expect(stats.refused).toBe(0);
    expect(stats.non2xx).toBe(0);

    // Each killed worker was replaced by a new pid with the same num, by the next kill.
    const latencies: number[] = [];
    const forkLatencies: number[] = [];
    for (const k of kills) {
      const exit = await m.waitEvent((e: Ev) => e.event === 'exit' && e.pid === k.pid, 5000, k.from);
      expect(exit.signal).toBe('SIGKILL');
      expect(exit.reason).toBe('crash');
      const spawn = await m.waitEvent((e: Ev) => e.event === 'spawn' && e.t >= exit.t, 5000, k.from);
      expect(spawn.num).toBe(k.num);
      expect(spawn.pid).not.toBe(k.pid);
      const ready = await m.waitEvent((e: Ev) => e.event === 'ready' && e.pid === spawn.pid, 5000, k.from);
      // Wall clock, shared by this process and the master: kill -> replacement forked / ready.
      forkLatencies.push(spawn.wall - k.at);
      latencies.push(ready.wall - k.at);
    }
    // Nums stay 0..3: the set is bounded.
    expect(new Set(m.liveWorkers().map((w: Ev) => w.num))).toEqual(new Set([0, 1, 2, 3]));

    // Only requests in flight on a killed worker failed, and no more than it could hold.
    const killed = new Set(kills.map((k) => k.pid));
    for (const f of stats.failures) if (f.pid !== null) expect(killed.has(f.pid)).toBe(true);
    const bound = kills.reduce((n, k) => n + k.bound, 0);
    expect(stats.failures.length).toBeLessThanOrEqual(bound);
    expect(stats.failures.length).toBeLessThanOrEqual(kills.length * CONNECTIONS);
    console.log(
      `kill -9 x${kills.length}: ${stats.ok} ok (${Math.round(stats.ok / (DURATION / 1000))}/s), ` +
        `${stats.failures.length} failed (bound ${bound}), kill->fork ms: ${forkLatencies.map((l) => l.toFixed(1)).join(' ')}, ` +
        `kill->ready ms: ${latencies.map((l) => l.toFixed(1)).join(' ')}`,
    );
  });

  it('kills a worker stuck in while(true) after `timeout` and replaces it; the master stays responsive', async () => {
    const m = await master({ workers: 2, timeout: 1000 });
    await m.waitEvent((e: Ev) => e.event === 'allready');
    const gen = load({ port: m.port, connections: 2, durationMs: 60_000 });
    await sleep(200);
    // One request wedges whichever worker accepts it.
    const wedge = fetch(`http://127.0.0.1:${m.port}/spin`).catch((err: Error) => err);
    await sleep(200);
    // While a worker is wedged, the master still handles a signal at once.
    const from = m.events.length;
    process.kill(m.pid, 'SIGTTIN');
    const timeout = await m.waitEvent((e: Ev) => e.event === 'timeout', 10_000, from);
    const spawned = m.events.slice(from).find((e: Ev) => e.event === 'spawn' && e.num === 2);
    expect(spawned).toBeDefined();
    expect(spawned.t).toBeLessThan(timeout.t);

    const exit = await m.waitEvent((e: Ev) => e.event === 'exit' && e.pid === timeout.pid, 10_000, from);
    expect(exit.reason).toBe('timeout');
    // Its JavaScript SIGTERM handler could not run: the SIGKILL after the grace did it.
    expect(exit.signal).toBe('SIGKILL');
    const replacement = await m.waitEvent((e: Ev) => e.event === 'ready' && e.num === timeout.num && e.t > exit.t, 10_000, from);
    expect(replacement.pid).not.toBe(timeout.pid);
    expect(await wedge).toBeInstanceOf(Error);

    const stats = await gen.stop();
    expect(stats.ok).toBeGreaterThan(0);
    expect(stats.refused).toBe(0);
    // Only connections the wedged worker held lost a request.
    for (const f of stats.failures) if (f.pid !== null) expect(f.pid).toBe(timeout.pid);
    expect(stats.failures.length).toBeLessThanOrEqual(2);
  });

  it('SIGHUP and master.restart() replace every worker under load with 0 failed requests', async () => {
    const m = await master({ workers: 2, timeout: 10_000 });
    const ready = await m.waitEvent((e: Ev) => e.event === 'allready');
    const before = new Set(ready.stats.map((s: { pid: number }) => s.pid));
    const gen = load({ port: m.port, connections: 6, durationMs: 60_000 });
    await sleep(300);

    process.kill(m.pid, 'SIGHUP');
    for (const num of [0, 1]) await m.waitEvent((e: Ev) => e.event === 'ready' && e.generation === 1 && e.num === num);
    await sleep(200);
    m.send('restart');
    const restarted = await m.waitEvent((e: Ev) => e.event === 'restarted');
    await sleep(200);
    const stats = await gen.stop();

    const after = restarted.stats as { pid: number; num: number; generation: number }[];
    expect(after.map((s) => s.num)).toEqual([0, 1]);
    for (const s of after) {
      expect(s.generation).toBe(2);
      expect(before.has(s.pid)).toBe(false);
    }
    // Four workers drained one at a time: every exit was a clean one.
    const exits = m.events.filter((e: Ev) => e.event === 'exit');
    expect(exits).toHaveLength(4);
    for (const e of exits) expect([e.reason, e.exitCode]).toEqual(['restart', 0]);

    expect(stats.failures).toEqual([]);
    expect(stats.refused).toBe(0);
    expect(stats.non2xx).toBe(0);
    expect(stats.ok).toBeGreaterThan(100);
    // Both generations served.
    const pids = [...stats.byPid.keys()];
    expect(pids.some((p) => before.has(p))).toBe(true);
    expect(pids.some((p) => after.some((s) => s.pid === p))).toBe(true);
  });
});
