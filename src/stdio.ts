// The parent's lines on stdout and stderr, in a child. On a pipe (docker,
// pm2, `| tee`) or a socket, process.stdout writes asynchronously: while one
// write is in flight, later lines wait in the stream's own buffer. A child
// forked then inherits that write and that buffer. native/loop.c makes the
// write finish in the child without sending anything; the stream then went on
// with the buffered lines, and each child wrote the parent's lines again
// (measured: 3 copies of each with two children). The write's callback, the
// parent's, ran in the child too: a parent writing each record from the
// previous one's callback wrote all the rest again from every child (598
// records for 200).
//
// So in a child, each stream on stdout or stderr that the parent was writing
// to at the fork (found from the parent's requests, src/child-exit.ts; a
// logger's own socket on fd 1 as well as process.stdout) drops what its
// buffer held and the callback of the write in flight: those lines and
// callbacks stay the parent's, and the parent writes them. It also drops the
// parent's 'drain' listeners waiting at the fork: the child's copy emitted
// 'drain' once that write completed there, and a parent's writer paused for
// it (a logger under backpressure, a pipe() into stdout) went on writing from
// the child. The
// child's own lines go out from its first turn of the loop; a parent's line
// longer than the pipe's atomic size (PIPE_BUF, 4 KiB on Linux) that was
// still being written can have a child's line inside it, as with any two
// processes writing to one pipe. Shorter lines are written whole.
//
// The buffer is Writable's internal state, read through src/writable-state.ts;
// where its shape is not the expected one, nothing is changed, and the parent
// says so once.
import type { Writable } from 'node:stream';
import { noop } from './util';
import { warnFromParent } from './warn';
import { dropParentDrainWaiters, writableBuffer, writableBufferKnown } from './writable-state';

let checked = false;

/** Before a fork: says once when the parent's buffered stdout lines could not be kept out of children. */
export function warnIfStdioUnknown(): void {
  if (checked) return;
  checked = true;
  if (writableBufferKnown()) return;
  warnFromParent(
    `cowfork: Node ${process.version}'s writable streams do not keep their buffer as cowfork expects, so lines the ` +
      'parent had buffered on a busy stdout or stderr (a pipe read slowly) at a fork may be written again by the ' +
      'child. Log through a synchronous destination in the parent while it forks (see docs/hazards.md).',
    'COWFORK_STDIO_UNKNOWN',
  );
}

/**
 * In a child: each of `streams` (those on stdout and stderr the parent had a write in flight on at the fork) drops
 * the parent's buffered lines, the callback of its write in flight and the 'drain' listeners waiting then. Returns
 * how many buffered writes it dropped.
 */
export function releaseParentStdio(streams: readonly object[]): number {
  if (streams.length === 0 || !writableBufferKnown()) return 0;
  let dropped = 0;
  for (const stream of streams) {
    dropParentDrainWaiters(stream as Writable);
    const st = writableBuffer(stream);
    if (st === null) continue;
    if (st.writing && typeof st.writecb === 'function') st.writecb = noop;
    const entries = st.buffered.splice(st.bufferedIndex);
    for (const e of entries) {
      st.length -= st.objectMode ? 1 : (e?.chunk?.length ?? 0);
      st.pendingcb--;
    }
    dropped += entries.length;
  }
  return dropped;
}
