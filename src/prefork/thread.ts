// The entry of a hybrid worker thread: it loads the app module, builds the
// thread's ctx, and runs the worker function in it. Heartbeats and readiness
// go to the worker process's main thread, which folds them into its own.
import { parentPort, workerData } from 'node:worker_threads';
import { BaseContext } from './context';
import { adoptListeners } from './drain';
import type { ThreadMessage, ThreadSetup } from './worker';
import { importModule, workerFromModule } from './serve';
import type { Frame, ParentContext } from './types';

class ThreadContext extends BaseContext {
  readonly kind = 'thread' as const;
  readonly parent: ParentContext;
  readonly context: readonly Frame[];

  constructor(setup: ThreadSetup) {
    super(setup.num, setup.generation, Object.freeze([...setup.listenFds]));
    this.parent = Object.freeze({ ...setup.parent, context: Object.freeze(setup.parent.context.map((f) => Object.freeze({ ...f }))) });
    this.context = Object.freeze([...this.parent.context, Object.freeze({ kind: 'thread' as const, num: setup.num })]);
  }

  ready(): void {
    if (this.isReady) return;
    this.isReady = true;
    post({ type: 'ready' });
  }

  heartbeat(): void {
    post({ type: 'beat' });
  }
}

function post(m: ThreadMessage): void {
  parentPort!.postMessage(m);
}

async function main(): Promise<void> {
  const setup = workerData as ThreadSetup;
  const ctx = new ThreadContext(setup);
  adoptListeners(ctx);
  parentPort!.on('message', (m: ThreadMessage) => {
    if (m.type === 'shutdown') void ctx.runShutdown().then(() => process.exit(0));
  });
  setInterval(() => ctx.heartbeat(), setup.beatEvery).unref();
  const worker = workerFromModule(await importModule(setup.module), setup.module);
  await worker(ctx);
  ctx.ready();
}

main().catch((err) => {
  process.stderr.write(`prefork thread: ${(err as Error)?.stack ?? String(err)}\n`);
  // A thread's exit code only reaches its worker, which logs it and exits with
  // cowfork's code for an uncaught error (native.EXIT_CODES.UNCAUGHT).
  process.exit(1);
});
