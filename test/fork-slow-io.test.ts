// libuv runs at most half its pool on slow I/O (getaddrinfo: dns.lookup) and
// counts the running requests in a variable that fork() copies and libuv's
// post-fork re-initialization leaves alone. A child forked while the parent
// had two lookups running kept that count with no thread to lower it, so
// every dns.lookup in the child waited forever (docs/hazards.md). The parent's
// lookups are held running without any network: getaddrinfo opens the
// HOSTALIASES file, here a FIFO that nobody writes.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { native } from '../src/native';
import { FIXTURES, runNode, tempDir, unsafeFlagsEnv } from './helpers';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
});

async function childLookups(unsafeFlags: number): Promise<{ blocked: number; got: string[] }> {
  const dir = tempDir();
  dirs.push(dir);
  const fifo = path.join(dir, 'aliases');
  execFileSync('mkfifo', [fifo]);
  const r = await runNode(['--single-threaded', path.join(FIXTURES, 'dns-blocked.js'), '4'], {
    env: { ...unsafeFlagsEnv(unsafeFlags), HOSTALIASES: fifo },
    timeoutMs: 60_000,
  });
  expect(r.code, r.stderr.slice(-2000)).toBe(0);
  return JSON.parse(r.stdout.trim().split('\n').pop()!);
}

describe("dns.lookup in children while the parent's lookups are running", () => {
  it('without the repair, every lookup in the children waits forever (here: until the 5 s timeout)', async () => {
    const out = await childLookups(native.FORK_FLAGS.SKIP_PARENT_WORK);
    expect(out.blocked).toBe(2);
    expect(out.got).toEqual(['TimeoutError', 'TimeoutError', 'TimeoutError', 'TimeoutError']);
  }, 90_000);

  it('with the repair (the default), the children resolve localhost', async () => {
    const out = await childLookups(0);
    expect(out.blocked).toBe(2);
    expect(out.got).toEqual(['127.0.0.1', '127.0.0.1', '127.0.0.1', '127.0.0.1']);
  }, 90_000);
});
