// Code reload: `cowfork serve app.js` under load; app.js is rewritten and the
// master gets USR2. No request fails, the new code answers everything within
// 10 s, and the master's pid does not change. A new version with a syntax
// error, or whose worker throws, is reported and the old code keeps serving.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { prefork } from '../src/index';
import { FIXTURES, ROOT, isAlive, runNode, tempDir } from './helpers';
import { type Proc, httpGet as get, startProcess, stopAll } from './prefork-helpers';
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { load } = require('./fixtures/prefork-load.js');

const CLI = path.join(ROOT, 'bin', 'cowfork.js');
const procs: Proc[] = [];
const dirs: string[] = [];

afterEach(async () => {
  await stopAll(procs);
  for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
});

/** An app module that answers `version` and names its worker's pid. */
const app = (version: string): string => `
exports.worker = (ctx) => ctx.serve((req, res) => {
  res.setHeader('x-pid', String(process.pid));
  res.end(${JSON.stringify(version)});
});
`;

const workerPids = (stderr: string, generation: number): number[] =>
  [...stderr.matchAll(new RegExp(`forked \\(pid (\\d+), generation ${generation}\\)`, 'g'))].map((m) => Number(m[1]));

describe('code reload (USR2)', () => {
  it('cowfork serve: USR2 under load loads the rewritten app.js: 0 failed requests, the new code within 10 s, the same master pid; a broken version is reported and the old code keeps serving', async () => {
    const dir = tempDir('cowfork-reload-');
    dirs.push(dir);
    const file = path.join(dir, 'app.js');
    fs.writeFileSync(file, app('v1'));
    const m = startProcess([CLI, 'serve', file, '--workers', '2', '--host', '127.0.0.1', '--port', '0', '--timeout', '3000']);
    procs.push(m);
    const ready = await m.waitStderr((s: string) => /ready on http:\/\/127\.0\.0\.1:\d+ \(master pid \d+\)/.test(s), 20_000);
    const [, port, masterPid] = /ready on http:\/\/127\.0\.0\.1:(\d+) \(master pid (\d+)\)/.exec(ready)!.map(Number);
    expect(masterPid).toBe(m.pid);
    expect((await get(port)).body).toBe('v1');
    const oldPids = workerPids(m.stderr, 0);
    expect(oldPids).toHaveLength(2);

    const gen = load({ port, connections: 6, durationMs: 60_000 });
    await new Promise((r) => setTimeout(r, 300));
    fs.writeFileSync(file, app('v2'));
    process.kill(masterPid, 'SIGUSR2');
    const t0 = Date.now();
    await m.waitStderr((s: string) => /reloaded: generation 1 serves/.test(s), 10_000);
    // Every answer now comes from the new code, on new connections as on the kept-alive ones.
    for (let i = 0; i < 20; i++) expect((await get(port)).body).toBe('v2');
    expect(Date.now() - t0).toBeLessThan(10_000);
    await new Promise((r) => setTimeout(r, 300));
    const stats = await gen.stop();
    expect(stats.failures).toEqual([]);
    expect(stats.refused).toBe(0);
    expect(stats.non2xx).toBe(0);
    const newPids = workerPids(m.stderr, 1);
    expect(newPids).toHaveLength(2);
    // Both versions served the load, and the old workers drained and exited 0.
    expect(oldPids.some((p) => stats.byPid.has(p))).toBe(true);
    expect(newPids.some((p) => stats.byPid.has(p))).toBe(true);
    for (const p of oldPids) expect(m.stderr).toMatch(new RegExp(`\\(pid ${p}\\) exited with code 0 \\(reload\\)`));
    // The same master, still the process the operator started.
    expect(isAlive(masterPid)).toBe(true);
    expect(m.child.exitCode).toBe(null);

    // A syntax error: reported, and v2 keeps serving.
    fs.writeFileSync(file, 'exports.worker = (ctx) => {{ ;\n');
    process.kill(masterPid, 'SIGUSR2');
    await m.waitStderr((s: string) => /reload failed: prefork: the new code failed to load, the old workers keep serving: .*\n(.|\n)*SyntaxError/.test(s), 10_000);
    for (let i = 0; i < 5; i++) expect((await get(port)).body).toBe('v2');

    // A worker that throws at start: its new workers die, the reload fails, v2 keeps serving.
    fs.writeFileSync(file, "exports.worker = () => { throw new Error('v3 cannot boot'); };\n");
    process.kill(masterPid, 'SIGUSR2');
    await m.waitStderr((s: string) => /reload failed: prefork: new worker \d \(pid \d+\) exited with code \d+ before it was ready; the old workers keep serving/.test(s), 10_000);
    for (let i = 0; i < 5; i++) expect((await get(port)).body).toBe('v2');
    // The v2 workers never noticed.
    for (const p of newPids) {
      expect(isAlive(p)).toBe(true);
      expect(m.stderr).not.toContain(`(pid ${p}) exited`);
    }

    // And a good version after the failures still reloads.
    fs.writeFileSync(file, app('v4'));
    process.kill(masterPid, 'SIGUSR2');
    await m.waitStderr((s: string) => /reloaded: generation \d+ serves/.test(s.slice(s.indexOf('v3 cannot boot'))), 10_000);
    for (let i = 0; i < 5; i++) expect((await get(port)).body).toBe('v4');

    // A version whose workers never become ready: given up after --timeout, v4 keeps serving.
    const before = m.stderr.length;
    fs.writeFileSync(file, 'exports.worker = () => new Promise(() => {});\n');
    process.kill(masterPid, 'SIGUSR2');
    await m.waitStderr((s: string) => /reload failed: prefork: the new workers were not all ready within 3000 ms; the old workers keep serving/.test(s.slice(before)), 10_000);
    for (let i = 0; i < 5; i++) expect((await get(port)).body).toBe('v4');

    m.child.kill('SIGTERM');
    expect(await m.exited).toEqual({ code: 0, signal: null });
  });

  it('an ESM app (default-exported handler) is reloaded too', async () => {
    const dir = tempDir('cowfork-reload-');
    dirs.push(dir);
    const file = path.join(dir, 'app.mjs');
    const esm = (v: string): string => `export default (req, res) => res.end(${JSON.stringify(v)});\n`;
    fs.writeFileSync(file, esm('e1'));
    const m = startProcess([CLI, 'serve', file, '--workers', '1', '--host', '127.0.0.1', '--port', '0']);
    procs.push(m);
    const ready = await m.waitStderr((s: string) => /ready on http:\/\/127\.0\.0\.1:\d+/.test(s), 20_000);
    const port = Number(/ready on http:\/\/127\.0\.0\.1:(\d+)/.exec(ready)![1]);
    expect((await get(port)).body).toBe('e1');
    fs.writeFileSync(file, esm('e2'));
    m.child.kill('SIGUSR2');
    await m.waitStderr((s: string) => /reloaded: generation 1 serves/.test(s), 10_000);
    expect((await get(port)).body).toBe('e2');
  });

  it('master.reload() rejects a function worker with a TypeError', async () => {
    const master = prefork({ workers: 1, worker: () => {} });
    await master.ready;
    await expect(master.reload()).rejects.toThrow(/reload\(\) needs options\.worker to be a module path/);
    await master.stop();
  });

  it('a master whose forks are held back (a request of its own never finishes): a new version that cannot boot is still reported, and the old workers keep serving', async () => {
    // The master forks once its own requests are done, or after a wait (src/prefork/quiet.ts). A reload that took
    // the held-back forks for new workers that were all ready retired the old ones for code that cannot boot.
    const dir = tempDir();
    dirs.push(dir);
    const fifo = path.join(dir, 'fifo');
    execFileSync('mkfifo', [fifo]);
    const r = await runNode(['--single-threaded', path.join(FIXTURES, 'prefork-reload-pending.js'), dir, fifo], { timeoutMs: 40_000 });
    expect(r.code).toBe(0);
    const out = JSON.parse(r.stdout.trim().split('\n').at(-1)!) as { reload: string; stats: [number, number, string][]; body: string };
    expect(out.reload).toMatch(/^ReloadError: .*the old workers keep serving/);
    // The old workers serve; a new one may still be stopping.
    expect(out.stats.filter((w) => w[1] === 0)).toEqual([
      [0, 0, 'ready'],
      [1, 0, 'ready'],
    ]);
    expect(out.stats.filter((w) => w[2] === 'ready' && w[1] !== 0)).toEqual([]);
    expect(out.body).toBe('v1');
  });
});
