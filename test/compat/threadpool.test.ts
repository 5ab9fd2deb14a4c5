// zlib, crypto and fs.promises (libuv's threadpool) in children and prefork
// workers while the parent keeps 8 fs requests in flight. Every child's
// results are right, and none of the parent's completion callbacks ever runs
// in a child (a child used to inherit the parent's queue of finished work).
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import zlib from 'node:zlib';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { map } from '../../src/index';
import { reps, tempDir } from '../helpers';
import { MODES, outcome, preforkAnswers } from './support';

const gzip = promisify(zlib.gzip);
const gunzip = promisify(zlib.gunzip);
const pbkdf2 = promisify(crypto.pbkdf2);

let dir: string;
let file: string;
let input: Buffer;
let key: Buffer;
let stray: string;
let stopChurn: () => Promise<number>;

/**
 * Keeps `n` fs.stat requests in flight in this process until stopped. A
 * completion that runs in another process (a child) appends a byte to `mark`
 * and goes no further. The stop function resolves, with the number of
 * completions the parent ran, once the parent's last request has completed.
 */
function churn(n: number, mark: string): () => Promise<number> {
  const parentPid = process.pid;
  let busy = true;
  let done = 0;
  let inFlight = 0;
  let drained = (): void => {};
  const one = (): void => {
    inFlight++;
    fs.stat(__filename, () => {
      if (process.pid !== parentPid) {
        try {
          fs.appendFileSync(mark, 'x');
        } catch {
          // The mark is gone: the parent's test is over.
        }
        return;
      }
      inFlight--;
      done++;
      if (busy) one();
      else if (inFlight === 0) drained();
    });
  };
  for (let i = 0; i < n; i++) one();
  return async () => {
    busy = false;
    if (inFlight > 0) await new Promise<void>((resolve) => (drained = resolve));
    return done;
  };
}

/** What a child computes on the threadpool: a file read, a gzip round trip, a key derivation. */
async function threadpoolWork(i: number): Promise<string> {
  const data = await fs.promises.readFile(file);
  const back = await gunzip(await gzip(data));
  const derived = await pbkdf2(data, 'salt', 1000, 32, 'sha256');
  if (!back.equals(input)) return `item ${i}: gzip round trip differs`;
  if (!derived.equals(key)) return `item ${i}: pbkdf2 differs`;
  return 'ok';
}

beforeEach(() => {
  dir = tempDir('cowfork-compat-pool-');
  file = path.join(dir, 'data');
  input = crypto.randomBytes(64 * 1024);
  fs.writeFileSync(file, input);
  key = crypto.pbkdf2Sync(input, 'salt', 1000, 32, 'sha256');
  stray = path.join(dir, 'stray');
  fs.writeFileSync(stray, '');
  stopChurn = churn(8, stray);
});

afterEach(async () => {
  await stopChurn();
  fs.rmSync(dir, { recursive: true, force: true });
});

describe('the threadpool in children while the parent keeps it busy', () => {
  // test/fork-stray-callbacks.test.ts runs 200 children with 8 fs requests in flight (issue 10's acceptance).
  const children = reps(100, 40);
  it(`${children} isolation children: every result right, 0 parent callbacks run in a child (the stray-callbacks reproducer)`, async () => {
    const items = Array.from({ length: children }, (_, i) => i);
    const out = await map(items, threadpoolWork, { ...MODES.isolation, timeout: 10_000, settle: true });
    const parentDone = await stopChurn();
    expect(out.map(outcome).filter((o) => o !== 'ok')).toEqual([]);
    expect(fs.readFileSync(stray, 'utf8').length).toBe(0);
    expect(parentDone).toBeGreaterThan(0); // the parent's requests kept completing, in the parent
  }, 120_000);

  it('pool children: every result right, 0 stray parent callbacks', async () => {
    // Isolation mode is the test above; here two long-lived children take 24 items.
    const items = Array.from({ length: 24 }, (_, i) => i);
    const out = await map(items, threadpoolWork, { ...MODES.pool, timeout: 10_000, settle: true });
    await stopChurn();
    expect(out.map(outcome)).toEqual(items.map(() => 'ok'));
    expect(fs.readFileSync(stray, 'utf8').length).toBe(0);
  });

  it('prefork workers: every answer right, 0 stray parent callbacks', async () => {
    const answers = await preforkAnswers((p) => threadpoolWork(Number(p.slice(2))), { requests: 8 });
    await stopChurn();
    expect(answers.map((a) => a.value ?? a.error)).toEqual(answers.map(() => 'ok'));
    expect(fs.readFileSync(stray, 'utf8').length).toBe(0);
  });
});
