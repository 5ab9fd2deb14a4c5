// The graceful drain of a worker's servers, for any server that listens on an
// inherited fd. `ctx.serve()` is the explicit form; `server.listen({ fd })`,
// the way Express, Koa and plain `http` write it, gets the same drain with no
// extra call, because a worker adopts every server that listens on one of its
// listen fds (see adoptListeners). No native code here: threads load it too.
import type http from 'node:http';
import net from 'node:net';

/** The part of a worker's ctx the drain needs. */
export interface DrainHost {
  readonly listenFds: readonly number[];
  onShutdown(cb: () => unknown): void;
}

/** A keep-alive connection idle this long during a drain is closed. */
const IDLE_GRACE_MS = 150;
const DRAIN_TICK_MS = 25;

/** Servers already drained on shutdown: adopting one twice would drain it twice. */
const adopted = new WeakSet<net.Server>();

/** Called once per request an adopted HTTP server receives (worker recycling counts them). */
let requestHook: (() => void) | null = null;

/** The response Node is writing on a socket, if any (cleared when it finishes). */
function responseOn(socket: net.Socket): http.ServerResponse | null {
  return (socket as net.Socket & { _httpMessage?: http.ServerResponse | null })._httpMessage ?? null;
}

/** http.Server and https.Server (which is not an http.Server) both have closeIdleConnections. */
function isHttp(server: net.Server): boolean {
  return typeof (server as Partial<http.Server>).closeIdleConnections === 'function';
}

/** A TLS server's HTTP requests arrive on the TLS sockets of 'secureConnection', not the raw ones. */
function connectionEvent(server: net.Server): 'connection' | 'secureConnection' {
  return typeof (server as { setSecureContext?: unknown }).setSecureContext === 'function' ? 'secureConnection' : 'connection';
}

/**
 * Registers the drain of `server` with the worker's shutdown. An HTTP server
 * stops accepting, answers each in-flight request with `Connection: close`,
 * closes keep-alive connections once they are idle, and is done when its last
 * connection has closed. Any other net.Server stops accepting and is done when
 * its connections have closed (the master's shutdownTimeout bounds both).
 */
export function drainOnShutdown(host: DrainHost, server: net.Server): void {
  if (adopted.has(server)) return;
  adopted.add(server);
  // Connections are tracked, requests are not: serving pays nothing per
  // request for the drain. A socket is busy while Node has a response on it.
  const conns = new Set<net.Socket>();
  server.on(connectionEvent(server), (socket: net.Socket) => {
    conns.add(socket);
    socket.once('close', () => conns.delete(socket));
  });
  const http = isHttp(server);
  if (http && requestHook !== null) server.on('request', requestHook);
  host.onShutdown(() => drain(server, conns, http));
}

function drain(server: net.Server, conns: Set<net.Socket>, http: boolean): Promise<void> {
  return new Promise<void>((resolve) => {
    // http.Server#close would also drop idle keep-alive connections at once,
    // racing a client that is sending its next request on one. Stop accepting
    // only; each busy connection is closed by its next response's
    // `Connection: close`, and an idle one after a grace.
    if (server.listening) net.Server.prototype.close.call(server);
    const idleSince = new Map<net.Socket, number>();
    if (http) {
      server.prependListener('request', (req: http.IncomingMessage, res: http.ServerResponse) => {
        idleSince.delete(req.socket);
        res.setHeader('connection', 'close');
      });
      for (const socket of conns) {
        const res = responseOn(socket);
        if (res && !res.headersSent) res.setHeader('connection', 'close');
      }
    }
    const tick = (): void => {
      const now = performance.now();
      if (http) {
        for (const socket of conns) {
          if (responseOn(socket)) {
            idleSince.delete(socket);
          } else {
            const since = idleSince.get(socket);
            if (since === undefined) idleSince.set(socket, now);
            else if (now - since >= IDLE_GRACE_MS) socket.destroySoon();
          }
        }
      }
      if (conns.size === 0) {
        clearInterval(timer);
        resolve();
      }
    };
    const timer = setInterval(tick, DRAIN_TICK_MS);
    tick();
  });
}

function inheritedFd(host: DrainHost, args: unknown[]): boolean {
  const first = args[0] as { fd?: unknown } | null;
  return first !== null && typeof first === 'object' && typeof first.fd === 'number' && host.listenFds.includes(first.fd);
}

/**
 * Makes every server of this process (or thread) that listens on one of
 * `host.listenFds` drain on shutdown, however it was started: `listen({ fd })`
 * and `listen(handle)` both pass an object with the fd. Runs once per worker,
 * after the fork; the master's own servers are untouched. `onRequest` is
 * called for each request an adopted HTTP server receives.
 */
export function adoptListeners(host: DrainHost, onRequest: (() => void) | null = null): void {
  requestHook = onRequest;
  const listen = net.Server.prototype.listen;
  net.Server.prototype.listen = function adoptingListen(this: net.Server, ...args: unknown[]) {
    if (inheritedFd(host, args)) drainOnShutdown(host, this);
    return (listen as (...a: unknown[]) => net.Server).apply(this, args);
  } as typeof listen;
}
