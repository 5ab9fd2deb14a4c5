// Targeted tests of the C core, through the binding.
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { native } from '../src/native';
import { scratchBase } from '../src/scratch';

function waitExit(pid: number): [number, number, number] {
  const r = native.waitpid(pid, false);
  if (r === null) throw new Error('waitpid returned no status');
  return r;
}

describe('fork(2) and MADV_DONTFORK (§1)', () => {
  // A live heap of a few hundred thousand objects, all in V8 pages.
  const heap = Array.from({ length: 300_000 }, (_, i) => ({ i, s: `item-${i}` }));
  const touch = (): number => heap.reduce((n, o) => n + o.i + o.s.length, 0) % 200;

  it('without MADV_DOFORK the child has no V8 heap and dies of SIGSEGV', () => {
    const results: number[] = [];
    for (let k = 0; k < 3; k++) {
      const pid = native.fork([], native.FORK_FLAGS.SKIP_DOFORK);
      if (pid === 0) native.exit(touch());
      results.push(waitExit(pid)[2]);
    }
    expect(results).toEqual([11, 11, 11]);
  });

  it('with MADV_DOFORK (the default) the child runs JavaScript over the copied heap', () => {
    const expected = touch();
    for (let k = 0; k < 3; k++) {
      const pid = native.fork([], 0);
      if (pid === 0) native.exit(touch());
      expect(waitExit(pid)).toEqual([pid, expected, 0]);
    }
  });

  it('doforkAll walks the mappings when asked to (test/dofork.test.ts covers the ranged path)', () => {
    expect(native.doforkAll(native.DOFORK.FORCE_WALK)).toBeGreaterThan(10);
  });
});

describe('the benchmarks\' C reference points (native/bench.c)', () => {
  const childCount = (): number => fs.readFileSync(`/proc/${process.pid}/task/${process.pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).length;

  it('time a child\'s copy-on-write pages both ways, report CPUs the machine has, and reap every child', () => {
    const before = childCount();
    const trapped = native.benchCowNs(64, false);
    const populated = native.benchCowNs(64, true);
    expect(trapped).toBeGreaterThan(0);
    expect(populated).toBeGreaterThan(0);
    const [parentCpu, childCpu] = native.benchForkCpu();
    const cpus = os.cpus().length;
    for (const cpu of [parentCpu, childCpu]) {
      expect(cpu).toBeGreaterThanOrEqual(0);
      expect(cpu).toBeLessThan(cpus);
    }
    expect(native.benchSpinNs(0, 1000, false)).toBeGreaterThan(0);
    expect(native.benchSpinNs(2, 1000, true)).toBeGreaterThan(0);
    expect(childCount()).toBe(before);
  });
});

describe('waitpid and pipes', () => {
  it('reaps by pid with exit code or signal, and ECHILD afterwards', () => {
    const pid = native.fork([], 0);
    if (pid === 0) {
      process.kill(native.getpid(), 'SIGTERM');
      native.exit(1);
    }
    expect(waitExit(pid)).toEqual([pid, -1, 15]);
    expect(() => native.waitpid(pid, true)).toThrow(expect.objectContaining({ code: 'ECHILD' }));
  });

  it('a pidfd polls readable exactly when its child can be reaped', () => {
    const pid = native.fork([], 0);
    if (pid === 0) {
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 50);
      native.exit(4);
    }
    const fd = native.pidfdOpen(pid);
    try {
      const rev = new Int32Array(1);
      expect(native.poll(Int32Array.of(fd), Int32Array.of(1), rev, 0)).toBe(0);
      expect(native.poll(Int32Array.of(fd), Int32Array.of(1), rev, 10_000)).toBe(1);
      expect(native.waitpid(pid, true)).toEqual([pid, 4, 0]);
    } finally {
      native.close(fd);
    }
  });

  it('makes close-on-exec pipes; errors carry the errno name as code', () => {
    const [r, w] = native.pipe(false);
    const flags = (fd: number): number => parseInt(fs.readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8').match(/flags:\s+(\d+)/)![1], 8);
    expect(flags(r) & 0o2000000).toBe(0o2000000);
    expect(flags(w) & 0o2000000).toBe(0o2000000);
    native.close(r);
    native.close(w);
    expect(() => native.close(r)).toThrow(expect.objectContaining({ code: 'EBADF' }));
  });
});

describe('poll(2)', () => {
  it('reports READ when the other end writes, 0 on timeout, WRITE on an empty pipe', () => {
    const [r, w] = native.pipe(true);
    try {
      const fds = Int32Array.of(r);
      const ev = Int32Array.of(1);
      const rev = new Int32Array(1);
      expect(native.poll(fds, ev, rev, 10)).toBe(0);
      expect(rev[0]).toBe(0);
      fs.writeSync(w, 'x');
      expect(native.poll(fds, ev, rev, 1000)).toBe(1);
      expect(rev[0] & 1).toBe(1);
      expect(native.poll(Int32Array.of(w), Int32Array.of(2), rev, 0)).toBe(1);
      expect(rev[0] & 2).toBe(2);
      expect(() => native.poll(fds, Int32Array.of(1, 2), rev, 0)).toThrow(/three Int32Arrays of one length/);
    } finally {
      native.close(r);
      native.close(w);
    }
  });
});

describe('scratch directories', () => {
  it('are 0700, named by pid, on tmpfs when /dev/shm exists, and removed whole', () => {
    const dir = native.scratchCreate(scratchBase());
    try {
      expect(path.basename(dir)).toMatch(new RegExp(`^cowfork-${process.pid}-\\d+-\\d+$`));
      if (fs.existsSync('/dev/shm')) expect(path.dirname(dir)).toBe('/dev/shm');
      expect(fs.statSync(dir).mode & 0o777).toBe(0o700);
      const fd = native.scratchOpen(dir, 'a', true);
      fs.writeSync(fd, 'data');
      native.close(fd);
      expect(fs.statSync(path.join(dir, 'a')).mode & 0o777).toBe(0o600);
      // O_EXCL: an existing name is never reused.
      expect(() => native.scratchOpen(dir, 'a', true)).toThrow(expect.objectContaining({ code: 'EEXIST' }));
      // O_NOFOLLOW: a planted symlink is refused, for reading and for writing.
      fs.symlinkSync('/etc/hostname', path.join(dir, 'link'));
      expect(() => native.scratchOpen(dir, 'link', false)).toThrow(expect.objectContaining({ code: 'ELOOP' }));
      expect(() => native.scratchOpen(dir, 'link', true)).toThrow(expect.objectContaining({ code: 'EEXIST' }));
      expect(() => native.scratchOpen(dir, '../escape', true)).toThrow(expect.objectContaining({ code: 'EINVAL' }));
    } finally {
      native.scratchRemove(dir);
    }
    expect(fs.existsSync(dir)).toBe(false);
    expect(fs.existsSync('/etc/hostname')).toBe(true);
  });

  it('two directories created in the same instant get distinct names', () => {
    const a = native.scratchCreate(scratchBase());
    const b = native.scratchCreate(scratchBase());
    expect(a).not.toBe(b);
    native.scratchRemove(a);
    native.scratchRemove(b);
  });
});

describe('HMAC-SHA256 through OpenSSL', () => {
  it('matches node:crypto for random keys, data and ranges', () => {
    for (let k = 0; k < 20; k++) {
      const key = crypto.randomBytes(1 + k * 3);
      const data = crypto.randomBytes(k * 100);
      const off = Math.floor(data.length / 3);
      const len = Math.floor(data.length / 2);
      expect(native.hmac(key, data).toString('hex')).toBe(crypto.createHmac('sha256', key).update(data).digest('hex'));
      expect(native.hmac(key, data, off, len).toString('hex')).toBe(
        crypto.createHmac('sha256', key).update(data.subarray(off, off + len)).digest('hex'),
      );
    }
    expect(() => native.hmac(Buffer.alloc(1), Buffer.alloc(4), 2, 10)).toThrow(expect.objectContaining({ name: 'RangeError', code: 'ERR_OUT_OF_RANGE' }));
    expect(native.memeq(Buffer.from('ab'), Buffer.from('ab'))).toBe(true);
    expect(native.memeq(Buffer.from('ab'), Buffer.from('ac'))).toBe(false);
  });
});

describe('shared counters', () => {
  it('claims partition [0, total) exactly, in shrinking guided chunks', () => {
    const shm = native.shmCreate(4);
    const claims: [number, number][] = [];
    for (let c = native.shmClaim(shm, 0, 1000, 8, 0); c !== null; c = native.shmClaim(shm, 0, 1000, 8, 0)) claims.push(c);
    let next = 0;
    for (const [start, count] of claims) {
      expect(start).toBe(next);
      next += count;
    }
    expect(next).toBe(1000);
    expect(claims[0][1]).toBe(125);
    expect(claims.at(-1)![1]).toBe(1);
    expect(native.shmClaim(shm, 0, 1000, 8, 0)).toBeNull();
  });

  it('are shared across fork: children add, the parent sees every increment', () => {
    const shm = native.shmCreate(2);
    const pids: number[] = [];
    for (let k = 0; k < 4; k++) {
      const pid = native.fork([], 0);
      if (pid === 0) {
        for (let i = 0; i < 10_000; i++) native.shmAdd(shm, 1, 1);
        native.exit(0);
      }
      pids.push(pid);
    }
    for (const pid of pids) expect(waitExit(pid)[1]).toBe(0);
    expect(native.shmLoad(shm, 1)).toBe(40_000);
    expect(() => native.shmLoad(shm, 2)).toThrow(expect.objectContaining({ name: 'RangeError', code: 'ERR_OUT_OF_RANGE' }));
  });
});

describe('settleThreads: waiting for threads to be asleep (native/settle.c)', () => {
  it('returns at once for threads asleep or gone, and gives up after maxMs on a running one', () => {
    // Node's own helper threads are parked; this (main) thread is running.
    const asleep = native.threads().map(([tid]) => tid).filter((tid) => tid !== process.pid);
    expect(asleep.length).toBeGreaterThan(0);
    let t = performance.now();
    expect(native.settleThreads(Int32Array.from(asleep), 1000)).toBe(0);
    expect(native.settleThreads(Int32Array.of(2 ** 31 - 1), 1000)).toBe(0); // no such thread
    expect(performance.now() - t).toBeLessThan(900);
    t = performance.now();
    expect(native.settleThreads(Int32Array.of(process.pid), 30)).toBe(1);
    expect(performance.now() - t).toBeGreaterThanOrEqual(29);
  });
});
