// The parent's file watchers in a map / each / stream or iterate child. libuv
// re-creates its inotify instance in a forked child and adds every watch to it
// again (uv_loop_fork), so a parent's `fs.watch()` watcher kept reporting in
// every child that ran its event loop, and `fs.watchFile()` kept polling
// there: the parent's callbacks (a config reloader, a dev server's rebuild)
// ran in each child too (measured: two map children each saw all 40 events of
// 20 files written in the parent; docs/hazards.md, §9).
//
// cowfork notes each watcher as `fs.watch` and `fs.watchFile` make it, until
// it is closed. A child that drops the parent's timers (src/timers.ts) closes
// them at its start: an `fs.watch` watcher emits nothing more there (its
// `close` event included), and each `fs.watchFile` listener is removed, which
// stops its poller. The parent's watchers are untouched. Not covered:
// `fs.promises.watch()`, and watchers made with an `fs.watch` read before
// cowfork was loaded.
import fs from 'node:fs';
import module from 'node:module';
import { ownMethod, replaceValue } from './util';

interface WatchState {
  installed: boolean;
  /** fs.watch watchers not yet closed. */
  readonly watchers: Set<fs.FSWatcher>;
  /** fs.watchFile listeners not yet removed, per file name as given. */
  readonly polled: Map<fs.PathLike, Set<(...args: never[]) => unknown>>;
}

// One state per process, shared by every copy of cowfork loaded in it (as src/timers.ts does).
const STATE = Symbol.for('cowfork.watchers');
const state: WatchState = ((globalThis as { [STATE]?: WatchState })[STATE] ??= {
  installed: false,
  watchers: new Set(),
  polled: new Map(),
});

const unwatchFile = fs.unwatchFile;

/** At load: notes the watchers `fs.watch` and `fs.watchFile` make from now on. */
export function trackWatchers(): void {
  if (state.installed) return;
  state.installed = true;
  const watch = fs.watch;
  const watchFile = fs.watchFile;
  replaceValue(fs, 'watch', function (this: unknown, ...args: unknown[]) {
    const watcher = Reflect.apply(watch, this, args) as fs.FSWatcher;
    state.watchers.add(watcher);
    watcher.once('close', () => state.watchers.delete(watcher));
    return watcher;
  });
  replaceValue(fs, 'watchFile', function (this: unknown, ...args: unknown[]) {
    const result = Reflect.apply(watchFile, this, args);
    const listener = args[args.length - 1];
    if (typeof listener === 'function') {
      const file = args[0] as fs.PathLike;
      let listeners = state.polled.get(file);
      if (listeners === undefined) state.polled.set(file, (listeners = new Set()));
      listeners.add(listener as (...a: never[]) => unknown);
    }
    return result;
  });
  replaceValue(fs, 'unwatchFile', function (this: unknown, ...args: unknown[]) {
    const result = Reflect.apply(unwatchFile, this, args);
    const [file, listener] = args as [fs.PathLike, unknown];
    const listeners = state.polled.get(file);
    if (typeof listener === 'function') listeners?.delete(listener as never);
    if (typeof listener !== 'function' || listeners?.size === 0) state.polled.delete(file);
    return result;
  });
  // `import { watch } from 'node:fs'` reads the wrappers too.
  module.syncBuiltinESMExports();
}

/** In a child: the parent's watchers report nothing here, and stop watching (see above). */
export function dropParentWatchers(): void {
  for (const watcher of state.watchers) {
    ownMethod(watcher, 'emit', () => false);
    watcher.close();
  }
  state.watchers.clear();
  for (const [file, listeners] of state.polled) for (const listener of listeners) unwatchFile(file, listener as never);
  state.polled.clear();
}
