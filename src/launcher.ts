// Re-executes a Node script in place (same pid, via execve) with V8's
// --single-threaded flag, which fork() needs and V8 accepts only at startup.
import { native } from './native';

const FLAG = '--single-threaded';
/**
 * One V8 worker thread instead of four. A single parked thread can never sit
 * in both of glibc's condition-variable groups, which is what makes a forked
 * child hang in pthread_cond_signal (docs/hazards.md §2), so children are
 * safe from that even where cowfork cannot find the pool to repair. Under
 * --single-threaded V8 runs its jobs on the main thread anyway: full
 * collections took as long with one pool thread as with four (Node 20, 26).
 * An explicit --v8-pool-size from the user wins.
 */
const POOL_FLAG = '--v8-pool-size=1';

/** execve()s `node --single-threaded --v8-pool-size=1 [execArgv] script [args]`. Only returns by throwing. */
export function reexecWithFlag(execArgv: string[], script: string, args: string[]): never {
  const ownPool = execArgv.some((a) => /^--v8[-_]pool[-_]size(=|$)/.test(a));
  const argv = [process.execPath, FLAG, ...(ownPool ? [] : [POOL_FLAG]), ...execArgv.filter((a) => a !== FLAG), script, ...args];
  const env = Object.entries(process.env).map(([k, v]) => `${k}=${v ?? ''}`);
  return native.execve(process.execPath, argv, env);
}
