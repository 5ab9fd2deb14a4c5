// Code reload (USR2, master.reload()): the master loads the app module again,
// in place, so its pid never changes (Docker and systemd watch that pid). A
// new worker is forked from the new code for every num while the old workers
// keep serving on the same sockets; only once every new worker is ready do the
// old ones drain. A new version that fails to load, whose worker throws, or
// that is not ready within `timeout` is reported, its workers are stopped,
// and the old workers never noticed.
import type { EventEmitter } from 'node:events';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { ReloadError } from '../errors';
import type { Live } from './live';
import type { ExitReason, WorkerFn } from './types';

/** What a reload drives in the master: its workers, forking and retiring. */
export interface ReloadHost {
  /** The worker of each num. */
  readonly live: Map<number, Live>;
  /** Forked workers that hold no num, by pid. */
  readonly extra: Map<number, Live>;
  /** The number of workers the master keeps. */
  readonly workers: number;
  readonly timeout: number;
  spawn(num: number, reload: Reload): void;
  retire(w: Live, reason: ExitReason, grace?: number): void;
  /** Makes the reload's code and generation the master's: what it forks from now on. */
  adopt(reload: Reload): void;
}

/**
 * A reload in progress. Before the switch, a new worker is forked for every
 * num and the old workers serve alone; once all new ones are ready, the old
 * ones drain (the switch), and each new worker takes its num over when the old
 * one is gone. Settles once: with null when every new worker holds its num,
 * with an error when the new code did not come up.
 */
export class Reload {
  /** The new workers, by num, until each takes its num over. */
  readonly incoming = new Map<number, Live>();
  private switched = false;
  private settled = false;

  constructor(
    readonly worker: WorkerFn | null,
    readonly generation: number,
    private readonly startedAt: number,
    private readonly settle: (err: Error | null) => void,
  ) {}

  /** One step of the master's loop. Returns false once the reload is over. */
  advance(host: ReloadHost, now: number): boolean {
    if (!this.switched) {
      for (let num = 0; num < host.workers; num++) if (!this.incoming.has(num)) host.spawn(num, this);
      if (this.settled) return false;
      if (now - this.startedAt > host.timeout) {
        this.abort(host, new ReloadError(`prefork: the new workers were not all ready within ${host.timeout} ms; the old workers keep serving`));
        return false;
      }
      // A fork the master held back (quiet.ts) or that failed is asked for again next turn: not all are here yet.
      if (this.incoming.size < host.workers) return true;
      for (const w of this.incoming.values()) if (w.state !== 'ready') return true;
      this.switched = true;
      host.adopt(this);
      for (const w of host.live.values()) if (w.retiring === null) host.retire(w, 'reload');
      for (const num of [...this.incoming.keys()]) if (!host.live.has(num)) this.promote(host, num);
    }
    if (this.incoming.size > 0) return true;
    this.finish(null);
    return false;
  }

  /** After the switch, the new worker of `num` takes it over (its old worker is gone). */
  promote(host: ReloadHost, num: number): void {
    const w = this.switched ? this.incoming.get(num) : undefined;
    if (w === undefined) return;
    this.incoming.delete(num);
    host.extra.delete(w.pid);
    host.live.set(num, w);
  }

  /** A new worker exited. Before the switch, that fails the reload. Returns false if the reload is over. */
  exited(host: ReloadHost, w: Live, how: string): boolean {
    if (this.incoming.get(w.num) !== w) return !this.settled;
    this.incoming.delete(w.num);
    if (!this.switched) this.abort(host, new ReloadError(`prefork: new worker ${w.num} (pid ${w.pid}) ${how} before it was ready; the old workers keep serving`));
    return !this.settled;
  }

  /** The new code did not come up (or the master is stopping): its workers stop, the old ones never noticed. */
  abort(host: ReloadHost, err: Error): void {
    for (const w of this.incoming.values()) if (w.retiring === null) host.retire(w, 'reload', Math.min(host.timeout, 5000));
    this.finish(err);
  }

  private finish(err: Error | null): void {
    if (this.settled) return;
    this.settled = true;
    this.settle(err);
  }
}

/**
 * Loads the new code for a reload. `started` gets the Reload (null if the
 * code failed to load, which is reported here); `defer` runs a settlement at
 * the end of the master's turn, after its forks. The promise settles with the
 * reload, and a failure is also emitted as 'reloadError'.
 */
export function loadReload(
  load: () => Promise<WorkerFn | null>,
  generation: number,
  events: EventEmitter,
  started: (reload: Reload | null) => void,
  defer: (fn: () => void) => void,
): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const fail = (err: Error): void => {
      events.emit('reloadError', err);
      reject(err);
    };
    load().then(
      (worker) => {
        const reload = new Reload(worker, generation, performance.now(), (err) =>
          defer(() => {
            if (err !== null) return fail(err);
            events.emit('reloaded', { generation });
            resolve();
          }),
        );
        events.emit('reload', { generation });
        started(reload);
      },
      (err: Error) => {
        started(null);
        fail(new ReloadError(`prefork: the new code failed to load, the old workers keep serving: ${err?.message ?? err}`, { cause: err }));
      },
    );
  });
}

let loads = 0;

/**
 * Imports `file` afresh: CommonJS files of the app (outside node_modules)
 * leave require's cache first, and the URL gets a new query, so that the ESM
 * loader makes a new module too. An ESM app's own imports stay cached: only
 * its entry module is new.
 */
export async function importFresh(file: string): Promise<unknown> {
  const dir = path.dirname(file) + path.sep;
  const nm = `${path.sep}node_modules${path.sep}`;
  for (const key of Object.keys(require.cache)) {
    if (key.startsWith(dir) && !key.includes(nm)) delete require.cache[key];
  }
  return import(`${pathToFileURL(file).href}?cowfork-reload=${++loads}`);
}
