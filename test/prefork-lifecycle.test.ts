// prefork's lifecycle with real processes and real signals: graceful SIGTERM
// through `cowfork serve`, the master's death, crash loops, hybrid threads.
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { FIXTURES, ROOT, isAlive, runNode, tempDir, waitFor } from './helpers';
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { startMaster, startProcess } = require('./fixtures/prefork-harness.js');

type Ev = { event: string; t: number; num: number; pid: number; generation: number; reason?: string };
type Proc = ReturnType<typeof startProcess>;

const started: Proc[] = [];
afterEach(async () => {
  for (const m of started.splice(0)) {
    if (m.child.exitCode === null && m.child.signalCode === null) {
      m.child.kill('SIGKILL');
      await m.exited;
    }
    for (const w of m.events.filter((e: Ev) => e.event === 'spawn')) await waitFor(() => !isAlive(w.pid), 2000);
  }
});

function get(port: number, p: string): Promise<{ status: number; body: string; at: number }> {
  return new Promise((resolve, reject) => {
    http
      .get({ host: '127.0.0.1', port, path: p, agent: false }, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (d) => (body += d));
        res.on('end', () => resolve({ status: res.statusCode!, body, at: Date.now() }));
      })
      .on('error', reject);
  });
}

describe('prefork lifecycle', () => {
  it('cowfork serve: SIGTERM lets every in-flight slow request complete, then exits 0', async () => {
    // Started without --single-threaded: the CLI re-executes itself with it (same pid).
    const m = startProcess([
      path.join(ROOT, 'bin', 'cowfork.js'), 'serve', 'test/fixtures/prefork-app.js',
      '--workers', '2', '--host', '127.0.0.1', '--port', '0', '--shutdown-timeout', '20000',
    ]);
    started.push(m);
    const stderr = await m.waitStderr((s: string) => /ready on http:\/\/127\.0\.0\.1:\d+/.test(s));
    const port = Number(/ready on http:\/\/127\.0\.0\.1:(\d+)/.exec(stderr)![1]);

    const N = 6;
    const pending = Array.from({ length: N }, () => get(port, '/slow?ms=1500'));
    await waitFor(() => m.events.filter((e: Ev) => e.event === 'slow').length === N, 10_000);
    const termAt = Date.now();
    process.kill(m.pid, 'SIGTERM');

    const results = await Promise.all(pending);
    for (const r of results) {
      expect(r.status).toBe(200);
      expect(JSON.parse(r.body).pid).toBeGreaterThan(0);
      // Each was still in flight when SIGTERM arrived.
      expect(r.at).toBeGreaterThan(termAt);
    }
    expect(await m.exited).toEqual({ code: 0, signal: null });
    expect(m.stderr).toMatch(/worker 0 \(pid \d+\) exited with code 0 \(stop\)/);
    expect(m.stderr).toMatch(/worker 1 \(pid \d+\) exited with code 0 \(stop\)/);
  });

  for (const [name, env] of [
    ['PR_SET_PDEATHSIG', {}],
    ['the pipe-EOF fallback alone', { COWFORK_TEST_NO_PDEATHSIG: '1' }],
  ] as const) {
    it(`kill -9 of the master: every worker is gone within 1 s (${name})`, async () => {
      const m = await startMaster({ workers: 3 }, { env });
      started.push(m);
      await m.waitEvent((e: Ev) => e.event === 'allready');
      const pids = m.liveWorkers().map((w: Ev) => w.pid);
      expect(pids).toHaveLength(3);
      for (const pid of pids) expect(isAlive(pid)).toBe(true);
      process.kill(m.pid, 'SIGKILL');
      // A correctness bound from the issue, not a speed measurement: both paths act within milliseconds.
      await waitFor(() => pids.every((pid: number) => !isAlive(pid)), 1000);
      expect(pids.filter((pid: number) => isAlive(pid))).toEqual([]);
    });
  }

  it('a crash loop backs off instead of spinning', async () => {
    const m = await startMaster({ workers: 2 }, { env: { PREFORK_CRASH_NUM: '1' } });
    started.push(m);
    await m.waitEvent((e: Ev) => e.event === 'allready');
    // Six forks of the crashing num. Backoff before each re-fork: 0, 0.1, 0.2,
    // 0.4 and 0.8 s; a loaded machine only adds to that (each worker's boot).
    const spawnsOf1 = (): number[] => m.events.filter((e: Ev) => e.event === 'spawn' && e.num === 1).map((e: Ev) => e.t);
    await m.waitEvent(() => spawnsOf1().length >= 6, 30_000);
    m.send('stats');
    const stats = await m.waitEvent((e: Ev) => e.event === 'stats');
    const spawns1 = spawnsOf1().slice(0, 6);
    const spawns0 = m.events.filter((e: Ev) => e.event === 'spawn' && e.num === 0);
    // Without backoff num 1 would restart every ~60 ms: six forks in about 0.3 s.
    expect(spawns1[5] - spawns1[0]).toBeGreaterThanOrEqual(1500);
    // The waits grow: the fifth gap holds 0.8 s more backoff than the first.
    const gaps = spawns1.slice(1).map((t: number, i: number) => t - spawns1[i]);
    expect(gaps[4] - gaps[0]).toBeGreaterThan(400);
    // The healthy num is untouched, and restarts are counted per num.
    expect(spawns0).toHaveLength(1);
    const s1 = stats.stats.find((s: { num: number }) => s.num === 1);
    if (s1) expect(s1.restarts).toBeGreaterThanOrEqual(spawns1.length - 2);
    for (const e of m.events.filter((x: Ev) => x.event === 'exit')) expect(e.reason).toBe('crash');
  });

  it('hybrid workers: 2 x threads: 2 gives four distinct frame stacks; parent.num is the process num', async () => {
    const m = await startMaster({ workers: 2, threads: 2, app: 'prefork-hybrid-app.js' });
    started.push(m);
    await m.waitEvent((e: Ev) => e.event === 'allready');
    const contexts = m.events.filter((e: Ev) => e.event === 'context');
    expect(contexts).toHaveLength(4);
    const stacks = contexts.map((c: { context: unknown }) => JSON.stringify(c.context)).sort();
    expect(stacks).toEqual(
      [
        [{ kind: 'process', num: 0 }, { kind: 'thread', num: 0 }],
        [{ kind: 'process', num: 0 }, { kind: 'thread', num: 1 }],
        [{ kind: 'process', num: 1 }, { kind: 'thread', num: 0 }],
        [{ kind: 'process', num: 1 }, { kind: 'thread', num: 1 }],
      ].map((s) => JSON.stringify(s)),
    );
    const procByNum = new Map(m.liveWorkers().map((w: Ev) => [w.num, w.pid]));
    for (const c of contexts) {
      expect(c.kind).toBe('thread');
      expect(c.parentNum).toBe(c.context[0].num);
      // The thread runs inside the forked process that has that num.
      expect(c.pid).toBe(procByNum.get(c.parentNum));
      expect(c.parentPid).toBe(c.pid);
    }
    // And the threads serve: requests reach threads of both processes.
    const seen = new Set<number>();
    for (let i = 0; i < 40 && seen.size < 2; i++) seen.add(JSON.parse((await get(m.port, '/')).body).pid);
    expect(seen.size).toBe(2);
    m.send('stop');
    expect(await m.exited).toEqual({ code: 0, signal: null });
  });

  it('hybrid: a thread stuck in while(true) stops its process heartbeat; the process is replaced', async () => {
    const m = await startMaster({ workers: 1, threads: 2, timeout: 1000 });
    started.push(m);
    await m.waitEvent((e: Ev) => e.event === 'allready');
    const [proc] = m.liveWorkers();
    const wedge = fetch(`http://127.0.0.1:${m.port}/spin`).catch((err: Error) => err);
    const timeout = await m.waitEvent((e: Ev) => e.event === 'timeout');
    expect(timeout.pid).toBe(proc.pid);
    // The process's own loop still turned; only the thread's stopped.
    const exit = await m.waitEvent((e: Ev) => e.event === 'exit' && e.pid === proc.pid);
    expect(exit.reason).toBe('timeout');
    const again = await m.waitEvent((e: Ev) => e.event === 'ready' && e.num === 0 && e.pid !== proc.pid);
    // A replacement answers: this one, or (on a loaded machine, where a 1 s
    // heartbeat can be missed) a later one, never the wedged process.
    const answeredBy = JSON.parse((await get(m.port, '/')).body).pid as number;
    expect(answeredBy).not.toBe(proc.pid);
    const replacements = m.events.filter((e: Ev) => e.event === 'ready' && e.num === 0 && e.pid !== proc.pid).map((e: Ev) => e.pid);
    expect(replacements[0]).toBe(again.pid);
    expect(replacements).toContain(answeredBy);
    expect(await wedge).toBeInstanceOf(Error);
  });

  it("the master's handle in a worker: a master continuation a replacement worker runs cannot stop, restart or scale the master's workers", async () => {
    const dir = tempDir();
    try {
      const r = await runNode(['--single-threaded', path.join(FIXTURES, 'prefork-master-continuation.js'), dir], { timeoutMs: 30_000 });
      expect(r.code).toBe(0);
      const out = JSON.parse(r.stdout.trim().split('\n').at(-1)!) as { exits: { num: number; code: number | null; signal: string | null; reason: string }[]; states: string[]; calls: string[] };
      // The hazard was there: the replacement ran the master's code after the sleep, and called the three.
      expect(out.calls).toHaveLength(1);
      expect(out.calls[0]).toMatch(/^\d+$/);
      // Before the master's own stop, the only exit is the worker it killed; both workers still serve.
      expect(out.exits).toEqual([{ num: 0, code: null, signal: 'SIGKILL', reason: 'crash' }]);
      expect(out.states).toEqual(['ready', 'ready']);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
