// iterate in this process: builders, callbacks, errors, stops, resharding,
// stores and leaks. The instances are real forked children; each records the
// items it processed in its own append-only file.
import fs from 'node:fs';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  CheckpointError,
  type CursorStore,
  IterateError,
  type IterateState,
  ReshardError,
  byKey,
  fileStore,
  fromArray,
  iterate,
  range,
} from '../src/index';
import { fdCount, runNode, tempDir, waitFor, zombiesOf } from './helpers';

let dir: string;
let fdsBefore: number;
let listenersBefore: number[];

beforeEach(() => {
  dir = tempDir('cowfork-iterate-');
  fdsBefore = fdCount();
  listenersBefore = [process.listenerCount('SIGINT'), process.listenerCount('SIGTERM')];
});

afterEach(() => {
  // No fds, zombies, temp files, locks or signal listeners left behind.
  try {
    expect(fdCount()).toBe(fdsBefore);
    expect(zombiesOf()).toEqual([]);
    expect(fs.readdirSync(dir).filter((n) => n.endsWith('.tmp') || n.endsWith('.lock'))).toEqual([]);
    expect([process.listenerCount('SIGINT'), process.listenerCount('SIGTERM')]).toEqual(listenersBefore);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

const cp = () => path.join(dir, 'cp.json');
const readState = (): IterateState => JSON.parse(fs.readFileSync(cp(), 'utf8'));

/** An `each` that appends `String(item)` to rec-<instance> (runs in the instance). */
function recorder<T>(extra?: (item: T, instance: number) => void | Promise<void>) {
  let fd = -1;
  return (item: T, ctx: { instance: number }) => {
    if (fd < 0) fd = fs.openSync(path.join(dir, `rec-${ctx.instance}`), 'a');
    const r = extra?.(item, ctx.instance);
    const write = () => fs.writeSync(fd, `${JSON.stringify(item)}\n`);
    if (r && typeof (r as Promise<void>).then === 'function') return (r as Promise<void>).then(write);
    write();
  };
}

function recorded(instance?: number): unknown[] {
  const out: unknown[] = [];
  for (const name of fs.readdirSync(dir).sort()) {
    if (!name.startsWith('rec-')) continue;
    if (instance !== undefined && name !== `rec-${instance}`) continue;
    out.push(...fs.readFileSync(path.join(dir, name), 'utf8').trim().split('\n').filter(Boolean).map((l) => JSON.parse(l)));
  }
  return out;
}

function spin(ms: number): void {
  const end = Date.now() + ms;
  while (Date.now() < end);
}

describe('iterate', () => {
  it('walks fromArray in partitions, calls onStart/onComplete per instance and onAllComplete once', async () => {
    const items = Array.from({ length: 500 }, (_, i) => ({ id: i, name: `row${i}` }));
    const events: string[] = [];
    const pids = new Set<number>();
    const result = await iterate({
      instances: 3,
      checkpoint: cp(),
      build: fromArray(items),
      each: recorder<{ id: number }>(),
      onStart: (s) => {
        events.push(`start ${s.instance} ${s.cursor}`);
        pids.add(s.pid);
      },
      onComplete: (r) => events.push(`complete ${r.instance} ${r.processed}`),
      onAllComplete: (r) => events.push(`all ${r.complete}`),
    });
    expect(result.complete).toBe(true);
    expect(result.interrupted).toBe(false);
    expect(result.instances.map((i) => [i.processed, i.cursor, i.done])).toEqual([
      [166, 165, true],
      [167, 332, true],
      [167, 499, true],
    ]);
    expect(pids.size).toBe(3);
    expect(pids.has(process.pid)).toBe(false);
    expect(events.filter((e) => e.startsWith('start')).sort()).toEqual(['start 0 null', 'start 1 null', 'start 2 null']);
    expect(events.filter((e) => e.startsWith('complete')).sort()).toEqual(['complete 0 166', 'complete 1 167', 'complete 2 167']);
    expect(events[events.length - 1]).toBe('all true');
    expect(events.filter((e) => e.startsWith('all'))).toHaveLength(1);
    // Contiguous blocks, in order within each instance.
    expect(recorded(1)).toEqual(items.slice(166, 333));
    expect((recorded() as { id: number }[]).map((x) => x.id).sort((a, b) => a - b)).toEqual(items.map((x) => x.id));
    const state = readState();
    expect(state).toMatchObject({ version: 1, instances: 3, allComplete: true });
    expect(state.cursors[2]).toEqual({ instance: 2, instances: 3, innerCursor: 499, done: true, processed: 167 });

    // A re-run of a complete state forks nothing and calls nothing.
    events.length = 0;
    const again = await iterate({
      instances: 3,
      checkpoint: cp(),
      build: fromArray(items),
      each: recorder(),
      onStart: () => events.push('start'),
      onAllComplete: () => events.push('all'),
    });
    expect(again.complete).toBe(true);
    expect(again.instances.map((i) => i.processedTotal)).toEqual([166, 167, 167]);
    expect(events).toEqual([]);
  });

  it('walks byKey pages (keyset pagination, the cursor is the last key) with async each', async () => {
    // A keyed table: ids with gaps, partitioned by id % instances like a SQL WHERE.
    const table = Array.from({ length: 300 }, (_, i) => ({ id: i * 3 + (i % 2), v: i }));
    const fetchPage = (after: number | null, { instance, instances }: { instance: number; instances: number }) =>
      table.filter((r) => r.id % instances === instance && (after === null || r.id > after)).slice(0, 17);
    const result = await iterate({
      instances: 2,
      checkpoint: cp(),
      build: byKey(fetchPage),
      each: recorder<{ id: number }>(async () => {
        await new Promise((r) => setImmediate(r));
      }),
    });
    expect(result.complete).toBe(true);
    const ids = (recorded() as { id: number }[]).map((r) => r.id).sort((a, b) => a - b);
    expect(ids).toEqual(table.map((r) => r.id));
    expect(result.instances[0].cursor).toBe(Math.max(...table.filter((r) => r.id % 2 === 0).map((r) => r.id)));
    expect((recorded(1) as { id: number }[]).every((r) => r.id % 2 === 1)).toBe(true);
  });

  it('an error in each fails that instance naming instance and item; the others finish; a re-run retries from its cursor', async () => {
    let fail = true;
    const run = () =>
      iterate({
        instances: 3,
        checkpoint: cp(),
        build: range(0, 90),
        each: recorder<number>((n) => {
          if (fail && n === 40) throw new RangeError(`bad row ${n}`);
        }),
      });
    const err = await run().then(
      () => expect.unreachable(),
      (e) => e,
    );
    expect(err).toBeInstanceOf(IterateError);
    expect(err.code).toBe('ERR_ITERATE');
    expect(err.instance).toBe(1);
    expect(err.item).toBe('40');
    expect(err.message).toMatch(/instance 1 of 3 failed on item 40 .*bad row 40/);
    expect(err.cause).toMatchObject({ name: 'RangeError', message: 'bad row 40' });
    expect(err.cause.stack).toMatch(/bad row 40/);
    const result = err.result;
    expect(result.instances.map((i: any) => i.done)).toEqual([true, false, true]);
    expect(result.instances[1].cursor).toBe(39);
    expect(readState().cursors[1]).toMatchObject({ innerCursor: 39, done: false });
    expect(recorded(1)).toEqual(Array.from({ length: 10 }, (_, i) => 30 + i));

    fail = false;
    const events: string[] = [];
    const second = await iterate({
      instances: 3,
      checkpoint: cp(),
      build: range(0, 90),
      each: recorder<number>(),
      onStart: (s) => events.push(`${s.instance}@${s.cursor}`),
    });
    expect(second.complete).toBe(true);
    expect(events).toEqual(['1@39']);
    expect((recorded(1) as number[]).slice(10)).toEqual(Array.from({ length: 20 }, (_, i) => 40 + i));
  });

  it('saves an item\'s cursor only after its each has finished', async () => {
    const release = path.join(dir, 'release');
    // Timers pending in the parent at fork time also fire in an instance whose
    // event loop runs, so this test starts its polling only after the fork.
    let forked!: () => void;
    const started = new Promise<void>((r) => (forked = r));
    const run = iterate({
      instances: 1,
      checkpoint: cp(),
      checkpointEvery: { items: 1, ms: 10 },
      build: range(0, 10),
      onStart: () => forked(),
      each: recorder<number>(async (n) => {
        // Item 5 stays in flight until the test lets it go.
        while (n === 5 && !fs.existsSync(release)) await new Promise((r) => setTimeout(r, 5));
      }),
    });
    await started;
    await waitFor(() => recorded().length === 5);
    await new Promise((r) => setTimeout(r, 150)); // many checkpoint intervals
    expect(readState().cursors[0]).toMatchObject({ innerCursor: 4, done: false, processed: 5 });
    fs.writeFileSync(release, '');
    const result = await run;
    expect(result.complete).toBe(true);
    expect(readState().cursors[0]).toMatchObject({ innerCursor: 9, done: true, processed: 10 });
  });

  it('failFast stops the other instances after their current item', async () => {
    const err = await iterate({
      instances: 2,
      checkpoint: cp(),
      failFast: true,
      build: range(0, 2000),
      each: recorder<number>((n) => {
        if (n === 20) throw new Error('first instance breaks');
        spin(2);
      }),
    }).then(
      () => expect.unreachable(),
      (e) => e,
    );
    expect(err).toBeInstanceOf(IterateError);
    expect(err.instance).toBe(0);
    expect(err.result.interruptedBy).toBe('failFast');
    const other = err.result.instances[1];
    expect(other.done).toBe(false);
    expect(other.error).toBeUndefined();
    // The other instance saved what it finished: resuming continues right after it. (On a loaded machine it may
    // not have finished an item yet when the first one breaks: then it saved no cursor.)
    expect(readState().cursors[1].innerCursor).toBe(other.processed > 0 ? 1000 + other.processed - 1 : null);
    expect(recorded(1)).toHaveLength(other.processed);
  });

  it('an AbortSignal stops every instance after its current item, aborts ctx.signal, and a re-run completes', async () => {
    const ac = new AbortController();
    let fd = -1;
    const first = iterate({
      instances: 2,
      checkpoint: cp(),
      build: range(0, 100),
      // Once both instances are in their second item (a loaded machine may start one late).
      onProgress: (counts) => {
        if (counts.every((c) => c.processed >= 1)) ac.abort();
      },
      signal: ac.signal,
      // Items 1 and 51 (the second of each instance) wait for the stop and see it through ctx.signal.
      each: async (n: number, ctx) => {
        if (fd < 0) fd = fs.openSync(path.join(dir, `rec-${ctx.instance}`), 'a');
        if (n % 50 === 1) {
          await new Promise<void>((resolve) => ctx.signal.addEventListener('abort', () => resolve(), { once: true }));
          fs.writeSync(fd, `"aborted ${n}"\n`);
        }
        fs.writeSync(fd, `${n}\n`);
      },
    });
    const result = await first;
    expect(result).toMatchObject({ complete: false, interrupted: true, interruptedBy: 'abort' });
    // Each instance finished the item in flight (it saw the abort), saved it, and took no other.
    expect(result.instances.map((i) => [i.processed, i.cursor])).toEqual([
      [2, 1],
      [2, 51],
    ]);
    expect(recorded(0)).toEqual([0, 'aborted 1', 1]);

    const second = await iterate({ instances: 2, checkpoint: cp(), build: range(0, 100), each: recorder<number>() });
    expect(second.complete).toBe(true);
    expect(second.instances.map((i) => i.processed)).toEqual([48, 48]);
    expect((recorded(1) as unknown[]).filter((x) => typeof x === 'number')).toEqual(Array.from({ length: 50 }, (_, i) => 50 + i));
  });

  it('maxRuntime stops cleanly; later runs resume until complete', async () => {
    let runs = 0;
    let result;
    // Bounded by time, not by a count of runs: on a loaded machine a run's forks
    // can take most of its 400 ms, and the run makes little progress.
    const deadline = Date.now() + 50_000;
    do {
      runs++;
      result = await iterate({
        instances: 2,
        checkpoint: cp(),
        // Long enough for progress in most runs on a loaded machine, short enough to need several.
        maxRuntime: 400,
        checkpointEvery: { items: 10 },
        build: range(0, 2000),
        each: recorder<number>(() => spin(1)),
      });
      if (!result.complete) expect(result.interruptedBy).toBe('maxRuntime');
    } while (!result.complete && Date.now() < deadline);
    expect(result.complete).toBe(true);
    expect(runs).toBeGreaterThan(1);
    const all = (recorded() as number[]).sort((a, b) => a - b);
    expect(all).toEqual(Array.from({ length: 2000 }, (_, i) => i));
  });

  it('refuses a different instance count with a clear error, unless reshard: "restart"', async () => {
    await iterate({ instances: 2, checkpoint: cp(), build: range(0, 20), each: recorder<number>() });
    const before = fs.readFileSync(cp(), 'utf8');
    const err = await iterate({ instances: 3, checkpoint: cp(), build: range(0, 20), each: recorder<number>() }).then(
      () => expect.unreachable(),
      (e) => e,
    );
    expect(err).toBeInstanceOf(ReshardError);
    expect(err.code).toBe('ERR_ITERATE_RESHARD');
    expect(err).toMatchObject({ savedInstances: 2, instances: 3 });
    expect(err.message).toMatch(/instances: 2, but this run has instances: 3/);
    expect(err.message).toMatch(/reshard: 'restart'/);
    expect(fs.readFileSync(cp(), 'utf8')).toBe(before);
    expect(recorded()).toHaveLength(20);

    const restarted = await iterate({ instances: 3, checkpoint: cp(), build: range(0, 20), reshard: 'restart', each: recorder<number>() });
    expect(restarted.complete).toBe(true);
    expect(restarted.instances.map((i) => i.processed)).toEqual([6, 7, 7]);
    expect(readState().instances).toBe(3);
    expect(recorded()).toHaveLength(40);
  });

  it('uses a CursorStore with async load/save and saves per checkpointEvery.items', async () => {
    const saves: IterateState[] = [];
    let stored: IterateState | null = null;
    const store: CursorStore = {
      async load() {
        return stored;
      },
      async save(state) {
        await new Promise((r) => setTimeout(r, 1));
        saves.push(structuredClone(state));
        stored = structuredClone(state);
      },
    };
    const result = await iterate({
      instances: 2,
      checkpoint: store,
      checkpointEvery: { items: 50, ms: 60_000 },
      build: range(0, 1000),
      each: () => spin(0.05),
    });
    expect(result.complete).toBe(true);
    expect(stored).toMatchObject({ instances: 2, allComplete: true });
    // Saved while the instances were still working, not only before and after.
    const midRun = saves.filter((st) => {
      const sum = st.cursors.reduce((a, c) => a + c.processed, 0);
      return sum > 0 && sum < 1000;
    });
    expect(midRun.length).toBeGreaterThan(0);
    // Cursors only move forward between saves.
    for (let i = 1; i < saves.length; i++) {
      for (let k = 0; k < 2; k++) {
        expect(Number(saves[i].cursors[k].innerCursor ?? -1)).toBeGreaterThanOrEqual(Number(saves[i - 1].cursors[k].innerCursor ?? -1));
      }
    }
  });

  it('reports progress counts per instance', async () => {
    const seen: number[][] = [];
    await iterate({
      instances: 2,
      checkpoint: cp(),
      build: range(0, 60),
      each: () => spin(10),
      onProgress: (counts) => seen.push(counts.map((c) => c.processed)),
    });
    expect(seen.length).toBeGreaterThan(1);
    expect(seen[seen.length - 1]).toEqual([30, 30]);
    for (let i = 1; i < seen.length; i++) expect(seen[i][0]).toBeGreaterThanOrEqual(seen[i - 1][0]);
  });

  it('an instance whose build throws fails with the error; a callback that throws or rejects fails the run', async () => {
    const err = await iterate({
      instances: 2,
      checkpoint: cp(),
      build: (i) => {
        if (i === 1) throw new Error('no database');
        return [];
      },
      each: () => undefined,
    }).then(
      () => expect.unreachable(),
      (e) => e,
    );
    expect(err).toBeInstanceOf(IterateError);
    expect(err.message).toMatch(/instance 1 of 2 failed in build: no database/);
    expect(err.result.instances[0].done).toBe(true);

    // An async callback is waited for before the run settles; its rejection is the run's error.
    fs.rmSync(cp());
    let finishedLate = false;
    await iterate({
      instances: 2,
      checkpoint: cp(),
      build: range(0, 4),
      each: () => undefined,
      onComplete: async () => {
        await new Promise((r) => setTimeout(r, 50));
        finishedLate = true;
      },
    });
    expect(finishedLate).toBe(true);
    fs.rmSync(cp());
    await expect(
      iterate({ instances: 1, checkpoint: cp(), build: range(0, 4), each: () => undefined, onComplete: () => Promise.reject(new Error('async callback broke')) }),
    ).rejects.toThrow('async callback broke');
    fs.rmSync(cp());
    await expect(
      iterate({
        instances: 1,
        checkpoint: cp(),
        build: range(0, 10),
        each: () => undefined,
        onAllComplete: () => {
          throw new Error('callback broke');
        },
      }),
    ).rejects.toThrow('callback broke');
    // onAllComplete did not return, so the state does not say it ran: the next run calls it.
    expect(readState().allComplete).toBe(false);
    let calls = 0;
    await iterate({ instances: 1, checkpoint: cp(), build: range(0, 10), each: () => undefined, onAllComplete: () => void calls++ });
    expect(calls).toBe(1);
  });

  it('refuses a checkpoint in use, an invalid one, and bad options, naming the option', async () => {
    const opts = { instances: 1, checkpoint: cp(), build: range(0, 3), each: () => undefined };
    fs.writeFileSync(`${cp()}.lock`, `${process.pid}\n`);
    await expect(iterate(opts)).rejects.toThrow(CheckpointError);
    await expect(iterate(opts)).rejects.toThrow(/in use by process/);
    fs.rmSync(`${cp()}.lock`);

    fs.writeFileSync(cp(), '{"version":1,"instances":1,"cursors":[]}');
    await expect(iterate(opts)).rejects.toThrow(/not an iterate state: cursors is not an array of 1 entries/);
    fs.writeFileSync(cp(), '{"version":1,');
    await expect(iterate(opts)).rejects.toMatchObject({ code: 'ERR_CHECKPOINT' });
    fs.rmSync(cp());

    await expect(iterate({ ...opts, checkpoint: path.join(dir, 'no', 'such', 'dir.json') })).rejects.toThrow(/cannot lock checkpoint/);
    await expect(iterate({ ...opts, instances: 0 })).rejects.toThrow(RangeError);
    await expect(iterate({ ...opts, instances: 1.5 })).rejects.toThrow('options.instances must be a positive integer');
    await expect(iterate({ ...opts, checkpoint: 3 as never })).rejects.toThrow('options.checkpoint must be a file path or a CursorStore');
    await expect(iterate({ ...opts, checkpoint: { load() {} } as never })).rejects.toThrow('options.checkpoint.save must be a function');
    await expect(iterate({ ...opts, build: undefined as never })).rejects.toThrow(/options.build must be a function/);
    await expect(iterate({ ...opts, checkpointEvery: { item: 3 } as never })).rejects.toThrow(
      'options.checkpointEvery.item is not a known option',
    );
    await expect(iterate({ ...opts, reshard: 'yes' as never })).rejects.toThrow(/options.reshard must be 'refuse' or 'restart'/);
    await expect(iterate({ ...opts, maxRuntime: -1 })).rejects.toThrow(RangeError);
    await expect(iterate({ ...opts, onStart: 1 as never })).rejects.toThrow('options.onStart must be a function');
    await expect(iterate({ ...opts, instance: 2 } as never)).rejects.toThrow('options.instance is not a known option');
    expect(() => range(5, 1)).toThrow(RangeError);
    expect(() => fromArray('abc' as never)).toThrow(TypeError);
    expect(() => byKey(3 as never)).toThrow(TypeError);
    expect(fs.existsSync(cp())).toBe(false);
  });

  it('rejects builds that yield something other than [item, cursor] pairs, and cursors that are not JSON', async () => {
    const bad = await iterate({ instances: 1, checkpoint: cp(), build: () => [1, 2] as never, each: () => undefined }).then(
      () => expect.unreachable(),
      (e) => e,
    );
    expect(bad.message).toMatch(/build must yield \[item, cursor\] pairs, got 1/);
    fs.rmSync(cp());
    const big = await iterate({ instances: 1, checkpoint: cp(), build: () => [[1, 10n]] as never, each: () => undefined }).then(
      () => expect.unreachable(),
      (e) => e,
    );
    expect(big.message).toMatch(/cursor 10n is not a JSON value/);
  });

  it('rejects with ForkUnsafeError without --single-threaded, before touching the checkpoint', async () => {
    const script =
      `require('./dist').iterate({ instances: 1, checkpoint: ${JSON.stringify(cp())}, build: require('./dist').range(0, 3), each() {} })` +
      '.then(() => console.log("resolved"), (e) => console.log(e.code, e.message))';
    const r = await runNode(['-e', script]);
    expect(r.stdout).toMatch(/^ERR_FORK_UNSAFE iterate needs V8's --single-threaded flag/);
    expect(fs.existsSync(cp())).toBe(false);
  });

  it('fileStore writes atomically and loads what it wrote', () => {
    const store = fileStore(cp());
    expect(store.load()).toBeNull();
    const state: IterateState = { version: 1, instances: 1, allComplete: false, cursors: [{ instance: 0, instances: 1, innerCursor: 'k9', done: false, processed: 3 }] };
    store.save(state);
    expect(store.load()).toEqual(state);
    // A temp file from a dead writer is removed by the next load.
    const stale = path.join(dir, '.cp.json.999999999.0.tmp');
    fs.writeFileSync(stale, '{"torn":');
    expect(store.load()).toEqual(state);
    expect(fs.existsSync(stale)).toBe(false);
  });
});
