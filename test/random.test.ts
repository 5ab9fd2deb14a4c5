// Random state across fork (src/random.ts): Math.random and crypto.randomUUID
// never repeat across children, nor with the parent's own next values,
// including through a randomUUID captured before any fork and Web Crypto's.
import crypto from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { map } from '../src/index';
import { setUuidBatchForTest, uuidBatchState } from '../src/random';

// Captured at load, before any fork, as an app's module would.
const { randomUUID } = crypto;
const major = Number(process.versions.node.split('.')[0]);

/** 40 children, each drawing 3 UUIDs (captured and Web Crypto) and 3 Math.random values. */
async function childValues(): Promise<{ uuids: string[]; randoms: number[] }> {
  // The parent's batch is part-used when the children are forked.
  for (let i = 0; i < 5; i++) randomUUID();
  Math.random();
  const out = await map(
    Array.from({ length: 40 }, (_, i) => i),
    () => ({
      uuids: [randomUUID(), randomUUID(), globalThis.crypto.randomUUID()],
      randoms: [Math.random(), Math.random(), Math.random()],
    }),
    { isolation: true, concurrency: 4, timeout: 30_000 },
  );
  return { uuids: out.flatMap((o) => o.uuids), randoms: out.flatMap((o) => o.randoms) };
}

/** What the parent draws next: without the repair, children would have drawn these too. */
function parentNext(): { uuids: string[]; randoms: number[] } {
  return {
    uuids: Array.from({ length: 130 }, () => randomUUID()),
    randoms: Array.from({ length: 10 }, () => Math.random()),
  };
}

afterEach(() => setUuidBatchForTest('reset'));

describe('random state across fork', () => {
  it("the first fork finds Node's UUID batch where it can (Node 20 to 24), and no value repeats across children or with the parent", async () => {
    const children = await childValues();
    expect(uuidBatchState()).toBe(major < 26 ? 'found' : 'missing');
    const parent = parentNext();
    const uuids = [...children.uuids, ...parent.uuids];
    expect(new Set(uuids).size).toBe(uuids.length);
    const randoms = [...children.randoms, ...parent.randoms];
    expect(new Set(randoms).size).toBe(randoms.length);
    expect(children.randoms.every((r) => r >= 0 && r < 1)).toBe(true);
  });

  it('where the batch cannot be found, each child draws the rest of it and still never repeats', async () => {
    setUuidBatchForTest('forget');
    const children = await childValues();
    expect(uuidBatchState()).toBe('missing');
    const parent = parentNext();
    const uuids = [...children.uuids, ...parent.uuids];
    expect(new Set(uuids).size).toBe(uuids.length);
  });
});
