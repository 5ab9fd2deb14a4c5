// Cleanup when the parent is interrupted. While a call owns children or
// scratch directories, SIGINT and SIGTERM kill and reap its children and
// remove its directories; then, if nobody else listens, the signal is raised
// again so the process ends the way it would have.
import { isChild } from './fork';

const cleanups = new Set<() => void>();
const CLEANUP_SIGNALS: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];

function runCleanups(): void {
  for (const fn of [...cleanups]) {
    try {
      fn();
    } catch {
      // Keep cleaning.
    }
  }
  cleanups.clear();
  uninstall();
}

function onParentSignal(sig: NodeJS.Signals): void {
  runCleanups();
  if (process.listenerCount(sig) === 0) process.kill(process.pid, sig);
}

// process.exit() in the middle of a call: same cleanup, nothing to re-raise.
function onParentExit(): void {
  if (!isChild()) runCleanups();
}

function install(): void {
  for (const sig of CLEANUP_SIGNALS) process.on(sig, onParentSignal);
  process.on('exit', onParentExit);
}

function uninstall(): void {
  for (const sig of CLEANUP_SIGNALS) process.removeListener(sig, onParentSignal);
  process.removeListener('exit', onParentExit);
}

/** Registers a synchronous cleanup to run if the parent is interrupted. Returns the unregister function. */
export function onInterrupt(fn: () => void): () => void {
  if (cleanups.size === 0) install();
  cleanups.add(fn);
  return () => {
    if (cleanups.delete(fn) && cleanups.size === 0) uninstall();
  };
}
