// worker_threads: the parent awaits a Worker's 'message' (the usual pattern;
// the worker thread is not yet joined when the promise settles), then forks
// children and prefork workers that start Workers of their own. A child must
// never abort because of the parent's Worker (it used to, in
// node::worker::Worker::JoinThread, with SIGABRT). Isolation children, many
// runs of them, are test/fork-worker-threads.test.ts.
import { Worker } from 'node:worker_threads';
import { describe, expect, it } from 'vitest';
import { map } from '../../src/index';
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
