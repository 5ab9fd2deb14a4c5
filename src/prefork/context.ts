// What process and thread contexts share: shutdown callbacks and serving.
// No native code here, so that hybrid threads can load it.
import type http from 'node:http';
import { serve } from './serve';
import type { Frame, ParentContext, RequestHandler, ServeOptions, WorkerContext } from './types';

/** Shared by process and thread contexts. */
export abstract class BaseContext implements WorkerContext {
  abstract readonly kind: 'process' | 'thread';
  abstract readonly parent: ParentContext | null;
  abstract readonly context: readonly Frame[];
  private readonly shutdownCallbacks: (() => unknown)[] = [];
  private shutdownPromise: Promise<void> | null = null;
  protected isReady = false;

  constructor(
    readonly num: number,
    readonly generation: number,
    readonly listenFds: readonly number[],
  ) {}

  abstract ready(): void;
  abstract heartbeat(): void;

  onShutdown(cb: () => unknown): void {
    if (typeof cb !== 'function') throw new TypeError('ctx.onShutdown(cb): cb must be a function');
    this.shutdownCallbacks.push(cb);
  }

  serve(handlerOrServer: RequestHandler | http.Server, options?: ServeOptions): http.Server {
    return serve(this, handlerOrServer, options);
  }

  /** Runs the shutdown callbacks once; settles when all have. */
  runShutdown(): Promise<void> {
    this.shutdownPromise ??= Promise.allSettled(
      this.shutdownCallbacks.map((cb) => Promise.resolve().then(cb)),
    ).then((results) => {
      for (const r of results) {
        if (r.status === 'rejected') process.stderr.write(`prefork worker ${this.num}: onShutdown callback failed: ${String(r.reason)}\n`);
      }
    });
    return this.shutdownPromise;
  }
}

