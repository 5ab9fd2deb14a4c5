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
// positional, and the child's would overwrite the parent's), one still
// opening its file (`pending`: the child has no fd to write to), and one the
// parent was ending or destroying. cowfork notes each WriteStream that writes
// (weakly) to find them.
import fs from 'node:fs';
import { WeakList, ownMethod, processState } from './util';

const NOTED = Symbol('cowfork.writeStreamNoted');

interface StreamState {
  installed: boolean;
  /** Every fs.WriteStream that has written. */
  readonly streams: WeakList<fs.WriteStream>;
}

const state = processState<StreamState>('cowfork.writeStreams', () => ({ installed: false, streams: new WeakList() }));

function note(s: fs.WriteStream & { [NOTED]?: true }): void {
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

/** In the child: `s` writes through a fresh stream on its fd; what the parent had pending stays the parent's. */
function redirect(s: fs.WriteStream): void {
  const own = fs.createWriteStream('', { fd: fdOf(s)!, autoClose: false, emitClose: false });
  for (const key of ['write', 'end', 'cork', 'uncork'] as const) {
    const fn = own[key] as (...args: unknown[]) => unknown;
    ownMethod(s, key, (...args: unknown[]) => {
      const r = Reflect.apply(fn, own, args);
      return r === own ? s : r;
    });
  }
  own.on('drain', () => s.emit('drain'));
  own.on('finish', () => s.emit('finish'));
  own.on('error', (err) => s.emit('error', err));
}

/** In a child (every child, prefork workers included): each stream with data pending at the fork writes anew (see above). */
export function releaseParentWriteStreams(): void {
  // They stay noted, so that a grandchild finds them too.
  for (const s of state.streams.live()) if (redirectable(s)) redirect(s);
}
