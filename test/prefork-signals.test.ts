// Signals reach the master however it was started. `npx cowfork serve`, run
// from a shell script as a user would, puts npm and a shell in front of the
// master: TERM to the pid the script got (npx's) must drain and stop the
// master, not orphan it. --pid-file names the master, and is written
// atomically and removed on exit.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { FIXTURES, ROOT, isAlive, runNode, tempDir, waitFor } from './helpers';
import { type Proc, httpGet as get, startProcess } from './prefork-helpers';
const CLI = path.join(ROOT, 'bin', 'cowfork.js');

const dirs: string[] = [];
const pids: number[] = [];
const procs: Proc[] = [];

afterEach(async () => {
  for (const p of procs.splice(0)) {
    if (p.child.exitCode === null && p.child.signalCode === null) p.child.kill('SIGKILL');
    await p.exited;
  }
  // Whatever a failed test left behind: the master and its workers are not our children.
  for (const pid of pids.splice(0)) {
    if (isAlive(pid)) process.kill(pid, 'SIGKILL');
  }
  for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
});

/** A project that depends on cowfork, as `npm install cowfork` leaves it. */
function project(): string {
  const dir = tempDir('cowfork-npx-');
  dirs.push(dir);
  fs.mkdirSync(path.join(dir, 'node_modules', '.bin'), { recursive: true });
  fs.symlinkSync(ROOT, path.join(dir, 'node_modules', 'cowfork'));
  fs.symlinkSync('../cowfork/bin/cowfork.js', path.join(dir, 'node_modules', '.bin', 'cowfork'));
  fs.writeFileSync(path.join(dir, 'package.json'), JSON.stringify({ name: 'app', private: true, dependencies: { cowfork: '*' } }));
  fs.copyFileSync(path.join(FIXTURES, 'prefork-app.js'), path.join(dir, 'app.js'));
  return dir;
}

const READY = /ready on http:\/\/127\.0\.0\.1:(\d+) \(master pid (\d+)\)/;

describe('signals reach the master', () => {
  it('kill -TERM to the pid of `npx cowfork serve` (started by a shell script) drains and stops the master; --pid-file names it', async () => {
    const dir = project();
    const pidFile = path.join(dir, 'master.pid');
    // The script a user would write: start it in the background, keep $!.
    const script = `npx cowfork serve app.js --workers 2 --host 127.0.0.1 --port 0 --pid-file ${pidFile} & echo $! > npx.pid; wait`;
    const sh = spawn('sh', ['-c', script], { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    sh.stderr.on('data', (d) => (stderr += d));
    sh.stdout.resume();
    // 'exit', not 'close': a master that outlived the shell would hold its pipes open.
    const shExited = new Promise((r) => sh.on('exit', r));
    try {
      await waitFor(() => READY.test(stderr), 30_000);
      const [, port, masterPid] = READY.exec(stderr)!.map(Number);
      pids.push(masterPid);
      const workers = [...stderr.matchAll(/forked \(pid (\d+)/g)].map((m) => Number(m[1]));
      pids.push(...workers);
      const npxPid = Number(fs.readFileSync(path.join(dir, 'npx.pid'), 'utf8'));
      // npm and a shell stand between the pid the script has and the master.
      expect(npxPid).not.toBe(masterPid);
      expect(Number(fs.readFileSync(pidFile, 'utf8'))).toBe(masterPid);

      const slow = get(port, '/slow?ms=1500');
      await new Promise((r) => setTimeout(r, 300));
      process.kill(npxPid, 'SIGTERM');
      // The request in flight completes: the master drained.
      expect((await slow).status).toBe(200);
      await waitFor(() => !isAlive(masterPid), 15_000);
      for (const w of workers) expect(isAlive(w)).toBe(false);
      expect(stderr.match(/exited with code 0 \(stop\)/g)).toHaveLength(2);
      expect(stderr).toMatch(/cowfork serve: stopped/);
      expect(fs.existsSync(pidFile)).toBe(false);
    } finally {
      if (sh.exitCode === null && sh.signalCode === null) sh.kill('SIGKILL');
      await shExited;
      sh.stdout.destroy();
      sh.stderr.destroy();
    }
  });

  it('--pid-file: HUP to the pid in it restarts; a second master refuses to start; the file goes on TERM; a stale file is replaced', async () => {
    const dir = tempDir('cowfork-pidfile-');
    dirs.push(dir);
    const pidFile = path.join(dir, 'master.pid');
    // A stale file: the pid of a process that has exited.
    const gone = await runNode(['-e', '0']);
    fs.writeFileSync(pidFile, `${gone.pid}\n`);

    const args = [CLI, 'serve', 'test/fixtures/prefork-app.js', '--workers', '1', '--host', '127.0.0.1', '--port', '0', '--pid-file', pidFile];
    const m = startProcess(args);
    procs.push(m);
    await m.waitStderr((s: string) => READY.test(s), 20_000);
    const masterPid = Number(fs.readFileSync(pidFile, 'utf8'));
    expect(masterPid).toBe(m.pid);
    expect(fs.readdirSync(dir)).toEqual(['master.pid']); // no temporary file left

    process.kill(Number(fs.readFileSync(pidFile, 'utf8')), 'SIGHUP');
    await m.waitStderr((s: string) => /generation 1\)/.test(s), 10_000);

    const second = await runNode([...args.slice(0, -4), '--port', '0', '--pid-file', pidFile]);
    expect(second.code).toBe(1);
    expect(second.stderr).toContain(`names pid ${masterPid}, which is running: is a master running already?`);
    expect(Number(fs.readFileSync(pidFile, 'utf8'))).toBe(masterPid);

    m.child.kill('SIGTERM');
    expect(await m.exited).toEqual({ code: 0, signal: null });
    expect(fs.existsSync(pidFile)).toBe(false);
  });

  it('--pid-file in a directory that does not exist fails clearly', async () => {
    const r = await runNode([CLI, 'serve', 'test/fixtures/prefork-app.js', '--port', '0', '--pid-file', '/nonexistent-dir/x.pid']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/cannot write --pid-file \/nonexistent-dir\/x\.pid: ENOENT/);
  });
});
