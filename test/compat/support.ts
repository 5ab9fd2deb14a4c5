// Shared by the compat tests (one file per library): a local upstream HTTP
// server, `map` in both child modes, a prefork master in this process, and
// bounded waits, so that a regression fails the test instead of hanging CI;
// and the check that a recipe in docs/recipes.md is its example file.
import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { expect } from 'vitest';
import { type ParallelOptions, type Settled, map, prefork } from '../../src/index';
import { ROOT } from '../helpers';

/** docs/recipes.md shows examples/recipes/<file> word for word, in a js block. */
export function expectRecipeInDocs(file: string): void {
  const recipe = fs.readFileSync(path.join(ROOT, 'examples', 'recipes', file), 'utf8');
  const doc = fs.readFileSync(path.join(ROOT, 'docs', 'recipes.md'), 'utf8');
  expect(doc).toContain('```js\n' + recipe + '```');
}

/** Rejects when `p` has not settled within `ms`: a hang fails the test instead of stalling it. */
export function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const limit = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not settle within ${ms} ms (a hang)`)), ms);
  });
  return Promise.race([p, limit]).finally(() => clearTimeout(timer));
}

export interface Upstream {
  /** http://127.0.0.1:port */
  base: string;
  close(): Promise<void>;
}

/** A local HTTP server that answers every request with its path, keep-alive on. */
export async function upstream(): Promise<Upstream> {
  const server = http.createServer((req, res) => res.end(req.url));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    base: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** GET through http.globalAgent, Node's default keep-alive agent, as an app would. */
export function getDefault(url: string): Promise<string> {
  return new Promise((resolve, reject) => {
    http
      .get(url, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (d) => (body += d));
        res.on('end', () => resolve(body));
        res.on('error', reject);
      })
      .on('error', reject);
  });
}

/**
 * What an item came to, in a form that reads well in a failed assertion: the
 * value, or the error's class, code and message (and its cause's message).
 */
export function outcome(s: Settled<unknown>): unknown {
  if (s.status === 'fulfilled') return s.value;
  const e = s.reason as Error & { code?: string; cause?: Error };
  const cause = e.cause ? ` <- ${e.cause.name}: ${e.cause.message}` : '';
  return `${e.name} ${e.code ?? ''}: ${e.message}${cause}`;
}

/** The two ways `map` runs items: long-lived children, and one fresh child per item. */
export const MODES: Record<'pool' | 'isolation', ParallelOptions> = {
  pool: { concurrency: 2 },
  isolation: { concurrency: 2, isolation: true },
};

/**
 * Runs `fn` over `items` in `map` children in both modes, each item bounded by
 * `timeout` ms, and returns every item's outcome by mode.
 */
export async function inChildren<T>(
  items: T[],
  fn: (item: T) => unknown,
  timeout: number,
): Promise<{ pool: unknown[]; isolation: unknown[] }> {
  const run = async (mode: ParallelOptions): Promise<unknown[]> =>
    (await map(items, fn, { ...mode, timeout, settle: true })).map(outcome);
  return { pool: await run(MODES.pool), isolation: await run(MODES.isolation) };
}

export interface WorkerAnswer {
  /** The worker's pid. */
  pid: number;
  /** 1 for the first request that worker served. */
  served: number;
  value?: unknown;
  error?: string;
}

/** One GET on a fresh connection (agent: false), bounded by `ms`. */
export function getOnce(port: number, path: string, ms: number): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path, agent: false, timeout: ms }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode!, body }));
    });
    req.on('timeout', () => req.destroy(new Error(`GET ${path} on port ${port}: no answer within ${ms} ms (a hang)`)));
    req.on('error', reject);
  });
}

/**
 * Serves `answer(path)` from prefork workers forked from this process, sends
 * `requests` requests (each on a fresh connection, bounded by `ms`) and returns
 * the workers' answers. A worker that throws answers 500 with the error.
 */
export async function preforkAnswers(
  answer: (path: string) => unknown,
  opts: { workers?: number; requests?: number; ms?: number } = {},
): Promise<WorkerAnswer[]> {
  const { workers = 2, requests = 6, ms = 3000 } = opts;
  const master = prefork({
    workers,
    listen: '127.0.0.1:0',
    signals: false,
    shutdownTimeout: 1000,
    worker(ctx) {
      let served = 0;
      ctx.serve(async (req, res) => {
        const n = ++served;
        try {
          const value = await answer(req.url!);
          res.end(JSON.stringify({ pid: process.pid, served: n, value }));
        } catch (err) {
          res.statusCode = 500;
          res.end(JSON.stringify({ pid: process.pid, served: n, error: String(err) }));
        }
      });
    },
  });
  try {
    await within(master.ready, 10_000, 'prefork workers becoming ready');
    const port = master.addresses[0].port!;
    const out: WorkerAnswer[] = [];
    for (let i = 0; i < requests; i++) out.push(JSON.parse((await getOnce(port, `/r${i}`, ms)).body));
    return out;
  } finally {
    await within(master.stop(), 10_000, 'prefork master stopping');
  }
}
