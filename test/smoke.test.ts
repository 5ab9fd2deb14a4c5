import { describe, expect, it } from 'vitest';
import { map } from '../src/index';

describe('smoke', () => {
  it('maps in forked children under vitest', async () => {
    const out = await map([1, 2, 3], (x) => ({ x, pid: process.pid }));
    expect(out.map((o) => o.x)).toEqual([1, 2, 3]);
    for (const o of out) expect(o.pid).not.toBe(process.pid);
  });
});
