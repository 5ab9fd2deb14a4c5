// Metrics across workers, keyed by the durable num (the prometheus-client-mmap
// idea, with prom-client). Each worker writes a snapshot of its prom-client
// registry to `<dir>/<num>-<pid>.json` every second, on demand (SIGUSR2 from
// the master before a scrape) and once more when it has drained. The master
// serves one /metrics: every snapshot gets a `worker="<num>"` label, and
// prom-client's AggregatorRegistry merges them with the master's own metrics.
//
// A worker that is gone (drained, recycled, killed) leaves its last snapshot.
// The master folds its counters and histograms into its num's carried totals
// and deletes the file, under one lock, so each snapshot is counted exactly
// once: a replacement continues its num's counters instead of resetting them,
// and the series stay bounded by the nums. A kill -9 loses what the worker
// counted since its last snapshot (at most a second).
import fs from 'node:fs';
import type http from 'node:http';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import type { EventEmitter } from 'node:events';
import { MetricsError } from '../errors';
import { libraryTimeout } from '../fork';
import { httpModule } from '../util';
import { type Address, type Endpoint, closeSocket, openSocket } from './listen';
import type { WorkerEvent, WorkerStats } from './types';

/** How often a worker writes its snapshot. A kill -9 loses at most this much counting. */
export const FLUSH_EVERY_MS = 1000;
/** How long a scrape waits for the live workers' fresh snapshots. */
const FRESH_WAIT_MS = 500;
const FRESH_POLL_MS = 5;
/** The signal that asks a worker for a snapshot now (SIGUSR1 starts Node's inspector). */
const FLUSH_SIGNAL = 'SIGUSR2';

// The parts of prom-client used here, typed loosely: it is an optional peer dependency.
type MetricJSON = { name: string; help: string; type: string; aggregator: string; values: { value: number; labels: Record<string, string | number>; metricName?: string }[] };
interface Registry {
  getMetricsAsJSON(): Promise<MetricJSON[]>;
  metrics(): Promise<string>;
  readonly contentType: string;
  registerMetric(m: unknown): void;
}
interface PromClient {
  register: Registry;
  Registry: new () => Registry;
  AggregatorRegistry: { aggregate(metrics: MetricJSON[][]): Registry };
  Counter: new (cfg: object) => { inc(labels: object, n?: number): void; reset(): void };
  Gauge: new (cfg: object) => { set(labels: object, n: number): void; reset(): void };
}

/** prom-client, as the app sees it (resolved from `from`), else as cowfork does. */
export function loadPromClient(from: string): PromClient {
  try {
    return createRequire(path.join(from, 'noop.js'))('prom-client') as PromClient;
  } catch {
    try {
      return require('prom-client') as PromClient;
    } catch (err) {
      throw new MetricsError('options.metrics needs the prom-client package, an optional peer dependency of cowfork: npm install prom-client', { cause: err });
    }
  }
}

export interface MetricsSetup {
  dir: string;
  promClient: PromClient;
}

// ---------------------------------------------------------------------------
// The worker's side.

interface Snapshot {
  /** performance.now() when the snapshot was taken (the clock fork() keeps shared). */
  at: number;
  metrics: MetricJSON[];
}

/** Writes this worker's snapshots; returns the final flush, for the drain. */
export function startWorkerMetrics(setup: MetricsSetup, num: number): () => Promise<void> {
  const file = path.join(setup.dir, `${num}-${process.pid}.json`);
  let chain = Promise.resolve();
  const flush = (): Promise<void> =>
    (chain = chain.then(async () => {
      const at = performance.now();
      const snapshot: Snapshot = { at, metrics: await setup.promClient.register.getMetricsAsJSON() };
      const tmp = `${file}.tmp`;
      fs.writeFileSync(tmp, JSON.stringify(snapshot));
      fs.renameSync(tmp, file);
    }).catch((err) => {
      process.stderr.write(`prefork worker ${num}: metrics snapshot failed: ${String(err)}\n`);
    }));
  const timer = setInterval(flush, FLUSH_EVERY_MS);
  timer.unref();
  process.on(FLUSH_SIGNAL, () => void flush());
  void flush();
  return () => {
    clearInterval(timer);
    return flush();
  };
}

// ---------------------------------------------------------------------------
// The master's side.

/** What the exporter needs of the master: its live workers and its events. */
export interface MetricsSource extends EventEmitter {
  stats(): WorkerStats[];
}

/** Only counting types carry over to a num's next worker; a gauge is its live worker's alone. */
const CARRIED = new Set(['counter', 'histogram']);

function withWorker(metrics: MetricJSON[], num: number): MetricJSON[] {
  return metrics.map((m) => ({ ...m, values: m.values.map((v) => ({ ...v, labels: { ...v.labels, worker: num } })) }));
}

function parseName(name: string): { num: number; pid: number } | null {
  const m = /^(\d+)-(\d+)\.json$/.exec(name);
  return m ? { num: Number(m[1]), pid: Number(m[2]) } : null;
}

export class MetricsExporter {
  readonly setup: MetricsSetup;
  readonly address: Address;
  private server: http.Server | null = null;
  private source: MetricsSource | null = null;
  /** Per num: the counters and histograms of its workers that are gone. */
  private readonly carried = new Map<number, MetricJSON[]>();
  /** Serializes folding and scraping, so that no snapshot is folded twice. */
  private lock = Promise.resolve();
  private own: Registry | null = null;
  private readonly timeouts = new Map<number, number>();

  /** Opens the socket and the snapshot directory, before any fork; throws EADDRINUSE and the like. */
  constructor(endpoint: Endpoint, promClient: PromClient) {
    // Named by the master's pid, so that a leftover can be told from another master's.
    const dir = fs.mkdtempSync(path.join(fs.existsSync('/dev/shm') ? '/dev/shm' : os.tmpdir(), `cowfork-metrics-${process.pid}-`));
    this.setup = { dir, promClient };
    try {
      this.address = openSocket(endpoint, 511, false);
    } catch (err) {
      fs.rmSync(dir, { recursive: true, force: true });
      throw err;
    }
  }

  /** Starts serving, once the master exists. */
  attach(source: MetricsSource): void {
    this.source = source;
    this.own = this.masterRegistry(source);
    source.on('timeout', (e: WorkerEvent) => this.timeouts.set(e.num, (this.timeouts.get(e.num) ?? 0) + 1));
    // A worker that is gone is folded at once, not only at the next scrape:
    // its file is the last it will write.
    // (After the stop the directory is gone: nothing is left to fold.)
    source.on('exit', () => {
      this.locked(() => this.collect(false)).catch(() => {});
    });
    this.server = httpModule().createServer((req, res) => this.handle(req, res));
    this.server.listen({ fd: this.address.fd });
  }

  close(): void {
    this.server?.close();
    this.server?.closeAllConnections();
    closeSocket({ fd: this.address.fd });
    fs.rmSync(this.setup.dir, { recursive: true, force: true });
  }

  private handle(req: http.IncomingMessage, res: http.ServerResponse): void {
    if (req.url !== '/metrics' && !req.url?.startsWith('/metrics?')) {
      res.writeHead(404).end('not found\n');
      return;
    }
    this.locked(() => this.collect(true)).then(
      (registry) => {
        res.setHeader('content-type', registry.contentType);
        return registry.metrics().then((text) => res.end(text));
      },
      (err: Error) => res.writeHead(500).end(`${err.message}\n`),
    );
  }

  private locked<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.lock.then(fn);
    this.lock = run.then(
      () => undefined,
      () => undefined,
    );
    return run;
  }

  /**
   * Folds the snapshots of gone workers into their num's carried totals, and
   * merges the carried totals, the live workers' snapshots and the master's
   * own metrics. `fresh` first asks every live worker for a snapshot now.
   */
  private async collect(fresh: boolean): Promise<Registry> {
    const live = new Map(this.source!.stats().map((w) => [w.pid, w]));
    if (fresh) await this.freshSnapshots(live);
    const current: MetricJSON[][] = [];
    for (const name of fs.readdirSync(this.setup.dir)) {
      const id = parseName(name);
      if (id === null) continue;
      const file = path.join(this.setup.dir, name);
      const snapshot = readSnapshot(file);
      if (live.has(id.pid)) {
        if (snapshot !== null) current.push(withWorker(snapshot.metrics, id.num));
        continue;
      }
      if (snapshot !== null) await this.fold(id.num, snapshot.metrics);
      fs.rmSync(file, { force: true });
    }
    const carried = [...this.carried].map(([num, metrics]) => withWorker(metrics, num));
    const { AggregatorRegistry } = this.setup.promClient;
    return AggregatorRegistry.aggregate([...carried, ...current, await this.own!.getMetricsAsJSON()]);
  }

  private async fold(num: number, metrics: MetricJSON[]): Promise<void> {
    const counting = metrics.filter((m) => CARRIED.has(m.type));
    const before = this.carried.get(num) ?? [];
    const merged = this.setup.promClient.AggregatorRegistry.aggregate([before, counting]);
    this.carried.set(num, await merged.getMetricsAsJSON());
  }

  /** Signals every live worker and waits (bounded) until each has written a snapshot taken after now. */
  private async freshSnapshots(live: Map<number, WorkerStats>): Promise<void> {
    const since = performance.now();
    const waiting = new Set<number>();
    for (const w of live.values()) {
      if (w.state !== 'ready') continue;
      try {
        process.kill(w.pid, FLUSH_SIGNAL);
        waiting.add(w.pid);
      } catch {
        // It exited meanwhile; its last file is folded.
      }
    }
    const deadline = since + FRESH_WAIT_MS;
    while (waiting.size > 0 && performance.now() < deadline) {
      // A library timer: cleared in a worker forked meanwhile, whose copy of this scrape must not go on.
      await new Promise<void>((r) => libraryTimeout(r, FRESH_POLL_MS));
      for (const pid of waiting) {
        const w = live.get(pid)!;
        const s = readSnapshot(path.join(this.setup.dir, `${w.num}-${pid}.json`));
        if (s !== null && s.at >= since) waiting.delete(pid);
      }
    }
  }

  /** The master's own metrics: restarts, timeouts and heartbeat age per num, read at scrape time. */
  private masterRegistry(source: MetricsSource): Registry {
    const { Registry, Counter, Gauge } = this.setup.promClient;
    const registry = new Registry();
    const timeouts = this.timeouts;
    // One worker per num; during a reload a num also has its new worker, which is not counted twice.
    const byNum = (): Map<number, WorkerStats> => new Map(source.stats().map((w) => [w.num, w]));
    type Collector = { reset(): void; inc(l: object, n: number): void; set(l: object, n: number): void };
    const perNum = (name: string, help: string, kind: 'counter' | 'gauge', value: (w: WorkerStats) => number): void => {
      const Metric = kind === 'counter' ? Counter : Gauge;
      new Metric({
        name,
        help,
        labelNames: ['worker'],
        registers: [registry],
        collect(this: Collector) {
          this.reset();
          for (const w of byNum().values()) {
            if (kind === 'counter') this.inc({ worker: w.num }, value(w));
            else this.set({ worker: w.num }, value(w));
          }
        },
      });
    };
    perNum('cowfork_worker_restarts_total', 'How many times the master replaced the worker of this num.', 'counter', (w) => w.restarts);
    perNum('cowfork_worker_timeouts_total', 'Workers of this num killed for a missed heartbeat.', 'counter', (w) => timeouts.get(w.num) ?? 0);
    perNum('cowfork_worker_heartbeat_age_seconds', 'Seconds since the worker of this num last reported a heartbeat.', 'gauge', (w) =>
      Math.max(0, Date.now() - w.lastHeartbeat) / 1000,
    );
    new Gauge({
      name: 'cowfork_workers',
      help: 'Nums with a live worker.',
      registers: [registry],
      collect(this: { set(n: number): void }) {
        this.set(byNum().size);
      },
    });
    return registry;
  }
}

function readSnapshot(file: string): Snapshot | null {
  try {
    return JSON.parse(fs.readFileSync(file, 'utf8')) as Snapshot;
  } catch {
    // Not there (yet, or any more).
    return null;
  }
}
