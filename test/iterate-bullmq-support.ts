// Shared by the cross-machine iterate tests (cowfork/bullmq): the Redis test
// server (scripts/redis-test-server.sh), "machine" processes (the fixture
// test/fixtures/iterate-bullmq-machine.js, each its own `node
// --single-threaded`), and counting what every instance recorded.
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { afterEach } from 'vitest';
import { within } from './compat/support';
import { FIXTURES, ROOT, type TestServer, tempDir, useTestServer } from './helpers';

export { within };

const MACHINE = path.join(FIXTURES, 'iterate-bullmq-machine.js');
const REC = 8; // bytes per record: 7 digits and "\n"

let server: TestServer | undefined;
const dirs: string[] = [];
const procs: ChildProcess[] = [];
const runNames: string[] = [];

/**
 * Starts the Redis test server when it is not already running (.ci/run starts
 * it first), and stops it afterwards only if this file started it. Every
 * machine process a test started is killed and every run's keys are deleted.
 */
export function useRedis(): void {
  server = useTestServer('redis-test-server.sh', 'Redis');

  afterEach(() => {
    // A failed test must not leave its machines running (instances die with them: PR_SET_PDEATHSIG).
    for (const p of procs.splice(0)) if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
    for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
    if (server?.running()) for (const name of runNames.splice(0)) flushRun(name);
  });
}

/** The test server's port; throws (failing the test, not skipping it) when there is no server. */
export function redis(): number {
  if (!server) throw new Error('useRedis() must be called in the test file first');
  return Number(server.env().REDIS_PORT);
}

/** Runs redis-cli against the test server. */
export function redisCli(...args: string[]): string {
  const r = spawnSync('redis-cli', ['-h', '127.0.0.1', '-p', String(redis()), ...args], { encoding: 'utf8', timeout: 10_000 });
  if (r.status !== 0) throw new Error(`redis-cli ${args.join(' ')} failed: ${r.stderr}`);
  return r.stdout;
}

/** The Redis keys of a run (its queue and the engine's own key). */
export function runKeys(name: string): string[] {
  return redisCli('--scan', '--pattern', `bull:${name}:*`)
    .split('\n')
    .filter((k) => k !== '');
}

function flushRun(name: string): void {
  for (const key of runKeys(name)) redisCli('del', key);
}

/** A run name (queue) of its own, deleted from Redis after the test. */
export function runName(): string {
  const name = `cowfork-test-${crypto.randomBytes(6).toString('hex')}`;
  runNames.push(name);
  return name;
}

export function scratch(): string {
  const d = tempDir('cowfork-bullmq-');
  dirs.push(d);
  return d;
}

export interface MachineConfig {
  name: string;
  dir: string;
  label: string;
  concurrency: number;
  total: number;
  enqueue?: number;
  every?: { items?: number; ms?: number };
  spin?: number;
  lockDuration?: number;
  attempts?: number;
  failInstance?: number;
  maxRuntime?: number;
}

export interface Machine {
  proc: ChildProcess;
  label: string;
  /** Resolves once the machine printed "ready" (enqueued, about to iterate). */
  ready: Promise<void>;
  done: Promise<{ code: number | null; signal: NodeJS.Signals | null; out: any; stderr: string }>;
}

/** Starts a machine process: `node --single-threaded` running the fixture. */
export function machine(cfg: MachineConfig): Machine {
  const proc = spawn(process.execPath, ['--single-threaded', MACHINE, JSON.stringify({ port: redis(), ...cfg })], {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  procs.push(proc);
  let stdout = '';
  let stderr = '';
  let onReady: () => void = () => undefined;
  const ready = new Promise<void>((resolve) => {
    onReady = resolve;
  });
  proc.stdout!.on('data', (d) => {
    stdout += d;
    if (stdout.includes('ready\n')) onReady();
  });
  proc.stderr!.on('data', (d) => (stderr += d));
  const done = new Promise<{ code: number | null; signal: NodeJS.Signals | null; out: any; stderr: string }>((resolve) => {
    proc.on('close', (code, signal) => {
      const line = stdout.trim().split('\n').pop() ?? '';
      let out: any = null;
      try {
        out = line && line !== 'ready' ? JSON.parse(line) : null;
      } catch {
        out = { unparsed: stdout };
      }
      resolve({ code, signal, out, stderr });
    });
  });
  return { proc, label: cfg.label, ready, done };
}

export interface Records {
  /** rec-<label>-<instance>-<pid> file name → its items, in order. */
  files: Map<string, { label: string; instance: number; pid: number; items: number[] }>;
  /** How often each item 0..total-1 was recorded. */
  counts: Uint32Array;
}

/** Every record of every instance of every machine in `dir`; throws on a torn record. */
export function records(dir: string, total: number): Records {
  const files: Records['files'] = new Map();
  const counts = new Uint32Array(total);
  for (const name of fs.readdirSync(dir)) {
    const m = /^rec-(.+)-(\d+)-(\d+)$/.exec(name);
    if (m === null) continue;
    const text = fs.readFileSync(path.join(dir, name), 'utf8');
    if (text.length % REC !== 0) throw new Error(`${name} has a torn record (${text.length} bytes)`);
    const items = text === '' ? [] : text.trimEnd().split('\n').map(Number);
    for (const i of items) counts[i]++;
    files.set(name, { label: m[1], instance: Number(m[2]), pid: Number(m[3]), items });
  }
  return { files, counts };
}

/** Records written so far, by all machines in `dir`. */
export function recordCount(dir: string): number {
  let bytes = 0;
  for (const name of fs.readdirSync(dir)) if (name.startsWith('rec-')) bytes += fs.statSync(path.join(dir, name)).size;
  return Math.floor(bytes / REC);
}

export interface Start {
  label: string;
  instance: number;
  pid: number;
  cursor: number | null;
}

/** The lines of a file the machines append to; none when it does not exist yet. */
function appended(dir: string, name: string): string[] {
  const file = path.join(dir, name);
  if (!fs.existsSync(file)) return [];
  const text = fs.readFileSync(file, 'utf8').trimEnd();
  return text === '' ? [] : text.split('\n');
}

/** The onStart lines of every machine: which machine's instance started which partition, from where. */
export function starts(dir: string): Start[] {
  return appended(dir, 'starts').map((line) => {
    const [label, instance, pid, cursor] = line.split(' ');
    return { label, instance: Number(instance), pid: Number(pid), cursor: JSON.parse(cursor) as number | null };
  });
}

/** The onAllComplete lines: one per call, on any machine. */
export function allCompleteCalls(dir: string): { label: string; complete: boolean; failed: { instance: number; message: string }[] }[] {
  return appended(dir, 'allcomplete').map((l) => JSON.parse(l));
}

/**
 * How often each item must have been recorded: once, plus once for every lease
 * that recorded it past the cursor the next lease of its partition resumed
 * from (a lease that ended without saving it: a kill -9, a lost lock).
 * Returns the expected counts and the repeats each machine's leases caused.
 */
export function expectedCounts(s: Start[], recs: Records, total: number, partitions: number): { expected: Uint32Array; repeatsBy: Map<string, number> } {
  const expected = new Uint32Array(total).fill(1);
  const repeatsBy = new Map<string, number>();
  const byPid = new Map<number, number[]>();
  for (const f of recs.files.values()) byPid.set(f.pid, f.items);
  for (let p = 0; p < partitions; p++) {
    const leases = s.filter((x) => x.instance === p);
    for (let k = 0; k + 1 < leases.length; k++) {
      const resumedFrom = leases[k + 1].cursor ?? Number.NEGATIVE_INFINITY;
      for (const item of byPid.get(leases[k].pid) ?? []) {
        if (item > resumedFrom) {
          expected[item]++;
          repeatsBy.set(leases[k].label, (repeatsBy.get(leases[k].label) ?? 0) + 1);
        }
      }
    }
  }
  return { expected, repeatsBy };
}

/** The first items whose count is not the expected one, described. */
export function mismatches(counts: Uint32Array, expected: Uint32Array): string[] {
  const bad: string[] = [];
  for (let i = 0; i < counts.length && bad.length < 10; i++) if (counts[i] !== expected[i]) bad.push(`item ${i}: ${counts[i]} times, expected ${expected[i]}`);
  return bad;
}
