import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { map } from '../src/index';
import { ROOT, runNode } from './helpers';

describe('smoke', () => {
  it('maps in forked children under vitest', async () => {
    const out = await map([1, 2, 3], (x) => ({ x, pid: process.pid }));
    expect(out.map((o) => o.x)).toEqual([1, 2, 3]);
    for (const o of out) expect(o.pid).not.toBe(process.pid);
  });

  it('loading cowfork loads no HTTP module, and a child of a process that never loaded one maps as usual', async () => {
    // node:http and node:https are loaded where they are used, not when cowfork loads.
    const script = `
      const cowfork = require(${JSON.stringify(path.join(ROOT, 'dist'))});
      const loaded = ['http', 'https', '_http_agent'].filter((m) => process.moduleLoadList.includes('NativeModule ' + m));
      cowfork.map([1, 2], (x) => x * 2).then((out) => {
        const after = ['http', 'https', '_http_agent'].filter((m) => process.moduleLoadList.includes('NativeModule ' + m));
        console.log(JSON.stringify({ loaded, out, after }));
      });`;
    const r = await runNode(['--single-threaded', '-e', script], { timeoutMs: 30_000 });
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout.trim())).toEqual({ loaded: [], out: [2, 4], after: [] });
  });
});
