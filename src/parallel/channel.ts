// Pipes between a parent and a feed-mode child. Both directions carry the
// authenticated records of frame.ts under the call's key: tasks (indexes,
// and the items a child does not already hold copy-on-write) go down,
// batches of outcomes come up. Records are cut out of the byte stream by
// their length field, then authenticated as a whole by decodeAll.
import fs from 'node:fs';
import { type RecordOut, decodeAll } from '../frame';
import { READ, WRITE, type WatchHandle, native } from '../native';
import { readSome } from '../util';

const HEADER = 20;
const MAC = 32;

/** Reassembles records from reads of a pipe. */
export class FrameReader {
  private rest: Buffer | null = null;
  private readonly chunk = Buffer.allocUnsafe(64 * 1024);

  constructor(
    private readonly fd: number,
    private readonly key: Buffer,
  ) {}

  /**
   * Reads what the (non-blocking) pipe holds; calls `take` with the complete
   * records. Returns false at end of file. Throws a FrameError for a record
   * that fails authentication.
   */
  drain(take: (records: RecordOut[]) => void): boolean {
    for (;;) {
      const n = readSome(this.fd, this.chunk);
      if (n === null) return true;
      if (n === 0) return false;
      const records = this.feed(this.chunk.subarray(0, n));
      if (records.length > 0) take(records);
    }
  }

  /**
   * Blocks until at least one complete record has arrived; null at end of
   * file. The records' payloads share the read buffer: use them before the
   * next read.
   */
  readBlocking(): RecordOut[] | null {
    for (;;) {
      const n = readSome(this.fd, this.chunk);
      if (n === null) {
        waitFor(this.fd, READ);
        continue;
      }
      if (n === 0) return null;
      const records = this.feed(this.chunk.subarray(0, n));
      if (records.length > 0) return records;
    }
  }

  private feed(bytes: Buffer): RecordOut[] {
    const buf = this.rest === null ? bytes : Buffer.concat([this.rest, bytes]);
    let end = 0;
    while (buf.length - end >= HEADER) {
      const next = end + HEADER + buf.readUInt32LE(end + 16) + MAC;
      if (next > buf.length) break;
      end = next;
    }
    this.rest = end < buf.length ? Buffer.from(buf.subarray(end)) : null;
    return end === 0 ? [] : decodeAll(this.key, buf.subarray(0, end), false);
  }
}

const pollFds = new Int32Array(1);
const pollEvents = new Int32Array(1);
const pollRevents = new Int32Array(1);

function waitFor(fd: number, mode: number): void {
  pollFds[0] = fd;
  pollEvents[0] = mode;
  native.poll(pollFds, pollEvents, pollRevents, -1);
}

/** The child side: writes a whole buffer to a non-blocking pipe, waiting while it is full. */
export function writeBlocking(fd: number, buf: Buffer): void {
  let off = 0;
  while (off < buf.length) {
    try {
      off += fs.writeSync(fd, buf, off, buf.length - off);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EAGAIN') throw err;
      waitFor(fd, WRITE);
    }
  }
}

/** The parent side: writes to a non-blocking pipe without ever blocking; what does not fit waits for the pipe to drain. */
export class PipeWriter {
  private queue: Buffer[] = [];
  private watch: WatchHandle | undefined;
  private closing = false;
  private fdOpen = true;

  constructor(private readonly fd: number) {}

  write(buf: Buffer): void {
    if (this.closing) return;
    if (this.queue.length > 0) {
      this.queue.push(buf);
      return;
    }
    const rest = this.tryWrite(buf);
    if (rest !== null) {
      this.queue.push(rest);
      this.watch = native.watch(this.fd, WRITE, () => this.onWritable());
    }
  }

  /** Closes the pipe once what was written has gone; the child then reads end of file. */
  close(): void {
    this.closing = true;
    if (this.queue.length === 0) this.closeFd();
  }

  /** Closes at once, dropping what was not written (the child is gone or being killed). */
  abandon(): void {
    this.closing = true;
    this.queue = [];
    this.closeFd();
  }

  /** In a forked child: closes the inherited copy of the fd, leaving the parent's watcher alone. */
  closeInChild(): void {
    if (this.fdOpen) native.close(this.fd);
    this.fdOpen = false;
  }

  private closeFd(): void {
    if (this.watch !== undefined) native.unwatch(this.watch);
    this.watch = undefined;
    if (!this.fdOpen) return;
    this.fdOpen = false;
    native.close(this.fd);
  }

  private onWritable(): void {
    while (this.queue.length > 0) {
      const rest = this.tryWrite(this.queue[0]);
      if (rest !== null) {
        this.queue[0] = rest;
        return;
      }
      this.queue.shift();
    }
    native.unwatch(this.watch!);
    this.watch = undefined;
    if (this.closing) this.closeFd();
  }

  /** Writes what fits; returns the unwritten rest, or null. EPIPE (the child died) drops it. */
  private tryWrite(buf: Buffer): Buffer | null {
    let off = 0;
    while (off < buf.length) {
      try {
        off += fs.writeSync(this.fd, buf, off, buf.length - off);
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code === 'EAGAIN') return buf.subarray(off);
        if (code === 'EPIPE') return null;
        throw err;
      }
    }
    return null;
  }
}
