// cowfork/bullmq on a real Redis: enqueue is idempotent and refuses another
// partition count (ReshardError), bad input fails with errors that name the
// problem, and a partition whose `each` always throws fails after its
// attempts while the run still ends and onAllComplete reports it.
import net from 'node:net';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { BullMQEngine, EngineError, ReshardError } from '../src/bullmq';
import { iterate, range } from '../src/index';
import { ROOT, runNode } from './helpers';
import {
  allCompleteCalls,
  expectedCounts,
  machine,
  mismatches,
  recordCount,
  records,
  redis,
  runKeys,
  runName,
  scratch,
  starts,
  useRedis,
  within,
} from './iterate-bullmq-support';
import { waitFor } from './helpers';

useRedis();

function engineFor(name: string, extra: Record<string, unknown> = {}): BullMQEngine {
  return new BullMQEngine({ connection: { host: '127.0.0.1', port: redis() }, name, ...extra });
}

/** A loopback port nothing listens on. */
async function closedPort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as net.AddressInfo).port;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

describe('iterate over BullMQ: enqueue', () => {
  it('is idempotent with the same instances and throws ReshardError with another count', async () => {
    const name = runName();
    const engine = engineFor(name);
    try {
      expect(await engine.enqueue({ instances: 8 })).toEqual({ created: true });
      expect(await engine.enqueue({ instances: 8 })).toEqual({ created: false });
      const err = await engine.enqueue({ instances: 4 }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(ReshardError);
      expect(err).toMatchObject({ code: 'ERR_ITERATE_RESHARD', savedInstances: 8, instances: 4 });
      expect((err as Error).message).toContain(`"${name}" was enqueued with instances: 8, not 4`);
      // Nothing was added by the refused or the repeated enqueue: 8 partitions, waiting for a machine.
      const progress = await engine.progress();
      expect(progress.map((p) => p.instance)).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
      expect(progress.every((p) => p.state === 'waiting' && p.processed === 0 && p.holder === null)).toBe(true);
      expect(runKeys(name).some((k) => k.endsWith(':partition-8'))).toBe(false);
    } finally {
      await engine.destroy();
      await engine.close();
    }
    expect(runKeys(name)).toEqual([]);
  });

  it('rejects bad instances with errors naming the option', async () => {
    const engine = engineFor(runName());
    try {
      await expect(engine.enqueue({ instances: 0 })).rejects.toThrow(/options\.instances/);
      await expect(engine.enqueue({ instances: 1.5 })).rejects.toThrow(/options\.instances/);
      await expect(engine.enqueue({} as { instances: number })).rejects.toThrow(TypeError);
    } finally {
      await engine.close();
    }
  });
});

describe('iterate over BullMQ: bad input', () => {
  it('an unreachable Redis fails with EngineError naming the address, within connectTimeout', async () => {
    const port = await closedPort();
    const engine = new BullMQEngine({ connection: { host: '127.0.0.1', port }, name: runName(), connectTimeout: 1500 });
    try {
      const err = await within(
        engine.enqueue({ instances: 2 }).catch((e: unknown) => e),
        20_000,
        'enqueue against a closed port',
      );
      expect(err).toBeInstanceOf(EngineError);
      expect((err as EngineError).code).toBe('ERR_ITERATE_ENGINE');
      expect((err as Error).message).toContain(`cannot reach Redis at 127.0.0.1:${port}`);
    } finally {
      await engine.close();
    }
  });

  it('an engine with checkpoint or instances is a TypeError naming the options', async () => {
    const engine = engineFor(runName());
    const base = { engine, build: range(0, 10), each: () => undefined };
    await expect(iterate({ ...base, checkpoint: 'x.json' } as never)).rejects.toThrow(/options\.engine and options\.checkpoint cannot be combined/);
    await expect(iterate({ ...base, instances: 2 } as never)).rejects.toThrow(/options\.instances cannot be combined with options\.engine/);
    await expect(iterate({ ...base, concurrency: 0 })).rejects.toThrow(/options\.concurrency/);
    await expect(iterate({ instances: 2, checkpoint: 'x.json', concurrency: 2, build: range(0, 10), each: () => undefined } as never)).rejects.toThrow(
      /options\.concurrency needs options\.engine/,
    );
    await expect(iterate({ ...base, engine: {} } as never)).rejects.toThrow(/options\.engine must be an engine/);
    await engine.close();
  });

  it('bad engine options are TypeErrors naming the option', () => {
    expect(() => new BullMQEngine({ connection: { port: 1 }, name: '' })).toThrow(/options\.name/);
    expect(() => new BullMQEngine({ connection: { port: 1 }, name: 'a:b' })).toThrow(/options\.name/);
    expect(() => new BullMQEngine({ name: 'x' } as never)).toThrow(/options\.connection/);
    expect(() => new BullMQEngine({ connection: { port: 1 }, name: 'x', attempts: 0 })).toThrow(/options\.attempts/);
    expect(() => new BullMQEngine({ connection: { port: 1 }, name: 'x', lockDuration: -1 })).toThrow(/options\.lockDuration/);
    expect(() => new BullMQEngine({ connection: { port: 1 }, name: 'x', colour: 1 } as never)).toThrow(/colour/);
  });

  it('a run that was never enqueued is an EngineError telling to enqueue', async () => {
    const dir = scratch();
    const m = machine({ name: runName(), dir, label: 'a', concurrency: 1, total: 10 });
    const { out, code } = await within(m.done, 30_000, 'a machine on a run never enqueued');
    expect(code).toBe(0);
    expect(out.error).toMatchObject({ name: 'EngineError', code: 'ERR_ITERATE_ENGINE' });
    expect(out.error.message).toContain('was never enqueued: call engine.enqueue({ instances }) once first');
  });

  it('a missing bullmq package is an EngineError telling to install it', async () => {
    // A preload that makes 'bullmq' unresolvable, as in an app that did not install the peer dependency.
    const script = [
      "const Module = require('node:module');",
      'const resolve = Module._resolveFilename;',
      "Module._resolveFilename = function (request, ...rest) { if (request === 'bullmq') { const e = new Error(\"Cannot find module 'bullmq'\"); e.code = 'MODULE_NOT_FOUND'; throw e; } return resolve.call(this, request, ...rest); };",
      `const { BullMQEngine } = require(${JSON.stringify(path.join(ROOT, 'dist', 'bullmq.js'))});`,
      "try { new BullMQEngine({ connection: { port: 1 }, name: 'x' }); console.log('no error'); }",
      'catch (e) { console.log(JSON.stringify({ name: e.name, code: e.code, message: e.message })); }',
    ].join('\n');
    const r = await runNode(['-e', script], { timeoutMs: 20_000 });
    const out = JSON.parse(r.stdout.trim());
    expect(out).toMatchObject({ name: 'EngineError', code: 'ERR_ITERATE_ENGINE' });
    expect(out.message).toContain('needs the bullmq package');
    expect(out.message).toContain('npm install bullmq ioredis');
  });
});

describe('iterate over BullMQ: maxRuntime', () => {
  it('releases the machine\'s partitions unfinished, without failing them; another machine finishes them with no repeat', async () => {
    const dir = scratch();
    const name = runName();
    const total = 40_000;
    const common = { name, dir, concurrency: 2, total, spin: 50, lockDuration: 5000, every: { items: 50, ms: 100 } };
    const a = machine({ ...common, label: 'a', enqueue: 4, maxRuntime: 1000 });
    const ra = await within(a.done, 60_000, 'machine a with maxRuntime');
    expect(ra.code, ra.stderr).toBe(0);
    expect(ra.out.result, JSON.stringify(ra.out)).toMatchObject({ complete: false, interrupted: true, interruptedBy: 'maxRuntime' });
    const held = ra.out.result.instances.filter((i: { done: boolean }) => !i.done);
    expect(held.length).toBeGreaterThan(0);
    expect(held.every((i: { error?: string }) => i.error === undefined)).toBe(true);
    // Released, not failed: waiting again, no attempt used, its cursor saved, no holder.
    const engine = engineFor(name);
    const progress = await engine.progress();
    await engine.close();
    for (const h of held) {
      expect(progress[h.instance]).toMatchObject({ state: 'waiting', holder: null, attemptsMade: 0, processed: h.processed });
    }
    const b = machine({ ...common, label: 'b' });
    const rb = await within(b.done, 90_000, 'machine b finishing');
    expect(rb.out.result, JSON.stringify(rb.out)).toMatchObject({ complete: true });
    const { counts } = records(dir, total);
    expect(counts.every((n) => n === 1)).toBe(true);
    expect(allCompleteCalls(dir)).toEqual([{ label: 'b', complete: true, failed: [] }]);
    // b resumed a's partitions from where a stopped.
    for (const h of held) {
      const resumed = starts(dir).find((x) => x.label === 'b' && x.instance === h.instance);
      expect(resumed?.cursor ?? null).toBe(h.processed === 0 ? null : h.instance * (total / 4) + h.processed - 1);
    }
  }, 180_000);
});

describe('iterate over BullMQ: a machine that stalls past its lease', () => {
  it('loses its partitions to another machine and stops walking them once it runs again', async () => {
    const dir = scratch();
    const name = runName();
    const total = 40_000;
    const half = total / 2;
    const common = { name, dir, concurrency: 2, total, spin: 100, lockDuration: 3000, every: { items: 50, ms: 100 } };
    const a = machine({ ...common, label: 'a', enqueue: 2 });
    await waitFor(() => recordCount(dir) >= 2000 && starts(dir).length === 2, 60_000, 20);
    // The machine's process stops (its instances go on until their pipes fill): it cannot renew its locks.
    process.kill(a.proc.pid!, 'SIGSTOP');
    const b = machine({ ...common, label: 'b' });
    try {
      await waitFor(() => starts(dir).filter((x) => x.label === 'b').length === 2, 60_000, 50);
    } finally {
      process.kill(a.proc.pid!, 'SIGCONT');
    }
    const [ra, rb] = await within(Promise.all([a.done, b.done]), 120_000, 'both machines');
    for (const r of [ra, rb]) {
      expect(r.code, r.stderr).toBe(0);
      expect(r.out.result, JSON.stringify(r.out)).toMatchObject({ complete: true });
    }
    const s = starts(dir);
    // b resumed both partitions from the cursors a had saved, not from their starts.
    for (const x of s.filter((y) => y.label === 'b')) expect(x.cursor).not.toBeNull();
    const recs = records(dir, total);
    // Once running again, a stopped walking the partitions it had lost: b alone finished them.
    for (const f of recs.files.values()) {
      if (f.label === 'a') expect(f.items.includes(f.instance * half + half - 1), `a walked partition ${f.instance} to its end`).toBe(false);
    }
    // Every item was processed; the only repeats are a's items past the cursors b resumed from.
    const { expected, repeatsBy } = expectedCounts(s, recs, total, 2);
    expect(mismatches(recs.counts, expected)).toEqual([]);
    expect([...repeatsBy.keys()].every((k) => k === 'a')).toBe(true);
    expect(allCompleteCalls(dir)).toHaveLength(1);
  }, 180_000);
});

describe('iterate over BullMQ: a failing partition', () => {
  it('fails after its attempts; the run still completes and onAllComplete reports it once', async () => {
    const dir = scratch();
    const name = runName();
    const total = 4000;
    const common = { name, dir, concurrency: 2, total, attempts: 2, lockDuration: 5000, every: { items: 50, ms: 100 }, failInstance: 1 };
    const a = machine({ ...common, label: 'a', enqueue: 4 });
    await within(a.ready, 30_000, 'machine a enqueuing');
    const b = machine({ ...common, label: 'b' });
    const [ra, rb] = await within(Promise.all([a.done, b.done]), 90_000, 'two machines with a failing partition');
    for (const r of [ra, rb]) {
      expect(r.code, r.stderr).toBe(0);
      // The run ended: every partition is done or failed for good, none is waiting for a machine.
      expect(r.out.result, JSON.stringify(r.out)).toMatchObject({ complete: false, interrupted: false });
    }
    const calls = allCompleteCalls(dir);
    expect(calls).toHaveLength(1);
    expect(calls[0].complete).toBe(false);
    expect(calls[0].failed.map((f) => f.instance)).toEqual([1]);
    expect(calls[0].failed[0].message).toContain('item 1000 always fails');
    // Partition 1 was attempted twice (attempts: 2), from its start both times; the others once.
    const s = starts(dir);
    expect(s.filter((x) => x.instance === 1)).toHaveLength(2);
    expect(s.filter((x) => x.instance === 1).every((x) => x.cursor === null)).toBe(true);
    for (const i of [0, 2, 3]) expect(s.filter((x) => x.instance === i)).toHaveLength(1);
    // Every item of the other partitions was processed exactly once; none of partition 1.
    const { counts } = records(dir, total);
    for (let i = 0; i < total; i++) expect(counts[i], `item ${i}`).toBe(i >= 1000 && i < 2000 ? 0 : 1);
  }, 120_000);
});
