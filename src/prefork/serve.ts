// HTTP serving inside a worker, with a drain that loses no request, and the
// rule that turns an app module into a worker function.
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import type { RequestHandler, ServeOptions, WorkerContext, WorkerFn } from './types';

/** A keep-alive connection idle this long during a drain is closed. */
const IDLE_GRACE_MS = 150;
const DRAIN_TICK_MS = 25;

/** The response Node is writing on a socket, if any (cleared when it finishes). */
function responseOn(socket: net.Socket): http.ServerResponse | null {
  return (socket as net.Socket & { _httpMessage?: http.ServerResponse | null })._httpMessage ?? null;
}

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
  if (typeof target === 'function') server = http.createServer(target);
  else if (target instanceof net.Server) server = target;
  else throw new TypeError('ctx.serve(handlerOrServer): expected a request handler or an http.Server');

  // Connections are tracked, requests are not: serving pays nothing per
  // request for the drain. A socket is busy while Node has a response on it.
  const conns = new Set<net.Socket>();
  server.on('connection', (socket: net.Socket) => {
    conns.add(socket);
    socket.once('close', () => conns.delete(socket));
  });
  server.listen({ fd }, () => ctx.ready());

  ctx.onShutdown(
    () =>
      new Promise<void>((resolve) => {
        // http.Server#close would also drop idle keep-alive connections at
        // once, racing a client that is sending its next request on one. Stop
        // accepting only; each busy connection is closed by its next
        // response's `Connection: close`, and an idle one after a grace.
        net.Server.prototype.close.call(server);
        const idleSince = new Map<net.Socket, number>();
        server.prependListener('request', (req: http.IncomingMessage, res: http.ServerResponse) => {
          idleSince.delete(req.socket);
          res.setHeader('connection', 'close');
        });
        for (const socket of conns) {
          const res = responseOn(socket);
          if (res && !res.headersSent) res.setHeader('connection', 'close');
        }
        const tick = (): void => {
          const now = performance.now();
          for (const socket of conns) {
            if (responseOn(socket)) {
              idleSince.delete(socket);
            } else {
              const since = idleSince.get(socket);
              if (since === undefined) idleSince.set(socket, now);
              else if (now - since >= IDLE_GRACE_MS) socket.destroySoon();
            }
          }
          if (conns.size === 0) {
            clearInterval(timer);
            resolve();
          }
        };
        const timer = setInterval(tick, DRAIN_TICK_MS);
        tick();
      }),
  );
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
