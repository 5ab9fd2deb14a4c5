// Leak checks and fixtures shared by the test files.
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import v8 from 'node:v8';
import vm from 'node:vm';
import { afterAll, afterEach, beforeAll } from 'vitest';
import { native } from '../src/native';

export const ROOT = path.resolve(__dirname, '..');
export const FIXTURES = path.join(__dirname, 'fixtures');

/**
 * COWFORK_TEST_LIGHT=1 (set by scripts/test-versions.js for the other Node
 * majors): every test still runs, and each hazard still shows, but the
 * heaviest repetitions (hundreds of forks) are cut, to keep CI's four runs of
 * the suite short. `npm test` runs the full counts.
 */
export const LIGHT = process.env.COWFORK_TEST_LIGHT === '1';

/** The environment for a fixture run with test-only FORK_FLAGS added to any COWFORK_TEST_UNSAFE_FLAGS already set. */
export function unsafeFlagsEnv(unsafeFlags: number): NodeJS.ProcessEnv {
  return { ...process.env, COWFORK_TEST_UNSAFE_FLAGS: String(unsafeFlags | Number(process.env.COWFORK_TEST_UNSAFE_FLAGS ?? 0)) };
}

/** A repetition count: `full` normally, `light` under COWFORK_TEST_LIGHT=1. */
export function reps(full: number, light: number): number {
  return LIGHT ? light : full;
}

/** Open fds of this process. */
/** Whether libuv names its threadpool's threads `libuv-worker` (libuv 1.48+, Node 22+), once the pool has started. */
export function libuvNamesItsThreads(): boolean {
  return native.threads().some(([, name]) => name === 'libuv-worker');
}

export function fdCount(): number {
  return fs.readdirSync('/proc/self/fd').length;
}

/** Children of `pid` (default: this process), with their state letter. */
export function childrenOf(pid = process.pid): { pid: number; state: string }[] {
  const out: { pid: number; state: string }[] = [];
  for (const name of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${name}/stat`, 'utf8');
      const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (Number(rest[1]) === pid) out.push({ pid: Number(name), state: rest[0] });
    } catch {
      // The process exited while we looked.
    }
  }
  return out;
}

export function zombiesOf(pid = process.pid): number[] {
  return childrenOf(pid).filter((c) => c.state === 'Z').map((c) => c.pid);
}

export function isAlive(pid: number): boolean {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
  } catch {
    return false;
  }
}

/**
 * When `pid` started, in nanoseconds of the clock scratch names carry
 * (uv_hrtime: monotonic since boot), less 2 s of slack; 0 if unknown. From
 * /proc/<pid>/stat's starttime, in clock ticks (USER_HZ is 100 on Linux).
 */
function startedNs(pid: number): bigint {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const ticks = BigInt(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19]);
    const ns = ticks * 10_000_000n - 2_000_000_000n;
    return ns > 0n ? ns : 0n;
  } catch {
    return 0n;
  }
}

/**
 * cowfork scratch directories created by `pid` (default: this process). A
 * name is cowfork-<pid>-<uv_hrtime at creation>-<n>; one made before `pid`
 * started belongs to an earlier process that had the same pid (pids wrap
 * around in a long run), and is not counted.
 */
export function scratchDirsOf(pid = process.pid): string[] {
  const out: string[] = [];
  const since = startedNs(pid);
  for (const base of ['/dev/shm', os.tmpdir()]) {
    try {
      for (const name of fs.readdirSync(base)) {
        const m = /^cowfork-(\d+)-(\d+)-\d+$/.exec(name);
        if (m && Number(m[1]) === pid && BigInt(m[2]) >= since) out.push(path.join(base, name));
      }
    } catch {
      // No such base.
    }
  }
  return out;
}

export function tempDir(prefix = 'cowfork-test-'): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), prefix));
}

/**
 * For a test file: a function that makes a temporary directory (`tempDir(prefix)`); each is removed after the
 * test that made it.
 */
export function scratchDirs(prefix?: string): () => string {
  const dirs: string[] = [];
  afterEach(() => {
    for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
  });
  return () => {
    const d = tempDir(prefix);
    dirs.push(d);
    return d;
  };
}

export async function waitFor(cond: () => boolean, timeoutMs = 10_000, stepMs = 10): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`condition not met within ${timeoutMs} ms: ${cond.toString()}`);
    await new Promise((r) => setTimeout(r, stepMs));
  }
}

export interface RunResult {
  pid: number;
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/**
 * Runs `file [args]` to completion and collects its output. `env` replaces
 * the environment (default: this process's); the child is SIGKILLed after
 * `timeoutMs`.
 */
export function runCommand(
  file: string,
  args: string[],
  opts: { env?: NodeJS.ProcessEnv; cwd?: string; timeoutMs?: number } = {},
): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, { cwd: opts.cwd ?? ROOT, env: opts.env ?? process.env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${file} ${args.join(' ')} timed out; stdout: ${stdout.slice(-1000)}; stderr: ${stderr.slice(-2000)}`));
    }, opts.timeoutMs ?? 60_000);
    child.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ pid: child.pid!, code, signal, stdout, stderr });
    });
  });
}

/** Runs `node [args]`; `env` is added to this process's environment. */
export function runNode(args: string[], opts: { env?: NodeJS.ProcessEnv; cwd?: string; timeoutMs?: number } = {}): Promise<RunResult> {
  return runCommand(process.execPath, args, { ...opts, env: { ...process.env, ...opts.env } });
}

/** A full, synchronous V8 collection, as global.gc() would run it under --expose-gc. */
export function fullGc(): () => void {
  const g = (globalThis as { gc?: () => void }).gc;
  if (typeof g === 'function') return g;
  v8.setFlagsFromString('--expose-gc');
  return vm.runInNewContext('gc') as () => void;
}

/** Makes 2,000 short-lived objects, each with a WeakRef, so that a full
 * collection has weak references to clear (V8 hands that to its worker pool). */
export function weakGarbage(): number {
  return Array.from({ length: 2000 }, (_, j) => ({ j, w: new WeakRef({ j }) })).length;
}

/** A throwaway database server run by one of the project's scripts (scripts/pg-test-server.sh, scripts/redis-test-server.sh). */
export interface TestServer {
  /**
   * The KEY=value lines the script printed on start; throws (failing the
   * test, not skipping it) when there is no server.
   */
  env(): Record<string, string>;
  /** Whether the server is up. */
  running(): boolean;
}

/**
 * Starts the test server before the file's tests when it is not already
 * running (.ci/run starts it first), so that `npm test` works on a fresh
 * checkout, and stops it afterwards only if this file started it.
 */
export function useTestServer(script: string, what: string): TestServer {
  const server = path.join(ROOT, 'scripts', script);
  let env: Record<string, string> | undefined;
  let error = '';
  let startedHere = false;
  beforeAll(() => {
    startedHere = spawnSync('bash', [server, 'status']).status !== 0;
    const r = spawnSync('bash', [server, 'start'], { encoding: 'utf8', timeout: 60_000 });
    if (r.status !== 0) {
      error = (r.stderr || r.error?.message || `exit status ${r.status}`).trim();
      return;
    }
    env = Object.fromEntries(
      r.stdout
        .trim()
        .split('\n')
        .filter((line) => line.includes('='))
        .map((line) => line.split('=', 2) as [string, string]),
    );
  }, 70_000);
  afterAll(() => {
    if (startedHere && env) spawnSync('bash', [server, 'stop'], { timeout: 30_000 });
  });
  return {
    env() {
      if (!env) {
        throw new Error(
          `the ${what} test server is not running and could not be started: ${error}\n` +
            `Install ${what} (bash scripts/install-system-deps.sh, as root) and start it: bash scripts/${script} start`,
        );
      }
      return env;
    },
    running: () => env !== undefined,
  };
}
