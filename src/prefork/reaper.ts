// Reaping orphans when the master is PID 1 of its PID namespace: a container
// started without an init (`docker run` without --init, Kubernetes without
// shareProcessNamespace). The kernel hands every orphan in the namespace to
// PID 1, and only PID 1 can reap it; tini does exactly this. A worker's
// `sh -c 'cmd &'`, or the children of a worker that was killed, end up here,
// and each one would stay a zombie, holding a pid, for the container's life.
//
// The reaper must not take an exit status that someone else waits for: libuv
// reaps each child_process child by pid when SIGCHLD arrives, and a status
// taken before it is lost (its waitpid gets ECHILD and the 'exit' event never
// fires); cowfork reaps each worker through its pidfd. So it never calls
// waitpid(-1). It lists this thread's zombie children in /proc and reaps by
// pid only those that are
//   - not one of the master's workers, and
//   - still zombies at a later turn at least SETTLE_MS after it first saw them.
// Every turn runs in a setImmediate callback, after the loop's poll phase, and
// libuv dispatches its SIGCHLD watcher in the poll phase: a later turn comes
// after a poll that saw the SIGCHLD of the first sighting, by which time libuv
// has reaped its own child. The delay covers a SIGCHLD delivered to another
// thread, whose write to libuv's signal pipe can lag on a loaded machine.
// Children that a worker_thread spawns are that thread's children in /proc
// (task/<tid>/children) and are never looked at.
//
// It is on only where orphans can land on a process that did not ask for them:
// PID 1. A child subreaper (prctl(PR_SET_CHILD_SUBREAPER)) is set by the
// process itself or by a wrapper before exec, and cannot be detected without
// a native call; whoever makes node a subreaper owns the reaping.
import fs from 'node:fs';
import { native } from '../native';

/** How long a zombie must stay unreaped by its owner before the reaper takes it. */
const SETTLE_MS = 500;

interface Suspect {
  /** The process's start time (field 22 of /proc/<pid>/stat): a reused pid is another process. */
  start: string;
  firstSeen: number;
}

export class OrphanReaper {
  /** Whether this process reaps orphans: it is PID 1 and /proc shows its own PID namespace. */
  readonly active: boolean;
  private readonly suspects = new Map<number, Suspect>();
  /** A SIGCHLD came since the last scan (or none was done yet). */
  private dirty = true;
  private onSigchld: (() => void) | null = null;

  constructor() {
    this.active = process.pid === 1 && procIsOurs();
  }

  /** Listens for SIGCHLD: an orphan that exits wakes the master. */
  start(wake: () => void): void {
    if (!this.active || this.onSigchld !== null) return;
    this.onSigchld = () => {
      this.dirty = true;
      wake();
    };
    process.on('SIGCHLD', this.onSigchld);
  }

  stop(): void {
    if (this.onSigchld !== null) process.removeListener('SIGCHLD', this.onSigchld);
    this.onSigchld = null;
    this.suspects.clear();
  }

  /**
   * One pass, run from a turn of the master's loop: notes new zombies and
   * reaps those that have settled. `isWorker(pid)` tells the master's own
   * children, which cowfork reaps itself.
   */
  reap(isWorker: (pid: number) => boolean, now: number): void {
    if (!this.active || (!this.dirty && this.suspects.size === 0)) return;
    this.dirty = false;
    const zombies = zombieChildren();
    for (const [pid, s] of this.suspects) if (zombies.get(pid) !== s.start) this.suspects.delete(pid);
    for (const [pid, start] of zombies) {
      if (isWorker(pid)) continue;
      const s = this.suspects.get(pid);
      if (s === undefined) this.suspects.set(pid, { start, firstSeen: now });
      else if (now - s.firstSeen >= SETTLE_MS) this.reapOne(pid);
    }
  }

  /** Milliseconds until a suspect settles (the master sleeps no longer), or Infinity. */
  nextDue(now: number): number {
    let next = Infinity;
    for (const s of this.suspects.values()) next = Math.min(next, s.firstSeen + SETTLE_MS - now);
    return next;
  }

  private reapOne(pid: number): void {
    this.suspects.delete(pid);
    try {
      native.waitpid(pid, true);
    } catch (err) {
      // ECHILD: its owner reaped it after all.
      if ((err as NodeJS.ErrnoException).code !== 'ECHILD') throw err;
    }
  }
}

/**
 * Whether /proc belongs to this process's PID namespace, so that the pids it
 * lists are the ones waitpid takes. A container's /proc always does; a PID
 * namespace entered without remounting /proc (`unshare --pid --fork` without
 * --mount-proc) does not, and then the reaper stays off.
 */
function procIsOurs(): boolean {
  let self: string;
  try {
    self = fs.readlinkSync('/proc/self');
  } catch {
    self = '';
  }
  if (self === String(process.pid)) return true;
  process.emitWarning(
    'cowfork prefork: this master is PID 1, but /proc is not mounted for its PID namespace, so orphaned processes ' +
      'will not be reaped. Mount /proc for the namespace, or run under an init (docker run --init).',
    { code: 'COWFORK_PID1_NO_PROC' },
  );
  return false;
}

/** This thread's children that are zombies, by pid, with their start times. */
function zombieChildren(): Map<number, string> {
  const out = new Map<number, string>();
  for (const pid of childPids()) {
    let stat: string;
    try {
      stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    } catch {
      continue; // Reaped by its owner while we looked.
    }
    // The fields after the command name, which may itself hold spaces or ')'.
    const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    if (rest[0] === 'Z') out.set(pid, rest[19]);
  }
  return out;
}

/**
 * The main thread's children. /proc/<pid>/task/<tid>/children lists a
 * thread's own children, which leaves out those a worker_thread spawned; it
 * needs CONFIG_PROC_CHILDREN. Without it, every process whose parent is this
 * one is listed instead, and only SETTLE_MS protects a worker_thread's children.
 */
function childPids(): number[] {
  try {
    const list = fs.readFileSync(`/proc/self/task/${process.pid}/children`, 'utf8').trim();
    return list === '' ? [] : list.split(' ').map(Number);
  } catch {
    const out: number[] = [];
    for (const name of fs.readdirSync('/proc')) {
      if (!/^\d+$/.test(name)) continue;
      try {
        const stat = fs.readFileSync(`/proc/${name}/stat`, 'utf8');
        if (Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]) === process.pid) out.push(Number(name));
      } catch {
        // It exited while we looked.
      }
    }
    return out;
  }
}
