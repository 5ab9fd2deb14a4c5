// Whether cf_fork could repair Node's V8 worker pool in its children, and a
// one-time warning where it could not (docs/hazards.md §2).
import os from 'node:os';
import { native } from './native';
import { warnFromParent } from './warn';

export const POOL_REPAIR_WARNING = 'COWFORK_POOL_REPAIR';

/**
 * The warning for a census status from native.forkPoolLocated(), or null
 * when there is nothing to say: 1 (found) or 0 (not yet: the pool's threads
 * were busy, the next fork looks again).
 */
export function poolRepairMessage(status: number): string | null {
  if (status >= 0) return null;
  const why =
    status === -os.constants.errno.ENOSYS
      ? `this platform (${process.platform}) has no /proc/self/task/*/syscall to find them with`
      : `no match was found on ${process.platform} with Node ${process.version}`;
  return (
    "cowfork could not find Node's V8 worker pool threads to repair in forked children: " +
    `${why}. A child that runs full garbage collections may then leave tasks outstanding in a pool ` +
    'that no longer exists, so a worker_thread started in that child can hang when it exits, and on ' +
    'glibc 2.25-2.40 the child itself can hang in a collection. Forking still works otherwise. To avoid ' +
    'it, start Node with --v8-pool-size=1 (one parked pool thread cannot trigger the glibc hang; ' +
    '`cowfork run` and `cowfork/register` add it), and do not start worker_threads in children. ' +
    'Please report your Node version, OS and libc to cowfork.'
  );
}

let warned = false;

/** Called in the parent after each fork: warns once if the repair could not apply. */
export function warnIfPoolUnrepaired(): void {
  if (warned) return;
  const message = poolRepairMessage(native.forkPoolLocated());
  if (message === null) return;
  warned = true;
  warnFromParent(message, POOL_REPAIR_WARNING);
}
