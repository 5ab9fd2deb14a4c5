// A child's copies of the parent's client connections (docs/hazards.md,
// "Inherited connections"). The C core has already made each one dead in the
// child: a write fails at once with EPIPE and a read never completes. This
// file does the rest. The parent's requests in flight at the fork (a socket
// write to a slow client, a connect) would fail on those dead ends once the
// child's loop runs, and their callbacks, the parent's, would run there: a
// parent's write callback and its socket's 'error' handler ran in map
// children, and a socket with no 'error' listener crashed them. So each
// request object Node lists as active at the fork gets a no-op completion in
// the child. It also empties the connection pools Node itself owns, so that
// http.get and fetch open new connections with no user code, and it warns the
// first time the child writes to a connection some other library kept.
import type http from 'node:http';
import net from 'node:net';
import { inheritedRequests, isParentStdioRequest, requestFd } from './child-exit';
import { RECIPES } from './inspect';
import { native } from './native';
import { noop } from './util';

/**
 * In a child: the parent's request objects in flight at the fork complete as no-ops here (see above). Node calls a
 * request's `oncomplete` when libuv finishes it; the list is the one src/child-exit.ts noted at the fork. A request
 * on an fd the child did not silence is left alone: fds 1, 2 and `keepFds` (fd 0 is silenced when the parent reads
 * it). A no-op completion of the parent's pending write to stdout (a pipe read slowly) left the child's
 * process.stdout waiting for it for good, and every line the child wrote there was lost. That write completes in
 * the child without sending anything (native/loop.c empties it), and the child's own lines queued behind it go out.
 * Returns how many were changed.
 */
export function forgetParentRequests(keepFds: readonly number[]): number {
  let n = 0;
  for (const req of inheritedRequests()) {
    const r = req as { oncomplete?: unknown };
    if (typeof r.oncomplete !== 'function') continue;
    const fd = requestFd(req);
    // Not `fd <= 2`: a destroyed socket's pending write reads -1, and its callback would run here.
    if (isParentStdioRequest(req) || (fd >= 0 && keepFds.includes(fd))) continue;
    r.oncomplete = noop;
    n++;
  }
  return n;
}

/**
 * Forgets every socket of an http.Agent: idle keep-alive sockets are closed
 * (the child's copy only), and sockets and queued requests of the parent's
 * in-flight requests are dropped, so they neither count against maxSockets nor
 * get a socket in the child.
 */
function resetAgent(agent: http.Agent): void {
  const a = agent as unknown as {
    freeSockets: Record<string, net.Socket[]>;
    sockets: Record<string, net.Socket[]>;
    requests: Record<string, unknown[]>;
    totalSocketCount?: number;
  };
  const idle = Object.values(a.freeSockets ?? {}).flat();
  a.freeSockets = Object.create(null);
  a.sockets = Object.create(null);
  a.requests = Object.create(null);
  if (typeof a.totalSocketCount === 'number') a.totalSocketCount = 0;
  for (const socket of idle) socket?.destroy();
}

// undici (fetch's engine, bundled in Node and on npm) keeps its global
// dispatcher on globalThis under Symbol.for('undici.globalDispatcher.N')
// (N is 1 up to undici 7, and 2 as well from undici 8, Node 26). An Agent
// keeps its per-origin pools in a Map under a symbol named 'clients' (and,
// from undici 7, the origins in a Set named 'origins'). Wrapping dispatchers
// (a ProxyAgent, an EnvHttpProxyAgent) hold their agents under other
// symbols, so the walk descends into anything that dispatches.
function isUndiciGlobal(sym: symbol): boolean {
  return sym.description?.startsWith('undici.globalDispatcher.') === true;
}

function resetDispatcher(d: unknown, depth: number, seen: Set<object>): number {
  if (d === null || typeof d !== 'object' || seen.has(d) || depth > 3) return 0;
  seen.add(d);
  let cleared = 0;
  for (const sym of Object.getOwnPropertySymbols(d)) {
    const v = (d as Record<symbol, unknown>)[sym];
    if ((sym.description === 'clients' && v instanceof Map) || (sym.description === 'origins' && v instanceof Set)) {
      cleared += v.size;
      v.clear();
    } else if (v !== null && typeof v === 'object' && typeof (v as { dispatch?: unknown }).dispatch === 'function') {
      cleared += resetDispatcher(v, depth + 1, seen);
    }
  }
  return cleared;
}

/**
 * `node:http` or `node:https` if this process has loaded the module that
 * holds its global agent, else null: an agent nobody made holds no sockets,
 * and cowfork's own load need not pay for both modules. http's global agent
 * lives in `_http_agent`, which `https` loads without `http`.
 * `process.moduleLoadList` (Node's list of the built-in modules loaded so far)
 * tells without loading them; where it is missing, the module is loaded.
 */
function ifLoaded(name: 'http' | 'https'): typeof http | null {
  const list = (process as { moduleLoadList?: unknown }).moduleLoadList;
  const holder = name === 'http' ? '_http_agent' : 'https';
  if (Array.isArray(list) && !list.includes(`NativeModule ${holder}`)) return null;
  return require(`node:${name}`) as typeof http;
}

/** In a child: Node's own pools start empty, so new requests open new connections. */
export function resetNodePools(): void {
  for (const name of ['http', 'https'] as const) {
    const agent = ifLoaded(name)?.globalAgent;
    if (agent) resetAgent(agent);
  }
  const seen = new Set<object>();
  for (const sym of Object.getOwnPropertySymbols(globalThis).filter(isUndiciGlobal)) {
    resetDispatcher((globalThis as Record<symbol, unknown>)[sym], 0, seen);
  }
}

// ---------------------------------------------------------------------------
// The first write to an inherited connection that a library kept (a database
// pool, a Redis client) fails with EPIPE; say once which connection it was
// and what to do.

let warned = false;
let patched = false;

function fdOf(socket: net.Socket): number {
  const s = socket as net.Socket & { _handle?: { fd?: number } | null; _parent?: net.Socket };
  const fd = s._handle?.fd ?? -1;
  if (fd >= 0) return fd;
  return s._parent ? fdOf(s._parent) : -1; // a TLS socket over a TCP one
}

function noteWrite(socket: net.Socket): void {
  if (warned) return;
  const fd = fdOf(socket);
  const peer = fd >= 0 ? native.inheritedPeer(fd) : null;
  if (peer === null) return;
  warned = true;
  process.emitWarning(
    `cowfork: process ${process.pid} wrote to a connection it inherited from its parent (peer ${peer}, fd ${fd}). ` +
      'That connection belongs to the parent: in a forked child its writes fail at once (EPIPE) and it never ' +
      'receives data. A client that then reconnects by itself (ioredis does) may send the parent\'s unanswered ' +
      'commands again from this process. Open connections in the child instead: re-create the client or pool in ' +
      `atFork({ child }), or create it lazily per process. Recipes for pg, mysql2, ioredis and better-sqlite3: ${RECIPES}.`,
    { code: 'COWFORK_INHERITED_CONNECTION' },
  );
}

/** In a child that inherited connections: warn on the first write to one of them. */
export function watchInheritedWrites(): void {
  warned = false;
  if (patched || native.inheritedCount() === 0) return;
  patched = true;
  const proto = net.Socket.prototype as net.Socket & {
    _write(chunk: unknown, encoding: BufferEncoding, cb: (err?: Error | null) => void): void;
    _writev?(chunks: unknown[], cb: (err?: Error | null) => void): void;
  };
  const write = proto._write;
  const writev = proto._writev;
  proto._write = function (this: net.Socket, chunk, encoding, cb) {
    noteWrite(this);
    return write.call(this, chunk, encoding, cb);
  };
  if (writev) {
    proto._writev = function (this: net.Socket, chunks, cb) {
      noteWrite(this);
      return writev.call(this, chunks, cb);
    };
  }
}
