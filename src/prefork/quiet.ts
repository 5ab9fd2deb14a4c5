// The master forks once its own requests are done. A master that logs
// through an asynchronous writer (pino's default destination, sonic-boom)
// has a write in flight on libuv's threadpool just after it logs ("app
// loaded", "worker 2 crashed"). A worker forked then inherits the writer
// waiting for that write's completion, which only the master's threadpool
// delivers: every line the worker logged through it stayed buffered and was
// lost, all its life long (measured: 0 of 8 request lines from 2 workers of an
// app that logged one line at load). Node's fs.WriteStream is released in
// the child (src/write-streams.ts); a writer that calls fs.write itself can
// only be helped before the fork. So a fork waits until the master has no
// request in flight, for up to QUIET_MS; a master whose requests never finish
// (a blocked lookup) forks after that. Not covered: a line logged in the
// beforeFork hook (in flight at that very fork), and a master that logs more
// often than every QUIET_MS (docs/prefork.md, "Things to know").
import { ownRequests } from '../child-exit';

/** The longest a fork waits for the master's requests in flight. */
export const QUIET_MS = 100;

export class QuietGate {
  /** When the first fork held back in the current episode was asked for. */
  private since: number | null = null;
  /** This turn's answer, once asked. */
  private turnOpen: boolean | null = null;

  /** At the start of each turn of the master's loop. */
  newTurn(): void {
    // No fork asked in the last turn (the worker is no longer wanted, the master is stopping): the wait is over.
    if (this.turnOpen === null) this.since = null;
    this.turnOpen = null;
  }

  /** Whether the master may fork in this turn (`t`: now, in ms). The same answer for every fork of the turn. */
  open(t: number): boolean {
    if (this.turnOpen === null) {
      if (ownRequests() <= 0 || (this.since !== null && t - this.since >= QUIET_MS)) {
        this.since = null;
        this.turnOpen = true;
      } else {
        this.since ??= t;
        this.turnOpen = false;
      }
    }
    return this.turnOpen;
  }

  /** Whether a fork of this turn was held back: the master's loop turns again in a millisecond. */
  get waiting(): boolean {
    return this.turnOpen === false;
  }
}
