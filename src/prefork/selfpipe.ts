// The master's self-pipe. Whatever happens to the master (a worker exits, a
// signal arrives, a deadline passes) writes one byte here; the loop drains it
// and does the work. Writing a byte is safe from anywhere, including code that
// runs while the master is in the middle of a turn.
import fs from 'node:fs';
import { HUP, READ, type WatchHandle, native } from '../native';

export class SelfPipe {
  /** The read end: a worker must not close it (the master's inherited watcher polls it). */
  readonly readFd: number;
  /** The write end: workers keep it, to wake the master when they become ready. */
  readonly writeFd: number;
  private readonly watch: WatchHandle;
  private closed = false;

  /** `onWake` runs from the event loop each time the pipe turns readable. */
  constructor(onWake: () => void) {
    [this.readFd, this.writeFd] = native.pipe(true);
    this.watch = native.watch(this.readFd, READ | HUP, onWake);
  }

  wake(): void {
    if (this.closed) return;
    try {
      fs.writeSync(this.writeFd, Buffer.of(1));
    } catch {
      // EAGAIN: the pipe is full, so a wakeup is already pending.
    }
  }

  drain(): void {
    const buf = Buffer.allocUnsafe(64);
    for (;;) {
      try {
        if (fs.readSync(this.readFd, buf, 0, buf.length, null) < buf.length) return;
      } catch {
        return; // EAGAIN: empty.
      }
    }
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    native.unwatch(this.watch);
    native.close(this.readFd);
    native.close(this.writeFd);
  }
}
