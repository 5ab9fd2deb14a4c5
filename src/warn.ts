// Warnings the parent gives about a fork it just made. process.emitWarning
// defers to a tick, and a tick queued in the parent runs in every child that
// is forked later in the same macrotask (prefork forks several at once). An
// immediate runs a macrotask later; children inherit it too, so it checks
// that it still runs in the process that queued it.
export function warnFromParent(message: string, code: string): void {
  const owner = process.pid;
  setImmediate(() => {
    if (process.pid === owner) process.emitWarning(message, { code });
  });
}
