// ioredis against a real Redis server (scripts/redis-test-server.sh): one
// client used in the parent, then map children (pool and isolation) run
// commands through it. With the atFork recipe of docs/recipes.md
// (examples/recipes/ioredis.js) each child talks on a connection of its own,
// even while the parent keeps commands in flight. Without it, ioredis
// reconnects in the child after the inherited connection's write fails
// (EPIPE), so a child's commands still run, once each, after a warning; but
// ioredis also sends the parent's unanswered commands again on that new
// connection (autoResendUnfulfilledCommands): the hazard row in
// docs/hazards.md. The scenarios run in test/fixtures/compat-ioredis.js, a
// process of its own, as an app would.
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { FIXTURES, runNode, useTestServer } from '../helpers';
import { expectRecipeInDocs } from './support';

const redis = useTestServer('redis-test-server.sh', 'Redis');

interface Item {
  i: number;
  n: number;
  read: number;
  id: number;
}
interface Scenario {
  parentId: number;
  afterId: number;
  checker: { ok: number; wrong: string[] };
  pool: (Item | string)[];
  isolation: (Item | string)[];
  counts: { pool: number[]; isolation: number[] };
  stderr: string;
}

async function scenario(name: 'recipe' | 'bare', parent: 'busy' | 'quiet'): Promise<Scenario> {
  const r = await runNode(['--single-threaded', path.join(FIXTURES, 'compat-ioredis.js'), name, parent], {
    env: redis.env(),
    timeoutMs: 40_000,
  });
  expect(r.stderr).not.toMatch(/compat-ioredis\.js:/);
  expect(r.code).toBe(0);
  return { ...JSON.parse(r.stdout.trim().split('\n').at(-1)!), stderr: r.stderr };
}

const INHERITED_WARNING = 'COWFORK_INHERITED_CONNECTION';

/** Every child ran each of its commands once, on a connection that is not the parent's; the parent's connection is the one it started with. */
function expectChildrenOnOwnConnections(s: Scenario): void {
  const want = [0, 1, 2, 3, 4, 5].map((i) => ({ i, n: 1, read: 1, id: expect.any(Number) }));
  expect(s.pool).toEqual(want);
  expect(s.isolation).toEqual(want);
  for (const item of [...s.pool, ...s.isolation] as Item[]) expect(item.id).not.toBe(s.parentId);
  // What the server holds: each child's counter was incremented exactly once.
  expect(s.counts).toEqual({ pool: [1, 1, 1, 1, 1, 1], isolation: [1, 1, 1, 1, 1, 1] });
  expect(s.afterId).toBe(s.parentId);
}

describe('ioredis client used in the parent', () => {
  it('the recipe in docs/recipes.md is examples/recipes/ioredis.js, word for word', () => {
    expectRecipeInDocs('ioredis.js');
  });

  it('with the atFork recipe, while the parent keeps a command in flight: children use their own connections, and every reply the parent gets is its own', async () => {
    const s = await scenario('recipe', 'busy');
    expectChildrenOnOwnConnections(s);
    expect(s.checker.ok).toBeGreaterThan(0);
    expect(s.checker.wrong).toEqual([]);
    expect(s.stderr).not.toContain(INHERITED_WARNING);
  });

  it('without it, the parent idle: ioredis reconnects in the child after the inherited write fails, each command runs once, and the child is told why', async () => {
    const s = await scenario('bare', 'quiet');
    expectChildrenOnOwnConnections(s);
    const warning = s.stderr.split('\n').find((line) => line.includes(INHERITED_WARNING));
    expect(warning).toContain(`peer 127.0.0.1:${redis.env().REDIS_PORT}`);
    expect(warning).toContain('docs/recipes.md');
    expect(warning).toContain("send the parent's unanswered commands again");
  });

  it('without it, a command of the parent in flight at the fork is sent again from the child (the hazard the recipe avoids)', async () => {
    const s = await scenario('bare', 'busy');
    // The children's own commands still run once each...
    expectChildrenOnOwnConnections(s);
    // ...but the parent's counter moved under it: its unanswered INCR was
    // replayed by each child's reconnected client, and the parent's loop went
    // on in the children.
    expect(s.checker.wrong.length).toBeGreaterThan(0);
    expect(s.checker.wrong[0]).toMatch(/^expected \d+, got \d+$/);
  });
});
