// A parent's fs.WriteStream in a child. A busy file logger (winston's File
// transport, an app's `fs.createWriteStream` log) almost always has a write
// in flight on libuv's threadpool. A forked child's copy of the stream waits
// for that write's completion, which only the parent's threadpool delivers:
// every line the child wrote through the stream was buffered behind it and
// lost when the child exited (measured: 0 of 20 lines from 4 map children),
// with no error (docs/hazards.md).
//
// What the parent had in flight or buffered stays the parent's: it is never
// completed in the child, so no callback, 'drain' or 'finish' of the parent's
// runs there, and no line of the parent's is written twice. Instead, in a
// child, each stream that had data pending at the fork writes through a fresh
// fs.WriteStream on the same file descriptor: the stream's `write`, `end`,
// `cork` and `uncork` go to it, and its 'drain', 'finish' and 'error' are
// emitted on the stream. The child's lines are appended at the file's offset,
// which parent and child share. A writer that was waiting for 'drain' at the
// fork (a pipe, a logger under backpressure) gets the fresh stream's first
// 'drain', and may then write what it had buffered for the parent. Left as
// they were: a stream opened at a fixed position (`start`: its writes are
// positional, and the child's would overwrite the parent's), and one the
// parent was ending or destroying.
//
// A stream still opening its file at the fork (`fs.createWriteStream(path)`
// just before a map()) never opens in a child: the open runs on the parent's
// threadpool. Every line the child wrote stayed buffered and was lost, with no
// error (0 of 4). Opened for appending (flags 'a', a log file), the child
// opens the file again itself on its first write, and its lines are appended,
// as the parent's are. Opened any other way ('w' truncates, and the parent
// writes at its own offset, over whatever the child appended), the child's
// write() and end() throw an error that says why and what to do.
//
// cowfork notes (weakly) each WriteStream as it starts opening its file or
// first writes, to find them.
import fs from 'node:fs';
import { WeakList, ownMethod, processState } from './util';
import { defaultEncoding, dropParentDrainWaiters, markClosed } from './writable-state';

const NOTED = Symbol('cowfork.writeStreamNoted');
/** The pid of the process that started opening the stream's file. */
const OPENING_IN = Symbol('cowfork.writeStreamOpeningIn');

type NotedStream = fs.WriteStream & { [NOTED]?: true; [OPENING_IN]?: number };

interface StreamState {
  installed: boolean;
  /** Every fs.WriteStream that has written. */
  readonly streams: WeakList<fs.WriteStream>;
}

const state = processState<StreamState>('cowfork.writeStreams', () => ({ installed: false, streams: new WeakList() }));

function note(s: NotedStream): void {
  if (s[NOTED]) return;
  s[NOTED] = true;
  state.streams.add(s);
}

/** At load: notes each fs.WriteStream as it first writes. */
export function trackWriteStreams(): void {
  if (state.installed) return;
  const proto = fs.WriteStream.prototype as unknown as Record<string, (...args: unknown[]) => unknown>;
  if (typeof proto.write !== 'function') return;
  state.installed = true;
  const nodeWrite = proto.write;
  // Writable.prototype's: shadowed on WriteStream's prototype as a class method would be.
  ownMethod(proto, 'write', function write(this: fs.WriteStream, ...args: unknown[]) {
    note(this);
    return Reflect.apply(nodeWrite, this, args);
  });
  // Node opens the file from _construct (Node 15 to 26; not from `open`, whose patching Node treats as legacy).
  const nodeConstruct = proto._construct;
  if (typeof nodeConstruct !== 'function') return;
  ownMethod(proto, '_construct', function _construct(this: NotedStream, ...args: unknown[]) {
    this[OPENING_IN] = process.pid;
    note(this);
    return Reflect.apply(nodeConstruct, this, args);
  });
}

/** The fd a WriteStream writes to, once opened (Node sets it; the typings leave it out). */
function fdOf(s: fs.WriteStream): number | null {
  const fd = (s as { fd?: unknown }).fd;
  return typeof fd === 'number' ? fd : null;
}

/** Whether a child can write through its own stream on `s`'s fd (see above). */
function redirectable(s: fs.WriteStream): boolean {
  return (
    s.writableLength > 0 &&
    !s.pending &&
    !s.writableEnded &&
    !s.destroyed &&
    fdOf(s) !== null &&
    (s as { pos?: number }).pos === undefined
  );
}

/** Whether `s` was still opening its file in another process (the parent) at the fork (see above). */
function openingElsewhere(s: NotedStream): boolean {
  return (
    s.pending &&
    !s.writableEnded &&
    !s.destroyed &&
    s[OPENING_IN] !== undefined &&
    s[OPENING_IN] !== process.pid
  );
}

/** The flags a child opens the file again with: appending, never exclusive, never truncating; or null. */
function appendFlags(flags: unknown): string | number | null {
  const { O_APPEND, O_EXCL, O_TRUNC } = fs.constants;
  // Exclusive ('ax'): the child's open would create the file, and the parent's own open would then fail (EEXIST).
  if (typeof flags === 'string') return flags.includes('a') && !flags.includes('x') ? flags : null;
  if (typeof flags === 'number') return flags & O_APPEND && !(flags & (O_EXCL | O_TRUNC)) ? flags : null;
  return null;
}

/** The options of `s` that the child's stream on the same file keeps: how it encodes strings, its buffer, flush. */
function sameOptions(s: fs.WriteStream): { encoding?: BufferEncoding; highWaterMark: number; flush?: boolean } {
  const encoding = defaultEncoding(s);
  const flush = (s as { flush?: unknown }).flush;
  return {
    ...(encoding !== undefined ? { encoding } : {}),
    highWaterMark: s.writableHighWaterMark,
    ...(typeof flush === 'boolean' ? { flush } : {}),
  };
}

/**
 * In the child, once the child's stream on `s`'s file has finished: `s` says it is closed, as it would have after
 * its own end(). stream.finished() reads `_writableState.closed` (Node 15 to 26) for a 'close' emitted before it
 * was called; where that is missing, only the event is emitted.
 */
function closeView(s: fs.WriteStream): void {
  markClosed(s);
  s.emit('close');
}

/**
 * In the child: `s`'s write, end, cork and uncork go to the stream `make()` returns, made on the first of them;
 * its 'drain', 'finish' and 'error' are emitted on `s`, and 'close' after 'finish'; `s`'s writable state reads
 * the child's stream. What the parent had pending stays the parent's, and so do the 'drain' listeners waiting at the
 * fork: a writer the parent had paused for 'drain' (a pipe() into the stream) would write from the child what it
 * had buffered for the parent.
 */
function redirect(s: fs.WriteStream, make: () => fs.WriteStream): void {
  let own: fs.WriteStream | null = null;
  dropParentDrainWaiters(s);
  const target = (): fs.WriteStream => {
    if (own !== null) return own;
    own = make();
    ownStreams.add(own);
    own.on('drain', () => s.emit('drain'));
    own.on('finish', () => {
      s.emit('finish');
      process.nextTick(() => closeView(s));
    });
    own.on('error', (err) => s.emit('error', err));
    return own;
  };
  // A pipe() reads writableNeedDrain: the parent's, frozen at the fork, paused it for a 'drain' that never came.
  const view: Record<string, () => unknown> = {
    writableNeedDrain: () => own?.writableNeedDrain ?? false,
    writableLength: () => own?.writableLength ?? 0,
    writableEnded: () => own?.writableEnded ?? false,
    writableFinished: () => own?.writableFinished ?? false,
    writableCorked: () => own?.writableCorked ?? 0,
  };
  for (const [key, get] of Object.entries(view)) Object.defineProperty(s, key, { get, configurable: true });
  for (const key of ['write', 'end', 'cork', 'uncork'] as const) {
    ownMethod(s, key, (...args: unknown[]) => {
      const to = target();
      const r = Reflect.apply(to[key] as (...a: unknown[]) => unknown, to, args);
      return r === to ? s : r;
    });
  }
}

/** In the child: write() and end() on `s` throw `err` (see above). */
function refuse(s: fs.WriteStream, err: Error): void {
  for (const key of ['write', 'end'] as const) {
    ownMethod(s, key, () => {
      throw err;
    });
  }
}

function stillOpeningError(s: fs.WriteStream): Error {
  return new Error(
    `cowfork: this fs.WriteStream (${String(s.path)}, flags '${String((s as { flags?: unknown }).flags)}') was still ` +
      "opening its file when the process forked; the open completes only in the parent, and this process cannot " +
      "open the file again safely (a truncating open would erase the parent's lines, and the parent writes over " +
      "the child's at its own offset; an exclusive one would make the parent's fail). Wait for the stream to open before forking " +
      "(`await once(stream, 'ready')`), open it for appending (flags: 'a', not exclusive), or open it in the child.",
  );
}

/** The streams this child writes through instead of the parent's (see above). */
const ownStreams = new Set<fs.WriteStream>();

/**
 * In a child: how many of its own streams hold lines not yet handed to the threadpool. A stream starts writing two
 * ticks after it is made, and a child that wrote a line and returned at once left before that.
 */
export function bufferedOwnStreams(): number {
  let n = 0;
  for (const own of ownStreams) if (own.writableLength > 0 && !own.destroyed) n++;
  return n;
}

/** In a child (every child, prefork workers included): each stream with data pending at the fork writes anew (see above). */
export function releaseParentWriteStreams(): void {
  ownStreams.clear();
  // They stay noted, so that a grandchild finds them too.
  for (const s of state.streams.live()) {
    if (redirectable(s)) {
      const fd = fdOf(s)!;
      redirect(s, () => fs.createWriteStream('', { ...sameOptions(s), fd, autoClose: false, emitClose: false }));
    } else if (openingElsewhere(s)) {
      const flags = appendFlags((s as { flags?: unknown }).flags);
      const mode = (s as { mode?: unknown }).mode;
      const file = s.path;
      if (flags !== null && (typeof file === 'string' || Buffer.isBuffer(file))) {
        const options = { flags: flags as string, mode: typeof mode === 'number' ? mode : undefined, emitClose: false };
        redirect(s, () => fs.createWriteStream(file, { ...sameOptions(s), ...options }));
      } else {
        refuse(s, stillOpeningError(s));
      }
    }
  }
}
