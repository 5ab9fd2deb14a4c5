// worker_threads: the parent awaits a Worker's 'message' (the usual pattern;
// the worker thread is not yet joined when the promise settles), then forks
// children and prefork workers that start Workers of their own. A child must
// never abort because of the parent's Worker (it used to, in
// node::worker::Worker::JoinThread, with SIGABRT). Isolation children, many
// runs of them, are test/fork-worker-threads.test.ts.
import { once } from 'node:events';
import path from 'node:path';
import { MessageChannel, Worker, receiveMessageOnPort } from 'node:worker_threads';
import { Piscina } from 'piscina';
import { describe, expect, it } from 'vitest';
import { ParentWorkerError, map } from '../../src/index';
import { MODES, inChildren, outcome, preforkAnswers } from './support';

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
  const ECHO = 'const { parentPort } = require("node:worker_threads"); parentPort.on("message", (x) => parentPort.postMessage(x * 2));';

  /** Runs `body` with a live echo Worker, and checks afterwards that the parent's Worker still answers. */
  async function withEcho(body: (echo: Worker, ask: (x: number) => Promise<number>) => Promise<void>): Promise<void> {
    const echo = new Worker(ECHO, { eval: true });
    try {
      await once(echo, 'online');
      const ask = async (x: number): Promise<number> => {
        echo.postMessage(x);
        const [answer] = (await once(echo, 'message')) as [number];
        return answer;
      };
      expect(await ask(5)).toBe(10);
      await body(echo, ask);
      expect(await ask(21)).toBe(42);
    } finally {
      await echo.terminate();
    }
  }

  it("a child that posts to it fails at once with ParentWorkerError, naming the Worker, the parent and the recipes (it used to wait for an answer that never comes)", async () => {
    await withEcho(async (echo, ask) => {
      // Without the stand-in, each item waits for the Worker's answer until this timeout, and rejects with TimeoutError.
      const { pool, isolation } = await inChildren([1, 2], ask, 10_000);
      for (const o of [...pool, ...isolation]) {
        expect(o).toMatch(/^WorkerError ERR_WORKER: .* <- ParentWorkerError: postMessage\(\) to a worker_threads Worker/);
        expect(o).toContain(`(threadId ${echo.threadId}) that process ${process.pid} started before it forked this child`);
        expect(o).toContain('docs/recipes.md');
      }
      // The error is the exported class, with its fields, in the child that catches it.
      const caught = await map([0], () => {
        try {
          echo.postMessage(1);
          return 'posted';
        } catch (err) {
          const e = err as ParentWorkerError;
          return [e instanceof ParentWorkerError, e.code, e.threadId, e.ownerPid];
        }
      }, { ...MODES.pool, timeout: 10_000 });
      expect(caught).toEqual([[true, 'ERR_PARENT_WORKER', echo.threadId, process.pid]]);
    });
  });

  it("a child's terminate() of it resolves (there is no thread to stop; it used to wait forever), and getHeapSnapshot() rejects; the parent's Worker is untouched", async () => {
    await withEcho(async (echo) => {
      const stop = async (): Promise<unknown[]> => {
        const exit = await echo.terminate();
        const snapshot = await echo.getHeapSnapshot().then(
          () => 'snapshot',
          (err: Error) => err.name,
        );
        return [exit, snapshot];
      };
      // Without the stand-in, terminate() never settles in a child, and each item rejects with TimeoutError.
      const { pool, isolation } = await inChildren([1, 2], stop, 10_000);
      for (const o of [...pool, ...isolation]) expect(o).toEqual([undefined, 'ParentWorkerError']);
    });
  });

  it('a port whose other end the parent handed to it: a child that posts on it fails at once with ParentWorkerError; in the parent it still works', async () => {
    const SERVE_PORT =
      'const { parentPort } = require("node:worker_threads"); parentPort.on("message", ({ port }) => port.on("message", (x) => port.postMessage(x * 2)));';
    const worker = new Worker(SERVE_PORT, { eval: true });
    try {
      // Both forms of the transfer argument: a list, and { transfer }.
      const a = new MessageChannel();
      const b = new MessageChannel();
      worker.postMessage({ port: a.port2 }, [a.port2]);
      worker.postMessage({ port: b.port2 }, { transfer: [b.port2] });
      const ask = async (port: import('node:worker_threads').MessagePort, x: number): Promise<number> => {
        port.postMessage(x);
        const [answer] = (await once(port, 'message')) as [number];
        return answer;
      };
      expect([await ask(a.port1, 1), await ask(b.port1, 2)]).toEqual([2, 4]);
      // Without the stand-in, each item waits for an answer until this timeout, and rejects with TimeoutError.
      const { pool, isolation } = await inChildren([1, 2], (x) => ask(x === 1 ? a.port1 : b.port1, x), 10_000);
      for (const o of [...pool, ...isolation]) {
        expect(o).toMatch(/^WorkerError ERR_WORKER: .* <- ParentWorkerError: postMessage\(\) on a MessagePort whose other end was handed to a worker_threads Worker/);
        expect(o).toContain(`(threadId ${worker.threadId}) that process ${process.pid} started before it forked this child`);
      }
      expect([await ask(a.port1, 3), await ask(b.port1, 4)]).toEqual([6, 8]);
      // A post that failed moved nothing: both ends stayed here, and in a child they still talk to each other.
      const local = new MessageChannel();
      expect(() => worker.postMessage({ port: local.port2, fn: () => 1 }, [local.port2])).toThrow(/could not be cloned/);
      const echoed = await map([7], (x) => {
        local.port1.postMessage(x);
        return receiveMessageOnPort(local.port2)?.message;
      }, { ...MODES.pool, timeout: 10_000 });
      expect(echoed).toEqual([7]);
      for (const port of [a.port1, b.port1, local.port1, local.port2]) port.close();
    } finally {
      await worker.terminate();
    }
  });

  it("a piscina pool of the parent's: pool.run() in a child rejects at once with ParentWorkerError (it used to wait for the item's timeout); the parent's pool still runs tasks", async () => {
    const pool = new Piscina({ filename: path.join(__dirname, '..', 'fixtures', 'piscina-double.js'), minThreads: 1, maxThreads: 1 });
    try {
      expect(await pool.run(5)).toBe(10);
      // Without the stand-in, each item waits for its task's answer until this timeout, and the map rejects with TimeoutError.
      const out = await map([1, 2, 3], async (x) => {
        try {
          return await pool.run(x);
        } catch (err) {
          const e = err as ParentWorkerError;
          return [e instanceof ParentWorkerError, e.code, e.ownerPid];
        }
      }, { ...MODES.pool, timeout: 10_000 });
      expect(out).toEqual([1, 2, 3].map(() => [true, 'ERR_PARENT_WORKER', process.pid]));
      expect(await pool.run(21)).toBe(42);
    } finally {
      await pool.destroy();
    }
  });

  it("a child that waits for its message fails at its timeout, with an error that names the live Worker and the recipes", async () => {
    await withEcho(async (echo) => {
      const { pool, isolation } = await inChildren([1, 2], () => once(echo, 'message'), 1000);
      for (const o of [...pool, ...isolation]) {
        expect(o).toMatch(/^TimeoutError ERR_TIMEOUT: item \d exceeded the 1000 ms timeout/);
        expect(o).toContain('1 live worker_threads Worker(s) when it forked');
        expect(o).toContain('docs/recipes.md');
      }
    });
  });
});
