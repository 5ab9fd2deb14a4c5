// cowfork's child-side repairs of the parent's writable streams, stdout and
// stderr (src/stdio.ts) and fs.WriteStreams (src/write-streams.ts): the 'drain'
// listeners waiting at the fork, and the one reader of Writable's internal
// state (`_writableState`). Node has no public API for what these need: a
// stream's buffered writes, the callback of its write in flight, its default
// encoding, and whether stream.finished() reads it as closed. The fields are the same from Node 15 to 26; the buffer's shape is
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

/**
 * In a child: drops the 'drain' listeners of a parent's stream that was waiting for 'drain' at the fork. They are
 * the parent's writers (a writer paused for 'drain', a pipe() into the stream), which would go on from the child.
 * A stream not waiting keeps them: a pipe() keeps its 'drain' listener for good once it has paused, and the child's
 * own pipe through the stream would never resume without it.
 */
export function dropParentDrainWaiters(stream: Writable): void {
  if (stream.writableNeedDrain === true) stream.removeAllListeners('drain');
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
