// Three "machine" processes (each `node --single-threaded`, concurrency 2)
// walk 8 partitions of 200,000 items through cowfork/bullmq on a real Redis.
// Every instance records each finished item in its own append-only file, and
// onStart records which machine started which partition from which cursor, so
// the test can count every item and say which repeats were allowed: only the
// items a killed machine finished after its last saved cursor.
import { describe, expect, it } from 'vitest';
import { BullMQEngine } from '../src/bullmq';
import { isAlive, waitFor } from './helpers';
import {
  allCompleteCalls,
  expectedCounts,
  machine,
  mismatches,
  recordCount,
  records,
  redis,
  runName,
  scratch,
  starts,
  useRedis,
  within,
} from './iterate-bullmq-support';

useRedis();

const TOTAL = 200_000;
const PARTITIONS = 8;

describe('iterate over BullMQ: three machines', () => {
  it('process every item once, onAllComplete runs once, progress shows every machine', async () => {
    const dir = scratch();
    const name = runName();
    const common = { name, dir, concurrency: 2, total: TOTAL, spin: 20, lockDuration: 5000, every: { items: 100, ms: 100 } };
    const a = machine({ ...common, label: 'a', enqueue: PARTITIONS });
    await within(a.ready, 30_000, 'machine a enqueuing');
    const b = machine({ ...common, label: 'b' });
    const c = machine({ ...common, label: 'c' });

    // Progress across machines, read from Redis by a process that works on nothing.
    const engine = new BullMQEngine({ connection: { host: '127.0.0.1', port: redis() }, name });
    const holders = new Set<string>();
    let sawCounts = false;
    const watching = (async () => {
      while (a.proc.exitCode === null || b.proc.exitCode === null || c.proc.exitCode === null) {
        for (const p of await engine.progress()) {
          if (p.holder !== null) holders.add(p.holder);
          if (p.state === 'active' && p.processed > 0) sawCounts = true;
        }
        await new Promise((r) => setTimeout(r, 50));
      }
    })();
    const results = await within(Promise.all([a.done, b.done, c.done]), 150_000, 'three machines');
    await watching;
    const final = await engine.progress();
    await engine.close();

    for (const r of results) {
      expect(r.code, r.stderr).toBe(0);
      expect(r.out.result, JSON.stringify(r.out)).toMatchObject({ complete: true, interrupted: false });
    }
    const worked = results.flatMap((r) => r.out.result.instances.map((i: { instance: number }) => i.instance));
    expect(new Set(worked)).toEqual(new Set([0, 1, 2, 3, 4, 5, 6, 7]));
    expect(final.every((p) => p.state === 'completed' && p.processed === TOTAL / PARTITIONS && p.holder === null)).toBe(true);
    // Machines' pids as holders: more than one machine held partitions, and counts moved while they did.
    const machinePids = new Set(results.map((_, i) => [a, b, c][i].proc.pid));
    expect([...holders].every((h) => machinePids.has(Number(h.split(':').pop())))).toBe(true);
    expect(holders.size).toBeGreaterThanOrEqual(2);
    expect(sawCounts).toBe(true);

    const recs = records(dir, TOTAL);
    const repeats = recs.counts.reduce((n, c) => n + (c > 1 ? c - 1 : 0), 0);
    const missing = recs.counts.reduce((n, c) => n + (c === 0 ? 1 : 0), 0);
    console.log(`iterate over BullMQ, 3 machines: ${repeats} repeat(s), ${missing} missing, holders ${[...holders].join(' ')}`);
    expect(missing).toBe(0);
    expect(repeats).toBe(0);
    expect(allCompleteCalls(dir)).toHaveLength(1);
    expect(allCompleteCalls(dir)[0]).toMatchObject({ complete: true, failed: [] });
  }, 180_000);

  it('kill -9 of one machine and SIGTERM of another: partitions resume elsewhere from saved cursors, the SIGTERM repeats nothing, the run completes', async () => {
    const dir = scratch();
    const name = runName();
    // A short lease: the killed machine's partitions are resumed 4 s after its last renewal.
    const common = { name, dir, concurrency: 2, total: TOTAL, spin: 30, lockDuration: 4000, every: { items: 100, ms: 100 } };
    const a = machine({ ...common, label: 'a', enqueue: PARTITIONS });
    await within(a.ready, 30_000, 'machine a enqueuing');
    const b = machine({ ...common, label: 'b' });
    const c = machine({ ...common, label: 'c' });
    await within(b.ready, 30_000, 'machine b starting');
    await within(c.ready, 30_000, 'machine c starting');

    // Both a and b must hold leases when they are stopped.
    await waitFor(() => recordCount(dir) >= TOTAL * 0.15 && starts(dir).some((s) => s.label === 'b'), 90_000, 50);
    a.proc.kill('SIGKILL');
    const aDone = await within(a.done, 10_000, 'machine a after kill -9');
    expect(aDone.signal).toBe('SIGKILL');
    const killedAt = starts(dir).filter((s) => s.label === 'a');
    await waitFor(() => recordCount(dir) >= TOTAL * 0.4, 90_000, 50);
    b.proc.kill('SIGTERM');
    const [bDone, cDone] = await within(Promise.all([b.done, c.done]), 150_000, 'machines b and c');

    // The killed machine's instances died with it (PR_SET_PDEATHSIG): none is left running.
    for (const s of killedAt) await waitFor(() => !isAlive(s.pid), 10_000, 20);
    // SIGTERM: b finished its current items, saved and released its partitions, without failing them.
    expect(bDone.code, bDone.stderr).toBe(0);
    expect(bDone.out.result, JSON.stringify(bDone.out)).toMatchObject({ complete: false, interrupted: true, interruptedBy: 'SIGTERM' });
    expect(cDone.code, cDone.stderr).toBe(0);
    expect(cDone.out.result, JSON.stringify(cDone.out)).toMatchObject({ complete: true, interrupted: false });

    const s = starts(dir);
    const recs = records(dir, TOTAL);
    // Each partition a held when it was killed (not finished by it) was started again by another machine.
    const aDoneParts = new Set<number>();
    for (const f of recs.files.values()) if (f.label === 'a' && f.items.length === TOTAL / PARTITIONS) aDoneParts.add(f.instance);
    const lost = killedAt.filter((x) => !aDoneParts.has(x.instance));
    expect(lost.length).toBeGreaterThan(0);
    for (const l of lost) {
      const later = s.slice(s.indexOf(s.find((x) => x.pid === l.pid)!) + 1).find((x) => x.instance === l.instance);
      expect(later, `partition ${l.instance} resumed`).toBeDefined();
      expect(later!.label).not.toBe('a');
      // From its saved cursor: not from the start, when a had saved (it recorded past a batch) before the kill.
      const aItems = [...recs.files.values()].find((f) => f.pid === l.pid)?.items ?? [];
      if (aItems.length >= 300) {
        expect(later!.cursor).not.toBeNull();
        expect(later!.cursor!).toBeGreaterThanOrEqual(aItems[0]);
        expect(later!.cursor!).toBeLessThanOrEqual(aItems[aItems.length - 1]);
      }
    }

    const { expected, repeatsBy } = expectedCounts(s, recs, TOTAL, PARTITIONS);
    const repeats = recs.counts.reduce((n, c) => n + (c > 1 ? c - 1 : 0), 0);
    console.log(
      `iterate over BullMQ, kill -9 + SIGTERM: ${repeats} repeat(s) (${[...repeatsBy].map(([k, v]) => `${k}: ${v}`).join(', ') || 'none'}), ` +
        `${lost.length} partition(s) lost with the killed machine, ${s.filter((x) => x.label === 'b').length} lease(s) of the SIGTERMed one`,
    );
    // Every item was processed; the only repeats are the killed machine's items past its saved cursors.
    expect(mismatches(recs.counts, expected)).toEqual([]);
    expect(recs.counts.every((n) => n >= 1)).toBe(true);
    // The SIGTERM caused no repeat.
    expect(repeatsBy.get('b') ?? 0).toBe(0);
    expect([...repeatsBy.keys()].every((k) => k === 'a')).toBe(true);
    // onAllComplete ran once, on the machine that finished the run.
    expect(allCompleteCalls(dir)).toEqual([{ label: 'c', complete: true, failed: [] }]);
  }, 240_000);
});
