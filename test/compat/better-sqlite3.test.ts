// better-sqlite3 (SQLite in the process, through a V8-API addon). SQLite's
// rule is that a connection must not cross fork(): with the atFork recipe of
// docs/recipes.md each child opens the file again, and the children's writes
// and the parent's all land. An in-memory database needs no hook: each child
// reads a copy-on-write snapshot of it.
//
// The addon is built for one Node ABI; scripts/build-better-sqlite3.js builds
// (once, cached) a copy for the Node running this test, so the suite runs on
// every supported Node version.
import { createRequire } from 'node:module';
import path from 'node:path';
import fs from 'node:fs';
import { afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { atFork } from '../../src/index';
import { ROOT, tempDir } from '../helpers';
import { inChildren, preforkAnswers } from './support';

const nodeRequire = createRequire(import.meta.url);
// The part of better-sqlite3's API used here (the package ships no types).
interface Statement {
  run(...params: unknown[]): unknown;
  get(...params: unknown[]): unknown;
  all(...params: unknown[]): unknown[];
}
interface Db {
  prepare(sql: string): Statement;
  exec(sql: string): void;
  pragma(pragma: string): unknown;
  close(): void;
}
const Database = nodeRequire('better-sqlite3') as new (file: string, options: { nativeBinding: string }) => Db;

let binding: string | Error;
beforeAll(() => {
  const { betterSqlite3Binding } = nodeRequire(path.join(ROOT, 'scripts', 'build-better-sqlite3.js'));
  try {
    binding = betterSqlite3Binding((line: string) => console.log(line));
  } catch (err) {
    binding = err as Error; // each test fails with it, rather than being skipped
  }
}, 600_000); // a first build for this Node version compiles the binding (and, without a prebuilt SQLite, SQLite)

/** The addon for this Node, as better-sqlite3's `nativeBinding` option takes it. */
function nativeBinding(): string {
  if (binding instanceof Error) throw binding;
  return binding;
}

let dir: string;
beforeEach(() => {
  dir = tempDir('cowfork-compat-sqlite-');
});
afterEach(() => {
  fs.rmSync(dir, { recursive: true, force: true });
});

describe('better-sqlite3', () => {
  it('a file database with the atFork recipe: children and prefork workers read and write; the parent sees every row', async () => {
    const file = path.join(dir, 'app.db');
    const open = (): Db => new Database(file, { nativeBinding: nativeBinding() });
    let db = open();
    db.pragma('journal_mode = WAL');
    db.exec('create table t (who text, n integer)');
    const insert = db.prepare('insert into t values (?, ?)');
    for (let n = 1; n <= 100; n++) insert.run('parent', n);
    expect(db.prepare('select sum(n) s from t').get()).toEqual({ s: 5050 });

    const off = atFork({
      child() {
        db = open(); // the recipe: a connection of the child's own; the inherited one is left alone
      },
    });
    try {
      // Each child reads the parent's rows, then writes one of its own.
      const work = (i: number): number => {
        const { s } = db.prepare("select sum(n) s from t where who = 'parent'").get() as { s: number };
        db.prepare('insert into t values (?, ?)').run(`child ${process.pid}`, i);
        return s;
      };
      const items = [0, 1, 2, 3];
      expect(await inChildren(items, work, 5000)).toEqual({ pool: items.map(() => 5050), isolation: items.map(() => 5050) });
      const answers = await preforkAnswers(() => work(-1), { requests: 4 });
      expect(answers.map((a) => a.value ?? a.error)).toEqual(answers.map(() => 5050));

      // The parent's own connection still works, and sees every child's row.
      insert.run('parent', 1000);
      expect(db.prepare("select count(*) c from t where who like 'child %'").get()).toEqual({ c: 8 + 4 });
      expect(db.prepare("select sum(n) s from t where who = 'parent'").get()).toEqual({ s: 6050 });
      expect(db.pragma('integrity_check')).toEqual([{ integrity_check: 'ok' }]);
    } finally {
      off();
      db.close();
    }
  });

  it("an in-memory database: each child reads the parent's rows as a snapshot; its writes stay in that child", async () => {
    const db = new Database(':memory:', { nativeBinding: nativeBinding() });
    db.exec('create table t (n integer)');
    const insert = db.prepare('insert into t values (?)');
    for (let n = 1; n <= 10; n++) insert.run(n);
    const work = (i: number): number[] => {
      db.prepare('insert into t values (?)').run(100 + i);
      return db.prepare('select n from t where n > 10').all().map((r) => (r as { n: number }).n);
    };
    // One fresh child per item, so each sees the parent's rows and its own write only.
    const isolation = (await inChildren([0, 1, 2, 3], work, 5000)).isolation;
    expect(isolation).toEqual([[100], [101], [102], [103]]);
    expect(db.prepare('select count(*) c, sum(n) s from t').get()).toEqual({ c: 10, s: 55 });
    db.close();
  });
});
