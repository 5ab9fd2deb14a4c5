// Authenticated records for results that travel from a child to its parent
// through scratch files. Each record is
//
//   magic u32 | kind u32 | count u64 (two u32) | payload length u32 | payload | HMAC-SHA256
//
// and the MAC covers the header and payload under a key chosen per call.
// Children inherit the key copy-on-write, so nothing else can forge a record.
import crypto from 'node:crypto';
import v8 from 'node:v8';
import { native } from './native';

const MAGIC = 0x43465231; // "CFR1"
const HEADER = 20;
const MAC = 32;

export const enum Kind {
  Batch = 1,
}

export interface RecordOut {
  kind: Kind;
  /** For a batch, how many outcomes it holds. */
  count: number;
  payload: Buffer;
}

export function newKey(): Buffer {
  return crypto.randomBytes(32);
}

export function encode(key: Buffer, kind: Kind, count: number, payload: Uint8Array): Buffer {
  const buf = Buffer.allocUnsafe(HEADER + payload.length + MAC);
  buf.writeUInt32LE(MAGIC, 0);
  buf.writeUInt32LE(kind, 4);
  buf.writeUInt32LE(count % 0x100000000, 8);
  buf.writeUInt32LE(Math.floor(count / 0x100000000), 12);
  buf.writeUInt32LE(payload.length, 16);
  buf.set(payload, HEADER);
  native.hmac(key, buf, 0, HEADER + payload.length).copy(buf, HEADER + payload.length);
  return buf;
}

export class FrameError extends Error {}

/**
 * Decodes every record in `buf`. A record that fails authentication throws.
 * A record cut short at the end throws too, unless `allowTornTail` (a child
 * that died mid-write), in which case decoding stops there.
 */
export function decodeAll(key: Buffer, buf: Buffer, allowTornTail: boolean): RecordOut[] {
  const out: RecordOut[] = [];
  let off = 0;
  while (off < buf.length) {
    if (buf.length - off < HEADER + MAC) {
      if (allowTornTail) break;
      throw new FrameError(`truncated record at byte ${off}`);
    }
    if (buf.readUInt32LE(off) !== MAGIC) throw new FrameError(`bad record header at byte ${off}`);
    const len = buf.readUInt32LE(off + 16);
    const end = off + HEADER + len;
    if (end + MAC > buf.length) {
      if (allowTornTail) break;
      throw new FrameError(`truncated record at byte ${off}`);
    }
    const mac = native.hmac(key, buf, off, HEADER + len);
    if (!native.memeq(mac, buf.subarray(end, end + MAC))) {
      throw new FrameError(`record at byte ${off} failed HMAC authentication`);
    }
    out.push({
      kind: buf.readUInt32LE(off + 4) as Kind,
      count: buf.readUInt32LE(off + 8) + buf.readUInt32LE(off + 12) * 0x100000000,
      payload: buf.subarray(off + HEADER, end),
    });
    off = end + MAC;
  }
  return out;
}

// ---------------------------------------------------------------------------
// Errors cross the boundary as plain objects, so `code` and other own
// properties survive and the parent gets the child's stack.

export interface SerializedError {
  name: string;
  message: string;
  stack?: string;
  props: Record<string, unknown>;
}

export function toSerializedError(err: unknown): SerializedError {
  if (!(err instanceof Error)) {
    return { name: 'Error', message: `non-Error thrown: ${safeString(err)}`, props: {} };
  }
  const props: Record<string, unknown> = {};
  for (const k of Object.keys(err)) {
    const v = (err as unknown as Record<string, unknown>)[k];
    try {
      v8.serialize(v);
      props[k] = v;
    } catch {
      props[k] = String(v);
    }
  }
  return { name: err.name, message: err.message, stack: err.stack, props };
}

export function fromSerializedError(e: SerializedError): Error {
  const err = new Error(e.message);
  err.name = e.name;
  if (e.stack !== undefined) err.stack = e.stack;
  Object.assign(err, e.props);
  return err;
}

function safeString(v: unknown): string {
  try {
    return typeof v === 'string' ? v : JSON.stringify(v) ?? String(v);
  } catch {
    return String(v);
  }
}

// ---------------------------------------------------------------------------
// Batches: a child collects outcomes and writes them as one authenticated
// record, so one v8.serialize, one HMAC and one write(2) serve many items.

export const enum Outcome {
  Value = 0,
  Error = 1,
  Done = 2,
}

export interface Outcomes {
  indexes: number[];
  kinds: Outcome[];
  values: unknown[];
}

export class BatchWriter {
  private indexes: number[] = [];
  private kinds: Outcome[] = [];
  private values: unknown[] = [];
  private started = 0;

  constructor(
    private readonly fd: number,
    private readonly key: Buffer,
    private readonly write: (fd: number, buf: Buffer) => void,
  ) {}

  get size(): number {
    return this.indexes.length;
  }

  /** Milliseconds since the first outcome of the pending batch. */
  age(now: number): number {
    return this.indexes.length === 0 ? 0 : now - this.started;
  }

  add(index: number, kind: Outcome, value: unknown, now: number): void {
    if (this.indexes.length === 0) this.started = now;
    this.indexes.push(index);
    this.kinds.push(kind);
    this.values.push(kind === Outcome.Error ? toSerializedError(value) : value);
  }

  /**
   * Writes the pending batch. A value v8.serialize rejects fails its own item
   * with a clear message; returns true if any item in the batch failed.
   */
  flush(): boolean {
    if (this.indexes.length === 0) return false;
    let payload: Buffer;
    try {
      payload = v8.serialize([this.indexes, this.kinds, this.values]);
    } catch {
      this.replaceUnserializable();
      payload = v8.serialize([this.indexes, this.kinds, this.values]);
    }
    const failed = this.kinds.includes(Outcome.Error);
    this.write(this.fd, encode(this.key, Kind.Batch, this.indexes.length, payload));
    this.indexes = [];
    this.kinds = [];
    this.values = [];
    return failed;
  }

  private replaceUnserializable(): void {
    for (let i = 0; i < this.values.length; i++) {
      if (this.kinds[i] !== Outcome.Value) continue;
      try {
        v8.serialize(this.values[i]);
      } catch (err) {
        this.kinds[i] = Outcome.Error;
        this.values[i] = toSerializedError(
          new TypeError(
            `the result of item ${this.indexes[i]} cannot be serialized (${(err as Error).message}); ` +
              'results must be values v8.serialize supports: no functions, symbols or class instances with private state',
          ),
        );
      }
    }
  }
}

/** Decodes an authenticated batch payload. */
export function decodeBatch(payload: Buffer): Outcomes {
  const [indexes, kinds, values] = v8.deserialize(payload) as [number[], Outcome[], unknown[]];
  return { indexes, kinds, values };
}
