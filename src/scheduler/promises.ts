// Learning that a promise settled, from anywhere, including inside a
// microtask. A generator fiber may yield any promise, and a synchronous
// driver must resume it once the promise settles, even when the driver runs
// inside a microtask (the top level of an ES module, after an `await`).
// There V8 runs no microtask of the main context until the current one ends,
// so a handler attached with `.then` would never run during the driver.
//
// A promise reaction job goes to the microtask queue of its handler's
// context. The handlers here are created inside a vm context with its own
// queue (microtaskMode: 'afterEvaluate'), and running an empty script in that
// context runs that queue, even inside a main-context microtask: V8 refuses
// only to re-enter a queue that is already running. Checked on Node 20-26 by
// test/scheduler-gen-promise.test.ts.
//
// Nothing runs that queue on its own, so in event-loop mode a main-context
// `.then` also runs flush() when the promise settles.
import vm from 'node:vm';

type Attach = (p: PromiseLike<unknown>, cb: (rejected: boolean, v: unknown) => void) => void;

let context: vm.Context | null = null;
let attachFn: Attach | null = null;
let flushScript: vm.Script | null = null;

function setup(): void {
  context = vm.createContext({}, { microtaskMode: 'afterEvaluate' });
  attachFn = vm.runInContext('(p, cb) => { p.then((v) => cb(false, v), (e) => cb(true, e)); }', context) as Attach;
  flushScript = new vm.Script('');
}

/** Calls `cb` once `p` settles, from the next flush() after that. */
export function onSettle(p: PromiseLike<unknown>, cb: (rejected: boolean, v: unknown) => void): void {
  if (attachFn === null) setup();
  attachFn!(p, cb);
}

/** Runs the callbacks of every promise that has settled since the last flush. */
export function flush(): void {
  if (flushScript !== null) flushScript.runInContext(context!);
}
