// `cowfork serve --pid-file PATH`, as Unicorn's `pid`: the master's pid,
// written atomically once the sockets are bound, and removed when the master
// exits. An operator (or a script, systemd's PIDFile=) signals that pid.
import fs from 'node:fs';
import path from 'node:path';
import { pidAlive } from '../util';

export class PidFileError extends Error {}

function readPid(file: string): number | null {
  try {
    const pid = Number(fs.readFileSync(file, 'utf8').trim());
    return Number.isSafeInteger(pid) && pid > 0 ? pid : null;
  } catch {
    return null;
  }
}

/**
 * Writes this process's pid to `file`: to a temporary name in the same
 * directory, then rename(2), so a reader never sees a partial file. A file
 * that names another live process means a master is running already, and is
 * left alone; one that names a dead process is stale and is replaced.
 * Returns the function that removes it.
 */
export function writePidFile(file: string): () => void {
  const target = path.resolve(file);
  const old = readPid(target);
  if (old !== null && old !== process.pid && pidAlive(old)) {
    throw new PidFileError(`cowfork serve: ${file} names pid ${old}, which is running: is a master running already?`);
  }
  const tmp = `${target}.${process.pid}.tmp`;
  try {
    fs.writeFileSync(tmp, `${process.pid}\n`, { mode: 0o644 });
    fs.renameSync(tmp, target);
  } catch (err) {
    fs.rmSync(tmp, { force: true });
    throw new PidFileError(`cowfork serve: cannot write --pid-file ${file}: ${(err as NodeJS.ErrnoException).code ?? err}`);
  }
  const remove = (): void => {
    // Only our own file: a worker (a fork of this process, with its own pid)
    // or a newer master that replaced it must not lose theirs.
    if (readPid(target) === process.pid) fs.rmSync(target, { force: true });
  };
  process.once('exit', remove);
  return remove;
}
