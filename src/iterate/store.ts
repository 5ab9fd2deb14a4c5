// Where iterate keeps its cursors. The parent is the only writer: instances
// report finished items to it, and it saves the combined state here.
//
// A checkpoint file is replaced atomically: the new state goes to a temp file
// in the same directory, is fsynced, renamed over the old file, and the
// directory is fsynced. A kill -9 at any point leaves the old state or the new
// one, never a torn file.
import fs from 'node:fs';
import path from 'node:path';
import { CheckpointError } from '../errors';
import { pidAlive } from '../util';
import { isPlainObject } from '../validate';

/** One instance's entry in the saved state. */
export interface InstanceCursor<C = unknown> {
  instance: number;
  instances: number;
  /** The cursor of the last item whose `each` finished; null before the first. */
  innerCursor: C | null;
  done: boolean;
  /** Items finished by this instance over all runs. */
  processed: number;
}

export interface IterateState<C = unknown> {
  version: 1;
  instances: number;
  /** True once onAllComplete has returned. */
  allComplete: boolean;
  cursors: InstanceCursor<C>[];
}

/** Storage for iterate's state, for anything other than a local file (a database row, a key-value store). */
export interface CursorStore {
  /** The last saved state, or null/undefined when there is none. */
  load(): IterateState | null | undefined | Promise<IterateState | null | undefined>;
  /** Saves the state. It must replace the previous state atomically. */
  save(state: IterateState): void | Promise<void>;
}

function writeAll(fd: number, buf: Buffer): void {
  let off = 0;
  while (off < buf.length) off += fs.writeSync(fd, buf, off, buf.length - off);
}


/** Temp files are `.<name>.<pid>.<seq>.tmp` beside the checkpoint. */
function tempPattern(base: string): RegExp {
  const escaped = base.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  return new RegExp(`^\\.${escaped}\\.(\\d+)\\.\\d+\\.tmp$`);
}

let tempSeq = 0;

/**
 * Writes `data` to `file` atomically and durably: temp file in the same
 * directory, fsync, rename, fsync of the directory.
 */
export function writeFileAtomic(file: string, data: string | Buffer): void {
  const dir = path.dirname(file);
  const tmp = path.join(dir, `.${path.basename(file)}.${process.pid}.${tempSeq++}.tmp`);
  const fd = fs.openSync(tmp, 'wx', 0o644);
  try {
    try {
      writeAll(fd, typeof data === 'string' ? Buffer.from(data) : data);
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
    fs.renameSync(tmp, file);
  } catch (err) {
    try {
      fs.unlinkSync(tmp);
    } catch {
      // Already renamed or never created.
    }
    throw err;
  }
  // The rename is durable only once the directory entry is.
  const dfd = fs.openSync(dir, 'r');
  try {
    fs.fsyncSync(dfd);
  } finally {
    fs.closeSync(dfd);
  }
}

/** Removes temp files left by writers that died mid-save (their pid is gone). */
export function removeStaleTemps(file: string): void {
  const dir = path.dirname(file);
  const re = tempPattern(path.basename(file));
  let names: string[];
  try {
    names = fs.readdirSync(dir);
  } catch {
    return;
  }
  for (const name of names) {
    const m = re.exec(name);
    if (m === null) continue;
    const pid = Number(m[1]);
    // Saves are synchronous, so this process has no temp file in use now.
    if (pid !== process.pid && pidAlive(pid)) continue;
    try {
      fs.unlinkSync(path.join(dir, name));
    } catch {
      // Someone else removed it.
    }
  }
}

/**
 * A CursorStore over a local JSON file, saved atomically. `load()` removes temp
 * files left by writers that were killed mid-save.
 */
export function fileStore(file: string): CursorStore & { readonly path: string } {
  if (typeof file !== 'string' || file === '') throw new TypeError('fileStore(path): path must be a non-empty string');
  const abs = path.resolve(file);
  return {
    path: abs,
    load() {
      removeStaleTemps(abs);
      let text: string;
      try {
        text = fs.readFileSync(abs, 'utf8');
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
        throw err;
      }
      try {
        return JSON.parse(text) as IterateState;
      } catch (err) {
        throw new CheckpointError(`checkpoint ${abs} is not valid JSON: ${(err as Error).message}`, abs, { cause: err });
      }
    },
    save(state) {
      writeFileAtomic(abs, `${JSON.stringify(state)}\n`);
    },
  };
}

/** Checks that a loaded value is an iterate state; throws CheckpointError naming what is wrong. */
export function checkState(raw: unknown, where: string): IterateState {
  const bad = (why: string): never => {
    throw new CheckpointError(`checkpoint ${where} is not an iterate state: ${why}`, where);
  };
  if (!isPlainObject(raw)) return bad('it is not an object');
  if (raw.version !== 1) return bad(`version is ${JSON.stringify(raw.version)}, expected 1`);
  const n = raw.instances;
  if (typeof n !== 'number' || !Number.isInteger(n) || n < 1) return bad('instances is not a positive integer');
  if (!Array.isArray(raw.cursors) || raw.cursors.length !== n) return bad(`cursors is not an array of ${n} entries`);
  raw.cursors.forEach((c: unknown, i: number) => {
    if (!isPlainObject(c)) return bad(`cursors[${i}] is not an object`);
    if (c.instance !== i) return bad(`cursors[${i}].instance is ${JSON.stringify(c.instance)}`);
    if (typeof c.done !== 'boolean') return bad(`cursors[${i}].done is not a boolean`);
    if (!('innerCursor' in c)) return bad(`cursors[${i}] has no innerCursor`);
    if (c.processed !== undefined && (typeof c.processed !== 'number' || !(c.processed >= 0))) {
      return bad(`cursors[${i}].processed is not a non-negative number`);
    }
  });
  return {
    version: 1,
    instances: n,
    allComplete: raw.allComplete === true,
    cursors: (raw.cursors as Record<string, unknown>[]).map((c, i) => ({
      instance: i,
      instances: n,
      innerCursor: (c.innerCursor ?? null) as unknown,
      done: c.done as boolean,
      processed: (c.processed as number | undefined) ?? 0,
    })),
  };
}

/**
 * An exclusive lock beside a checkpoint file, so two runs never advance the
 * same cursors. A lock whose owner is dead (a kill -9) is taken over.
 */
export function acquireLock(file: string): () => void {
  const lock = `${file}.lock`;
  for (let attempt = 0; ; attempt++) {
    try {
      const fd = fs.openSync(lock, 'wx', 0o644);
      try {
        fs.writeSync(fd, `${process.pid}\n`);
      } finally {
        fs.closeSync(fd);
      }
      break;
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code !== 'EEXIST' || attempt > 3) {
        throw new CheckpointError(`cannot lock checkpoint ${file} (${lock}): ${(err as Error).message}`, file, { cause: err });
      }
    }
    let owner = NaN;
    try {
      owner = Number.parseInt(fs.readFileSync(lock, 'utf8'), 10);
    } catch {
      continue; // Removed while we looked: try again.
    }
    if (Number.isInteger(owner) && owner > 0 && pidAlive(owner)) {
      throw new CheckpointError(
        `checkpoint ${file} is in use by process ${owner} (lock file ${lock}); ` +
          'two runs must not advance the same cursors. If that process is not an iterate run, remove the lock file.',
        file,
      );
    }
    try {
      fs.unlinkSync(lock);
    } catch {
      // Another run took it over first; the next attempt will see its pid.
    }
  }
  return () => {
    try {
      fs.unlinkSync(lock);
    } catch {
      // Already gone.
    }
  };
}
