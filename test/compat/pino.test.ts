// pino, the logger Fastify ships with, made in the parent before the fork, the
// way apps make it at module load. A pino transport runs in a Worker, and a
// child has none of the parent's Worker threads: the lines a child logs through
// it never reach the file, and nothing fails. cowfork says so once, in the
// parent, before it forks (COWFORK_LIVE_WORKERS, src/inspect.ts). The recipe of
// docs/recipes.md (examples/recipes/pino.js: a file opened for appending,
// written synchronously) keeps every line of map children (pool and isolation)
// and prefork workers. The scenarios run in test/fixtures/compat-pino.js.
import fs from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { FIXTURES, runNode, tempDir } from '../helpers';
import { expectRecipeInDocs } from './support';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
});

interface Outcome {
  pool: number[];
  isolation: number[];
  statuses: number[];
  perChild: number;
  /** Lines in the log file, counted by their `from`. */
  lines: Record<string, number>;
  stderr: string;
}

async function scenario(name: 'transport' | 'recipe'): Promise<Outcome> {
  const dir = tempDir();
  dirs.push(dir);
  const file = path.join(dir, 'app.log');
  const r = await runNode(['--single-threaded', path.join(FIXTURES, 'compat-pino.js'), name], {
    env: { ...process.env, LOG_FILE: file },
    timeoutMs: 40_000,
  });
  expect(r.stderr).not.toMatch(/compat-pino\.js:/);
  expect(r.code).toBe(0);
  const lines: Record<string, number> = {};
  for (const line of fs.readFileSync(file, 'utf8').trim().split('\n')) {
    const from = (JSON.parse(line) as { from: string }).from;
    lines[from] = (lines[from] ?? 0) + 1;
  }
  return { ...JSON.parse(r.stdout.trim().split('\n').at(-1)!), lines, stderr: r.stderr };
}

const LIVE_WORKERS = 'COWFORK_LIVE_WORKERS';

describe('pino logger made in the parent', () => {
  it('the recipe in docs/recipes.md is examples/recipes/pino.js, word for word', () => {
    expectRecipeInDocs('pino.js');
  });

  it('with a transport (a Worker): children log into the void, and the parent warns once, before its first fork, naming the cause', async () => {
    const s = await scenario('transport');
    expect(s.pool).toEqual([0, 1, 2, 3]);
    expect(s.isolation).toEqual([0, 1, 2, 3]);
    expect(s.statuses).toEqual([200, 200, 200, 200, 200, 200]);
    // The parent's own lines arrive; not one of the children's.
    expect(s.lines).toEqual({ parent: 2 });
    const warnings = s.stderr.split('\n').filter((line) => line.includes(LIVE_WORKERS));
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toContain('1 live worker_threads Worker');
    expect(warnings[0]).toContain('docs/recipes.md');
  });

  it('with the recipe: every line of every map child and prefork worker is in the file, and no warning', async () => {
    const s = await scenario('recipe');
    const want: Record<string, number> = { parent: 2 };
    for (const mode of ['pool', 'isolation']) for (const i of [0, 1, 2, 3]) want[`${mode}-${i}`] = s.perChild;
    const { 'worker-0': w0, 'worker-1': w1, ...rest } = s.lines;
    expect(rest).toEqual(want);
    // Six requests, each logged once by the worker that served it.
    expect((w0 ?? 0) + (w1 ?? 0)).toBe(6);
    expect(s.statuses).toEqual([200, 200, 200, 200, 200, 200]);
    expect(s.stderr).not.toContain(LIVE_WORKERS);
  });
});
