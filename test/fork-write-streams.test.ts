// A parent's fs.WriteStream in a child (src/write-streams.ts). A busy file
// logger nearly always has a write in flight on libuv's threadpool; a child's
// copy of the stream waited for that write's completion, which only the
// parent's threadpool delivers, so every line the child wrote was buffered
// and lost. Through the public API, as an app writes logs: the parent keeps
// logging while map children log through the same stream.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { PassThrough, Readable } from 'node:stream';
import { finished } from 'node:stream/promises';
import { describe, expect, it } from 'vitest';
import { map } from '../src/index';
import { scratchDirs, waitFor } from './helpers';

const scratch = scratchDirs('cowfork-write-streams-');

/** Writes parent lines as fast as the stream takes them, until stopped; resolves to how many it wrote. */
function busyLogger(out: fs.WriteStream): { stop(): Promise<number> } {
  let stopped = false;
  let n = 0;
  const done = (async () => {
    while (!stopped) {
      out.write(`parent ${n++} ${'x'.repeat(200)}\n`);
      // Corked pairs too, so that the stream also writes batches (_writev).
      if (n % 3 === 0) {
        out.cork();
        out.write(`parent ${n++} corked\n`);
        out.write(`parent ${n++} corked\n`);
        out.uncork();
      }
      await new Promise((r) => setImmediate(r));
    }
    return n;
  })();
  return {
    stop: async () => {
      stopped = true;
      return done;
    },
  };
}

/**
 * Holds every libuv threadpool thread in an open() of a FIFO that has no writer yet, so that a file's open waits
 * in the queue until release(). (Not crypto: no CPU load, and no OpenSSL lock held by a busy thread at the fork.)
 */
function blockedThreadpool(): { release(): Promise<void> } {
  const fifo = path.join(scratch(), 'fifo');
  execFileSync('mkfifo', [fifo]);
  const threads = Number(process.env.UV_THREADPOOL_SIZE) || 4;
  const opened = Array.from(
    { length: threads },
    () => new Promise<number>((resolve, reject) => fs.open(fifo, 'r', (err, fd) => (err ? reject(err) : resolve(fd)))),
  );
  return {
    release: async () => {
      // A read-write open of a FIFO does not wait, and it lets every reader's open return.
      const writer = fs.openSync(fifo, fs.constants.O_RDWR | fs.constants.O_NONBLOCK);
      for (const fd of await Promise.all(opened)) fs.closeSync(fd);
      fs.closeSync(writer);
    },
  };
}

describe("a parent's busy fs.WriteStream", () => {
  it('takes each child\'s lines, and writes each of the parent\'s exactly once (pool and isolation)', async () => {
    for (const isolation of [false, true]) {
      const file = path.join(scratch(), 'app.log');
      const out = fs.createWriteStream(file);
      const logger = busyLogger(out);
      await new Promise((r) => setTimeout(r, 50));
      const results = await map(
        [0, 1, 2, 3],
        async (k) => {
          for (let i = 0; i < 4; i++) out.write(`child${k} line${i}\n`);
          // The last line's callback runs once it is written; without the release it never did.
          const written = new Promise<string>((resolve) => out.write(`child${k} line4\n`, () => resolve('written')));
          return Promise.race([written, new Promise<string>((r) => setTimeout(() => r('still buffered after 3 s'), 3000))]);
        },
        { concurrency: 4, isolation, timeout: 20_000 },
      );
      expect(results).toEqual(['written', 'written', 'written', 'written']);
      const n = await logger.stop();
      await new Promise<void>((resolve) => out.end(resolve));
      const lines = fs.readFileSync(file, 'utf8').split('\n').filter(Boolean);
      const childLines = lines.filter((l) => l.startsWith('child')).sort();
      expect(childLines).toEqual([0, 1, 2, 3].flatMap((k) => [0, 1, 2, 3, 4].map((i) => `child${k} line${i}`)).sort());
      // No line of the parent's lost, none written twice (a child writing the parent's buffered chunks would).
      const parentNums = lines.filter((l) => l.startsWith('parent')).map((l) => Number(l.split(' ')[1]));
      expect(parentNums.length).toBe(n);
      expect(new Set(parentNums).size).toBe(n);
    }
  });

  it('a stream opened at a fixed position is left as it was in a child', async () => {
    // Its writes are positional: a child's would land on the parent's bytes. The child's line stays buffered.
    const file = path.join(scratch(), 'positional.log');
    fs.writeFileSync(file, '');
    const out = fs.createWriteStream(file, { flags: 'r+', start: 0 });
    const logger = busyLogger(out);
    await new Promise((r) => setTimeout(r, 50));
    const [result] = await map(
      [0],
      async () => {
        const written = new Promise<string>((resolve) => out.write('child line\n', () => resolve('written')));
        return Promise.race([written, new Promise<string>((r) => setTimeout(() => r('buffered'), 500))]);
      },
      { timeout: 20_000 },
    );
    expect(result).toBe('buffered');
    const n = await logger.stop();
    await new Promise<void>((resolve) => out.end(resolve));
    const text = fs.readFileSync(file, 'utf8');
    expect(text).not.toContain('child line');
    expect(text.split('\n').filter(Boolean).length).toBe(n);
  });

  it("a stream the parent was ending at the fork does not finish or close in a child", async () => {
    // Completing its write in the child would run the parent's 'finish' and 'close' listeners there.
    const file = path.join(scratch(), 'ending.log');
    const out = fs.createWriteStream(file);
    const seen: string[] = [];
    out.on('finish', () => seen.push(`${process.pid} finish`));
    out.on('close', () => seen.push(`${process.pid} close`));
    await new Promise((r) => out.once('ready', r));
    // A write large enough to be still in flight when the map forks, then the end.
    out.write(Buffer.alloc(64 << 20, 0x61));
    out.end();
    const saw = await map(
      [0, 1],
      async () => {
        await new Promise((r) => setTimeout(r, 500));
        return seen.filter((s) => s.startsWith(`${process.pid} `));
      },
      { concurrency: 2, timeout: 20_000 },
    );
    expect(saw).toEqual([[], []]);
    await waitFor(() => seen.includes(`${process.pid} close`), 10_000);
    expect(fs.statSync(file).size).toBe(64 << 20);
  });

  it("a parent's write loop driven by write callbacks does not go on in a child", async () => {
    // What the parent had in flight stays the parent's: completing it in the child ran the parent's callback there,
    // and the loop wrote the rest of the parent's lines a second time from the child.
    const file = path.join(scratch(), 'loop.log');
    const out = fs.createWriteStream(file);
    await new Promise((r) => out.once('ready', r));
    const N = 400;
    let i = 0;
    const next = (): void => {
      if (i < N) out.write(`parent ${i++} ${'x'.repeat(20_000)}\n`, next);
      else out.end();
    };
    const closed = new Promise((r) => out.once('close', r));
    next();
    await new Promise((r) => setTimeout(r, 5));
    const [seen] = await map(
      [0],
      async () => {
        const before = i;
        await new Promise((r) => setTimeout(r, 800));
        return { before, after: i };
      },
      { timeout: 20_000 },
    );
    expect(seen.after).toBe(seen.before);
    await closed;
    const nums = fs.readFileSync(file, 'utf8').split('\n').filter(Boolean).map((l) => l.split(' ')[1]);
    expect(nums.length).toBe(N);
    expect(new Set(nums).size).toBe(N);
  });

  it('items that write a line through it and return at once: every line (pool and isolation)', async () => {
    // The child's own stream starts writing two ticks after it is made; the child left before that.
    for (const isolation of [false, true]) {
      const file = path.join(scratch(), 'sync.log');
      const out = fs.createWriteStream(file);
      const logger = busyLogger(out);
      await new Promise((r) => setTimeout(r, 50));
      const items = [0, 1, 2, 3, 4, 5, 6, 7];
      const results = await map(
        items,
        (k) => {
          out.write(`child${k}\n`);
          return k;
        },
        { concurrency: 2, isolation, timeout: 20_000 },
      );
      expect(results).toEqual(items);
      await logger.stop();
      await new Promise<void>((resolve) => out.end(resolve));
      const childLines = fs.readFileSync(file, 'utf8').split('\n').filter((l) => l.startsWith('child'));
      expect(childLines.sort()).toEqual(items.map((k) => `child${k}`));
    }
  });
});

describe("a parent's busy fs.WriteStream, in a child, behaves as a stream", () => {
  it("keeps the parent's encoding; a pipe() into it and end() work (finish, close, finished())", async () => {
    const file = path.join(scratch(), 'latin1.log');
    const out = fs.createWriteStream(file, { encoding: 'latin1' });
    await new Promise((r) => out.once('ready', r));
    // Enough for the stream to need 'drain' at the fork: a pipe() read the parent's frozen state and waited for good.
    for (let i = 0; i < 2000; i++) out.write(`parent ${i} ${'x'.repeat(100)}\n`);
    expect(out.writableNeedDrain).toBe(true);
    const [seen] = await map(
      [0],
      async () => {
        const piped = Readable.from(['child piped é\n']);
        piped.pipe(out, { end: false });
        await new Promise((r) => piped.once('end', r));
        const closed = new Promise((r) => out.once('close', () => r('close')));
        await new Promise<void>((resolve) => out.end('child last\n', resolve));
        await finished(out);
        return { closed: await closed, ended: out.writableEnded, finished: out.writableFinished };
      },
      { isolation: true, timeout: 20_000 },
    );
    expect(seen).toEqual({ closed: 'close', ended: true, finished: true });
    await new Promise<void>((resolve) => out.end(resolve));
    const text = fs.readFileSync(file);
    // 'é' in latin1 is the one byte e9; the child's stream wrote utf8 (c3 a9) before.
    expect(text.includes(Buffer.from('child piped \u00e9\n', 'latin1'))).toBe(true);
    expect(text.toString('latin1')).toContain('child last\n');
    expect(text.toString('latin1').split('\n').filter((l) => l.startsWith('parent')).length).toBe(2000);
  });
  it("a pipe() into it that was not waiting for 'drain' at the fork carries the child's lines, under backpressure too", async () => {
    // A pipe keeps its 'drain' listener once it has paused; dropping it in the child left the child's pipe paused.
    const file = path.join(scratch(), 'piped.log');
    const out = fs.createWriteStream(file);
    await new Promise((r) => out.once('ready', r));
    const through = new PassThrough();
    through.pipe(out);
    through.write(`parent big ${'x'.repeat(1 << 20)}\n`);
    await new Promise((r) => out.once('drain', r));
    out.write('parent in flight\n');
    expect(out.writableLength).toBeGreaterThan(0);
    expect(out.writableNeedDrain).toBe(false);
    const [written] = await map(
      [0],
      async () => {
        for (let i = 0; i < 2000; i++) through.write(`child ${i} ${'y'.repeat(200)}\n`);
        const done = new Promise<string>((resolve) => through.write('child last\n', () => resolve('written')));
        return Promise.race([done, new Promise<string>((r) => setTimeout(() => r('stuck'), 5000))]);
      },
      { isolation: true, timeout: 20_000 },
    );
    expect(written).toBe('written');
    through.end();
    await new Promise((r) => out.once('finish', r));
    const lines = fs.readFileSync(file, 'utf8').split('\n');
    expect(lines.filter((l) => /^child \d+ /.test(l)).length).toBe(2000);
    expect(lines).toContain('child last');
  });
  it("a writer the parent paused for 'drain' does not go on from a child when the child's own writes drain", async () => {
    const file = path.join(scratch(), 'paused.log');
    const out = fs.createWriteStream(file);
    await new Promise((r) => out.once('ready', r));
    // The parent's writes wait behind the blocked threads: the stream needs 'drain' at the fork, and after it
    // (220 KB, above the default highWaterMark of every Node version: 16 KiB on 20, 64 KiB from 22).
    const busy = blockedThreadpool();
    for (let i = 0; i < 2000; i++) out.write(`parent ${i} ${'x'.repeat(100)}\n`);
    expect(out.writableNeedDrain).toBe(true);
    out.once('drain', () => out.write('parent resumed\n'));
    const [seen] = await map(
      [0],
      async () => {
        const inherited = out.listenerCount('drain');
        let ok = true;
        for (let i = 0; i < 2000; i++) ok = out.write(`child ${i} ${'y'.repeat(100)}\n`);
        const drained = ok ? 'no backpressure' : await new Promise((r) => out.once('drain', () => r('drained')));
        return { inherited, drained };
      },
      { isolation: true, timeout: 20_000 },
    );
    // The child's own writes needed 'drain' and got it; the parent's waiting listener was not there to run.
    expect(seen).toEqual({ inherited: 0, drained: 'drained' });
    // In the parent the writer resumes once the stream drains there.
    const drainedHere = new Promise((r) => out.once('drain', r));
    await busy.release();
    await drainedHere;
    await new Promise<void>((resolve) => out.end(resolve));
    const lines = fs.readFileSync(file, 'utf8').split('\n');
    expect(lines.filter((l) => l === 'parent resumed').length).toBe(1);
    expect(lines.filter((l) => /^child \d+ /.test(l)).length).toBe(2000);
    expect(lines.filter((l) => /^parent \d+ /.test(l)).length).toBe(2000);
  });
});

describe('an fs.WriteStream still opening its file at the fork (the threadpool busy)', () => {
  it("opened for appending (flags 'a'): each child opens the file itself, and its lines are appended", async () => {
    const file = path.join(scratch(), 'append.log');
    const busy = blockedThreadpool();
    const out = fs.createWriteStream(file, { flags: 'a' });
    out.write('parent first\n');
    const pendingAtFork = await map(
      [0, 1, 2, 3],
      (k) => {
        const pending = out.pending;
        out.write(`child${k}\n`);
        return pending;
      },
      { concurrency: 2, timeout: 20_000 },
    );
    // The precondition: the open had not completed when each child was forked.
    expect(pendingAtFork).toEqual([true, true, true, true]);
    await busy.release();
    out.write('parent last\n');
    await new Promise<void>((resolve) => out.end(resolve));
    const lines = fs.readFileSync(file, 'utf8').split('\n').filter(Boolean);
    expect(lines.filter((l) => l.startsWith('child')).sort()).toEqual(['child0', 'child1', 'child2', 'child3']);
    expect(lines.filter((l) => l.startsWith('parent'))).toEqual(['parent first', 'parent last']);
  });

  it("opened any other way (flags 'w'): the child's write throws an error that says why, and nothing is lost silently", async () => {
    const file = path.join(scratch(), 'truncate.log');
    const busy = blockedThreadpool();
    const out = fs.createWriteStream(file);
    out.write('parent first\n');
    const run = map(
      [0],
      () => {
        out.write('child line\n');
        return 0;
      },
      { timeout: 20_000 },
    );
    await expect(run).rejects.toThrow(/still opening its file when the process forked.*flags: 'a'/s);
    await busy.release();
    await new Promise<void>((resolve) => out.end(resolve));
    expect(fs.readFileSync(file, 'utf8')).toBe('parent first\n');
  });

  it("numeric append flags and a Buffer path are opened again; an exclusive one ('ax') is refused, and the parent's stream opens", async () => {
    const dir = scratch();
    const { O_APPEND, O_CREAT, O_WRONLY } = fs.constants;
    const busy = blockedThreadpool();
    const numeric = fs.createWriteStream(path.join(dir, 'numeric.log'), { flags: O_APPEND | O_CREAT | O_WRONLY });
    const buffer = fs.createWriteStream(Buffer.from(path.join(dir, 'buffer.log')), { flags: 'a' });
    const exclusive = fs.createWriteStream(path.join(dir, 'exclusive.log'), { flags: 'ax' });
    const opened = new Promise((resolve, reject) => {
      exclusive.once('ready', () => resolve('ready'));
      exclusive.once('error', reject);
    });
    const pending = await map(
      [0, 1],
      (k) => {
        const was = [numeric.pending, buffer.pending];
        numeric.write(`child${k}\n`);
        buffer.write(`child${k}\n`);
        return was;
      },
      { concurrency: 2, timeout: 20_000 },
    );
    expect(pending).toEqual([
      [true, true],
      [true, true],
    ]);
    const refused = map([0], () => exclusive.write('child\n') && 0, { timeout: 20_000 });
    await expect(refused).rejects.toThrow(/still opening its file when the process forked.*not exclusive/s);
    await busy.release();
    // The child did not create the file first: the parent's exclusive open succeeds.
    expect(await opened).toBe('ready');
    exclusive.write('parent\n');
    for (const out of [numeric, buffer, exclusive]) await new Promise<void>((resolve) => out.end(resolve));
    for (const name of ['numeric.log', 'buffer.log']) {
      expect(fs.readFileSync(path.join(dir, name), 'utf8').split('\n').filter(Boolean).sort()).toEqual(['child0', 'child1']);
    }
    expect(fs.readFileSync(path.join(dir, 'exclusive.log'), 'utf8')).toBe('parent\n');
  });
});
