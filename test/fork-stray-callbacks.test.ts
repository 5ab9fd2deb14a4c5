// The parent's threadpool completions must never run in a child. A request
// that finished on a pool thread waits on loop->wq until the loop thread
// collects it; fork() copied that queue, and the child's first threadpool
// completion of its own used to run the parent's callbacks too
// (docs/hazards.md). Each child here returns how many of the parent's
// callbacks ran in it, and how many finished requests its fork dropped.
import crypto from 'node:crypto';
import dns from 'node:dns';
import fs from 'node:fs';
import zlib from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { map } from '../src/index';
import { native } from '../src/native';
import { reps } from './helpers';

/** 200: issue 10's acceptance. */
const CHILDREN = reps(200, 60);

type Kind = 'fs' | 'crypto' | 'zlib' | 'dns';

const issue: Record<Kind, (cb: () => void) => void> = {
  fs: (cb) => fs.stat(__filename, () => cb()),
  crypto: (cb) => crypto.pbkdf2('secret', 'salt', 2000, 32, 'sha256', () => cb()),
  zlib: (cb) => zlib.gzip(Buffer.alloc(64 * 1024, 7), () => cb()),
  dns: (cb) => dns.lookup('localhost', () => cb()),
};

/**
 * Keeps `count` requests of each kind in flight in the parent. Every
 * completion re-issues itself in the parent; one that runs in another
 * process only counts itself there. stop() resolves once the parent's
 * requests have all come back (bounded by a timeout).
 */
function keepBusy(count: Partial<Record<Kind, number>>) {
  const parent = process.pid;
  const ranInChild: Record<Kind, number> = { fs: 0, crypto: 0, zlib: 0, dns: 0 };
  let busy = true;
  let inFlight = 0;
  let drained: () => void = () => {};
  const loop = (kind: Kind): void => {
    inFlight++;
    issue[kind](() => {
      if (process.pid !== parent) {
        ranInChild[kind]++;
        return;
      }
      inFlight--;
      if (busy) loop(kind);
      else if (inFlight === 0) drained();
    });
  };
  for (const [kind, n] of Object.entries(count) as [Kind, number][]) for (let i = 0; i < n; i++) loop(kind);
  return {
    ranInChild,
    stop: () =>
      new Promise<void>((resolve, reject) => {
        busy = false;
        const timer = setTimeout(() => reject(new Error(`${inFlight} parent requests never came back`)), 20_000);
        drained = () => {
          clearTimeout(timer);
          resolve();
        };
        if (inFlight === 0) drained();
      }),
  };
}

/** Isolation children that use the threadpool; each returns [parent callbacks that ran in it, by kind, and requests its fork dropped]. */
async function childrenUnderLoad(n: number, count: Partial<Record<Kind, number>>) {
  const load = keepBusy(count);
  try {
    const results = await map(
      Array.from({ length: n }, (_, i) => i),
      async () => {
        await fs.promises.readFile(__filename);
        await fs.promises.stat(__filename);
        return { ran: { ...load.ranInChild }, dropped: native.forkParentWork()[0] };
      },
      { isolation: true, concurrency: 4, timeout: 20_000 },
    );
    const ran: Record<Kind, number> = { fs: 0, crypto: 0, zlib: 0, dns: 0 };
    let dropped = 0;
    for (const r of results) {
      for (const k of Object.keys(ran) as Kind[]) ran[k] += r.ran[k];
      dropped += r.dropped;
    }
    return { ran, dropped };
  } finally {
    await load.stop();
  }
}

function withTestFlags<T>(flags: number, fn: () => Promise<T>): Promise<T> {
  process.env.COWFORK_TEST_UNSAFE_FLAGS = String(flags);
  return fn().finally(() => delete process.env.COWFORK_TEST_UNSAFE_FLAGS);
}

describe("the parent's threadpool completions in children", () => {
  it("without the repair, children run the parent's fs callbacks", async () => {
    // Both layers off: the native drop, and the no-op completions src/inherited.ts gives the parent's requests.
    const flags = native.FORK_FLAGS.SKIP_PARENT_WORK | native.FORK_FLAGS.SKIP_PARENT_REQUESTS;
    const { ran, dropped } = await withTestFlags(flags, () => childrenUnderLoad(40, { fs: 8 }));
    expect(ran.fs).toBeGreaterThan(0);
    expect(dropped).toBe(-40); // -1 from each child: the repair did not run
  }, 300_000);

  it("the no-op completions alone (the native drop skipped) keep the parent's fs callbacks out of children too", async () => {
    const { ran, dropped } = await withTestFlags(native.FORK_FLAGS.SKIP_PARENT_WORK, () => childrenUnderLoad(40, { fs: 8 }));
    expect(ran.fs).toBe(0);
    expect(dropped).toBe(-40);
  }, 300_000);

  it(`with the repair (the default): none in ${CHILDREN} children while the parent keeps 8 fs requests in flight`, async () => {
    const { ran, dropped } = await childrenUnderLoad(CHILDREN, { fs: 8 });
    expect(ran).toEqual({ fs: 0, crypto: 0, zlib: 0, dns: 0 });
    // The hazard was there: children inherited finished requests, and dropped them.
    expect(dropped).toBeGreaterThan(0);
  }, 300_000);

  it('none either with crypto, zlib and dns.lookup requests in flight', async () => {
    const { ran, dropped } = await childrenUnderLoad(60, { crypto: 3, zlib: 3, dns: 2 });
    expect(ran).toEqual({ fs: 0, crypto: 0, zlib: 0, dns: 0 });
    expect(dropped).toBeGreaterThan(0);
  }, 300_000);
});
