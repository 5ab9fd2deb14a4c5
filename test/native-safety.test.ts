// Memory safety of the native layer: every entry point checks its arguments
// before the C core sees them, so a bad value is a TypeError or RangeError
// naming the call and the argument, never a truncation, an out-of-bounds read
// or a use after free. Each test shows one defect the binding used to have.
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { READ, type ShmHandle, type WatchHandle, native } from '../src/native';
import { scratchBase } from '../src/scratch';
import { FIXTURES, childrenOf, runCommand, runNode, waitFor } from './helpers';

type Loose = Record<string, (...args: unknown[]) => unknown>;
/** The addon without its types, to make the calls TypeScript would refuse. */
const raw = native as unknown as Loose;

const typeError = (arg: RegExp) => expect.objectContaining({ name: 'TypeError', message: expect.stringMatching(arg) });
const rangeError = (arg: RegExp) =>
  expect.objectContaining({ name: 'RangeError', code: 'ERR_OUT_OF_RANGE', message: expect.stringMatching(arg) });

function thrown(fn: () => unknown): unknown {
  try {
    fn();
  } catch (err) {
    return err;
  }
  throw new Error('expected a throw');
}

/** An array whose element `i` is a getter that throws. */
function throwingAt<T>(values: T[], i: number, message: string): T[] {
  const out = [...values];
  Object.defineProperty(out, i, {
    get() {
      throw new Error(message);
    },
  });
  return out;
}

function withPipe<T>(fn: (r: number, w: number) => T): T {
  const [r, w] = native.pipe(true);
  try {
    return fn(r, w);
  } finally {
    native.close(r);
    native.close(w);
  }
}

const nextTurn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

describe('napi_status is checked, and a throwing argument stops the call (§1)', () => {
  it('a keepFds element whose getter throws makes fork throw that error, and nothing is forked', () => {
    const parent = native.getpid();
    const before = childrenOf(parent).map((c) => c.pid);
    const err = thrown(() => native.fork(throwingAt([1, 2], 1, 'keepFds getter threw'), 0));
    // A child forked by mistake would run the rest of this file: stop it here.
    if (native.getpid() !== parent) native.exit(99);
    expect(err).toEqual(expect.objectContaining({ message: 'keepFds getter threw' }));
    expect(childrenOf(parent).map((c) => c.pid)).toEqual(before);
  });

  it('an execve argv or env element whose getter throws makes execve throw that error', () => {
    expect(() => native.execve('/bin/true', throwingAt(['true'], 0, 'argv getter threw'), [])).toThrow('argv getter threw');
    expect(() => native.execve('/bin/true', ['true'], throwingAt(['A=1'], 0, 'env getter threw'))).toThrow('env getter threw');
  });

  // Zero-argument entry points; every other one must appear in the table below.
  const NO_ARGS = ['doforkAll', 'doforkLast', 'benchForkRoundtrip', 'benchCpuNs', 'benchForkCpu', 'testTaskLockHeld', 'testTaskNoticed', 'getpid', 'getppid', 'forkWaitersReleased', 'forkPoolEmptied', 'inheritedCount', 'inspectHandles', 'threads', 'threadCount', 'forkParentWork', 'forkTraceCategories', 'immediatesFound', 'testImmediatesDecoys', 'optionsLockFound', 'forkCensusPasses', 'forkPoolLocated', 'stopWatchers', 'loopRequests'];

  it('every entry point rejects bad arguments with a TypeError or RangeError naming the call and the argument', () => {
    const shm = native.shmCreate(2);
    const dir = native.scratchCreate(scratchBase());
    const sparse: number[] = [];
    sparse.length = 2 ** 32 - 1;
    const cb = (): void => {};
    try {
      withPipe((r) => {
        const watch = native.watch(r, READ, cb);
        try {
          const i32 = Int32Array.of(r);
          const cases: [string, unknown[], unknown][] = [
            ['fork', ['x', 0], typeError(/^fork: keepFds must be an array, got a string/)],
            ['fork', [[1.5], 0], rangeError(/^fork: keepFds\[0\] must be an integer/)],
            ['fork', [[-1], 0], rangeError(/^fork: keepFds\[0\]/)],
            ['fork', [sparse, 0], rangeError(/^fork: keepFds must have at most/)],
            ['fork', [[], '1'], typeError(/^fork: flags must be an integer, got a string/)],
            ['fork', [[], -1], rangeError(/^fork: flags/)],
            ['exit', ['0'], typeError(/^exit: code/)],
            ['exit', [2 ** 31], rangeError(/^exit: code/)],
            ['pipe', [1], typeError(/^pipe: nonblock must be a boolean, got a number/)],
            ['close', [-1], rangeError(/^close: fd/)],
            ['close', [undefined], typeError(/^close: fd must be an integer, got undefined/)],
            ['waitpid', [0, true], rangeError(/^waitpid: pid must be an integer from 1 to/)],
            ['waitpid', [1, 'yes'], typeError(/^waitpid: nohang/)],
            ['pidfdOpen', [-5], rangeError(/^pidfdOpen: pid/)],
            ['poll', [[r], i32, i32, 0], typeError(/^poll: fds must be an Int32Array, got an object/)],
            ['poll', [i32, new Uint32Array(1), i32, 0], typeError(/^poll: events must be an Int32Array/)],
            ['poll', [i32, i32, i32, NaN], rangeError(/^poll: timeoutMs/)],
            ['poll', [i32, i32, i32, '1'], typeError(/^poll: timeoutMs must be a number/)],
            ['watch', [-1, READ, cb], rangeError(/^watch: fd/)],
            ['watch', [r, 16, cb], rangeError(/^watch: mode must be an integer from 0 to 7/)],
            ['watch', [r, READ, 'cb'], typeError(/^watch: callback must be a function/)],
            ['watchUpdate', [{}, READ], typeError(/^watchUpdate: handle must be a watch handle, got an object/)],
            ['watchUpdate', [watch, 8], rangeError(/^watchUpdate: mode/)],
            ['unwatch', [shm], typeError(/^unwatch: handle must be a watch handle, got a native handle/)],
            ['scratchCreate', [1], typeError(/^scratchCreate: base must be a string/)],
            ['scratchOpen', [dir, 'a', 1], typeError(/^scratchOpen: forWrite/)],
            ['scratchOpen', [dir, 'x'.repeat(256), true], rangeError(/^scratchOpen: name must be at most 255 bytes/)],
            ['scratchRemove', [null], typeError(/^scratchRemove: dir must be a string, got null/)],
            ['hmac', ['key', Buffer.alloc(1)], typeError(/^hmac: key must be a Buffer or Uint8Array/)],
            ['hmac', [Buffer.alloc(1), new Uint16Array(2)], typeError(/^hmac: data must be a Buffer or Uint8Array/)],
            ['hmac', [Buffer.alloc(1), Buffer.alloc(4), '1'], typeError(/^hmac: offset/)],
            ['memeq', [Buffer.alloc(1), 'b'], typeError(/^memeq: b/)],
            ['shmCreate', [0], rangeError(/^shmCreate: count/)],
            ['shmAdd', [shm, 0, 0.5], rangeError(/^shmAdd: delta/)],
            ['shmAdd', [watch, 0, 1], typeError(/^shmAdd: shm must be a shm handle/)],
            ['shmLoad', [shm, -1], rangeError(/^shmLoad: slot must be an integer from 0 to 1/)],
            ['shmStore', [shm, 0, 2 ** 53], rangeError(/^shmStore: value/)],
            ['shmClaim', [shm, 0, 10, 0, 0], rangeError(/^shmClaim: divisor must be an integer from 1/)],
            ['shmClaim', [shm, 0, -1, 1, 0], rangeError(/^shmClaim: total/)],
            ['execve', [1, [], []], typeError(/^execve: path must be a string/)],
            ['execve', ['/bin/true', 'true', []], typeError(/^execve: argv must be an array/)],
            ['execve', ['/bin/true', [1], []], typeError(/^execve: argv\[0\] must be a string/)],
            ['execve', ['/bin/true', [], [null]], typeError(/^execve: env\[0\] must be a string/)],
            ['listenTcp', [1, 0, 1, false], typeError(/^listenTcp: host/)],
            ['listenTcp', ['127.0.0.1', 0, -1, false], rangeError(/^listenTcp: backlog/)],
            ['listenTcp', ['127.0.0.1', 0, 1, 1], typeError(/^listenTcp: reusePort/)],
            ['listenUnix', [{}, 1], typeError(/^listenUnix: path/)],
            ['listenUnix', ['/tmp/x', 1.5], rangeError(/^listenUnix: backlog/)],
            ['dup', ['0'], typeError(/^dup: fd/)],
            ['inheritedPeer', [-1], rangeError(/^inheritedPeer: fd/)],
            ['settleThreads', [[1], 0], typeError(/^settleThreads: tids must be an Int32Array, got an object/)],
            ['settleThreads', [i32, -1], rangeError(/^settleThreads: maxMs must be an integer from 0 to 10000/)],
            ['settleBeforeFork', ['1', 0], typeError(/^settleBeforeFork: tids must be an Int32Array, got a string/)],
            ['settleBeforeFork', [i32, 10001], rangeError(/^settleBeforeFork: maxMs must be an integer from 0 to 10000/)],
            ['doforkAll', [-1], rangeError(/^doforkAll: flags/)],
            ['benchCowNs', [0, false], rangeError(/^benchCowNs: pages must be an integer from 1/)],
            ['benchCowNs', [1, 1], typeError(/^benchCowNs: populate must be a boolean/)],
            ['benchSpinNs', [65, 1, false], rangeError(/^benchSpinNs: children must be an integer from 0 to 64/)],
            ['benchSpinNs', [1, -1, false], rangeError(/^benchSpinNs: iters/)],
            ['benchSpinNs', [1, 1, 'no'], typeError(/^benchSpinNs: pin must be a boolean/)],
            ['randomFill', ['x'], typeError(/^randomFill: bytes must be a Buffer or Uint8Array/)],
            ['testPark', [2], rangeError(/^testPark: kind must be an integer from 0 to 1/)],
            ['testHoldOptionsLock', ['5'], typeError(/^testHoldOptionsLock: ms must be an integer/)],
            ['testHoldOptionsLock', [0], rangeError(/^testHoldOptionsLock: ms must be an integer from 1 to 60000/)],
            ['testUnpark', [shm], typeError(/^testUnpark: handle must be a park handle, got a native handle/)],
            ['testTaskHold', [0, false], rangeError(/^testTaskHold: us must be an integer from 1 to 10000000/)],
            ['testTaskHold', ['5', false], typeError(/^testTaskHold: us must be an integer/)],
            ['testTaskHold', [5, 1], typeError(/^testTaskHold: untilWaited must be a boolean/)],
          ];
          for (const [fn, args, expected] of cases) {
            expect(thrown(() => raw[fn](...args)), `${fn}(${args.map((a) => typeof a).join(', ')})`).toEqual(expected);
          }
          // Every function the addon exports is covered, so a new entry point needs a row here.
          const functions = Object.keys(native).filter((k) => typeof raw[k] === 'function');
          const covered = new Set([...cases.map((c) => c[0]), ...NO_ARGS]);
          expect(functions.filter((k) => !covered.has(k))).toEqual([]);
        } finally {
          native.unwatch(watch);
        }
      });
    } finally {
      native.scratchRemove(dir);
    }
  });

  it('an exception thrown by a watch callback reaches uncaughtException instead of vanishing', async () => {
    const script = `
      const fs = require('node:fs');
      const { native } = require(${JSON.stringify(path.join(__dirname, '..', 'dist', 'native'))});
      const [r, w] = native.pipe(true);
      process.on('uncaughtException', (err) => { console.log('uncaught: ' + err.message); process.exit(0); });
      const h = native.watch(r, 1, () => { native.unwatch(h); throw new Error('thrown in a watch callback'); });
      fs.writeSync(w, 'x');
      setTimeout(() => { console.log('swallowed'); process.exit(1); }, 2000);
    `;
    const res = await runNode(['-e', script], { timeoutMs: 20_000 });
    expect(res.stdout.trim()).toBe('uncaught: thrown in a watch callback');
    expect(res.code).toBe(0);
  });
});

describe('hmac ranges (§2)', () => {
  const key = crypto.randomBytes(16);
  const data = crypto.randomBytes(64);
  const expectedOf = (off: number, len: number): string => crypto.createHmac('sha256', key).update(data.subarray(off, off + len)).digest('hex');

  it('offset past the end, negative offset or length, and offset + length past the end are RangeErrors', () => {
    expect(() => native.hmac(key, data, 65)).toThrow(rangeError(/^hmac: offset must be an integer from 0 to 64, got 65/));
    expect(() => native.hmac(key, data, 65, 0)).toThrow(rangeError(/^hmac: offset/));
    expect(() => native.hmac(key, data, -1, 4)).toThrow(rangeError(/^hmac: offset/));
    expect(() => native.hmac(key, data, 0, -1)).toThrow(rangeError(/^hmac: length must be an integer from 0 to 64/));
    expect(() => native.hmac(key, data, 8, -8)).toThrow(rangeError(/^hmac: length/));
    expect(() => native.hmac(key, data, 60, 5)).toThrow(rangeError(/^hmac: length must be an integer from 0 to 4, got 5/));
    // offset + length wraps around in 64-bit arithmetic.
    expect(() => native.hmac(key, data, 32, 2 ** 64 - 16)).toThrow(rangeError(/^hmac: length/));
    expect(() => native.hmac(key, data, 32, Number.MAX_SAFE_INTEGER)).toThrow(rangeError(/^hmac: length/));
  });

  it('the edges of the range are accepted and match node:crypto', () => {
    expect(native.hmac(key, data, 64).toString('hex')).toBe(expectedOf(64, 0));
    expect(native.hmac(key, data, 64, 0).toString('hex')).toBe(expectedOf(64, 0));
    expect(native.hmac(key, data, 0, 64).toString('hex')).toBe(expectedOf(0, 64));
    expect(native.hmac(key, data, 60, 4).toString('hex')).toBe(expectedOf(60, 4));
    // A view's range is inside the view, not its ArrayBuffer.
    const view = new Uint8Array(data.buffer, data.byteOffset + 10, 20);
    expect(() => native.hmac(key, view, 0, 21)).toThrow(rangeError(/^hmac: length/));
    expect(native.hmac(key, view, 5).toString('hex')).toBe(expectedOf(15, 15));
  });
});

describe('shmCreate sizes (§3)', () => {
  it('a count whose size in bytes would overflow is a RangeError, not a tiny mapping', () => {
    // 2^61 + 512 slots are 2^64 + 4096 bytes: a size_t multiplication wraps to one page.
    expect(() => native.shmCreate(2 ** 61 + 512)).toThrow(rangeError(/^shmCreate: count must be an integer from 1 to/));
    expect(() => native.shmCreate(2 ** 62)).toThrow(rangeError(/^shmCreate: count/));
    expect(() => native.shmCreate(Infinity)).toThrow(rangeError(/^shmCreate: count/));
  });

  it('the largest accepted count fails cleanly with ENOMEM; slots beyond the count are RangeErrors', () => {
    expect(() => native.shmCreate(Number.MAX_SAFE_INTEGER)).toThrow(expect.objectContaining({ code: 'ENOMEM' }));
    const shm = native.shmCreate(3);
    native.shmStore(shm, 2, 7);
    expect(native.shmLoad(shm, 2)).toBe(7);
    expect(() => native.shmStore(shm, 3, 1)).toThrow(rangeError(/^shmStore: slot must be an integer from 0 to 2, got 3/));
    expect(() => native.shmAdd(shm, 2 ** 32 + 1, 1)).toThrow(rangeError(/^shmAdd: slot/));
  });
});

describe('strings for C (§4)', () => {
  it('a name longer than NAME_MAX in UTF-8 is a RangeError, not a file with a shorter name', () => {
    const dir = native.scratchCreate(scratchBase());
    try {
      // 256 bytes of UTF-8; a 256-byte buffer used to hold only the 253 that end on a character boundary.
      const long = 'a' + '€'.repeat(85);
      expect(Buffer.byteLength(long)).toBe(256);
      expect(() => native.scratchOpen(dir, long, true)).toThrow(rangeError(/^scratchOpen: name must be at most 255 bytes of UTF-8, got 256/));
      expect(fs.readdirSync(dir)).toEqual([]);
      // 255 bytes is a legal name, and it is used whole.
      const longest = '€'.repeat(85);
      native.close(native.scratchOpen(dir, longest, true));
      expect(fs.readdirSync(dir)).toEqual([longest]);
    } finally {
      native.scratchRemove(dir);
    }
  });

  it('a path longer than PATH_MAX is a RangeError', () => {
    const deep = `/tmp/${'d'.repeat(5000)}`;
    expect(() => native.scratchCreate(deep)).toThrow(rangeError(/^scratchCreate: base must be at most 4095 bytes/));
    expect(() => native.scratchRemove(deep)).toThrow(rangeError(/^scratchRemove: dir/));
    expect(() => native.listenUnix(deep, 1)).toThrow(rangeError(/^listenUnix: path/));
    expect(() => native.execve(deep, [], [])).toThrow(rangeError(/^execve: path/));
  });

  it('a string with a NUL inside is refused where C would cut it short', () => {
    const nul = (arg: RegExp) => expect.objectContaining({ name: 'TypeError', code: 'ERR_INVALID_ARG_VALUE', message: expect.stringMatching(arg) });
    const base = scratchBase();
    const dir = native.scratchCreate(base);
    try {
      // C would see only `base`, and make a directory the caller never named.
      const before = fs.readdirSync(base).length;
      expect(() => native.scratchCreate(`${base}\0/elsewhere`)).toThrow(nul(/^scratchCreate: base must be a string without null bytes/));
      expect(fs.readdirSync(base).length).toBe(before);
      expect(() => native.scratchOpen(dir, 'a\0b', true)).toThrow(nul(/^scratchOpen: name/));
      expect(fs.readdirSync(dir)).toEqual([]);
      expect(() => native.scratchRemove(`${dir}\0x`)).toThrow(nul(/^scratchRemove: dir/));
      expect(fs.existsSync(dir)).toBe(true);
    } finally {
      native.scratchRemove(dir);
    }
    expect(() => native.listenTcp('127.0.0.1\0evil', 0, 1, false)).toThrow(nul(/^listenTcp: host/));
    expect(() => native.execve('/bin/true', ['true', 'a\0b'], [])).toThrow(nul(/^execve: argv\[1\]/));
    expect(() => native.execve('/bin/true', ['true'], ['A=1\0B=2'])).toThrow(nul(/^execve: env\[0\]/));
  });
});

describe('watch handles (§5)', () => {
  it('a second unwatch does nothing, even once the first one has fully closed and memory was reused', async () => {
    const [r1, w1] = native.pipe(true);
    const [r2, w2] = native.pipe(true);
    try {
      const first: WatchHandle = native.watch(r1, READ, () => {});
      native.unwatch(first);
      // Two turns: libuv runs close callbacks after the turn's immediates.
      await nextTurn();
      await nextTurn();
      let fired = 0;
      const second = native.watch(r2, READ, () => {
        fired++;
        native.unwatch(second);
      });
      // When the first handle's memory was freed by its close, this call read
      // it; reallocated for `second`, it closed someone else's watcher.
      native.unwatch(first);
      native.unwatch(first);
      fs.writeSync(w2, 'x');
      await waitFor(() => fired > 0, 5000);
      expect(fired).toBe(1);
    } finally {
      for (const fd of [r1, w1, r2, w2]) native.close(fd);
    }
  });

  it('watchUpdate on a closed handle is EBADF; a closed handle is still a watch handle', () => {
    withPipe((r) => {
      const h = native.watch(r, READ, () => {});
      native.unwatch(h);
      expect(() => native.watchUpdate(h, READ)).toThrow(expect.objectContaining({ code: 'EBADF' }));
      expect(() => native.watchUpdate(h, 0)).toThrow(expect.objectContaining({ code: 'EBADF' }));
      expect(() => native.unwatch(h)).not.toThrow();
    });
  });

  it('handles of one kind are refused as another', () => {
    const shm: ShmHandle = native.shmCreate(1);
    withPipe((r) => {
      const h = native.watch(r, READ, () => {});
      try {
        expect(() => native.unwatch(shm as unknown as WatchHandle)).toThrow(typeError(/^unwatch: handle must be a watch handle/));
        expect(() => native.shmLoad(h as unknown as ShmHandle, 0)).toThrow(typeError(/^shmLoad: shm must be a shm handle/));
      } finally {
        native.unwatch(h);
      }
    });
    expect(native.shmLoad(shm, 0)).toBe(0);
  });
});

describe('pids, fds and ports are not truncated to int (§6)', () => {
  it('an fd beyond int is a RangeError, not a different fd', () => {
    withPipe((r, w) => {
      // (int)(2^32 + w) is w: close() used to close the pipe's write end.
      expect(() => native.close(2 ** 32 + w)).toThrow(rangeError(/^close: fd must be an integer from 0 to 2147483647/));
      expect(() => native.dup(2 ** 32 + r)).toThrow(rangeError(/^dup: fd/));
      expect(() => native.watch(2 ** 32 + r, READ, () => {})).toThrow(rangeError(/^watch: fd/));
      expect(() => native.fork([2 ** 32 + r], 0)).toThrow(rangeError(/^fork: keepFds\[0\]/));
      expect(fs.writeSync(w, 'still open')).toBe(10);
    });
  });

  it('waitpid refuses pid <= 0 and pids beyond int, which would reap children that are not its to reap', () => {
    const pid = native.fork([], 0);
    if (pid === 0) native.exit(5);
    try {
      for (const bad of [-1, 0, -pid, 2 ** 32 + pid]) {
        expect(() => native.waitpid(bad, false)).toThrow(rangeError(/^waitpid: pid must be an integer from 1 to 2147483647/));
      }
      expect(() => native.pidfdOpen(2 ** 32 + pid)).toThrow(rangeError(/^pidfdOpen: pid/));
    } finally {
      // The child is still there for its owner to reap.
      expect(native.waitpid(pid, false)).toEqual([pid, 5, 0]);
    }
  });

  it('a port beyond 65535 is a RangeError, not the port it truncates to', () => {
    // (int)(2^32 + 0) is 0: any free port, and the listen used to succeed.
    expect(() => native.listenTcp('127.0.0.1', 2 ** 32, 16, false)).toThrow(rangeError(/^listenTcp: port must be an integer from 0 to 65535/));
    expect(() => native.listenTcp('127.0.0.1', 65536, 16, false)).toThrow(rangeError(/^listenTcp: port/));
    expect(() => native.listenTcp('127.0.0.1', -1, 16, false)).toThrow(rangeError(/^listenTcp: port/));
    const [fd, port] = native.listenTcp('127.0.0.1', 0, 16, false);
    native.close(fd);
    expect(port).toBeGreaterThan(0);
  });
});

describe('the C core owns the syscalls; each exit code has one meaning (§7)', () => {
  const fdFlags = (fd: number): number => parseInt(fs.readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8').match(/flags:\s+(\d+)/)![1], 8);
  const O_NONBLOCK = 0o4000;
  const O_CLOEXEC = 0o2000000;

  it('cf_pipe makes both ends close-on-exec, and non-blocking only when asked', () => {
    for (const nonblock of [false, true]) {
      const [r, w] = native.pipe(nonblock);
      try {
        for (const fd of [r, w]) {
          expect(fdFlags(fd) & O_CLOEXEC).toBe(O_CLOEXEC);
          expect(fdFlags(fd) & O_NONBLOCK).toBe(nonblock ? O_NONBLOCK : 0);
        }
      } finally {
        native.close(r);
        native.close(w);
      }
      expect(() => native.close(r)).toThrow(expect.objectContaining({ code: 'EBADF' }));
    }
  });

  it('the dead watchRef is gone, and the exit codes are distinct', () => {
    expect('watchRef' in native).toBe(false);
    const codes = Object.values(native.EXIT_CODES);
    expect(codes.length).toBe(3);
    expect(new Set(codes).size).toBe(codes.length);
    expect(native.EXIT_CODES.UNCAUGHT).toBe(70);
    expect(Object.isFrozen(native.EXIT_CODES)).toBe(true);
  });

  it('a child that cannot silence its sockets and one with an uncaught exception fail with different, named exit codes', async () => {
    // A low fd limit keeps filling the table quick; the child's socketpair then fails.
    const res = await runCommand('bash', ['-c', 'ulimit -n 256 && exec "$0" --single-threaded "$1"', process.execPath, path.join(FIXTURES, 'exit-codes.js')], {
      timeoutMs: 30_000,
    });
    expect(res.code, res.stderr).toBe(0);
    const out = JSON.parse(res.stdout);
    expect(out.silence).toEqual(
      expect.objectContaining({ ok: false, name: 'WorkerCrashedError', exitCode: native.EXIT_CODES.SILENCE }),
    );
    expect(out.silence.message).toMatch(/exited with code 72 \(cowfork could not silence the sockets the child inherited\)/);
    expect(out.uncaught).toEqual(
      expect.objectContaining({ ok: false, name: 'WorkerCrashedError', exitCode: native.EXIT_CODES.UNCAUGHT }),
    );
    expect(out.uncaught.message).toMatch(/exited with code 70 \(cowfork's code for an uncaught exception in the child\)/);
    expect(res.stderr).toMatch(/child hook failed/);
    expect(out.after).toEqual({ ok: true });
  });
});
