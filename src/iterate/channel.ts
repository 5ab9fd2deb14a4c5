// The pipe from an instance to the parent. One line per record:
//   c<cursor JSON>   an item's `each` finished; its cursor
//   d                the partition is exhausted
//   e<failure JSON>  `build`, `each` or the iterator failed
//   s<signal>        the instance itself got SIGINT/SIGTERM and stopped
// JSON.stringify never emits a raw newline, so "\n" ends every record. Only
// the instance writes its pipe, so records never interleave.
import fs from 'node:fs';
import { WRITE, native } from '../native';
import { readSome } from '../util';

export const CURSOR = 0x63; // 'c'
export const DONE = 0x64; // 'd'
export const FAILED = 0x65; // 'e'
export const STOPPED = 0x73; // 's'

export interface Failure {
  name: string;
  message: string;
  stack?: string;
  code?: unknown;
  /** util.inspect of the failing item; absent when no item was running. */
  item?: string;
  itemCursor?: unknown;
  /** Where it failed: 'each', 'build' or 'iterator'. */
  stage: string;
}

// ---------------------------------------------------------------------------
// The instance side: blocking writes on a non-blocking fd.

const pollFds = new Int32Array(1);
const pollEvents = new Int32Array([WRITE]);
const pollRevents = new Int32Array(1);

/** Writes a record. Returns false when the parent is gone (EPIPE). */
export function writeRecord(fd: number, text: string): boolean {
  const buf = Buffer.from(text);
  let off = 0;
  while (off < buf.length) {
    try {
      off += fs.writeSync(fd, buf, off, buf.length - off);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'EPIPE') return false;
      if (code !== 'EAGAIN') throw err;
      // The parent is behind: wait until the pipe has room.
      pollFds[0] = fd;
      native.poll(pollFds, pollEvents, pollRevents, -1);
    }
  }
  return true;
}

// ---------------------------------------------------------------------------
// The parent side: a reader that folds a stream of records.

export interface RecordSink {
  /** `count` items finished; `last` is the last one's cursor JSON text. */
  cursors(count: number, last: string): void;
  done(): void;
  failed(failure: Failure): void;
  stopped(signal: string): void;
}

export class RecordReader {
  private rest: Buffer | null = null;
  private readonly chunk = Buffer.allocUnsafe(64 * 1024);

  constructor(
    private readonly fd: number,
    private readonly sink: RecordSink,
  ) {}

  /** Reads what the pipe holds. Returns false at end of file (the instance closed its end). */
  drain(): boolean {
    for (;;) {
      const n = readSome(this.fd, this.chunk);
      if (n === null) return true;
      if (n === 0) return false;
      this.feed(this.chunk.subarray(0, n));
    }
  }

  private feed(bytes: Buffer): void {
    const buf = this.rest === null ? bytes : Buffer.concat([this.rest, bytes]);
    let start = 0;
    let count = 0;
    let lastStart = -1;
    let lastEnd = -1;
    const flush = (): void => {
      if (count > 0) this.sink.cursors(count, buf.toString('utf8', lastStart, lastEnd));
      count = 0;
    };
    for (;;) {
      const nl = buf.indexOf(10, start);
      if (nl < 0) break;
      const kind = buf[start];
      if (kind === CURSOR) {
        // Only the newest cursor of a batch matters; parse just that one.
        count++;
        lastStart = start + 1;
        lastEnd = nl;
      } else if (kind === DONE) {
        flush();
        this.sink.done();
      } else if (kind === FAILED) {
        flush();
        this.sink.failed(JSON.parse(buf.toString('utf8', start + 1, nl)) as Failure);
      } else if (kind === STOPPED) {
        flush();
        this.sink.stopped(buf.toString('utf8', start + 1, nl));
      }
      start = nl + 1;
    }
    flush();
    this.rest = start < buf.length ? Buffer.from(buf.subarray(start)) : null;
  }
}
