// pg against a real PostgreSQL server (scripts/pg-test-server.sh): a Pool used
// in the parent, then children and prefork workers query through it. With the
// atFork recipe of docs/recipes.md (examples/recipes/pg-pool.js) they query
// on connections of their own; without it the child's first query on an
// inherited connection fails at once instead of hanging. The scenarios run in
// test/fixtures/compat-pg.js, a process of its own, as an app would.
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { FIXTURES, ROOT, isAlive, runNode, useTestServer, waitFor } from '../helpers';
import { expectRecipeInDocs, getOnce, within } from './support';
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { startProcess } = require('../fixtures/prefork-harness.js');

const pg = useTestServer('pg-test-server.sh', 'PostgreSQL');

/** The server's PG* variables; throws (failing the test, not skipping it) when there is no server. */
const server = (): Record<string, string> => pg.env();

interface Row {
  v: number;
  backend: number;
}
interface Scenario {
  parent: Row;
  pool: (Row | string)[];
  isolation: (Row | string)[];
  workers: { pid?: number; served?: number; value?: Row; error?: string }[];
  after: Row;
}

async function scenario(name: 'recipe' | 'bare'): Promise<Scenario & { stderr: string }> {
  const r = await runNode(['--single-threaded', path.join(FIXTURES, 'compat-pg.js'), name, '1000'], {
    env: server(),
    timeoutMs: 40_000,
  });
  expect(r.stderr).not.toMatch(/compat-pg\.js:/);
  expect(r.code).toBe(0);
  return { ...JSON.parse(r.stdout.trim().split('\n').at(-1)!), stderr: r.stderr };
}

/** cowfork's one-time warning in a child that wrote to a connection it inherited. */
const INHERITED_WARNING = 'COWFORK_INHERITED_CONNECTION';

/** An inherited connection's failure, as a user sees it: at once, naming the broken socket. */
const FAST_FAILURE = /EPIPE|ECONNRESET|Connection terminated|not queryable/;

describe('pg Pool used in the parent', () => {
  it('the recipe in docs/recipes.md is examples/recipes/pg-pool.js, word for word', () => {
    expectRecipeInDocs('pg-pool.js');
  });

  it('with the atFork recipe: map children (pool and isolation) and prefork workers query on connections of their own', async () => {
    const s = await scenario('recipe');
    const want = [0, 1, 2, 3].map((i) => expect.objectContaining({ v: 2 * i }));
    expect(s.pool).toEqual(want);
    expect(s.isolation).toEqual(want);
    // Each child's session is its own, never the parent's.
    for (const row of [...s.pool, ...s.isolation] as Row[]) expect(row.backend).not.toBe(s.parent.backend);
    expect(s.workers).toHaveLength(6);
    for (const w of s.workers) {
      expect(w.error).toBeUndefined();
      expect(w.value).toEqual({ v: 2 * w.served!, backend: expect.any(Number) });
      expect(w.value!.backend).not.toBe(s.parent.backend);
    }
    expect(s.workers.some((w) => w.served === 1)).toBe(true);
    // The parent's pool still works after all the forks.
    expect(s.after.v).toBe(100);
    // No child ever touched an inherited connection.
    expect(s.stderr).not.toContain(INHERITED_WARNING);
  });

  it('without it: a query on the inherited connection fails at once with a clear error, well inside a 1 s map timeout', async () => {
    const s = await scenario('bare');
    // In isolation every child's first query takes the inherited idle
    // connection; in pool mode a child's later queries may open a new one.
    for (const o of s.isolation) expect(o).toMatch(FAST_FAILURE);
    for (const [i, o] of s.pool.entries()) {
      if (typeof o === 'string') expect(o).toMatch(FAST_FAILURE);
      else expect(o.v).toBe(2 * i);
    }
    expect(s.pool.some((o) => typeof o === 'string')).toBe(true);
    // A prefork worker's first request fails the same way, never hangs.
    for (const w of s.workers) {
      if (w.error !== undefined) expect(w.error).toMatch(FAST_FAILURE);
      else expect(w.value!.v).toBe(2 * w.served!);
    }
    expect(s.after.v).toBe(100);
    // Each such child was told why, naming the server and the recipes.
    const warning = s.stderr.split('\n').find((line) => line.includes(INHERITED_WARNING));
    expect(warning).toContain(`peer 127.0.0.1:${server().PGPORT}`);
    expect(warning).toContain('docs/recipes.md');
  });
});

describe('cowfork serve with an app that queries its database at boot', () => {
  it('serves every first request (the app uses the recipe)', async () => {
    const m = startProcess(
      [
        path.join(ROOT, 'bin', 'cowfork.js'), 'serve', path.join(FIXTURES, 'compat-pg-app.mjs'),
        '--workers', '2', '--host', '127.0.0.1', '--port', '0', '--shutdown-timeout', '1000',
      ],
      { env: server() },
    );
    try {
      const stderr = await m.waitStderr((s: string) => /ready on http:\/\/127\.0\.0\.1:\d+|Error/.test(s), 20_000);
      const port = Number(/ready on http:\/\/127\.0\.0\.1:(\d+)/.exec(stderr)?.[1]);
      expect(port, stderr).toBeGreaterThan(0);
      const answers = [];
      for (let i = 0; i < 8; i++) {
        const r = await getOnce(port, `/q${i}`, 3000).catch((err: Error) => ({ status: 0, body: JSON.stringify({ error: err.message }) }));
        answers.push({ status: r.status, ...JSON.parse(r.body) });
      }
      // Every answer is right, each worker's first one included.
      for (const a of answers) expect(a).toEqual({ status: 200, pid: expect.any(Number), served: expect.any(Number), value: { v: a.served + 1, backend: expect.any(Number) } });
      expect(answers.filter((a) => a.served === 1).length).toBeGreaterThanOrEqual(1);
    } finally {
      // Graceful stop is not under test here (the pool's idle timers would hold
      // the master for 10 s): kill -9, and the workers follow their master.
      m.child.kill('SIGKILL');
      await within(m.exited, 5000, 'cowfork serve exiting');
      const workers = [...m.stderr.matchAll(/forked \(pid (\d+)/g)].map((x: RegExpMatchArray) => Number(x[1]));
      await waitFor(() => workers.every((pid: number) => !isAlive(pid)), 5000);
    }
  });
});
