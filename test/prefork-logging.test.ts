// Logging from prefork workers through a logger the master made (src/prefork/quiet.ts).
// pino's default destination writes asynchronously: just after the master logs
// a line, a write is in flight on its threadpool. A worker forked then
// inherited the logger waiting for that write's completion, which only the
// master's threadpool delivers, and every line the worker logged was lost,
// all its life long. And a worker that logs as it shuts down leaves only once
// those lines are written (src/child-exit.ts). Through `cowfork serve`, as a
// pino user runs an app.
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ROOT } from './helpers';
import { type Ev, type Proc, httpGet, startProcess, stopAll } from './prefork-helpers';

const CLI = path.join(ROOT, 'bin', 'cowfork.js');
const started: Proc[] = [];
afterEach(() => stopAll(started));

type Line = Ev & { msg?: string; url?: string };

describe("a pino logger the master made and logged through before it forked", () => {
  it("every worker's lines reach the log, the last ones too at a graceful stop", async () => {
    const proc = startProcess([CLI, 'serve', 'test/fixtures/prefork-pino-app.js', '--workers', '2', '--host', '127.0.0.1', '--port', '0']);
    started.push(proc);
    const stderr = await proc.waitStderr((s: string) => /ready on http:\/\/127\.0\.0\.1:\d+/.test(s), 20_000);
    const port = Number(/ready on http:\/\/127\.0\.0\.1:(\d+)/.exec(stderr)![1]);
    const urls = Array.from({ length: 10 }, (_, i) => `/r${i}`);
    for (const u of urls) expect((await httpGet(port, u)).status).toBe(200);
    proc.child.kill('SIGTERM');
    const exit = await Promise.race([proc.exited, new Promise((r) => setTimeout(() => r('still running after 15 s'), 15_000))]);
    expect(exit).toEqual({ code: 0, signal: null });
    const lines = proc.events as Line[];
    expect(lines.filter((l) => l.msg === 'app loaded')).toHaveLength(1);
    expect(lines.filter((l) => l.msg === 'worker up').map((l) => l.num).sort()).toEqual([0, 1]);
    expect(lines.filter((l) => l.msg === 'request').map((l) => l.url).sort()).toEqual([...urls].sort());
    // Logged as each worker drains, just before it leaves: a worker waits for its own pending writes.
    expect(lines.filter((l) => l.msg === 'shutting down')).toHaveLength(40);
  });
});
