// prefork's API in this process: options, sockets (TCP, [::1], unix, SO_REUSEPORT),
// durable nums across scale and kill -9, hooks, boot failures, the CLI's flags,
// and no leaked fds, zombies or socket files.
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { type PreforkMaster, type WorkerExitEvent, WorkerBootError, prefork } from '../src/index';
import { ROOT, childrenOf, fdCount, fullGc, runNode, tempDir, waitFor, weakGarbage, zombiesOf } from './helpers';

type Answer = { num: number; pid: number; fd: number; after: string | null };

function get(target: { port?: number; host?: string; socketPath?: string }, p = '/'): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    http
      .get({ ...target, path: p, agent: false }, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (d) => (body += d));
        res.on('end', () => resolve({ status: res.statusCode!, body }));
      })
      .on('error', reject);
  });
}

const answer = async (port: number, host = '127.0.0.1'): Promise<Answer> => JSON.parse((await get({ port, host })).body);

describe('prefork options', () => {
  it('rejects bad options with the option path in the message', () => {
    const worker = (): void => {};
    expect(() => prefork({} as never)).toThrow(/options\.worker must be a function or a module path/);
    expect(() => prefork({ worker, workers: 0 })).toThrow(RangeError);
    expect(() => prefork({ worker, workers: 1.5 })).toThrow(/options\.workers must be a positive integer/);
    expect(() => prefork({ worker, listen: 'nonsense' })).toThrow(/options\.listen must be a port, 'host:port'/);
    expect(() => prefork({ worker, listen: [3000, 70000] })).toThrow(/options\.listen\[1\] must be a port from 0 to 65535/);
    expect(() => prefork({ worker, threads: 2 })).toThrow(/options\.worker must be a module path when options\.threads > 0/);
    expect(() => prefork({ worker, listen: '/tmp/x.sock', reusePort: true })).toThrow(/options\.reusePort needs TCP/);
    expect(() => prefork({ worker, timeout: -1 })).toThrow(/options\.timeout must be a positive/);
    expect(() => prefork({ worker, bogus: 1 } as never)).toThrow(/options\.bogus is not a known option/);
  });

  it('throws EADDRINUSE for a taken port and leaks no fd', async () => {
    const taken = net.createServer();
    await new Promise<void>((r) => taken.listen(0, '127.0.0.1', r));
    const port = (taken.address() as net.AddressInfo).port;
    const before = fdCount();
    let err: NodeJS.ErrnoException | undefined;
    try {
      prefork({ worker: () => {}, listen: ['127.0.0.1:0', `127.0.0.1:${port}`], signals: false });
    } catch (e) {
      err = e as NodeJS.ErrnoException;
    }
    expect(err?.code).toBe('EADDRINUSE');
    expect(err?.message).toContain(`127.0.0.1:${port}`);
    expect(fdCount()).toBe(before);
    await new Promise((r) => taken.close(r));
  });

  it('refuses to start without --single-threaded (ForkUnsafeError)', async () => {
    const r = await runNode(['-e', "try { require('./dist').prefork({ worker() {} }) } catch (e) { console.log(e.code) }"]);
    expect(r.stdout.trim()).toBe('ERR_FORK_UNSAFE');
  });
});

describe('prefork in this process', () => {
  it('serves on TCP, [::1] and a unix socket; keeps durable nums across scale and kill -9; cleans up', async () => {
    const dir = tempDir('cowfork-prefork-');
    const sock = path.join(dir, 'app.sock');
    const fdsBefore = fdCount();
    const forks: number[] = [];
    const master: PreforkMaster = prefork({
      workers: 3,
      listen: ['127.0.0.1:0', sock, '[::1]:0'],
      signals: false,
      timeout: 10_000,
      beforeFork: ({ num }) => forks.push(num),
      afterFork: (ctx) => {
        (globalThis as { afterFork?: string }).afterFork = `after ${ctx.num}`;
      },
      worker(ctx) {
        for (let index = 0; index < ctx.listenFds.length; index++) {
          ctx.serve(
            (_req, res) =>
              res.end(
                JSON.stringify({ num: ctx.num, pid: process.pid, fd: ctx.listenFds[index], after: (globalThis as { afterFork?: string }).afterFork ?? null }),
              ),
            { index },
          );
        }
      },
    });
    const exits: WorkerExitEvent[] = [];
    master.on('exit', (e) => exits.push(e));
    await master.ready;

    const stats = master.stats();
    expect(stats.map((s) => s.num)).toEqual([0, 1, 2]);
    for (const s of stats) {
      expect(s).toMatchObject({ generation: 0, state: 'ready', restarts: 0 });
      expect(s.pid).not.toBe(process.pid);
      expect(Math.abs(Date.now() - s.lastHeartbeat)).toBeLessThan(60_000);
      expect(s.uptime).toBeGreaterThanOrEqual(0);
    }
    expect(forks.sort()).toEqual([0, 1, 2]);

    const [tcp, unix, v6] = master.addresses;
    expect(unix.path).toBe(sock);
    expect(fs.statSync(sock).isSocket()).toBe(true);
    const a = await answer(tcp.port!);
    expect(a.after).toBe(`after ${a.num}`);
    expect(JSON.parse((await get({ socketPath: sock })).body).pid).toBeGreaterThan(0);
    expect((await answer(v6.port!, '::1')).pid).toBeGreaterThan(0);

    // Scale down: the highest nums drain; scale up: the lowest free nums come back.
    expect(() => master.scale(-1)).toThrow(RangeError);
    expect(() => (master.scale as (n?: number) => void)()).toThrow(/scale\(workers\): workers must be a non-negative integer/);
    master.scale(1);
    await waitFor(() => master.stats().length === 1);
    expect(master.stats()[0].num).toBe(0);
    expect(exits.map((e) => [e.num, e.reason]).sort()).toEqual([
      [1, 'scale'],
      [2, 'scale'],
    ]);
    master.scale(3);
    await waitFor(() => master.stats().filter((s) => s.state === 'ready').length === 3);
    expect(master.stats().map((s) => s.num)).toEqual([0, 1, 2]);

    // kill -9: the same num comes back, counted as a restart.
    const victim = master.stats()[1];
    process.kill(victim.pid, 'SIGKILL');
    await waitFor(() => master.stats().some((s) => s.num === 1 && s.pid !== victim.pid && s.state === 'ready'));
    const s1 = master.stats().find((s) => s.num === 1)!;
    expect(s1.restarts).toBe(1); // a scale-down and scale-up is not a replacement
    expect(exits.at(-1)).toMatchObject({ num: 1, pid: victim.pid, signal: 'SIGKILL', reason: 'crash' });

    await master.stop();
    expect(childrenOf().filter((c) => master.stats().some((s) => s.pid === c.pid))).toEqual([]);
    await waitFor(() => zombiesOf().length === 0);
    expect(fs.existsSync(sock)).toBe(false);
    expect(fdCount()).toBe(fdsBefore);
    fs.rmSync(dir, { recursive: true });
  });

  it('reusePort: each worker has its own socket, kept across its replacement', async () => {
    const master = prefork({
      workers: 2,
      listen: '127.0.0.1:0',
      reusePort: true,
      signals: false,
      worker: (ctx) => ctx.serve((_req, res) => res.end(JSON.stringify({ num: ctx.num, pid: process.pid, fd: ctx.listenFds[0] }))),
    });
    await master.ready;
    const port = master.addresses[0].port!;
    const fdByNum = new Map<number, number>();
    for (let i = 0; i < 60 && fdByNum.size < 2; i++) {
      const a = await answer(port);
      fdByNum.set(a.num, a.fd);
    }
    expect(fdByNum.size).toBe(2);
    expect(fdByNum.get(0)).not.toBe(fdByNum.get(1));

    const old = master.stats()[1];
    process.kill(old.pid, 'SIGKILL');
    await waitFor(() => master.stats().some((s) => s.num === 1 && s.pid !== old.pid && s.state === 'ready'));
    let again: Answer | undefined;
    for (let i = 0; i < 60 && again === undefined; i++) {
      const a = await answer(port);
      if (a.num === 1) again = a;
    }
    expect(again!.pid).not.toBe(old.pid);
    expect(again!.fd).toBe(fdByNum.get(1));
    await master.stop();
  });

  it('loads a module path: a default-exported request handler is served (examples/prefork-app.js)', async () => {
    const master = prefork({ workers: 1, listen: '127.0.0.1:0', signals: false, worker: path.join(ROOT, 'examples', 'prefork-app.js') });
    await master.ready;
    const r = await get({ port: master.addresses[0].port!, host: '127.0.0.1' }, '/word?i=5');
    expect(JSON.parse(r.body)).toMatchObject({ i: 5, word: 'word-5' });
    await master.stop();
  });

  it('workers keep serving through full collections (V8 posts to a worker pool that fork() left behind)', async () => {
    // The master's pre-fork collections run V8 jobs on its worker pool; each
    // worker then runs 25 full collections per request. Without the condvar
    // repair in cf_fork, the worker blocks in its first few and never answers.
    const gc = fullGc();
    const master = prefork({
      workers: 2,
      listen: '127.0.0.1:0',
      signals: false,
      timeout: 5000, // a hung worker is killed, so its request fails instead of hanging the test
      worker: (ctx) =>
        ctx.serve((req, res) => {
          let kept = 0;
          for (let i = 0; i < 25; i++) {
            kept += weakGarbage();
            gc();
          }
          res.end(JSON.stringify({ num: ctx.num, kept }));
        }),
    });
    const exits: WorkerExitEvent[] = [];
    master.on('exit', (e) => exits.push(e));
    await master.ready;
    const port = master.addresses[0].port!;
    const bodies: { num: number; kept: number }[] = [];
    for (let i = 0; i < 8; i++) {
      const r = await get({ port, host: '127.0.0.1' });
      expect(r.status).toBe(200);
      bodies.push(JSON.parse(r.body));
    }
    expect(bodies.every((b) => b.kept === 25 * 2000)).toBe(true);
    expect(exits).toEqual([]);
    await master.stop();
  }, 30_000);

  it('master.ready rejects with WorkerBootError when a worker dies before it is ready', async () => {
    const master = prefork({
      workers: 1,
      signals: false,
      worker: () => {
        process.stderr.write('(expected) this worker fails at boot\n');
        process.exit(9);
      },
    });
    const err = await master.ready.then(
      () => null,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(WorkerBootError);
    expect(err).toMatchObject({ code: 'ERR_WORKER_BOOT', num: 0, exitCode: 9 });
    await master.stop();
    await waitFor(() => zombiesOf().length === 0);
  });
});

describe('cowfork serve flags', () => {
  const bin = path.join(ROOT, 'bin', 'cowfork.js');

  it('--help documents every flag', async () => {
    const r = await runNode([bin, 'serve', '--help']);
    expect(r.code).toBe(0);
    for (const flag of ['--workers', '--port', '--host', '--listen', '--threads', '--timeout', '--shutdown-timeout', '--reuse-port', '--backlog', '--max-requests', '--max-memory', '--pid-file', '--metrics-port', '--quiet', '--help']) {
      expect(r.stdout).toContain(flag);
    }
    expect(r.stdout).toContain('npx cowfork serve app.js --workers 4 --port 3000');
  });

  it.each([
    [['serve'], /missing <app\.js>/],
    [['serve', 'app.js', '--workers', 'four'], /--workers must be a positive integer, got 'four'/],
    [['serve', 'app.js', '--workers=0'], /--workers must be a positive integer, got '0'/],
    [['serve', 'app.js', '--port', '99999'], /--port must be 0\.\.65535/],
    [['serve', 'app.js', '--frobnicate'], /unknown option '--frobnicate'/],
    [['serve', 'app.js', '--listen', 'nowhere'], /--listen must be a port/],
    [['serve', 'app.js', '--listen', '3000', '--port', '3001'], /either --listen or --port/],
    [['serve', 'app.js', '--timeout'], /--timeout needs a value/],
    [['serve', 'missing-app.js'], /cannot find missing-app\.js/],
  ])('cowfork %j fails clearly', async (args, message) => {
    const r = await runNode([bin, ...args]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(message);
    expect(r.stderr).toContain('Usage: cowfork serve');
  });
});
