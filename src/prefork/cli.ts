// `cowfork serve app.js --workers 4 --port 3000`: runs an app module under prefork.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { isForkSafe } from '../fork';
import { reexecWithFlag } from '../launcher';
import { describe, parseListen } from './listen';
import { prefork } from './index';
import { startedByNpm, watchParent } from './parent';
import { PidFileError, writePidFile } from './pidfile';

export class ServeUsageError extends Error {}

export const SERVE_USAGE = 'cowfork serve <app.js> [--workers N] [--port N] [--host H] [--listen ADDR]... [options]';

export const SERVE_HELP = `Usage: ${SERVE_USAGE}

Runs an app module under prefork: a master that opens the listening sockets,
loads the app once, then forks the workers, which share its memory
copy-on-write and accept on the master's sockets.

The app module (CommonJS or ESM) exports one of:
  a request handler      module.exports = (req, res) => { ... }   (2+ parameters)
  a worker function      module.exports = function worker(ctx) { ctx.serve(handler) }
  or names them          exports.handler = ... / exports.worker = ...

Options:
  -w, --workers N           worker processes (default: ${os.availableParallelism()}, the CPU count here)
  -p, --port N              TCP port to listen on (default: $PORT, else 3000)
      --host H              host for --port (default: every interface)
  -l, --listen ADDR         a port, host:port, [::1]:port or unix socket path;
                            repeat for several sockets (replaces --port/--host)
  -t, --threads N           worker_threads per worker process (default 0)
      --timeout MS          kill a worker whose heartbeat stops this long (default 30000)
      --shutdown-timeout MS how long a worker may drain on stop/restart (default 10000)
      --reuse-port          one SO_REUSEPORT socket per worker instead of a shared one
      --backlog N           listen(2) backlog (default 511)
      --max-requests N      recycle a worker after N requests (plus a jitter of up to N/10)
      --max-memory SIZE     recycle a worker whose memory (PSS) is over SIZE (bytes, or 512K, 300M, 2G)
      --metrics-port N      serve /metrics (prom-client, every worker merged) on N, on --host
      --pid-file PATH       write the master's pid to PATH (atomically; removed on exit)
  -q, --quiet               don't log worker events
  -h, --help                show this help

Signals to the master:
  TERM, INT, QUIT   graceful stop (a second one kills the workers at once)
  HUP               rolling restart, one worker at a time (same code)
  USR2              code reload: load app.js again (same master pid), fork new
                    workers from it, drain the old ones once all new are ready
  TTIN / TTOU       one more / one fewer worker
Under npx or npm start, TERM and INT sent to npm stop the master too (npm
forwards them; its shell dies of them, and the master takes that as a stop).
npm forwards no other signal: send HUP, TTIN, TTOU to the pid in --pid-file.

Example:
  npx cowfork serve app.js --workers 4 --port 3000
`;

interface ServeArgs {
  app: string;
  workers?: number;
  port?: number;
  host?: string;
  listen: string[];
  threads: number;
  timeout?: number;
  shutdownTimeout?: number;
  reusePort: boolean;
  backlog?: number;
  maxRequests?: number;
  maxMemory?: number;
  pidFile?: string;
  metricsPort?: number;
  quiet: boolean;
  help: boolean;
}

type FlagKind = 'int' | 'pos' | 'ms' | 'size' | 'str' | 'list' | 'bool';

const FLAGS: Record<string, { key: keyof ServeArgs; kind: FlagKind }> = {
  '--workers': { key: 'workers', kind: 'pos' },
  '-w': { key: 'workers', kind: 'pos' },
  '--port': { key: 'port', kind: 'int' },
  '-p': { key: 'port', kind: 'int' },
  '--host': { key: 'host', kind: 'str' },
  '--listen': { key: 'listen', kind: 'list' },
  '-l': { key: 'listen', kind: 'list' },
  '--threads': { key: 'threads', kind: 'int' },
  '-t': { key: 'threads', kind: 'int' },
  '--timeout': { key: 'timeout', kind: 'ms' },
  '--shutdown-timeout': { key: 'shutdownTimeout', kind: 'ms' },
  '--reuse-port': { key: 'reusePort', kind: 'bool' },
  '--backlog': { key: 'backlog', kind: 'pos' },
  '--max-requests': { key: 'maxRequests', kind: 'pos' },
  '--max-memory': { key: 'maxMemory', kind: 'size' },
  '--pid-file': { key: 'pidFile', kind: 'str' },
  '--metrics-port': { key: 'metricsPort', kind: 'int' },
  '--quiet': { key: 'quiet', kind: 'bool' },
  '-q': { key: 'quiet', kind: 'bool' },
  '--help': { key: 'help', kind: 'bool' },
  '-h': { key: 'help', kind: 'bool' },
};

export function parseServeArgs(argv: string[]): ServeArgs {
  const out: ServeArgs = { app: '', listen: [], threads: 0, reusePort: false, quiet: false, help: false };
  const positional: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    let arg = argv[i];
    let value: string | undefined;
    if (arg === '--') {
      positional.push(...argv.slice(i + 1));
      break;
    }
    if (!arg.startsWith('-') || arg === '-') {
      positional.push(arg);
      continue;
    }
    const eq = arg.indexOf('=');
    if (arg.startsWith('--') && eq > 0) {
      value = arg.slice(eq + 1);
      arg = arg.slice(0, eq);
    }
    const flag = FLAGS[arg];
    if (flag === undefined) throw new ServeUsageError(`cowfork serve: unknown option '${arg}' (see cowfork serve --help)`);
    const rec = out as unknown as Record<string, unknown>;
    if (flag.kind === 'bool') {
      if (value !== undefined) throw new ServeUsageError(`cowfork serve: ${arg} takes no value`);
      rec[flag.key] = true;
      continue;
    }
    if (value === undefined) {
      value = argv[++i];
      if (value === undefined) throw new ServeUsageError(`cowfork serve: ${arg} needs a value`);
    }
    if (flag.kind === 'str') rec[flag.key] = value;
    else if (flag.kind === 'list') (rec[flag.key] as string[]).push(value);
    else if (flag.kind === 'size') rec[flag.key] = size(arg, value);
    else rec[flag.key] = number(arg, value, flag.kind);
  }
  if (out.help) return out;
  if (positional.length === 0) throw new ServeUsageError('cowfork serve: missing <app.js>');
  if (positional.length > 1) throw new ServeUsageError(`cowfork serve: unexpected argument '${positional[1]}'`);
  out.app = positional[0];
  if (out.listen.length > 0 && (out.port !== undefined || out.host !== undefined)) {
    throw new ServeUsageError('cowfork serve: use either --listen or --port/--host, not both');
  }
  if (out.port !== undefined && out.port > 65535) throw new ServeUsageError(`cowfork serve: --port must be 0..65535, got ${out.port}`);
  if (out.metricsPort !== undefined && out.metricsPort > 65535) {
    throw new ServeUsageError(`cowfork serve: --metrics-port must be 0..65535, got ${out.metricsPort}`);
  }
  if (out.reusePort && out.listen.some((l) => parseListenOrUsage(l).kind === 'unix')) {
    throw new ServeUsageError('cowfork serve: --reuse-port needs TCP addresses, not a unix socket');
  }
  for (const l of out.listen) parseListenOrUsage(l);
  return out;
}

function number(flag: string, value: string, kind: 'int' | 'pos' | 'ms'): number {
  const n = /^\d+$/.test(value) ? Number(value) : NaN;
  const ok = Number.isSafeInteger(n) && (kind === 'int' ? n >= 0 : n > 0);
  if (!ok) {
    const what = kind === 'int' ? 'a non-negative integer' : kind === 'pos' ? 'a positive integer' : 'a positive number of milliseconds';
    throw new ServeUsageError(`cowfork serve: ${flag} must be ${what}, got '${value}'`);
  }
  return n;
}

const UNITS: Record<string, number> = { '': 1, K: 1024, M: 1024 ** 2, G: 1024 ** 3 };

/** A size in bytes: a whole number, optionally with K, M or G (powers of 1024). */
function size(flag: string, value: string): number {
  const m = /^(\d+)([KMG]?)B?$/i.exec(value);
  const n = m ? Number(m[1]) * UNITS[m[2].toUpperCase()] : NaN;
  if (!(Number.isSafeInteger(n) && n > 0)) {
    throw new ServeUsageError(`cowfork serve: ${flag} must be a size in bytes, such as 536870912, 512M or 2G, got '${value}'`);
  }
  return n;
}

function parseListenOrUsage(spec: string) {
  try {
    return parseListen(spec, '--listen');
  } catch (err) {
    throw new ServeUsageError(`cowfork serve: ${(err as Error).message}`);
  }
}

/** Runs the serve command; resolves once the master has stopped. */
export async function serveCommand(argv: string[]): Promise<void> {
  const args = parseServeArgs(argv);
  if (args.help) {
    process.stdout.write(SERVE_HELP);
    return;
  }
  const app = path.resolve(args.app);
  if (!fs.existsSync(app)) throw new ServeUsageError(`cowfork serve: cannot find ${args.app}`);
  // fork() needs V8's --single-threaded, which only a fresh start can set:
  // re-execute this same command with it (same pid).
  if (!isForkSafe()) reexecWithFlag(process.execArgv, process.argv[1], ['serve', ...argv]);

  const listen: (string | number)[] =
    args.listen.length > 0
      ? args.listen
      : [formatHostPort(args.host, args.port ?? Number(process.env.PORT ?? 3000))];
  const log = args.quiet ? () => {} : (msg: string) => process.stderr.write(`cowfork serve: ${msg}\n`);
  let removePidFile = (): void => {};
  if (args.pidFile !== undefined) {
    try {
      removePidFile = writePidFile(args.pidFile);
    } catch (err) {
      if (!(err instanceof PidFileError)) throw err;
      process.stderr.write(`${err.message}\n`);
      process.exitCode = 1;
      return;
    }
  }
  try {
    await runMaster(args, listen, app, log);
  } finally {
    removePidFile();
  }
}

async function runMaster(args: ServeArgs, listen: (string | number)[], app: string, log: (msg: string) => void): Promise<void> {
  const master = prefork({
    worker: app,
    listen,
    workers: args.workers,
    threads: args.threads,
    timeout: args.timeout,
    shutdownTimeout: args.shutdownTimeout,
    reusePort: args.reusePort,
    backlog: args.backlog,
    maxRequests: args.maxRequests,
    maxMemory: args.maxMemory,
    metrics: args.metricsPort === undefined ? undefined : { port: args.metricsPort, host: args.host },
  });
  master.on('spawn', (e) => log(`worker ${e.num} forked (pid ${e.pid}, generation ${e.generation})`));
  master.on('reload', (e) => log(`reloading: new code loaded, forking generation ${e.generation}`));
  master.on('reloaded', (e) => log(`reloaded: generation ${e.generation} serves (master pid ${process.pid})`));
  master.on('reloadError', (err) => log(`reload failed: ${err.message}${err.cause ? `\n${(err.cause as Error).stack ?? err.cause}` : ''}`));
  master.on('recycle', (e) => log(`worker ${e.num} (pid ${e.pid}) reached ${e.cause}; replacing it`));
  master.on('timeout', (e) => log(`worker ${e.num} (pid ${e.pid}) missed its heartbeat; killing it`));
  master.on('exit', (e) => {
    const how = e.signal ? `killed by ${e.signal}` : `exited with code ${e.exitCode}`;
    log(`worker ${e.num} (pid ${e.pid}) ${how} (${e.reason})`);
  });
  const stopped = new Promise<void>((resolve) => master.once('stop', resolve));
  // Under npx, the shell npm put in front of the master dies of the TERM or
  // INT npm forwards to it (parent.ts): take that as the stop it was meant to be.
  const unwatch = startedByNpm()
    ? watchParent((ppid) => {
        log(`the process that started the master (pid ${ppid}, under npm) exited; stopping`);
        void master.stop();
      })
    : () => {};
  master.once('stop', unwatch);
  try {
    await master.ready;
    const where = master.addresses.map((a) => (a.path ? a.path : `http://${describe(a)}`)).join(', ');
    log(`${master.workers} workers ready on ${where} (master pid ${process.pid})`);
    if (master.metricsAddress !== null) log(`metrics on http://${describe(master.metricsAddress)}/metrics`);
  } catch (err) {
    process.stderr.write(`cowfork serve: ${(err as Error).message}\n`);
    process.exitCode = 1;
    await master.stop();
    exitIfInit();
    return;
  }
  await stopped;
  log('stopped');
  exitIfInit();
}

/**
 * Ends the process once the master has stopped, when it is PID 1. The kernel
 * drops every signal that PID 1 does not handle, and the master's handlers are
 * gone now: a timer or a socket that the app left open in the master would
 * keep the container up until SIGKILL.
 */
function exitIfInit(): void {
  if (process.pid === 1) process.exit();
}

function formatHostPort(host: string | undefined, port: number): string | number {
  if (host === undefined || host === '') return port;
  return host.includes(':') && !host.startsWith('[') ? `[${host}]:${port}` : `${host}:${port}`;
}
