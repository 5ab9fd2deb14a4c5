// The parent's file watchers in a map / each / stream or iterate child. libuv
// re-creates its inotify instance in a forked child and adds every watch to it
// again (uv_loop_fork), so a parent's `fs.watch()` watcher kept reporting in
// every child that ran its event loop, `fs.watchFile()` kept polling there,
// and an `fs.promises.watch()` loop's body ran there once per event: the
// parent's code (a config reloader, a dev server's rebuild) ran in each child
// too (measured: two map children each saw all 40 events of 20 files written
// in the parent; docs/hazards.md, §9).
//
// A child that drops the parent's timers (src/timers.ts) stops every file
// watcher it inherited at its start, whatever made it (native/watchers.c):
// no callback of the parent's runs there, and a pending
// `fs.promises.watch()` step never settles. `fs.watchFile` pollers are also
// taken out of Node's table of pollers by path, so that the child's own
// `fs.watchFile` of the same file gets a poller of its own: cowfork notes each
// poller as `fs.watchFile` makes it, until it is unwatched. The parent's
// watchers are untouched: libuv gave the child an inotify instance of its own
// before this runs. Each child re-adds the parent's watches for a moment, so
// many watches times many concurrent children can reach the inotify limits
// (fs.inotify.max_user_watches, max_user_instances).
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { native } from './native';
import { ownMethod, processState, replaceValue } from './util';

interface WatchState {
  installed: boolean;
  /** fs.watchFile pollers not yet stopped, by the path Node keys them by (resolved when made). */
  readonly polled: Map<string, fs.StatWatcher>;
}

const state = processState<WatchState>('cowfork.watchers', () => ({ installed: false, polled: new Map() }));

const nodeUnwatchFile = fs.unwatchFile;

/** The absolute path Node keys a watchFile poller by, or null for an argument it would reject. */
function pollKey(file: unknown): string | null {
  try {
    if (typeof file === 'string') return path.resolve(file);
    if (Buffer.isBuffer(file)) return path.resolve(file.toString());
    if (file instanceof URL) return path.resolve(fileURLToPath(file));
  } catch {
    // Not a path Node accepts: it has thrown already.
  }
  return null;
}

/** At load: notes the pollers `fs.watchFile` makes from now on. */
export function trackWatchers(): void {
  if (state.installed) return;
  state.installed = true;
  const nodeWatchFile = fs.watchFile;
  replaceValue(fs, 'watchFile', function watchFile(this: unknown, ...args: unknown[]) {
    const poller = Reflect.apply(nodeWatchFile, this, args) as fs.StatWatcher;
    const key = pollKey(args[0]);
    if (key !== null) state.polled.set(key, poller);
    return poller;
  });
  replaceValue(fs, 'unwatchFile', function unwatchFile(this: unknown, ...args: unknown[]) {
    const result = Reflect.apply(nodeUnwatchFile, this, args);
    const key = pollKey(args[0]);
    // Node stops a poller once its last 'change' listener is gone.
    if (key !== null && state.polled.get(key)?.listenerCount('change') === 0) state.polled.delete(key);
    return result;
  });
}

/** In a child: the parent's watchers report nothing here, and stop watching (see above). */
export function dropParentWatchers(): void {
  // Every poller alive at the child's start is the parent's: each stops with all its listeners, silently.
  for (const [key, poller] of state.polled) {
    ownMethod(poller, 'emit', () => false);
    nodeUnwatchFile(key);
  }
  state.polled.clear();
  // The rest: fs.watch, fs.promises.watch, and pollers made before cowfork was loaded.
  native.stopWatchers();
}
