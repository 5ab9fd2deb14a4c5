// A child's own pending writes (src/child-exit.ts). A Node process does not
// end while a request of its own is pending, and apps rely on it: a line
// handed to fs.WriteStream, or to pino's asynchronous destination, is written
// by a threadpool request after write() returns. A child left as soon as its
// work returned, and lost them: 2 of 40 lines from map items that log
// through a stream and return, none from items that open their own stream.
// Through the public API, with items that log the way apps do and return.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { DRAIN_MS } from '../src/child-exit';
import { atFork, map } from '../src/index';
import { native } from '../src/native';
import { FIXTURES, runCommand, runNode, scratchDirs } from './helpers';

const scratch = scratchDirs('cowfork-child-exit-');

const ITEMS = Array.from({ length: 40 }, (_, i) => i);

function linesOf(file: string): string[] {
  return fs.existsSync(file) ? fs.readFileSync(file, 'utf8').split('\n').filter(Boolean) : [];
}

/**
 * Runs `body` while this process has a socket write in flight: 64 MB to a server that does not read (a slow
 * client). Resolves to the lines the write's callback and the socket's 'error' listener recorded in other processes.
 */
async function withStalledWrite(body: () => Promise<void>, errorListener = true): Promise<string[]> {
  const marks = path.join(scratch(), 'marks');
  const parent = process.pid;
  const mark = (what: string): void => {
    if (process.pid !== parent) fs.appendFileSync(marks, `${what} ran in child ${process.pid}\n`);
  };
  const server = net.createServer((s) => s.pause());
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const sock = net.connect((server.address() as net.AddressInfo).port, '127.0.0.1');
  sock.on('error', (err) => {
    if (errorListener) mark(`the parent's 'error' listener (${(err as NodeJS.ErrnoException).code})`);
  });
  try {
    await new Promise((r) => sock.once('connect', r));
    if (!errorListener) sock.removeAllListeners('error');
    sock.write(Buffer.alloc(64 << 20), () => mark("the parent's write callback"));
    expect(sock.writableLength).toBeGreaterThan(0);
    await body();
  } finally {
    sock.on('error', () => {});
    sock.destroy();
    server.close();
  }
  return linesOf(marks);
}

describe("a child's own pending writes are done before it leaves", () => {
  it("items that write through the parent's open fs.WriteStream and return: every line (pool and isolation)", async () => {
    for (const isolation of [false, true]) {
      const file = path.join(scratch(), 'app.log');
      const out = fs.createWriteStream(file);
      await new Promise((r) => out.once('open', r));
      const results = await map(
        ITEMS,
        (i) => {
          out.write(`item ${i}\n`);
          return i;
        },
        { concurrency: 2, isolation, timeout: 20_000 },
      );
      expect(results).toEqual(ITEMS);
      await new Promise<void>((resolve) => out.end(resolve));
      expect(linesOf(file).sort()).toEqual(ITEMS.map((i) => `item ${i}`).sort());
    }
  });

  it('items that open their own stream, write one line and return: every line', async () => {
    const file = path.join(scratch(), 'own.log');
    await map(
      ITEMS,
      (i) => {
        fs.createWriteStream(file, { flags: 'a' }).write(`item ${i}\n`);
        return i;
      },
      { concurrency: 2, timeout: 20_000 },
    );
    expect(linesOf(file).sort()).toEqual(ITEMS.map((i) => `item ${i}`).sort());
  });

  it("items that log through pino's asynchronous destination, made in the parent: every line", async () => {
    const file = path.join(scratch(), 'pino.log');
    const dest = pino.destination({ dest: file, sync: false });
    await new Promise((r) => dest.once('ready', r));
    const logger = pino(dest);
    await map(
      ITEMS,
      (i) => {
        logger.info({ item: i }, 'done');
        return i;
      },
      { concurrency: 2, timeout: 20_000 },
    );
    dest.flushSync();
    const items = linesOf(file).map((l) => (JSON.parse(l) as { item: number }).item);
    expect(items.sort((a, b) => a - b)).toEqual(ITEMS);
  });

  it("a parent's socket write in flight at the fork (a slow client) does not hide the child's own pending writes", async () => {
    // In the child the parent's write fails on the silenced connection and stops counting in the loop.
    await withStalledWrite(async () => {
      const file = path.join(scratch(), 'app.log');
      const out = fs.createWriteStream(file);
      await new Promise((r) => out.once('open', r));
      await map(
        ITEMS,
        (i) => {
          out.write(`item ${i}\n`);
          return i;
        },
        { concurrency: 2, timeout: 20_000 },
      );
      await new Promise<void>((resolve) => out.end(resolve));
      expect(linesOf(file).sort()).toEqual(ITEMS.map((i) => `item ${i}`).sort());
    });
  });

  it('a request of its own that never finishes: the child leaves after the bound, and says why on stderr', async () => {
    const dir = scratch();
    const fifo = path.join(dir, 'fifo');
    // Opening a FIFO for reading blocks, on a threadpool thread, until a writer comes: none does.
    execFileSync('mkfifo', [fifo]);
    const r = await runNode(['--single-threaded', path.join(FIXTURES, 'child-pending-request.js'), fifo], {
      timeoutMs: DRAIN_MS + 20_000,
    });
    expect(r.stderr).toMatch(/left with 1 request\(s\) of its own still pending after \d+ ms/);
    expect(r.code).toBe(0);
    const out = JSON.parse(r.stdout.trim()) as { results: number[]; ms: number };
    expect(out.results).toEqual([7]);
    // It waited for the request (the bound), and no longer.
    expect(out.ms).toBeGreaterThanOrEqual(DRAIN_MS - 50);
    expect(out.ms).toBeLessThan(DRAIN_MS + 3000);
  });
});

describe("a parent's request in flight at the fork never completes in a child", () => {
  it("a socket write to a slow client: neither its callback nor the socket's 'error' listener runs in a child (sync and async items, pool and isolation)", async () => {
    for (const isolation of [false, true]) {
      const marks = await withStalledWrite(async () => {
        const results = await map(
          [1, 2, 3, 4],
          async (i) => {
            // The child runs its event loop, where the parent's write fails on the silenced connection.
            await new Promise((r) => setTimeout(r, 50));
            return i * 2;
          },
          { concurrency: 2, isolation, timeout: 20_000 },
        );
        expect(results).toEqual([2, 4, 6, 8]);
        // Sync items that leave a write of their own pending run the loop too.
        const file = path.join(scratch(), 'sync.log');
        const out = fs.createWriteStream(file);
        await new Promise((r) => out.once('open', r));
        await map(ITEMS, (i) => void out.write(`item ${i}\n`), { concurrency: 2, isolation, timeout: 20_000 });
        await new Promise<void>((resolve) => out.end(resolve));
        expect(linesOf(file)).toHaveLength(ITEMS.length);
      });
      expect(marks).toEqual([]);
    }
  });

  it('a write on a socket the parent destroyed just before the fork: its callback does not run in a child', async () => {
    const marks = path.join(scratch(), 'destroyed');
    const parent = process.pid;
    const server = net.createServer((s) => s.pause());
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const sock = net.connect((server.address() as net.AddressInfo).port, '127.0.0.1');
    sock.on('error', () => {});
    try {
      await new Promise((r) => sock.once('connect', r));
      // Its pending write still lists a handle, whose fd now reads -1.
      sock.write(Buffer.alloc(16 << 20), () => {
        if (process.pid !== parent) fs.appendFileSync(marks, `ran in child ${process.pid}\n`);
      });
      sock.destroy();
      const results = await map(
        [1, 2],
        async (i) => {
          await new Promise((r) => setTimeout(r, 50));
          return i;
        },
        { concurrency: 2, timeout: 20_000 },
      );
      expect(results).toEqual([1, 2]);
    } finally {
      server.close();
    }
    expect(linesOf(marks)).toEqual([]);
  });

  it("a socket with no 'error' listener: the children do not crash on its failed write", async () => {
    await withStalledWrite(async () => {
      const results = await map(
        [1, 2, 3, 4],
        async (i) => {
          await new Promise((r) => setTimeout(r, 50));
          return i;
        },
        { concurrency: 2, timeout: 20_000 },
      );
      expect(results).toEqual([1, 2, 3, 4]);
    }, false);
  });

  it("the parent's own write to stdout (a pipe read slowly) is left alone: the children's stdout works", async () => {
    // fds 0-2 are not silenced; a no-op completion of that write left each child's stdout waiting for it for good.
    const r = await stdoutScenario('parent-stdout');
    expect(r.report).toEqual({ results: [1, 2, 3, 4] });
    // Found anywhere: the parent's 1 MiB line is not written in one piece, and a child's line can land inside it.
    expect([...r.stdout.matchAll(/child line (\d)/g)].map((m) => m[1]).sort()).toEqual(['1', '2', '3', '4']);
  });

  it("the rest of the parent's write to stdout in flight at the fork is sent once, by the parent (not again by each child)", async () => {
    for (const mode of ['parent-stdout', 'parent-stdout-sync']) {
      const r = await stdoutScenario(mode);
      expect(r.report).toEqual({ results: [1, 2, 3, 4] });
      expect(r.stdout.replace(/[^P]/g, '').length).toBe(1 << 20);
    }
    // The hazard, without native/loop.c's emptying of the parent's writes: each child writes the rest again.
    const unsafe = String(native.FORK_FLAGS.SKIP_PARENT_WRITES);
    const bare = await stdoutScenario('parent-stdout', { COWFORK_TEST_UNSAFE_FLAGS: unsafe });
    expect(bare.report).toEqual({ results: [1, 2, 3, 4] });
    expect(bare.stdout.replace(/[^P]/g, '').length).toBeGreaterThan(1 << 20);
  });

  it("the parent's lines buffered behind that write, and its writer waiting for 'drain', stay the parent's", async () => {
    const count = (out: string): Record<string, number> => {
      const seen: Record<string, number> = {};
      for (const m of out.matchAll(/(parent buffered \d|parent after drain|child line \d)\n/g)) seen[m[1]] = (seen[m[1]] ?? 0) + 1;
      return seen;
    };
    const once = {
      'parent buffered 0': 1,
      'parent buffered 1': 1,
      'parent buffered 2': 1,
      'parent after drain': 1,
      'child line 1': 1,
      'child line 2': 1,
      'child line 3': 1,
      'child line 4': 1,
    };
    const r = await stdoutScenario('parent-buffered');
    expect(r.report).toEqual({ results: [1, 2, 3, 4] });
    expect(count(r.stdout)).toEqual(once);
    expect(r.stdout.replace(/[^P]/g, '').length).toBe(1 << 20);
    // The hazard, without src/stdio.ts: each child writes the parent's buffered lines, and its 'drain' line, again.
    const unsafe = String(native.FORK_FLAGS.SKIP_PARENT_STDIO);
    const bare = count((await stdoutScenario('parent-buffered', { COWFORK_TEST_UNSAFE_FLAGS: unsafe })).stdout);
    expect(bare['parent buffered 0']).toBeGreaterThan(1);
    expect(bare['parent after drain']).toBeGreaterThan(1);
  });

  it("a parent writing each record from the previous one's callback does not go on in a child: each record once", async () => {
    // The in-flight write completed in the child and ran the parent's callback there: 598 records for 200.
    const r = await stdoutScenario('parent-callbacks');
    expect(r.report).toEqual({ results: [1, 2] });
    const recs = [...r.stdout.matchAll(/rec (\d+) from (\d+) /g)];
    expect(recs.length).toBe(200);
    expect(new Set(recs.map((m) => m[2])).size).toBe(1);
  });

  it('a parent writing to fd 1 through a socket of its own: the children work, and each of its lines comes once', async () => {
    // Reading process.stdout in the child made a second handle on fd 1 (EEXIST), and every child crashed.
    const r = await stdoutScenario('parent-own-fd1');
    expect(r.report).toEqual({ results: [1, 2] });
    expect(r.stdout.match(/parent buffered \d\n/g)).toEqual(['parent buffered 0\n', 'parent buffered 1\n', 'parent buffered 2\n']);
    expect(r.stdout.replace(/[^P]/g, '').length).toBe(1 << 20);
  });

  it("where Writable's buffer is not as cowfork expects: nothing is changed, one COWFORK_STDIO_UNKNOWN warning", async () => {
    const r = await stdoutScenario('parent-buffered-foreign');
    expect(r.report).toEqual({ results: [1, 2, 3, 4], warnings: ['COWFORK_STDIO_UNKNOWN'] });
    // As without src/stdio.ts: the parent's buffered lines come again from the children; every child line arrives.
    expect(r.stdout.match(/parent buffered 0\n/g)?.length).toBeGreaterThan(1);
    expect([...r.stdout.matchAll(/child line (\d)/g)].map((m) => m[1]).sort()).toEqual(['1', '2', '3', '4']);
  });

  it('a child that writes to stdout behind that write and returns at once: its line is not lost', async () => {
    // The line waits in the stream's buffer, where no request counts it; the child left at once and lost it.
    const r = await stdoutScenario('parent-stdout-sync');
    expect(r.report).toEqual({ results: [1, 2, 3, 4] });
    expect([...r.stdout.matchAll(/child line (\d)/g)].map((m) => m[1]).sort()).toEqual(['1', '2', '3', '4']);
  });

  it("a child's own write to stdout is not hidden by the parent's failed socket write of the same kind", async () => {
    const r = await stdoutScenario('parent-socket');
    expect(r.report).toEqual({ results: [1] });
    expect(r.stdout.length).toBe((4 << 20) + 1);
  });
});

/** Runs test/fixtures/child-stdout.js with its stdout read only after half a second, as a slow reader would. */
async function stdoutScenario(
  mode: string,
  env: Record<string, string> = {},
): Promise<{ report: unknown; stdout: string }> {
  const script = `"${process.execPath}" --single-threaded "${path.join(FIXTURES, 'child-stdout.js')}" ${mode} | (sleep 0.5; cat)`;
  const r = await runCommand('sh', ['-c', script], { timeoutMs: 40_000, env: { ...process.env, ...env } });
  const last = r.stderr.trim().split('\n').at(-1) ?? '';
  return { report: JSON.parse(last), stdout: r.stdout };
}

describe("the parent's nextTick callbacks queued in the forking macrotask", () => {
  it('never run in a child (an atFork prepare hook queues one before each fork; sync items, pool and a generator)', async () => {
    const marks = path.join(scratch(), 'ticks');
    const parent = process.pid;
    const off = atFork({
      prepare() {
        process.nextTick(() => fs.appendFileSync(marks, `${process.pid === parent ? 'parent' : 'child'}\n`));
      },
    });
    try {
      for (const items of [[1, 2, 3], (function* () {
        yield* [1, 2, 3];
      })()]) {
        expect(await map(items, (i) => i * 2, { concurrency: 3, timeout: 20_000 })).toEqual([2, 4, 6]);
      }
    } finally {
      off();
    }
    const lines = linesOf(marks);
    expect(lines.filter((l) => l === 'child')).toEqual([]);
    // Each fork's tick ran, in the parent.
    expect(lines.length).toBeGreaterThanOrEqual(6);
  });

  it("Node's own write bookkeeping still runs: a child's write callback on stdout runs after the hook wrote there", async () => {
    const r = await runCommand('sh', ['-c', `"${process.execPath}" --single-threaded "${path.join(FIXTURES, 'tick-stdout.js')}" | cat`], { timeoutMs: 30_000 });
    const out = JSON.parse(r.stderr.trim().split('\n').at(-1)!) as { calls: number; pendingcb: number };
    expect(out.calls).toBeGreaterThanOrEqual(1);
    expect(out.pendingcb).toBe(0);
  });

  it('a process.nextTick patched by the work (an APM, zone.js) stays patched after the forking macrotask', async () => {
    const names = await map(
      [1, 2],
      async () => {
        const nodeTick = process.nextTick;
        process.nextTick = function patched(this: unknown, ...args: Parameters<typeof process.nextTick>) {
          return nodeTick.apply(this, args);
        } as typeof process.nextTick;
        await new Promise((r) => setTimeout(r, 20));
        return process.nextTick.name;
      },
      { concurrency: 2, timeout: 20_000 },
    );
    expect(names).toEqual(['patched', 'patched']);
  });
});
