// No zombies, no fd growth, no scratch directories: after many items, after a
// kill -9 of a child, and after SIGINT/SIGTERM to the parent mid-call.
import fs from 'node:fs';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { WorkerCrashedError, each, map } from '../src/index';
import { FIXTURES, childrenOf, fdCount, isAlive, scratchDirsOf, tempDir, waitFor, zombiesOf } from './helpers';

describe('no leaks', () => {
  it('after 2,000 items (pool and isolation): no zombies, same fd count, no scratch dir', async () => {
    await map([1], (x) => x); // load lazily-opened fds first
    const fds = fdCount();
    const out = await map(Array.from({ length: 2000 }, (_, i) => i), (i) => i * 3, { concurrency: 2 });
    expect(out[1999]).toBe(5997);
    await each(Array.from({ length: 2000 }, (_, i) => i), () => undefined, { concurrency: 2 });
    const iso = await map(Array.from({ length: 150 }, (_, i) => i), (i) => i, { isolation: true, concurrency: 4 });
    expect(iso.length).toBe(150);
    expect(zombiesOf()).toEqual([]);
    expect(childrenOf()).toEqual([]);
    expect(fdCount()).toBe(fds);
    expect(scratchDirsOf()).toEqual([]);
  });

  it('after a kill -9 of a child: no zombies, same fd count, no scratch dir', async () => {
    await map([1], (x) => x);
    const fds = fdCount();
    const dir = tempDir();
    try {
      const call = map([0, 1, 2], (i) => {
        if (i === 1) {
          fs.writeFileSync(path.join(dir, 'pid'), String(process.pid));
          return new Promise(() => setInterval(() => {}, 1000));
        }
        return i;
      }, { concurrency: 3 });
      await waitFor(() => fs.existsSync(path.join(dir, 'pid')) && fs.statSync(path.join(dir, 'pid')).size > 0);
      process.kill(Number(fs.readFileSync(path.join(dir, 'pid'), 'utf8')), 'SIGKILL');
      await expect(call).rejects.toBeInstanceOf(WorkerCrashedError);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
    expect(zombiesOf()).toEqual([]);
    expect(childrenOf()).toEqual([]);
    expect(fdCount()).toBe(fds);
    expect(scratchDirsOf()).toEqual([]);
  });

  it('after process.exit() in the parent mid-call: children killed and reaped, scratch dir removed', async () => {
    const child = spawn(process.execPath, ['--single-threaded', path.join(FIXTURES, 'parallel-interrupt.js'), 'pool', 'exit'], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    child.stdout.on('data', (d) => (stdout += d));
    const exited = new Promise<number | null>((r) => child.on('exit', (c) => r(c)));
    await waitFor(() => stdout.includes('"ready"') && childrenOf(child.pid!).length >= 2, 20_000);
    const { dirs } = JSON.parse(stdout.trim().split('\n').find((l) => l.includes('"ready"'))!) as { dirs: string[] };
    const grandchildren = childrenOf(child.pid!).map((c) => c.pid);
    expect(await exited).toBe(3);
    for (const pid of grandchildren) expect(isAlive(pid)).toBe(false);
    expect(fs.existsSync(dirs[0])).toBe(false);
  });

  for (const [signal, mode] of [
    ['SIGINT', 'pool'],
    ['SIGTERM', 'isolation'],
  ] as const) {
    it(`after ${signal} to the parent mid-call (${mode}): children killed and reaped, scratch dir removed, signal re-raised`, async () => {
      const child = spawn(process.execPath, ['--single-threaded', path.join(FIXTURES, 'parallel-interrupt.js'), mode], {
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let stdout = '';
      child.stdout.on('data', (d) => (stdout += d));
      const exited = new Promise<[number | null, NodeJS.Signals | null]>((r) => child.on('exit', (c, s) => r([c, s])));
      await waitFor(() => stdout.includes('"ready"') && childrenOf(child.pid!).length >= 2, 20_000);
      const { dirs } = JSON.parse(stdout.trim().split('\n').find((l) => l.includes('"ready"'))!) as { dirs: string[] };
      const grandchildren = childrenOf(child.pid!).map((c) => c.pid);
      expect(dirs.length).toBe(1);
      expect(fs.existsSync(dirs[0])).toBe(true);

      child.kill(signal);
      const [code, sig] = await exited;
      expect(code).toBeNull();
      expect(sig).toBe(signal);
      expect(stdout).not.toContain('unexpected');
      for (const pid of grandchildren) expect(isAlive(pid)).toBe(false);
      expect(fs.existsSync(dirs[0])).toBe(false);
      expect(scratchDirsOf(child.pid!)).toEqual([]);
    });
  }
});
