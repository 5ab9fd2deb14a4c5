// worker_threads: the parent awaits a Worker's 'message' (the usual pattern;
// the worker thread is not yet joined when the promise settles), then forks
// children and prefork workers that start Workers of their own. A child must
// never abort because of the parent's Worker (it used to, in
// node::worker::Worker::JoinThread, with SIGABRT). Isolation children, many
// runs of them, are test/fork-worker-threads.test.ts.
import { once } from 'node:events';
import { Worker } from 'node:worker_threads';
import { describe, expect, it } from 'vitest';
import { TimeoutError, map } from '../../src/index';
import { MODES, outcome, preforkAnswers } from './support';

/** Starts a Worker that posts 42 and resolves with its first message, without waiting for it to exit. */
function runWorker(): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const w = new Worker('require("node:worker_threads").parentPort.postMessage(42)', { eval: true });
    w.once('message', resolve);
    w.once('error', reject);
  });
}

describe('worker_threads, after the parent awaited a Worker', () => {
  it('pool children start Workers one after another', async () => {
    // Two long-lived children take 6 items of 2 Workers each.
    expect(await runWorker()).toBe(42);
    const items = [0, 1, 2, 3, 4, 5];
    const out = await map(items, async () => [await runWorker(), await runWorker()], { ...MODES.pool, timeout: 5000, settle: true });
    expect(out.map(outcome)).toEqual(items.map(() => [42, 42]));
  });

  it('prefork workers start a Worker per request', async () => {
    expect(await runWorker()).toBe(42);
    const answers = await preforkAnswers(() => runWorker(), { ms: 10_000 });
    expect(answers.map((a) => a.value ?? a.error)).toEqual(answers.map(() => 42));
  });
});

describe('worker_threads: a Worker the parent keeps running (a service thread, a pool, a logger transport)', () => {
  it('a child that asks it fails at its timeout, with an error that names the live Worker and the recipes; the parent\'s Worker still answers', async () => {
    const echo = new Worker('const { parentPort } = require("node:worker_threads"); parentPort.on("message", (x) => parentPort.postMessage(x * 2));', { eval: true });
    try {
      await once(echo, 'online');
      const ask = async (x: number): Promise<number> => {
        echo.postMessage(x);
        const [answer] = (await once(echo, 'message')) as [number];
        return answer;
      };
      expect(await ask(5)).toBe(10);
      const out = await map([1, 2], ask, { ...MODES.pool, timeout: 1000, settle: true });
      for (const o of out) {
        expect(o.status).toBe('rejected');
        const err = (o as { reason: Error }).reason;
        expect(err).toBeInstanceOf(TimeoutError);
        expect(err.message).toContain('1 live worker_threads Worker(s) when it forked');
        expect(err.message).toContain('docs/recipes.md');
      }
      expect(await ask(21)).toBe(42);
    } finally {
      await echo.terminate();
    }
  });
});
