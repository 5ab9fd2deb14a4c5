// Child hygiene: one test per hazard in docs/hazards.md. Each fails if
// the code that handles its hazard is removed.
import crypto from 'node:crypto';
import fs from 'node:fs';
import { once } from 'node:events';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { Worker } from 'node:worker_threads';
import { afterEach, describe, expect, it } from 'vitest';
import { AbortError, WorkerCrashedError, atFork, isChild, map } from '../src/index';
import { native } from '../src/native';
import { fullGc, libuvNamesItsThreads, reps, tempDir, waitFor, weakGarbage } from './helpers';

/** Items in the two long maps below. */
const MANY = reps(200, 60);

const dirs: string[] = [];
function scratch(): string {
  const d = tempDir();
  dirs.push(d);
  return d;
}
afterEach(() => {
  for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
});

/**
 * Two map children (pool or isolation) that wait 1 s, then return the entries of their copy of `seen` that
 * they made themselves; `during` runs in the parent 200 ms into the call.
 */
function whatChildrenSaw(seen: string[], isolation: boolean, during?: () => void): Promise<string[][]> {
  const call = map(
    [0, 1],
    async () => {
      // Long enough for anything the parent starts or writes meanwhile to reach the children.
      await new Promise((r) => setTimeout(r, 1000));
      return seen.filter((s) => s.startsWith(`${process.pid} `));
    },
    { concurrency: 2, isolation, timeout: 20_000 },
  );
  if (during) setTimeout(during, 200);
  return call;
}

describe('§4 inherited I/O is silenced', () => {
  it(`the parent's HTTP server keeps answering during a map of ${MANY} async items; no child touches its sockets`, async () => {
    const server = http.createServer((req, res) => {
      res.setHeader('content-type', 'text/plain');
      res.end(String(process.pid));
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as AddressInfo).port;
    const agent = new http.Agent({ keepAlive: true, maxSockets: 4 });
    const get = (): Promise<string> =>
      new Promise((resolve, reject) => {
        const req = http.get({ host: '127.0.0.1', port, agent, path: '/' }, (res) => {
          let body = '';
          res.on('data', (d) => (body += d));
          res.on('end', () => resolve(body));
        });
        req.setTimeout(10_000, () => req.destroy(new Error('request timed out')));
        req.on('error', reject);
      });

    let mapping = true;
    let ok = 0;
    const failures: string[] = [];
    const answeredBy = new Set<string>();
    const client = async (): Promise<void> => {
      while (mapping) {
        try {
          answeredBy.add(await get());
          ok++;
        } catch (err) {
          failures.push(String(err));
        }
      }
    };
    // Open the keep-alive connections before the first fork, so children inherit them.
    await Promise.all([get(), get(), get(), get()]);
    const clients = [client(), client(), client(), client()];
    const results = await map(
      Array.from({ length: MANY }, (_, i) => i),
      async (i) => {
        await new Promise((r) => setTimeout(r, 2));
        return i * 2;
      },
      { isolation: true, concurrency: 4 },
    );
    mapping = false;
    await Promise.all(clients);
    agent.destroy();
    await new Promise((r) => server.close(r));

    expect(results).toEqual(Array.from({ length: MANY }, (_, i) => i * 2));
    expect(failures).toEqual([]);
    expect(ok).toBeGreaterThan(MANY / 10);
    // Every answer came from the parent: no child ever accepted or read a parent socket.
    expect([...answeredBy]).toEqual([String(process.pid)]);
  });
});

describe('§4 stdin', () => {
  it("async children never read the parent's stdin", async () => {
    const { spawn } = await import('node:child_process');
    const child = spawn(process.execPath, ['--single-threaded', path.join(__dirname, 'fixtures', 'parallel-stdin.js')], {
      stdio: ['pipe', 'pipe', 'inherit'],
    });
    let stdout = '';
    child.stdout.on('data', (d) => (stdout += d));
    await new Promise<void>((r) => {
      const t = setInterval(() => stdout.includes('ready') && (clearInterval(t), r()), 5);
    });
    // Feed lines while the children run their event loops.
    for (let i = 0; i < 50; i++) {
      child.stdin.write(`line ${i}\n`);
      await new Promise((r) => setTimeout(r, 5));
    }
    await new Promise<void>((r) => {
      const t = setInterval(() => stdout.includes('mapped') && (clearInterval(t), r()), 5);
    });
    child.stdin.end();
    await new Promise((r) => child.on('exit', r));
    const out = stdout.trim().split('\n').slice(1).map((l) => JSON.parse(l) as { lines?: number; mapped?: number });
    expect(out.find((o) => o.mapped !== undefined)?.mapped).toBe(40);
    expect(out.find((o) => o.lines !== undefined)?.lines).toBe(50);
  });
});

describe('§5 identity and §7 random state', () => {
  it('process.pid and ppid are the real ones; Math.random and randomUUID never repeat across 100 children', async () => {
    // Use both generators in the parent first, so their cached state is copied into every child.
    Math.random();
    crypto.randomUUID();
    const out = await map(
      Array.from({ length: 100 }, (_, i) => i),
      () => ({
        pid: process.pid,
        real: Number(fs.readlinkSync('/proc/self')),
        ppid: process.ppid,
        r: Math.random(),
        u: crypto.randomUUID(),
      }),
      { isolation: true, concurrency: 4 },
    );
    for (const o of out) {
      expect(o.pid).toBe(o.real);
      expect(o.ppid).toBe(process.pid);
      expect(o.r).toBeGreaterThanOrEqual(0);
      expect(o.r).toBeLessThan(1);
    }
    expect(new Set(out.map((o) => o.pid)).size).toBe(100);
    const values = [...out.map((o) => String(o.r)), ...out.map((o) => o.u)];
    expect(values.length).toBe(200);
    expect(new Set(values).size).toBe(200);
    expect(process.pid).toBe(Number(fs.readlinkSync('/proc/self')));
  });
});

describe('§6 leaving the child', () => {
  it("the parent's exit handlers never run in a child, even when the item calls process.exit", async () => {
    const file = path.join(scratch(), 'exit-log');
    const onExit = (): void => fs.appendFileSync(file, `${process.pid}\n`);
    process.on('exit', onExit);
    try {
      expect(await map([1, 2, 3], (x) => x + 1, { isolation: true })).toEqual([2, 3, 4]);
      await expect(map([1], () => process.exit(0))).rejects.toBeInstanceOf(WorkerCrashedError);
    } finally {
      process.removeListener('exit', onExit);
    }
    expect(fs.existsSync(file)).toBe(false);
  });
});

describe('§8 forks happen only from library-owned macrotasks', () => {
  it('microtasks queued by the caller before map() run once, in the parent only', async () => {
    const file = path.join(scratch(), 'microtasks');
    void Promise.resolve().then(() => fs.appendFileSync(file, `${process.pid}\n`));
    queueMicrotask(() => fs.appendFileSync(file, `${process.pid}\n`));
    const out = await map([1, 2, 3, 4], async (x) => {
      await null;
      return x;
    }, { isolation: true });
    expect(out).toEqual([1, 2, 3, 4]);
    expect(fs.readFileSync(file, 'utf8')).toBe(`${process.pid}\n${process.pid}\n`);
  });

  it('isChild() is false in the parent and true in a child', async () => {
    expect(isChild()).toBe(false);
    expect(await map([1], () => isChild())).toEqual([true]);
  });
});

describe('§9 signal listeners and timers', () => {
  it("Ctrl-C in a child does not run the parent's SIGINT listener; the child dies of SIGINT", async () => {
    const file = path.join(scratch(), 'sigint-log');
    const onSigint = (): void => fs.appendFileSync(file, `${process.pid}\n`);
    process.on('SIGINT', onSigint);
    try {
      const err = await map([1], () => {
        process.kill(process.pid, 'SIGINT');
        return new Promise(() => setInterval(() => {}, 1000));
      }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(WorkerCrashedError);
      expect((err as WorkerCrashedError).signal).toBe('SIGINT');
    } finally {
      process.removeListener('SIGINT', onSigint);
    }
    expect(fs.existsSync(file)).toBe(false);
  });

  it("the parent's pending immediates, ref'd timers, intervals and sleeps never run in a map child; its unref'd timers do, and a timer the child refreshes is the child's", async () => {
    // Without src/timers.ts each child (pool and isolation alike) runs every one of them: the parent's code after
    // its `await sleep()` goes on there. An unref'd timer is kept, as libraries keep their tickers (undici's).
    const log = path.join(scratch(), 'parent-timers');
    const note = (what: string) => (): void => fs.appendFileSync(log, `${what} ${process.pid}\n`);
    const { setTimeout: sleep } = await import('node:timers/promises');
    for (const isolation of [false, true]) {
      fs.writeFileSync(log, '');
      const adopted = setTimeout(note('refreshed'), 100);
      const call = map(
        [0, 1],
        async () => {
          adopted.refresh();
          await new Promise((r) => setTimeout(r, 400));
          return process.pid;
        },
        { concurrency: 2, isolation, timeout: 20_000 },
      );
      // Queued after the map's own fork immediate, in the same turn: these all are pending at the fork.
      setImmediate(note('immediate'));
      setTimeout(note('timeout'), 50);
      const interval = setInterval(note('interval'), 40);
      const unref = setInterval(note('unref'), 40).unref();
      void sleep(50).then(note('sleep'));
      let children: number[];
      try {
        children = await call;
      } finally {
        clearInterval(interval);
        clearInterval(unref);
      }
      const seen = fs.readFileSync(log, 'utf8').trim().split('\n');
      const by = (pid: number): Set<string> => new Set(seen.filter((l) => l.endsWith(` ${pid}`)).map((l) => l.split(' ')[0]));
      expect(by(process.pid)).toEqual(new Set(['refreshed', 'immediate', 'timeout', 'interval', 'unref', 'sleep']));
      for (const pid of children) expect(by(pid)).toEqual(new Set(['refreshed', 'unref']));
    }
  });

  it("the parent's fs.watch and fs.watchFile watchers never report in a map child; in the parent they go on", async () => {
    // Without src/watchers.ts every child (pool and isolation alike) gets each event too: libuv re-adds the
    // parent's inotify watches in a forked child, and fs.watchFile keeps polling there.
    const dir = scratch();
    const polled = path.join(dir, 'polled');
    fs.writeFileSync(polled, '0');
    const seen: string[] = [];
    const watcher = fs.watch(dir, (_event, name) => seen.push(`${process.pid} ${name}`));
    const onPoll = (): void => void seen.push(`${process.pid} polled-change`);
    // The same listener twice (Node adds it twice), and one more on the poller itself.
    fs.watchFile(polled, { interval: 20 }, onPoll);
    const poller = fs.watchFile(polled, { interval: 20 }, onPoll);
    poller.on('change', () => void seen.push(`${process.pid} poller-change`));
    try {
      for (const isolation of [false, true]) {
        seen.length = 0;
        const saw = await whatChildrenSaw(seen, isolation, () => {
          for (let i = 0; i < 5; i++) fs.writeFileSync(path.join(dir, `f${i}`), 'x');
          fs.writeFileSync(polled, isolation ? '22' : '1');
        });
        expect(saw).toEqual([[], []]);
        await waitFor(() => seen.includes(`${process.pid} polled-change`) && seen.includes(`${process.pid} f4`), 10_000);
      }
    } finally {
      watcher.close();
      fs.unwatchFile(polled);
    }
  });

  it("a parent's fetch with AbortSignal.timeout() and http.get with { timeout } time out in the parent only, never in a map child", async () => {
    // Both timers are unref'd. Each child ran the parent's handlers: the fetch rejected there with TimeoutError
    // (without src/abort-signals.ts) and the request's 'timeout' and 'error' handlers ran (without src/timers.ts
    // marking the socket's timer).
    const server = http.createServer((_req, res) => setTimeout(() => res.end('late'), 4000));
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;
    try {
      for (const isolation of [false, true]) {
        const seen: string[] = [];
        const fetched = fetch(url, { signal: AbortSignal.timeout(300) }).then(
          () => seen.push(`${process.pid} fetch resolved`),
          (err: Error) => seen.push(`${process.pid} fetch ${err.name}`),
        );
        // A composite deadline: its own listeners are the parent's too.
        const composite = AbortSignal.any([AbortSignal.timeout(300), new AbortController().signal]);
        composite.addEventListener('abort', () => seen.push(`${process.pid} composite aborted`));
        const req = http.get(url, { timeout: 300 }, (res) => res.resume());
        req.on('timeout', () => {
          seen.push(`${process.pid} request timeout`);
          req.destroy(new Error('too slow'));
        });
        req.on('error', (err) => seen.push(`${process.pid} request error ${err.message}`));
        // Forked while both are in flight; the children outlive both timeouts.
        await new Promise((r) => setTimeout(r, 50));
        expect(await whatChildrenSaw(seen, isolation)).toEqual([[], []]);
        await fetched;
        await waitFor(() => seen.length === 4, 10_000);
        expect(new Set(seen)).toEqual(
          new Set([`${process.pid} fetch TimeoutError`, `${process.pid} composite aborted`, `${process.pid} request timeout`, `${process.pid} request error too slow`]),
        );
      }
    } finally {
      server.closeAllConnections();
      server.close();
    }
  });

  it('a deadline the parent made with AbortSignal.timeout() still aborts the children\'s own work, on time', async () => {
    // The parent's listeners on it are removed in a child (src/abort-signals.ts), not the signal's timer: items
    // that share a parent's deadline must still be cut short by it.
    const deadline = AbortSignal.timeout(400);
    deadline.addEventListener('abort', () => undefined);
    const out = await map(
      [0, 1],
      async () => {
        const t0 = Date.now();
        return new Promise<string>((resolve) => {
          deadline.addEventListener('abort', () => resolve(`aborted: ${(deadline.reason as Error).name}`));
          setTimeout(() => resolve(`not aborted after ${Date.now() - t0} ms`), 5000);
        });
      },
      { concurrency: 2, timeout: 20_000 },
    );
    expect(out).toEqual(['aborted: TimeoutError', 'aborted: TimeoutError']);
  });

  it("a child's own fs.watchFile of a file the parent polls reports in the child", async () => {
    // Node keeps one poller per path. Without src/watchers.ts taking the parent's out of that table, the child's
    // listener joined the parent's poller, which the child had stopped, and never ran.
    const polled = path.join(scratch(), 'polled');
    fs.writeFileSync(polled, '0');
    const onParentPoll = (): void => undefined;
    fs.watchFile(polled, { interval: 20 }, onParentPoll);
    try {
      const out = await map(
        [0, 1],
        async (i) => {
          const changed = new Promise<string>((resolve) => fs.watchFile(polled, { interval: 20 }, () => resolve('changed')));
          await new Promise((r) => setTimeout(r, 100));
          fs.writeFileSync(polled, `child ${i}`);
          return Promise.race([changed, new Promise((r) => setTimeout(() => r('no change seen'), 3000))]);
        },
        { concurrency: 2, timeout: 20_000 },
      );
      expect(out).toEqual(['changed', 'changed']);
    } finally {
      fs.unwatchFile(polled, onParentPoll);
    }
  });

  it("the body of a parent's fs.promises.watch() loop never runs in a map child, and its pending step never settles there", async () => {
    // Without native/watchers.c each child ran the loop's body once per event (the parent's code, in the child),
    // and a child whose copy of the step had failed would have run the loop's catch block.
    const dir = scratch();
    const seen: string[] = [];
    const ac = new AbortController();
    const loop = (async () => {
      try {
        for await (const e of fs.promises.watch(dir, { signal: ac.signal })) seen.push(`${process.pid} ${e.filename}`);
      } catch (err) {
        seen.push(`${process.pid} threw ${(err as Error).name}`);
      }
    })();
    try {
      for (const isolation of [false, true]) {
        seen.length = 0;
        const saw = await whatChildrenSaw(seen, isolation, () => {
          for (let i = 0; i < 5; i++) fs.writeFileSync(path.join(dir, `${isolation ? 'i' : 'p'}${i}`), 'x');
        });
        expect(saw).toEqual([[], []]);
        await waitFor(() => seen.includes(`${process.pid} ${isolation ? 'i' : 'p'}4`), 10_000);
      }
    } finally {
      ac.abort();
      await loop;
    }
    expect(seen.at(-1)).toBe(`${process.pid} threw AbortError`);
  });

  it("a parent's unref'd timer that aborts a map fires in its children too, yet only the parent's map settles: no child runs the code after the await", async () => {
    // An unref'd timer of the app's still runs in a child (atFork({ child }) stops it). Here the
    // children's copy of the timer aborts their copy of the signal; their copy
    // of the call must not stop and settle, or the rest of this test would run
    // in them (found as scratch directories left by such children).
    const log = path.join(scratch(), 'after-await');
    for (const isolation of [false, true]) {
      const ac = new AbortController();
      setTimeout(() => ac.abort(new Error('stop now')), 100).unref();
      const err = await map([0, 1], () => new Promise((r) => setTimeout(r, 3000)), { concurrency: 2, isolation, signal: ac.signal }).catch((e: unknown) => e);
      fs.appendFileSync(log, `${process.pid}\n`);
      expect(err).toBeInstanceOf(AbortError);
    }
    // The map settles once its children are reaped: a child that went on would have written by now.
    expect(fs.readFileSync(log, 'utf8').trim().split('\n')).toEqual([String(process.pid), String(process.pid)]);
  });

  it('at-fork hooks run in pthread_atfork order; a child hook can stop a user interval in the child', async () => {
    const log: string[] = [];
    const ticks = path.join(scratch(), 'ticks');
    // Unref'd: a ref'd interval of the parent's never runs in a child anyway (src/timers.ts).
    const interval = setInterval(() => fs.appendFileSync(ticks, `${process.pid}\n`), 5).unref();
    const childLog: string[] = [];
    const offA = atFork({ prepare: () => log.push('prepare A'), parent: () => log.push('parent A'), child: () => childLog.push('child A') });
    const offB = atFork({
      prepare: () => log.push('prepare B'),
      parent: () => log.push('parent B'),
      child: () => {
        childLog.push('child B');
        clearInterval(interval);
      },
    });
    try {
      const out = await map([1], async () => {
        await new Promise((r) => setTimeout(r, 60));
        return [...childLog];
      });
      expect(out).toEqual([['child A', 'child B']]);
      expect(log).toEqual(['prepare B', 'prepare A', 'parent A', 'parent B']);
    } finally {
      offA();
      offB();
      clearInterval(interval);
    }
    const tickers = new Set(fs.existsSync(ticks) ? fs.readFileSync(ticks, 'utf8').trim().split('\n') : []);
    expect([...tickers].every((p) => p === String(process.pid))).toBe(true);
    // Unregistered hooks no longer run.
    const before = log.length;
    await map([1], (x) => x);
    expect(log.length).toBe(before);
  });

  it('a parent hook that throws is a warning in the parent, once per fork, and never in a child forked after it', async () => {
    const seen: string[] = [];
    const onWarning = (w: Error): void => {
      if (w.message.includes('atFork parent hook threw')) seen.push(`${process.pid} ${(w as NodeJS.ErrnoException).code}`);
    };
    process.on('warning', onWarning);
    const off = atFork({
      parent: () => {
        throw new Error('hook failed');
      },
    });
    try {
      // The pool forks its children in one macrotask: a warning queued as a tick after the first fork
      // would run in the later children.
      const inChildren = await map([0, 1, 2], async () => {
        await new Promise((r) => setTimeout(r, 50));
        return seen.filter((s) => !s.startsWith(`${process.ppid} `));
      }, { concurrency: 3 });
      expect(inChildren).toEqual([[], [], []]);
      await new Promise((r) => setImmediate(r));
      await new Promise((r) => setTimeout(r, 20));
      expect(seen).toEqual(Array(3).fill(`${process.pid} COWFORK_HOOK_THREW`));
    } finally {
      off();
      process.off('warning', onWarning);
    }
  });

  it('atFork rejects bad hooks naming the key', () => {
    expect(() => atFork({ child: 5 } as never)).toThrow(/hooks\.child must be a function/);
    expect(() => atFork(null as never)).toThrow(/hooks must be an object/);
  });
});

describe('§3 the libuv threadpool across fork', () => {
  it(`${MANY} forks while the parent keeps the threadpool busy: every child finishes its own fs and crypto work`, async () => {
    let busy = true;
    let parentOps = 0;
    const churn = async (): Promise<void> => {
      while (busy) {
        await fs.promises.readFile(__filename);
        await new Promise<Buffer>((res, rej) => crypto.pbkdf2('pw', 'salt', 1, 16, 'sha256', (e, k) => (e ? rej(e) : res(k))));
        parentOps++;
      }
    };
    const workers = [churn(), churn(), churn(), churn()];
    const expected = fs.readFileSync(__filename).length;
    const out = await map(
      Array.from({ length: MANY }, (_, i) => i),
      async () => {
        const data = await fs.promises.readFile(__filename);
        const key = await new Promise<Buffer>((res, rej) => crypto.pbkdf2('pw', 'salt', 1, 16, 'sha256', (e, k) => (e ? rej(e) : res(k))));
        return data.length + key.length;
      },
      // A deadlocked child would hit this and fail the test with TimeoutError.
      { isolation: true, concurrency: 4, timeout: 20_000 },
    );
    busy = false;
    await Promise.all(workers);
    expect(out).toEqual(Array.from({ length: MANY }, () => expected + 16));
    expect(parentOps).toBeGreaterThan(0);
  });

  it('a threadpool task inside a lock at the fork: the fork gives it a few ms to end (libuv names its threads on 22+), and does not wait out a long one', () => {
    // A crypto job holds OpenSSL's locks at moments; a child that inherits
    // one held hangs on it (docs/hazards.md §3, seen in CI on Node 24). The
    // hook's task holds a lock while it spins, as such a job computes.
    /**
     * What the child of a fork taken while the task holds the lock found: the lock free, held, or held by a
     * task that never ran while the census waited for it ('starved': no CPU for the whole wait, as on a loaded
     * machine, so the fork rightly went ahead).
     */
    const inChild = (flags: number, untilWaited: boolean): 'free' | 'held' | 'starved' => {
      // Up to 200 ms, or (untilWaited) only until the fork's census has waited for it.
      native.testTaskHold(200_000, untilWaited);
      const pid = native.fork([], flags);
      if (pid === 0) native.exit(!native.testTaskLockHeld() ? 0 : native.testTaskNoticed() ? 1 : 2);
      const st = native.waitpid(pid, false);
      expect(st?.[2]).toBe(0);
      return (['free', 'held', 'starved'] as const)[st![1]!]!;
    };
    const heldInChild = (flags: number, untilWaited: boolean): boolean => inChild(flags, untilWaited) !== 'free';
    /** A short task's fork, again (up to 5 times) while the task got no CPU during the census's wait. */
    const shortTask = (): boolean => {
      let seen = inChild(0, true);
      for (let retry = 0; retry < 4 && seen === 'starved'; retry++) seen = inChild(0, true);
      return seen !== 'free';
    };
    const short = Array.from({ length: 4 }, shortTask);
    // Asked once the task has started the threadpool: libuv names its threads as they start.
    const named = libuvNamesItsThreads();
    const shortUnsettled = Array.from({ length: 4 }, () => heldInChild(native.FORK_FLAGS.SKIP_WORK_SETTLE, true));
    const long = Array.from({ length: 2 }, () => heldInChild(0, false));
    // Without the wait, the census never waits for the task, so it still holds the lock at fork().
    expect(shortUnsettled).toEqual([true, true, true, true]);
    // With it, a task that ends once the census waits for it ends before fork(),
    // where the census can tell libuv's threads apart; Node 20's are unnamed,
    // and there the hazard remains.
    expect(short).toEqual(named ? [false, false, false, false] : [true, true, true, true]);
    // A task longer than the wait's 5 ms is not waited out: the fork goes ahead.
    expect(long).toEqual([true, true]);
  });

  it("the trace categories a threadpool thread looks up are registered before the first fork (V8's tracing lock is never left held)", async () => {
    // A libuv thread registering one while the parent forked left the child
    // that lock held: its first crypto call never finished (gdb, Node 26).
    // The lock cannot be held from outside, so this checks the registration.
    await map([1], (x) => x, { isolation: true });
    const glibc = (process.report.getReport() as { header: { glibcVersionRuntime?: string } }).header.glibcVersionRuntime;
    expect(native.forkTraceCategories()).toBe(glibc ? 2 : 0);
  });
});

describe("§2 the V8 platform's worker pool across fork", () => {
  const gc = fullGc();
  /** Runs `times` full collections, each with weak references to clear; returns the objects made. */
  const collect = (times: number): number => {
    let n = 0;
    for (let k = 0; k < times; k++) {
      n += weakGarbage();
      gc();
    }
    return n;
  };

  it("children run full collections after the parent's pool has run tasks (its parked threads' condvar is reset)", async () => {
    // The parent's own full collections hand V8 jobs to its worker pool, so
    // the pool's threads wake and park again, in both of glibc's groups.
    collect(5);
    const out = await map(
      Array.from({ length: 8 }, (_, i) => i),
      (i) => i + collect(25),
      // Without the repair, every child blocks in pthread_cond_signal and this times out.
      { concurrency: 4, isolation: true, timeout: 15_000 },
    );
    expect(out).toEqual(Array.from({ length: 8 }, (_, i) => i + 25 * 2000));
  });

  it('a worker_thread started in a child after full collections runs and exits (nothing is left for the pool to drain)', async () => {
    collect(5);
    const out = await map(
      [6, 7],
      async (x) => {
        collect(10);
        // Node drains the V8 pool's outstanding tasks when the thread's loop
        // runs dry; tasks posted to the vanished pool would make that wait forever.
        const w = new Worker('require("node:worker_threads").parentPort.postMessage(Number(process.argv.at(-1)) * 6)', { eval: true, argv: [x] });
        // Both listeners before the first await: when the thread's end reaches
        // this thread first, Node emits the queued 'message' and then 'exit'
        // in one synchronous call, and a listener added after 'message' waits
        // for an 'exit' that has already gone (gdb: the child idle in epoll,
        // its Worker's thread gone; docs/hazards.md).
        const exited = once(w, 'exit');
        const [value] = (await once(w, 'message')) as [number];
        const [code] = (await exited) as [number];
        return [value, code];
      },
      { isolation: true, timeout: 10_000 },
    );
    expect(out).toEqual([
      [36, 0],
      [42, 0],
    ]);
  });
});
