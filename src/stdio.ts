// The parent's lines on stdout and stderr, in a child. On a pipe (docker,
// pm2, `| tee`) or a socket, process.stdout writes asynchronously: while one
// write is in flight, later lines wait in the stream's own buffer. A child
// forked then inherits that buffer; once the in-flight write completes there
// (native/loop.c empties it), the stream goes on with the buffered lines, and
// each child wrote the parent's lines again (measured: 3 copies of each with
// two children), with their callbacks, the parent's, run in the child.
//
// So in a child, each of stdout and stderr that the parent was writing to at
// the fork drops what its buffer held: those lines and callbacks stay the
// parent's, and the parent writes them. It also drops the parent's 'drain'
// listeners: the child's copy emitted 'drain' once that write completed
// there, and a parent's writer paused for it (a logger under backpressure, a
// pipe() into stdout) went on writing from the child (measured: the line the
// parent wrote on 'drain' came 3 times). The child's own lines then go out
// after the parent's write, as usual, and its own 'drain' listeners work.
//
// The buffer is Writable's internal state (`_writableState`: `buffered`,
// `bufferedIndex`, `length`, `pendingcb`), the same from Node 15 to 26. Its shape is checked on a fresh Writable before the first fork; where
// it differs, nothing is changed, and the parent says so once.
import { Writable } from 'node:stream';
import { warnFromParent } from './warn';

interface BufferedWrite {
  chunk: { length: number } | null;
}

interface WritableInternals {
  buffered: (BufferedWrite | null)[];
  bufferedIndex: number;
  length: number;
  pendingcb: number;
  objectMode: boolean;
}

function internals(stream: object): WritableInternals | null {
  const st = (stream as { _writableState?: Partial<WritableInternals> })._writableState;
  if (
    st &&
    Array.isArray(st.buffered) &&
    typeof st.bufferedIndex === 'number' &&
    typeof st.length === 'number' &&
    typeof st.pendingcb === 'number'
  ) {
    return st as WritableInternals;
  }
  return null;
}

let known: boolean | undefined;

/** Whether this Node's Writable keeps its buffer as cowfork expects (checked once, on a fresh Writable). */
function stdioKnown(): boolean {
  known ??= internals(new Writable()) !== null;
  return known;
}

/** Before a fork: says once when the parent's buffered stdout lines could not be kept out of children. */
export function warnIfStdioUnknown(): void {
  if (known !== undefined) return;
  if (stdioKnown()) return;
  warnFromParent(
    `cowfork: Node ${process.version}'s writable streams do not keep their buffer as cowfork expects, so lines the ` +
      'parent had buffered on a busy stdout or stderr (a pipe read slowly) at a fork may be written again by the ' +
      'child. Log through a synchronous destination in the parent while it forks (see docs/hazards.md).',
    'COWFORK_STDIO_UNKNOWN',
  );
}

/**
 * In a child: stdout and stderr among `fds` (those the parent had a write in flight on at the fork) drop the
 * parent's buffered lines and its 'drain' listeners (see above). Returns how many buffered writes it dropped.
 */
export function releaseParentStdio(fds: readonly number[]): number {
  if (fds.length === 0 || !stdioKnown()) return 0;
  let dropped = 0;
  for (const fd of fds) {
    const stream = fd === 1 ? process.stdout : process.stderr;
    // The parent's: a writer paused for 'drain', a pipe() into stdout. The child's own come later.
    stream.removeAllListeners('drain');
    const st = internals(stream);
    if (st === null) continue;
    const entries = st.buffered.splice(st.bufferedIndex);
    for (const e of entries) {
      st.length -= st.objectMode ? 1 : (e?.chunk?.length ?? 0);
      st.pendingcb--;
    }
    dropped += entries.length;
  }
  return dropped;
}
