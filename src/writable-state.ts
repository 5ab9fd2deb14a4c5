// The one reader of Writable's internal state (`_writableState`) for cowfork's
// child-side repairs of the parent's streams: stdout and stderr (src/stdio.ts)
// and fs.WriteStreams (src/write-streams.ts). Node has no public API for what
// these need: a stream's buffered writes, the callback of its write in
// flight, its default encoding, and whether stream.finished() reads it as
// closed. The fields are the same from Node 15 to 26; the buffer's shape is
// checked on a fresh Writable before the first fork, and where it differs,
// nothing is changed (the caller says so once).
import { Writable } from 'node:stream';

interface BufferedWrite {
  chunk: { length: number } | null;
}

/** The part of `_writableState` that holds a stream's writes not yet handed to the OS. */
export interface WritableBuffer {
  buffered: (BufferedWrite | null)[];
  bufferedIndex: number;
  length: number;
  pendingcb: number;
  objectMode: boolean;
  writing: boolean;
  writecb: unknown;
}

function stateOf(stream: object): Record<string, unknown> | undefined {
  const st = (stream as { _writableState?: unknown })._writableState;
  return st !== null && typeof st === 'object' ? (st as Record<string, unknown>) : undefined;
}

/** `stream`'s buffer, or null where its state does not have the expected shape. */
export function writableBuffer(stream: object): WritableBuffer | null {
  const st = stateOf(stream);
  if (
    st &&
    Array.isArray(st.buffered) &&
    typeof st.bufferedIndex === 'number' &&
    typeof st.length === 'number' &&
    typeof st.pendingcb === 'number'
  ) {
    return st as unknown as WritableBuffer;
  }
  return null;
}

let known: boolean | undefined;

/** Whether this Node's Writable keeps its buffer as cowfork expects (checked once, on a fresh Writable). */
export function writableBufferKnown(): boolean {
  known ??= writableBuffer(new Writable()) !== null;
  return known;
}

/** Whether writableBufferKnown() has run yet. */
export function writableBufferChecked(): boolean {
  return known !== undefined;
}

/** The encoding `stream` gives strings written without one, if its state says. */
export function defaultEncoding(stream: object): BufferEncoding | undefined {
  const encoding = stateOf(stream)?.defaultEncoding;
  return typeof encoding === 'string' ? (encoding as BufferEncoding) : undefined;
}

/** Marks `stream` closed for stream.finished(), which reads `closed` for a 'close' emitted before it was called. */
export function markClosed(stream: object): void {
  const st = stateOf(stream);
  if (st && typeof st.closed === 'boolean') st.closed = true;
}
