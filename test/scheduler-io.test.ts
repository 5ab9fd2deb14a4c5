// ioWait on real pipes and files: READ, timeout, WRITE on a full pipe, several
// fibers on one fd, hang-up, and fds that are not open.
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { Scheduler } from '../src/index';
import { native } from '../src/native';
import { fdCount, tempDir } from './helpers';
import { drain, fill, macrotask, pipe } from './scheduler-helpers';

const cleanups: (() => void)[] = [];
afterEach(() => {
  for (const c of cleanups.splice(0)) c();
});

function openPipe(): ReturnType<typeof pipe> {
  const p = pipe();
  cleanups.push(() => p.close());
  return p;
}

describe('scheduler: ioWait on a pipe, driven synchronously', () => {
  it('resumes with READ when the other end writes, and with 0 when the timeout passes', async () => {
    const s = new Scheduler({ eventLoop: false });
    const p = openPipe();
    const got: number[] = [];
    const f = s.spawn(async () => {
      got.push(await s.ioWait(p.r, Scheduler.READ, 0.02)); // nothing written: times out
      got.push(await s.ioWait(p.r, Scheduler.READ, 5));
      return drain(p.r); // a non-blocking read of what is there
    });
    const outcome = f.done.catch((e: unknown) => e);
    await macrotask(() => {
      s.tick(); // start: parks with a 20 ms timeout
      expect(f.state).toBe('parked');
      s.runFor(0.1); // times out, parks again without a deadline, and keeps waiting
      expect(got).toEqual([0]);
      expect(f.state).toBe('parked');
      fs.writeSync(p.w, 'hello');
      s.runUntilEmpty();
    });
    expect(got).toEqual([0, Scheduler.READ]);
    expect(await outcome).toBe(5);
    expect(s.pendingTimers).toBe(0);
  });

  it('resumes with WRITE once a full pipe is drained', async () => {
    const s = new Scheduler({ eventLoop: false });
    const p = openPipe();
    const filled = fill(p.w);
    expect(filled).toBeGreaterThan(0);
    let bits = -1;
    s.spawn(async () => {
      bits = await s.ioWait(p.w, Scheduler.WRITE, 5);
    });
    await macrotask(() => {
      s.tick(); // parks: the pipe is full
      expect(s.tick(20)).toBe(0); // still full: nothing resumes
      expect(drain(p.r)).toBe(filled);
      s.runUntilEmpty();
    });
    expect(bits).toBe(Scheduler.WRITE);
  });

  it('READ | WRITE reports whichever is ready', async () => {
    const s = new Scheduler({ eventLoop: false });
    const p = openPipe();
    let bits = -1;
    s.spawn(async () => {
      bits = await s.ioWait(p.w, Scheduler.READ | Scheduler.WRITE);
    });
    await macrotask(() => s.runUntilEmpty());
    expect(bits & Scheduler.WRITE).toBe(Scheduler.WRITE);
  });

  it('several fibers waiting on one fd each get the readiness', async () => {
    const s = new Scheduler({ eventLoop: false });
    const p = openPipe();
    const got: number[] = [];
    for (let i = 0; i < 5; i++) s.spawn(async () => got.push(await s.ioWait(p.r, Scheduler.READ, 5)));
    await macrotask(() => {
      s.tick();
      fs.writeSync(p.w, 'x');
      expect(s.tick(1000)).toBe(5);
    });
    expect(got).toEqual([1, 1, 1, 1, 1]);
  });

  it('a hang-up wakes a reader with READ | HUP', async () => {
    const s = new Scheduler({ eventLoop: false });
    const [r, w] = [...(await import('../src/native')).native.pipe(true)];
    cleanups.push(() => fs.closeSync(r));
    let bits = -1;
    s.spawn(async () => {
      bits = await s.ioWait(r, Scheduler.READ, 5);
    });
    await macrotask(() => {
      s.tick();
      fs.closeSync(w);
      s.runUntilEmpty();
    });
    expect(bits & Scheduler.READ).toBe(Scheduler.READ);
    expect(bits & Scheduler.HUP).toBe(Scheduler.HUP);
  });

  it('a regular file is always ready, as poll(2) says', async () => {
    const dir = tempDir();
    cleanups.push(() => fs.rmSync(dir, { recursive: true, force: true }));
    const fd = fs.openSync(path.join(dir, 'f'), 'w+');
    cleanups.push(() => fs.closeSync(fd));
    for (const eventLoop of [false, true]) {
      const s = new Scheduler({ eventLoop });
      const f = s.spawn(() => s.ioWait(fd, Scheduler.READ | Scheduler.WRITE, 5));
      const v = await macrotask(() => (s.runUntilEmpty(), f.done));
      expect(await v).toBe(Scheduler.READ | Scheduler.WRITE);
      expect(s.watchers).toBe(0);
    }
  });

  it('an fd that is not open rejects with RangeError (code EBADF) in both modes', async () => {
    const p = pipe();
    p.close(); // p.r is now closed
    for (const eventLoop of [false, true]) {
      const s = new Scheduler({ eventLoop });
      const err = await s.ioWait(p.r, Scheduler.READ).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(RangeError);
      expect((err as NodeJS.ErrnoException).code).toBe('EBADF');
      expect((err as Error).message).toMatch(/fd \d+ is not an open file descriptor/);
      expect(s.watchers).toBe(0);
    }
  });
});

describe('scheduler: ioWait driven by the event loop', () => {
  it('wakes on a write from a timer callback, shares one watcher per fd, and removes it after', async () => {
    const s = new Scheduler();
    const p = openPipe();
    const fdsBefore = fdCount();
    const fibers = [0, 1, 2].map(() => s.spawn(() => s.ioWait(p.r, Scheduler.READ)));
    await new Promise((r) => setTimeout(r, 10));
    expect(fibers.map((f) => f.state)).toEqual(['parked', 'parked', 'parked']);
    expect(s.watchers).toBe(1);
    setTimeout(() => fs.writeSync(p.w, 'x'), 5);
    expect(await Promise.all(fibers.map((f) => f.done))).toEqual([1, 1, 1]);
    await new Promise((r) => setImmediate(r));
    expect(s.watchers).toBe(0);
    expect(fdCount()).toBe(fdsBefore);
  });

  it('times out with 0 through a Node timer', async () => {
    const s = new Scheduler();
    const p = openPipe();
    const f = s.spawn(() => s.ioWait(p.r, Scheduler.READ, 0.01));
    expect(await f.done).toBe(0);
    await new Promise((r) => setImmediate(r));
    expect(s.watchers).toBe(0);
    expect(s.pendingTimers).toBe(0);
  });

  it('WRITE readiness on a full pipe, when a reader drains it later', async () => {
    const s = new Scheduler();
    const p = openPipe();
    fill(p.w);
    const f = s.spawn(() => s.ioWait(p.w, Scheduler.WRITE));
    await new Promise((r) => setTimeout(r, 20));
    expect(f.state).toBe('parked');
    drain(p.r);
    expect(await f.done).toBe(Scheduler.WRITE);
  });

  it('a fiber may close its fd right after waking: the number’s next owner (a net.Socket) still gets data', async () => {
    const s = new Scheduler();
    const [r, w] = native.pipe(true);
    const f = s.spawn(async () => {
      await s.ioWait(r, Scheduler.READ);
      drain(r);
      native.close(r);
      native.close(w);
      // Within the same pass, a Node stream takes the number and starts reading.
      const [r2, w2] = native.pipe(true);
      const sock = new net.Socket({ fd: r2, readable: true, writable: false });
      const got = new Promise<string>((resolve) => sock.once('data', (d) => resolve(String(d))));
      return { r2, w2, sock, got };
    });
    fs.writeSync(w, 'x');
    const { r2, w2, sock, got } = await f.done;
    cleanups.push(() => {
      sock.destroy();
      native.close(w2);
    });
    expect(r2).toBe(r); // the number was reused
    await new Promise((resolve) => setTimeout(resolve, 20)); // a few loop turns
    fs.writeSync(w2, 'hello');
    const timeout = new Promise<string>((resolve) => setTimeout(() => resolve('no data: the socket lost its epoll slot'), 3000).unref());
    expect(await Promise.race([got, timeout])).toBe('hello');
    expect(s.watchers).toBe(0);
  });

  it('a reader and a writer on one fd: the watcher mode follows the parks', async () => {
    const s = new Scheduler();
    const p = openPipe();
    // A full pipe's write end: a writer waits; a second fiber waits READ|WRITE on it too.
    fill(p.w);
    const writer = s.spawn(() => s.ioWait(p.w, Scheduler.WRITE, 5));
    const either = s.spawn(() => s.ioWait(p.w, Scheduler.READ | Scheduler.WRITE, 0.03));
    expect(await either.done).toBe(0); // timed out: a pipe's write end never becomes readable
    expect(writer.state).toBe('parked');
    drain(p.r);
    expect(await writer.done).toBe(Scheduler.WRITE);
  });
});
