// Re-executes a Node script in place (same pid, via execve) with V8's
// --single-threaded flag, which fork() needs and V8 accepts only at startup.
import { native } from './native';

const FLAG = '--single-threaded';

/** execve()s `node --single-threaded [execArgv] script [args]`. Only returns by throwing. */
export function reexecWithFlag(execArgv: string[], script: string, args: string[]): never {
  const argv = [process.execPath, FLAG, ...execArgv.filter((a) => a !== FLAG), script, ...args];
  const env = Object.entries(process.env).map(([k, v]) => `${k}=${v ?? ''}`);
  return native.execve(process.execPath, argv, env);
}
