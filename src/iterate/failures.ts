// The IterateError of an instance that failed: from the failure record it
// wrote (channel.ts), or from how its process ended when it wrote none.
import { IterateError } from '../errors';
import { type ChildExit, describeExit } from '../fork';
import type { Failure } from './channel';

function json(v: unknown): string {
  try {
    return JSON.stringify(v) ?? String(v);
  } catch {
    return String(v);
  }
}

/** The instance's own error, rebuilt in the parent with its name, stack and code. */
function reviveError(f: Failure): Error {
  const err = new Error(f.message);
  err.name = f.name;
  if (f.stack) err.stack = f.stack;
  if (f.code !== undefined) (err as NodeJS.ErrnoException).code = f.code as string;
  return err;
}

/** An instance that reported a failure in `build`, `each` or its iterator. */
export function failureError(instance: number, instances: number, f: Failure, exit: ChildExit): IterateError {
  const who = `iterate instance ${instance} of ${instances}`;
  const message =
    f.stage === 'each'
      ? `${who} failed on item ${f.item} (cursor ${json(f.itemCursor)}): ${f.message}`
      : `${who} failed in ${f.stage}${f.item === undefined ? '' : ` after item ${f.item}`}: ${f.message}`;
  return new IterateError(message, instance, f.item, f.itemCursor, exit.exitCode, exit.signal, { cause: reviveError(f) });
}

/** An instance that ended before finishing its partition without reporting why (killed, crashed, exited). */
export function crashError(instance: number, instances: number, exit: ChildExit, processed: number, cursor: unknown): IterateError {
  return new IterateError(
    `iterate instance ${instance} of ${instances} (pid ${exit.pid}) ${describeExit(exit)} before finishing its partition, ` +
      `after ${processed} items in this run; its cursor stays at ${json(cursor)}`,
    instance,
    undefined,
    undefined,
    exit.exitCode,
    exit.signal,
  );
}
