// Argument validation for the Scheduler facade. Messages name the argument
// or option path. Async methods turn these throws into rejections.
import { optionsObject, positiveNumber, rejectUnknown } from '../validate';

export interface SpawnOptions {
  /** Milliseconds; Infinity for none. */
  timeoutMs: number;
}

const GeneratorFunction = Object.getPrototypeOf(function* () {});
const AsyncGeneratorFunction = Object.getPrototypeOf(async function* () {});

/** A generator function (function*), which makes a generator fiber. */
export function isGeneratorFunction(fn: unknown): boolean {
  return typeof fn === 'function' && Object.getPrototypeOf(fn) === GeneratorFunction;
}

function isAsyncGeneratorFunction(fn: unknown): boolean {
  return typeof fn === 'function' && Object.getPrototypeOf(fn) === AsyncGeneratorFunction;
}

export function describe(v: unknown): string {
  return typeof v === 'string' ? JSON.stringify(v) : v === null ? 'null' : typeof v === 'object' ? 'an object' : String(v);
}

export function seconds(v: unknown, name: string): number {
  if (typeof v !== 'number' || Number.isNaN(v)) throw new TypeError(`${name} must be a number of seconds, got ${describe(v)}`);
  if (v < 0 || !Number.isFinite(v)) throw new RangeError(`${name} must be a non-negative finite number of seconds, got ${v}`);
  return v * 1000;
}

export function milliseconds(v: unknown, name: string): number {
  if (typeof v !== 'number' || Number.isNaN(v)) throw new TypeError(`${name} must be a number of milliseconds, got ${describe(v)}`);
  if (v < 0) throw new RangeError(`${name} must be a non-negative number of milliseconds, got ${v}`);
  return v;
}

export function fdArg(v: unknown): number {
  if (typeof v !== 'number' || !Number.isInteger(v)) {
    throw new TypeError(`ioWait(fd, mode, timeout): fd must be an integer file descriptor, got ${describe(v)}`);
  }
  if (v < 0 || v > 0x7fffffff) throw new RangeError(`ioWait(fd, mode, timeout): fd must be a non-negative file descriptor, got ${v}`);
  return v;
}

export function modeArg(v: unknown): number {
  const what = 'ioWait(fd, mode, timeout): mode must be Scheduler.READ (1), Scheduler.WRITE (2) or Scheduler.READ | Scheduler.WRITE (3)';
  if (typeof v !== 'number' || !Number.isInteger(v)) throw new TypeError(`${what}, got ${describe(v)}`);
  if (v < 1 || v > 3) throw new RangeError(`${what}, got ${v}`);
  return v;
}

export function timeoutArg(v: unknown): number {
  if (v === undefined || v === null || v === Infinity) return Infinity;
  return seconds(v, 'ioWait(fd, mode, timeout): timeout');
}

/** fn must be a function, or a generator function; an async generator has no single result to park on. */
export function fiberFunction(fn: unknown, api: string): void {
  if (typeof fn !== 'function') throw new TypeError(`${api}: fn must be a function, got ${describe(fn)}`);
  if (isAsyncGeneratorFunction(fn)) {
    throw new TypeError(`${api}: fn is an async generator function; pass a generator function (function*) or an async function`);
  }
}

/** spawn's options: `timeout` in seconds, a positive number. */
export function spawnOptions(options: unknown): SpawnOptions {
  const o = optionsObject(options);
  rejectUnknown(o, ['timeout']);
  const timeout = positiveNumber(o.timeout, 'options.timeout');
  return { timeoutMs: timeout === undefined ? Infinity : timeout * 1000 };
}

/** withTimeout's seconds: positive and finite. */
export function timeoutSeconds(v: unknown): number {
  const s = positiveNumber(v, 'withTimeout(seconds, fn): seconds');
  if (s === undefined) throw new TypeError('withTimeout(seconds, fn): seconds must be a positive number');
  return s;
}
