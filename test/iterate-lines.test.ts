// lines(path): the cursor is a byte offset, so a resumed run reads from there.
// Checked over a 50 MB file by counting the bytes each instance reads
// (/proc/self/io rchar, measured inside the instance).
import { type ChildProcess, spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { lines, share } from '../src/iterate/builders';
import { FIXTURES, ROOT, tempDir } from './helpers';

const LINE = 1001; // bytes per line: 7-digit number, a space, 992 x's, "\n"
const COUNT = Math.ceil((50 * 1024 * 1024) / LINE);
const CHUNK = 64 * 1024;

let dir: string;
let file: string;

beforeAll(() => {
  dir = tempDir('cowfork-iterate-lines-');
  file = path.join(dir, 'big.txt');
  const fd = fs.openSync(file, 'w');
  const pad = 'x'.repeat(LINE - 9);
  const batch: string[] = [];
  for (let i = 0; i < COUNT; i++) {
    batch.push(`${String(i).padStart(7, '0')} ${pad}\n`);
    if (batch.length === 4096) fs.writeSync(fd, batch.splice(0).join(''));
  }
  fs.writeSync(fd, batch.join(''));
  fs.closeSync(fd);
});

const procs: ChildProcess[] = [];
afterAll(() => {
  for (const p of procs) if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
  fs.rmSync(dir, { recursive: true, force: true });
});

function runFixture(cfg: Record<string, unknown>, onSpawn?: (pid: number) => void) {
  const proc = spawn(process.execPath, ['--single-threaded', path.join(FIXTURES, 'iterate-run.js'), JSON.stringify(cfg)], {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  procs.push(proc);
  onSpawn?.(proc.pid!);
  let stdout = '';
  proc.stdout.on('data', (d) => (stdout += d));
  return {
    proc,
    done: new Promise<any>((resolve) => proc.on('close', () => resolve(JSON.parse(stdout.trim().split('\n').pop()!)))),
  };
}

function records(name: string): number[] {
  const p = path.join(dir, name);
  if (!fs.existsSync(p)) return [];
  return fs.readFileSync(p, 'utf8').trimEnd().split('\n').filter(Boolean).map(Number);
}

function recordBytes(): number {
  let n = 0;
  for (const name of fs.readdirSync(dir)) if (name.startsWith('rec-')) n += fs.statSync(path.join(dir, name)).size;
  return n;
}

describe('lines(path) over a 50 MB file', () => {
  it('resumes at the saved byte offset without reading from the start', async () => {
    const size = fs.statSync(file).size;
    expect(size).toBeGreaterThanOrEqual(50 * 1024 * 1024);
    const cfg = { dir, instances: 2, file };

    // Run 1: SIGTERM once about 40% of the lines are done.
    const first = runFixture({ ...cfg, label: 'a' });
    let exited = false;
    first.done.then(() => (exited = true));
    while (!exited && recordBytes() < COUNT * 0.4 * 8) await new Promise((r) => setTimeout(r, 3));
    first.proc.kill('SIGTERM');
    const out1 = await first.done;
    expect(out1.result.interrupted).toBe(true);
    const state = JSON.parse(fs.readFileSync(path.join(dir, 'checkpoint.json'), 'utf8'));

    // Run 2: each instance measures what it reads.
    const out2 = await runFixture({ ...cfg, label: 'b', io: true }).done;
    expect(out2.result.complete).toBe(true);

    for (let i = 0; i < 2; i++) {
      const [lo, hi] = share(0, size, i, 2);
      const saved = state.cursors[i].innerCursor as number;
      // The cursor is the offset just past the last finished line: a line start.
      expect(saved % LINE).toBe(0);
      expect(saved).toBeGreaterThan(lo + CHUNK);
      const io = JSON.parse(fs.readFileSync(path.join(dir, `io-b-${i}`), 'utf8'));
      expect(io.cursor).toBe(saved);
      // It read what was left of its share (plus at most one chunk past the end and
      // the small /proc read itself), nothing before the saved offset.
      const left = hi - saved;
      expect(io.bytes).toBeGreaterThanOrEqual(left);
      expect(io.bytes).toBeLessThanOrEqual(left + CHUNK + LINE + 4096);
      expect(io.bytes).toBeLessThan(hi - lo - (saved - lo) / 2);
      // And the first line it processed is the one at the saved offset.
      expect(records(`rec-b-${i}`)[0]).toBe(saved / LINE);
    }

    // Every line was processed once: a graceful stop repeats nothing.
    const seen = new Uint8Array(COUNT);
    for (const name of fs.readdirSync(dir)) if (name.startsWith('rec-')) for (const n of records(name)) seen[n]++;
    expect(seen.findIndex((c) => c !== 1)).toBe(-1);
  });
});

describe('lines(path) partitions', () => {
  function collect(text: string, instances: number, chunkSize = 4): string[][] {
    const f = path.join(dir, 'small.txt');
    fs.writeFileSync(f, text);
    const b = lines(f, { chunkSize });
    return Array.from({ length: instances }, (_, i) => Array.from(b(i, instances, null), ([line]) => line));
  }

  it('gives every line to exactly one instance, at any split and chunk size', () => {
    const text = Array.from({ length: 37 }, (_, i) => 'l'.repeat(i % 7) + i).join('\n');
    const all = text.split('\n');
    for (const n of [1, 2, 3, 5, 8]) {
      for (const chunk of [1, 3, 16, 4096]) {
        const parts = collect(text, n, chunk);
        expect(parts.flat()).toEqual(all);
      }
    }
  });

  it('handles a trailing newline, CRLF, empty lines and a line longer than the buffer', () => {
    expect(collect('a\r\nb\n\nccc\n', 1)).toEqual([['a', 'b', '', 'ccc']]);
    const long = 'z'.repeat(100);
    expect(collect(`${long}\nq`, 2, 8).flat()).toEqual([long, 'q']);
    expect(collect('', 3).flat()).toEqual([]);
  });

  it('resumes after a cursor: exactly the lines after it', () => {
    const f = path.join(dir, 'resume.txt');
    fs.writeFileSync(f, 'one\ntwo\nthree\nfour\n');
    const b = lines(f, { chunkSize: 5 });
    const pairs = Array.from(b(0, 1, null));
    expect(pairs.map(([, c]) => c)).toEqual([4, 8, 14, 19]);
    expect(Array.from(b(0, 1, 8), ([l]) => l)).toEqual(['three', 'four']);
    expect(Array.from(b(0, 1, 19))).toEqual([]);
    expect(() => Array.from(b(0, 1, 'x' as unknown as number))).toThrow(/not an integer/);
  });
});
