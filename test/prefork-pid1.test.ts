// The prefork master as PID 1 of a PID namespace, which is what `docker run`
// without --init makes of it: its workers pass their death check, orphans
// that the kernel hands it are reaped as tini would reap them, libuv keeps
// its own children's exit statuses, and SIGTERM drains and exits 0.
//
// Each test starts a new PID namespace with `unshare --pid --fork
// --mount-proc` (CI runs as root). Nothing is skipped: where unshare cannot
// run, the tests fail. Killing a namespace's init kills the whole namespace,
// so a failed test leaves no process behind.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { FIXTURES, ROOT, isAlive, waitFor } from './helpers';
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { startProcess } = require('./fixtures/prefork-harness.js');

type Proc = ReturnType<typeof startProcess>;

const UNSHARE = ['unshare', '--pid', '--fork', '--mount-proc', '--kill-child'];
const CLI = path.join(ROOT, 'bin', 'cowfork.js');

/** A process in /proc, as the test (outside the namespace) sees it. */
interface Ps {
  pid: number;
  comm: string;
  state: string;
}

function childrenOf(pid: number): Ps[] {
  let list: string;
  try {
    list = fs.readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim();
  } catch {
    return [];
  }
  const out: Ps[] = [];
  for (const child of list === '' ? [] : list.split(' ').map(Number)) {
    try {
      const stat = fs.readFileSync(`/proc/${child}/stat`, 'utf8');
      const close = stat.lastIndexOf(')');
      out.push({ pid: child, comm: stat.slice(stat.indexOf('(') + 1, close), state: stat[close + 2] });
    } catch {
      // It was reaped while we looked.
    }
  }
  return out;
}

/** A namespace started by unshare; `init` is its PID 1 as this test sees it (its pid out here). */
interface Namespace {
  proc: Proc;
  init: number;
}

const namespaces: Namespace[] = [];

/** Starts a namespace and finds its init; `init` stays 0 only if everything in it has already exited. */
async function startNamespace(start: () => Proc): Promise<Namespace> {
  const ns: Namespace = { proc: start(), init: 0 };
  namespaces.push(ns);
  await waitFor(() => {
    const kids = childrenOf(ns.proc.pid);
    if (kids.length > 0) ns.init = kids[0].pid;
    return ns.init > 0 || ns.proc.child.exitCode !== null;
  }, 10_000);
  return ns;
}

afterEach(async () => {
  for (const ns of namespaces.splice(0)) {
    if (ns.proc.child.exitCode !== null || ns.proc.child.signalCode !== null) continue;
    // The namespace's init takes every process in it along when it dies.
    if (ns.init > 0) {
      try {
        process.kill(ns.init, 'SIGKILL');
      } catch {
        // Gone already.
      }
    }
    ns.proc.child.kill('SIGKILL');
    await ns.proc.exited;
  }
});

/**
 * Starts `sh` inside the namespace; it backgrounds `sleep` and exits, so the
 * sleep is an orphan. The sleep must not hold the pipes spawnSync waits on.
 */
function orphanInto(init: number, seconds: number): void {
  const r = spawnSync('nsenter', ['--target', String(init), '--pid', '--', 'sh', '-c', `sleep ${seconds} </dev/null >/dev/null 2>&1 & exit 0`], {
    stdio: 'pipe',
    timeout: 10_000,
  });
  if (r.status !== 0) throw new Error(`nsenter failed (${r.status ?? r.error}): ${r.stderr}`);
}

function get(port: number, p = '/'): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path: p, agent: false, timeout: 10_000 }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode!, body }));
    });
    req.on('timeout', () => req.destroy(new Error(`GET ${p} timed out`)));
    req.on('error', reject);
  });
}

/** Exit of a process, bounded: a master that does not exit fails the test instead of stalling it. */
function exitOf(proc: Proc, ms: number): Promise<{ code: number | null; signal: string | null }> {
  return Promise.race([
    proc.exited,
    new Promise<never>((_, reject) =>
      setTimeout(() => reject(new Error(`did not exit within ${ms} ms; stderr: ${proc.stderr.slice(-2000)}`)), ms).unref(),
    ),
  ]);
}

beforeAll(() => {
  // Fail loudly, with the reason, where a PID namespace cannot be made.
  const r = spawnSync(UNSHARE[0], [...UNSHARE.slice(1), 'true'], { stdio: 'pipe', timeout: 10_000 });
  if (r.status !== 0) throw new Error(`these tests need \`${UNSHARE.join(' ')}\` (root): ${r.error ?? r.stderr}`);
});

describe('PID 1 of a PID namespace', () => {
  it('a child forked with PR_SET_PDEATHSIG passes its death check when its parent is PID 1', async () => {
    // Before the fix the check compared getppid() with 1: the child of a PID 1
    // took its living parent for dead and exited 1.
    const script = `
      const { native } = require(${JSON.stringify(path.join(ROOT, 'dist', 'native.js'))});
      const pid = native.fork([], native.FORK_FLAGS.SET_PDEATHSIG);
      if (pid === 0) native.exit(native.getppid() === 1 ? 0 : 3);
      process.stdout.write(JSON.stringify({ self: process.pid, status: native.waitpid(pid, false) }) + '\\n');
    `;
    const ns = await startNamespace(() => startProcess(['--single-threaded', '-e', script], { wrap: UNSHARE }));
    expect(await exitOf(ns.proc, 20_000)).toEqual({ code: 0, signal: null });
    const out = ns.proc.events[0];
    expect(out.self).toBe(1);
    expect(out.status.slice(1)).toEqual([0, 0]);
  });

  it('cowfork serve: serves, reaps orphans that land on it, and drains on SIGTERM to exit 0', async () => {
    const ns = await startNamespace(() =>
      startProcess([CLI, 'serve', 'examples/prefork-app.js', '--workers', '2', '--host', '127.0.0.1', '--port', '0'], { wrap: UNSHARE }),
    );
    expect(ns.init).toBeGreaterThan(0);
    const stderr = await ns.proc.waitStderr((s: string) => /ready on http:\/\/127\.0\.0\.1:\d+/.test(s), 20_000);
    expect(stderr).toMatch(/\(master pid 1\)/);
    const port = Number(/ready on http:\/\/127\.0\.0\.1:(\d+)/.exec(stderr)![1]);

    // Real requests are served.
    for (let i = 0; i < 20; i++) {
      const r = await get(port);
      expect(r.status).toBe(200);
      expect(r.body).toMatch(/^hello from worker pid \d+\n$/);
    }
    // Its children so far are the two workers (their comm depends on the Node version).
    const workers = childrenOf(ns.init);
    expect(workers.map((w) => w.state).filter((st) => st === 'Z')).toEqual([]);
    expect(workers).toHaveLength(2);

    // Orphans: each `sh` exits at once, and the kernel re-parents its `sleep` to PID 1.
    for (let i = 0; i < 3; i++) orphanInto(ns.init, 2);
    const sleeps = childrenOf(ns.init).filter((c) => c.comm === 'sleep');
    expect(sleeps).toHaveLength(3);
    // Once they exit, the master reaps them: none is left, not even as a zombie.
    await waitFor(() => !childrenOf(ns.init).some((c) => c.comm === 'sleep'), 15_000, 50);
    expect(childrenOf(ns.init).filter((c) => c.state === 'Z')).toEqual([]);
    // The workers were not touched, and still serve.
    expect(childrenOf(ns.init).map((c) => c.pid).sort()).toEqual(workers.map((w) => w.pid).sort());
    expect((await get(port)).status).toBe(200);

    process.kill(ns.init, 'SIGTERM');
    expect(await exitOf(ns.proc, 20_000)).toEqual({ code: 0, signal: null });
    expect(ns.proc.stderr).toMatch(/worker 0 \(pid \d+\) exited with code 0 \(stop\)/);
    expect(ns.proc.stderr).toMatch(/worker 1 \(pid \d+\) exited with code 0 \(stop\)/);
    expect(ns.proc.stderr).toMatch(/stopped/);
    for (const w of workers) expect(isAlive(w.pid)).toBe(false);
  });

  it('the reaper leaves the exit statuses of the master\'s child_process children to libuv', async () => {
    const master = [path.join(FIXTURES, 'prefork-master.js'), JSON.stringify({ workers: 1 })];
    const ns = await startNamespace(() => startProcess(['--single-threaded', ...master], { wrap: UNSHARE }));
    expect(ns.init).toBeGreaterThan(0);
    await ns.proc.waitEvent((e: { event: string }) => e.event === 'allready', 20_000);
    // Children of the master's own, exiting while orphans land and exit.
    const N = 40;
    ns.proc.send(`spawn ${N}`);
    for (let i = 0; i < 4; i++) orphanInto(ns.init, 0.05 * i);
    // A status taken from libuv would be lost: its 'exit' never fires and this times out.
    const spawned = await ns.proc.waitEvent((e: { event: string }) => e.event === 'spawned', 30_000);
    expect(spawned.codes).toEqual(Array(N).fill(7));
    // Children that are zombies, not yet reaped by libuv, when the reaper scans
    // (see raceChildren in the fixture): the reaper leaves them to libuv.
    const K = 20;
    ns.proc.send(`race ${K}`);
    const raced = await ns.proc.waitEvent((e: { event: string }) => e.event === 'raced', 20_000);
    expect(raced.codes).toEqual(Array(K).fill(7));
    // And the orphans were reaped.
    await waitFor(() => !childrenOf(ns.init).some((c) => c.comm === 'sleep' || c.state === 'Z'), 15_000, 50);
    ns.proc.send('stop');
    await ns.proc.waitEvent((e: { event: string }) => e.event === 'stopped', 20_000);
    ns.proc.child.stdin.end();
    expect(await exitOf(ns.proc, 20_000)).toEqual({ code: 0, signal: null });
  });

  it('cowfork serve exits 0 on SIGTERM even when the app left a timer running in the master', async () => {
    // As PID 1 the master's signal handlers are the only ones: once they are
    // removed, a second SIGTERM would be dropped, and the timer would keep the
    // container up until SIGKILL.
    const ns = await startNamespace(() =>
      startProcess([CLI, 'serve', 'test/fixtures/prefork-lingering-app.js', '--workers', '1', '--host', '127.0.0.1', '--port', '0'], {
        wrap: UNSHARE,
      }),
    );
    expect(ns.init).toBeGreaterThan(0);
    const stderr = await ns.proc.waitStderr((s: string) => /ready on http:\/\/127\.0\.0\.1:\d+/.test(s), 20_000);
    const port = Number(/ready on http:\/\/127\.0\.0\.1:(\d+)/.exec(stderr)![1]);
    expect((await get(port)).status).toBe(200);
    process.kill(ns.init, 'SIGTERM');
    expect(await exitOf(ns.proc, 20_000)).toEqual({ code: 0, signal: null });
  });
});
