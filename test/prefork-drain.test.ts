// Any server that listens on an inherited fd drains the way ctx.serve() does,
// with no extra call: Express, Koa, plain http and net, written the natural
// way (`app.listen({ fd: ctx.listenFds[0] })`; Fastify through its serverFactory). Real load over real sockets,
// real signals to the master, under keep-alive and `Connection: close`
// traffic.
import net from 'node:net';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ROOT } from './helpers';
import { type Ev, type Proc, httpGet as get, readyMaster, sleep, startProcess, stopAll } from './prefork-helpers';
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { load } = require('./fixtures/prefork-load.js');

const CLI = path.join(ROOT, 'bin', 'cowfork.js');
const started: Proc[] = [];
const master = (options: object): Promise<Proc> => readyMaster(started, options);

afterEach(() => stopAll(started));

/** Sends HUP (a rolling restart of every worker), then TTOU (one worker drains) under load; returns the load's stats. */
async function restartAndScaleDown(m: Proc, close: boolean) {
  const gen = load({ port: m.port, connections: 6, durationMs: 60_000, close });
  await sleep(300);
  process.kill(m.pid, 'SIGHUP');
  for (const num of [0, 1, 2]) await m.waitEvent((e: Ev) => e.event === 'ready' && e.generation === 1 && e.num === num, 20_000);
  await sleep(200);
  process.kill(m.pid, 'SIGTTOU');
  const scaled = await m.waitEvent((e: Ev) => e.event === 'exit' && e.reason === 'scale', 20_000);
  await sleep(300);
  const stats = await gen.stop();
  const exits = m.events.filter((e: Ev) => e.event === 'exit');
  expect(exits.map((e: Ev) => e.reason).sort()).toEqual(['restart', 'restart', 'restart', 'scale']);
  // Each worker drained and exited on its own: none needed the SIGKILL after the grace.
  for (const e of exits) expect(e.exitCode).toBe(0);
  expect(scaled.num).toBe(2);
  return stats;
}

describe('drain for any server on an inherited fd', () => {
  for (const close of [false, true]) {
    it(`Express with a bare app.listen({ fd }): HUP and TTOU lose no request (${close ? 'Connection: close' : 'keep-alive'})`, async () => {
      const m = await master({ app: 'prefork-express-app.js', workers: 3, timeout: 10_000 });
      const stats = await restartAndScaleDown(m, close);
      expect(stats.failures).toEqual([]);
      expect(stats.refused).toBe(0);
      expect(stats.non2xx).toBe(0);
      expect(stats.ok).toBeGreaterThan(100);
      if (close) expect(stats.connects).toBeGreaterThanOrEqual(stats.ok);
    });
  }

  it('Koa, Fastify (serverFactory) and plain http.createServer(h).listen({ fd }): HUP and TTOU lose no request', async () => {
    for (const app of ['prefork-koa-app.js', 'prefork-fastify-app.js', 'prefork-net-app.js']) {
      const m = await master({ app, workers: 3, timeout: 10_000 });
      const stats = await restartAndScaleDown(m, false);
      expect(stats.failures).toEqual([]);
      expect(stats.non2xx).toBe(0);
      expect(stats.ok).toBeGreaterThan(100);
    }
  });

  it('cowfork serve with Express: SIGTERM lets a 1 s request finish, and the master exits 0', async () => {
    const proc = startProcess([CLI, 'serve', 'test/fixtures/prefork-express-app.js', '--workers', '2', '--host', '127.0.0.1', '--port', '0']);
    started.push(proc);
    const stderr = await proc.waitStderr((s: string) => /ready on http:\/\/127\.0\.0\.1:\d+/.test(s), 20_000);
    const port = Number(/ready on http:\/\/127\.0\.0\.1:(\d+)/.exec(stderr)![1]);
    const slow = get(port, '/slow?ms=1000');
    await proc.waitEvent((e: Ev) => e.event === 'slow', 10_000);
    proc.child.kill('SIGTERM');
    const done = await slow;
    expect([done.status, done.body]).toEqual([200, 'slow done']);
    const exit = await Promise.race([proc.exited, sleep(15_000).then(() => 'timed out')]);
    expect(exit).toEqual({ code: 0, signal: null });
    expect(proc.stderr).toMatch(/worker \d \(pid \d+\) exited with code 0 \(stop\)/);
  });

  it('a net.Server on an inherited fd: SIGTERM waits for its connection to finish', async () => {
    const m = await master({ app: 'prefork-net-app.js', workers: 1, timeout: 10_000, listen: ['127.0.0.1:0', '127.0.0.1:0'] });
    const port = m.addresses[1].port;
    const reply = new Promise<string>((resolve, reject) => {
      let out = '';
      const s = net.connect(port, '127.0.0.1', () => s.write('hello'));
      s.on('data', (d) => (out += d));
      s.on('end', () => resolve(out));
      s.on('error', reject);
    });
    await sleep(200);
    m.child.kill('SIGTERM');
    expect(await reply).toBe('echo hello');
    const exit = await m.waitEvent((e: Ev) => e.event === 'exit', 10_000);
    expect([exit.reason, exit.exitCode]).toEqual(['stop', 0]);
  });
});
