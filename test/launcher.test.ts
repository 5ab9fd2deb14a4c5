// Fork safety: without --single-threaded every forking API rejects with
// ForkUnsafeError saying how to start; the launcher and register fix it.
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ForkUnsafeError, isForkSafe, map } from '../src/index';
import { FIXTURES, ROOT, runNode } from './helpers';

const fixture = path.join(FIXTURES, 'parallel-map.js');
const cli = path.join(ROOT, 'bin', 'cowfork.js');

function parse(stdout: string): Record<string, unknown> {
  return JSON.parse(stdout.trim().split('\n').at(-1)!) as Record<string, unknown>;
}

describe('fork safety', () => {
  it('this test process runs with the flag', async () => {
    expect(isForkSafe()).toBe(true);
    expect(await map([1], (x) => x)).toEqual([1]);
  });

  it('a process without --single-threaded gets ForkUnsafeError explaining how to start', async () => {
    const r = await runNode([fixture]);
    const out = parse(r.stdout);
    expect(out).toMatchObject({ ok: false, name: 'ForkUnsafeError', code: 'ERR_FORK_UNSAFE' });
    expect(out.message).toMatch(/--single-threaded/);
    expect(out.message).toContain(`npx cowfork run ${fixture}`);
    expect(out.message).toContain('node -r cowfork/register');
    expect(new ForkUnsafeError('x').code).toBe('ERR_FORK_UNSAFE');
  });

  it('`cowfork run script.js` re-executes in place (same pid) with the flag', async () => {
    const r = await runNode([cli, 'run', fixture, 'extra-arg']);
    const out = parse(r.stdout);
    expect(out).toMatchObject({ ok: true, result: [2, 4, 6], forkSafe: true });
    expect(out.pid).toBe(r.pid);
    expect(out.execArgv).toContain('--single-threaded');
    // One V8 pool thread: no condvar split for a child to hang on (docs/hazards.md §2).
    expect(out.execArgv).toContain('--v8-pool-size=1');
    expect(r.code).toBe(0);
  });

  it("the launcher keeps the user's own --v8-pool-size", async () => {
    const r = await runNode(['--v8-pool-size=2', cli, 'run', fixture]);
    const out = parse(r.stdout);
    expect(out).toMatchObject({ ok: true, forkSafe: true });
    expect(out.execArgv).toContain('--v8-pool-size=2');
    expect(out.execArgv).not.toContain('--v8-pool-size=1');
  });

  it('`node -r cowfork/register` and `node --import cowfork/register` opt an existing app in', async () => {
    for (const flag of ['-r', '--import']) {
      const r = await runNode([flag, path.join(ROOT, 'dist', 'register.js'), fixture]);
      const out = parse(r.stdout);
      expect(out).toMatchObject({ ok: true, result: [2, 4, 6], forkSafe: true });
      expect(out.execArgv).toContain('--v8-pool-size=1');
      expect(out.pid).toBe(r.pid);
    }
  });

  it('the CLI explains bad usage', async () => {
    const missing = await runNode([cli, 'run']);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toMatch(/cowfork run: missing <script\.js>/);
    const unknown = await runNode([cli, 'frobnicate']);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toMatch(/unknown command 'frobnicate'/);
    const help = await runNode([cli, '--help']);
    expect(help.code).toBe(0);
    expect(help.stdout).toMatch(/cowfork run <script\.js>/);
  });
});
