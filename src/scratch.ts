// Per-call scratch directories: 0700, named by pid and monotonic time, on
// tmpfs when /dev/shm exists so results never touch a disk.
import fs from 'node:fs';
import os from 'node:os';
import { native } from './native';

let base: string | undefined;

export function scratchBase(): string {
  if (base === undefined) {
    base = os.tmpdir();
    try {
      fs.accessSync('/dev/shm', fs.constants.W_OK | fs.constants.X_OK);
      if (fs.statSync('/dev/shm').isDirectory()) base = '/dev/shm';
    } catch {
      // No tmpfs: fall back to the OS temp directory.
    }
  }
  return base;
}

export function createScratch(): string {
  return native.scratchCreate(scratchBase());
}

export function removeScratch(dir: string): void {
  native.scratchRemove(dir);
}

/** Reads a scratch file without following symlinks; null when it does not exist. */
export function readScratch(dir: string, name: string): Buffer | null {
  let fd: number;
  try {
    fd = native.scratchOpen(dir, name, false);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw err;
  }
  try {
    return fs.readFileSync(fd);
  } finally {
    native.close(fd);
  }
}

export function writeAll(fd: number, buf: Buffer): void {
  let off = 0;
  while (off < buf.length) off += fs.writeSync(fd, buf, off, buf.length - off);
}
