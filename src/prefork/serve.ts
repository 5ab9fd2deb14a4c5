// HTTP serving inside a worker, with a drain that loses no request (drain.ts),
// and the rule that turns an app module into a worker function.
import type http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { httpModule } from '../util';
import { drainOnShutdown } from './drain';
import type { RequestHandler, ServeOptions, WorkerContext, WorkerFn } from './types';

export function serve(
  ctx: WorkerContext,
  target: RequestHandler | http.Server,
  options: ServeOptions = {},
): http.Server {
  const index = options.index ?? 0;
  const fd = ctx.listenFds[index];
  if (fd === undefined) {
    throw new RangeError(`ctx.serve: options.index ${index} is out of range (the worker has ${ctx.listenFds.length} listen fds)`);
  }
  let server: http.Server;
  if (typeof target === 'function') server = httpModule().createServer(target);
  else if (target instanceof net.Server) server = target;
  else throw new TypeError('ctx.serve(handlerOrServer): expected a request handler or an http.Server');

  drainOnShutdown(ctx, server);
  server.listen({ fd }, () => ctx.ready());
  return server;
}

// ---------------------------------------------------------------------------
// App modules.

/** Loads a module by path (CommonJS or ESM). */
export async function importModule(file: string): Promise<unknown> {
  return import(pathToFileURL(path.resolve(file)).href);
}

/**
 * The worker function of an app module. A module exports `worker(ctx)` by
 * name, or default-exports (module.exports =) either a request handler
 * `(req, res)`, served on the first listen fd, or a `worker(ctx)` function.
 * A default export of two or more parameters is a request handler.
 */
export function workerFromModule(mod: unknown, where: string): WorkerFn {
  const ns = (mod ?? {}) as Record<string, unknown>;
  const def = ns.default as Record<string, unknown> | ((...a: unknown[]) => unknown) | undefined;
  const named = (ns.worker ?? (def && typeof def === 'object' ? def.worker : undefined)) as unknown;
  if (typeof named === 'function') return named as WorkerFn;
  const handler = (ns.handler ?? (def && typeof def === 'object' ? def.handler : undefined)) as unknown;
  if (typeof handler === 'function') return (ctx) => ctx.serve(handler as RequestHandler);
  if (typeof def === 'function') {
    if (def.length >= 2) return (ctx) => ctx.serve(def as RequestHandler);
    return def as WorkerFn;
  }
  throw new TypeError(
    `${where} must export a request handler (req, res) => ... or a worker(ctx) function ` +
      '(as its default export / module.exports, or as a named `worker` or `handler` export)',
  );
}
