// Shared by the scheduler tests. The synchronous drivers must be called from
// a macrotask (a test body runs inside a microtask, where V8 cannot drain the
// fibers' continuations), so the tests call them through macrotask().
import fs from 'node:fs';
import { native } from '../src/native';

export function macrotask<T>(fn: () => T): Promise<T> {
  return new Promise((resolve, reject) =>
    setImmediate(() => {
      try {
        resolve(fn());
      } catch (err) {
        reject(err);
      }
    }),
  );
}

/** A non-blocking pipe; close() closes whichever ends are still open. */
export function pipe(): { r: number; w: number; close(): void } {
  const [r, w] = native.pipe(true);
  let open = true;
  return {
    r,
    w,
    close() {
      if (!open) return;
      open = false;
      native.close(r);
      native.close(w);
    },
  };
}

/** Writes into a non-blocking pipe until it is full (EAGAIN). Returns the bytes written. */
export function fill(fd: number): number {
  const chunk = Buffer.alloc(65536, 1);
  let total = 0;
  for (;;) {
    try {
      total += fs.writeSync(fd, chunk);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EAGAIN') return total;
      throw err;
    }
  }
}

/** Reads whatever is in a non-blocking fd. */
export function drain(fd: number): number {
  const buf = Buffer.alloc(65536);
  let total = 0;
  for (;;) {
    try {
      const n = fs.readSync(fd, buf);
      if (n === 0) return total;
      total += n;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EAGAIN') return total;
      throw err;
    }
  }
}
