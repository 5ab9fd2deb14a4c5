// A parent's fs.WriteStream in a child. A busy file logger (winston's File
// transport, an app's `fs.createWriteStream` log) almost always has a write
// in flight on libuv's threadpool. A forked child's copy of the stream waits
// for that write's completion, which only the parent's threadpool delivers:
// every line the child wrote through the stream was buffered behind it and
// lost when the child exited (measured: 0 of 20 lines from 4 map children),
// with no error (docs/hazards.md).
//
// cowfork notes, for each fs.WriteStream that is busy, the completion of the
// `fs.write` / `fs.writev` it has in flight (a WriteStream calls them through
// its `fs` option, Node's documented contract) and how many chunks wait in its
// buffer. In a child, at its start, the parent's write is completed as the
// parent's threadpool completed it (the parent wrote those bytes), and the
// chunks the parent had buffered are skipped (the parent writes them): the
// child's own lines then go out as usual, appended at the file's shared
// offset, and no line of the parent's is written twice. A stream opened at a
// fixed position (`start`) is left as it was: its writes are positional, so
// the child's would overwrite the parent's. A writer that was waiting for the
// stream's 'drain' at the fork (a pipe, a logger under backpressure) gets it
// in the child and may write what it had buffered for the parent again.
import fs from 'node:fs';
import { ownMethod, processState, replaceValue } from './util';

type Done = (err: NodeJS.ErrnoException | null, bytes: number, ...rest: unknown[]) => void;

const IN_FLIGHT = Symbol('cowfork.writeInFlight');
const QUEUED = Symbol('cowfork.writeQueued');
const SKIP = Symbol('cowfork.writeSkip');
const WATCHED = Symbol('cowfork.writeWatched');

interface Tracked extends fs.WriteStream {
  /** The completion of the write in flight, its byte count, and the process that started it. */
  [IN_FLIGHT]?: { done: Done; bytes: number; pid: number };
  /** Chunks handed to write() in this process and not yet to _write / _writev. */
  [QUEUED]?: number;
  /** In a child: chunks the parent had buffered, still to skip. */
  [SKIP]?: number;
  /** Whether its 'close' already takes it out of the busy set. */
  [WATCHED]?: true;
}

interface StreamState {
  installed: boolean;
  /** Streams with a write in flight or chunks buffered. */
  readonly busy: Set<Tracked>;
  /** The stream whose _write / _writev is calling fs.write / fs.writev now. */
  writing: Tracked | null;
}

const state = processState<StreamState>('cowfork.writeStreams', () => ({ installed: false, busy: new Set(), writing: null }));

function busy(s: Tracked): void {
  state.busy.add(s);
  if (s[WATCHED]) return;
  s[WATCHED] = true;
  // A stream destroyed with chunks still buffered is never settled: let it go when it closes.
  s.once('close', () => state.busy.delete(s));
}

function settle(s: Tracked): void {
  if (s[IN_FLIGHT] === undefined && !s[QUEUED]) state.busy.delete(s);
}

/** Wraps fs[key] so that the completion of a WriteStream's write is noted on the stream. */
function noteCompletion(key: 'write' | 'writev', bytesOf: (args: unknown[]) => number): void {
  const nodeFn = fs[key] as (...args: unknown[]) => unknown;
  replaceValue(fs, key, {
    [key](this: unknown, ...args: unknown[]): unknown {
      const s = state.writing;
      const done = args.at(-1);
      if (s === null || typeof done !== 'function') return Reflect.apply(nodeFn, this, args);
      state.writing = null;
      const entry = { done: done as Done, bytes: bytesOf(args), pid: process.pid };
      s[IN_FLIGHT] = entry;
      busy(s);
      args[args.length - 1] = function (this: unknown, ...result: unknown[]) {
        if (s[IN_FLIGHT] === entry) s[IN_FLIGHT] = undefined;
        settle(s);
        return Reflect.apply(done, this, result);
      };
      return Reflect.apply(nodeFn, this, args);
    },
  }[key]);
}

/** At load: notes what each fs.WriteStream has in flight and buffered. */
export function trackWriteStreams(): void {
  if (state.installed) return;
  const proto = fs.WriteStream.prototype as unknown as Record<string, (...args: unknown[]) => unknown>;
  if (typeof proto._write !== 'function' || typeof proto._writev !== 'function' || typeof proto.write !== 'function') return;
  state.installed = true;
  // fs.write(fd, buffer, offset, length, position, cb) or fs.write(fd, string, ...): the bytes asked for.
  noteCompletion('write', (a) => (typeof a[3] === 'number' ? a[3] : Buffer.byteLength(String(a[1]))));
  noteCompletion('writev', (a) => (a[1] as ArrayBufferView[]).reduce((n, b) => n + b.byteLength, 0));
  const nodeWrite = proto.write;
  // Writable.prototype's: shadowed on WriteStream's prototype as a class method would be.
  ownMethod(proto, 'write', function write(this: Tracked, ...args: unknown[]) {
    this[QUEUED] = (this[QUEUED] ?? 0) + 1;
    busy(this);
    try {
      return Reflect.apply(nodeWrite, this, args);
    } finally {
      settle(this);
    }
  });
  const consume = (s: Tracked, n: number): number => {
    s[QUEUED] = Math.max(0, (s[QUEUED] ?? 0) - n);
    const skip = Math.min(s[SKIP] ?? 0, n);
    if (skip > 0) s[SKIP] = (s[SKIP] ?? 0) - skip;
    return skip;
  };
  const through = (s: Tracked, fn: () => unknown): unknown => {
    state.writing = s;
    try {
      return fn();
    } finally {
      state.writing = null;
      settle(s);
    }
  };
  const nodeWriteOne = proto._write;
  replaceValue(proto, '_write', function _write(this: Tracked, chunk: unknown, encoding: unknown, cb: () => void) {
    // A chunk the parent had buffered: the parent writes it.
    if (consume(this, 1) > 0) return cb();
    return through(this, () => Reflect.apply(nodeWriteOne, this, [chunk, encoding, cb]));
  });
  const nodeWriteMany = proto._writev;
  replaceValue(proto, '_writev', function _writev(this: Tracked, chunks: unknown[], cb: () => void) {
    const rest = chunks.slice(consume(this, chunks.length));
    if (rest.length === 0) return cb();
    return through(this, () => Reflect.apply(nodeWriteMany, this, [rest, cb]));
  });
}

/**
 * In a child (every child, prefork workers included): each stream the parent
 * was writing to finishes the parent's write and skips the parent's buffered
 * chunks, so that the child's own writes go out (see above).
 */
export function releaseParentWriteStreams(): void {
  const streams = [...state.busy];
  state.busy.clear();
  for (const s of streams) {
    // Positional writes (`start`) would land on the parent's bytes: leave such a stream as it was. So is one the
    // parent was ending or destroying: completing its write would run the parent's 'finish' and 'close' here.
    if ((s as { pos?: number }).pos !== undefined || s.writableEnded || s.destroyed) continue;
    // Every chunk buffered now is an ancestor's: the parent's, or (in a grandchild) one the parent still skips.
    s[SKIP] = (s[SKIP] ?? 0) + (s[QUEUED] ?? 0);
    s[QUEUED] = 0;
    const inFlight = s[IN_FLIGHT];
    if (inFlight === undefined || inFlight.pid === process.pid) continue;
    s[IN_FLIGHT] = undefined;
    try {
      // The parent's threadpool wrote these bytes; the stream goes on from there.
      inFlight.done(null, inFlight.bytes);
    } catch {
      // A throwing 'drain' listener of the app's must not stop the child's start.
    }
  }
}
