// Small helpers more than one engine needs, kept in one place.
import fs from 'node:fs';

/**
 * One read from a non-blocking fd into `chunk`: the byte count, 0 at end of
 * file, or null when nothing is there yet (EAGAIN).
 */
export function readSome(fd: number, chunk: Buffer): number | null {
  try {
    return fs.readSync(fd, chunk, 0, chunk.length, null);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EAGAIN') return null;
    throw err;
  }
}

/**
 * The state under `Symbol.for(key)` on globalThis, made by `init` on first use: one per process, shared by every
 * copy of cowfork loaded in it (two versions in node_modules), so that only the first installs its wrappers and
 * a copy that forks sees what another copy recorded.
 */
export function processState<T extends object>(key: string, init: () => T): T {
  const g = globalThis as Record<symbol, T | undefined>;
  return (g[Symbol.for(key)] ??= init());
}

/**
 * Objects held weakly, to be gone through later (the parent's streams and signals a child looks at): a set of
 * WeakRefs, swept of the collected ones whenever it has doubled since its last sweep.
 */
export class WeakList<T extends object> {
  private readonly refs = new Set<WeakRef<T>>();
  private swept = 0;

  add(value: T): void {
    this.refs.add(new WeakRef(value));
    if (this.refs.size >= 2 * Math.max(this.swept, 32)) this.live();
  }

  /** The values not collected yet; the refs of the collected ones are dropped. */
  live(): T[] {
    const out: T[] = [];
    for (const ref of this.refs) {
      const value = ref.deref();
      if (value === undefined) this.refs.delete(ref);
      else out.push(value);
    }
    this.swept = this.refs.size;
    return out;
  }
}

/** Replaces the value of `obj[key]` (a function of Node's that cowfork wraps), keeping the property's attributes. */
export function replaceValue(obj: object, key: PropertyKey, value: unknown): void {
  Object.defineProperty(obj, key, { ...Object.getOwnPropertyDescriptor(obj, key), value });
}

/** Gives `obj` its own method `key`, shadowing its prototype's as a class method would: not enumerable. */
export function ownMethod(obj: object, key: PropertyKey, value: unknown): void {
  Object.defineProperty(obj, key, { value, writable: true, configurable: true, enumerable: false });
}

/**
 * `node:http`, loaded on first use: a process that serves no HTTP (a script
 * that only calls `map`) does not pay for it when it loads cowfork.
 */
export function httpModule(): typeof import('node:http') {
  return require('node:http') as typeof import('node:http');
}

/** Does nothing: a callback or completion that must not run what it replaced. */
export const noop = (): void => {};

/** True for anything `await` would treat as a promise. */
export function isThenable(v: unknown): v is PromiseLike<unknown> {
  return v !== null && (typeof v === 'object' || typeof v === 'function') && typeof (v as PromiseLike<unknown>).then === 'function';
}

export interface Deferred<T> {
  readonly promise: Promise<T>;
  resolve(value: T): void;
  reject(reason: unknown): void;
}

/** A promise with its resolve and reject functions, for code that settles it from elsewhere. */
export function deferred<T>(): Deferred<T> {
  let resolve!: (value: T) => void;
  let reject!: (reason: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

/** Whether a process with this pid exists (EPERM: it does, and belongs to someone else). */
export function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}
