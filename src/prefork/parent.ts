// `npx cowfork serve` and `npm start` put npm and a shell in front of the
// master: npm -> sh -c 'cowfork serve ...' -> node. npm forwards SIGTERM and
// SIGINT to the shell, and the shell dies of it without passing it on, so the
// master would be orphaned and keep serving, with no drain. Under npm the
// master therefore takes the death of its parent as a stop: TERM or INT sent
// to npx drains and stops it. (Other signals npm does not forward at all;
// send those to the pid of --pid-file.)
import { libraryInterval } from '../fork';
import { native } from '../native';

/** How often the parent is checked: the drain starts at most this late. */
const PARENT_CHECK_MS = 250;

/** Whether npm (npx, npm exec, npm start, npm run) started this process. */
export function startedByNpm(env: NodeJS.ProcessEnv = process.env): boolean {
  return env.npm_command !== undefined || env.npm_lifecycle_event !== undefined;
}

/**
 * Calls `onGone` once, when this process is reparented (its parent exited).
 * A library timer rather than a pidfd: it works on every platform and leaves
 * no fd for the workers to inherit, and a forked worker does not inherit the
 * timer. Returns the function that stops watching.
 */
export function watchParent(onGone: (ppid: number) => void): () => void {
  const ppid = native.getppid();
  const stop = libraryInterval(() => {
    if (native.getppid() === ppid) return;
    stop();
    onGone(ppid);
  }, PARENT_CHECK_MS);
  return stop;
}
