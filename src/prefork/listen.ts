// Listen addresses: parsing what a user writes, and opening the sockets in the
// master (natively, before any fork) so that workers inherit them.
import fs from 'node:fs';
import path from 'node:path';
import { native } from '../native';

export type ListenSpec = number | string;

export type Endpoint = { kind: 'tcp'; host: string; port: number } | { kind: 'unix'; path: string };

/** An open listening socket, as `master.addresses` reports it. */
export interface Address {
  fd: number;
  /** The TCP host as given ('' for every interface). */
  host?: string;
  /** The bound TCP port (the real one when 0 was asked for). */
  port?: number;
  /** The unix socket path. */
  path?: string;
}

const HOST_PORT = /^([^:/[\]]*):(\d+)$/;
const V6_PORT = /^\[([0-9a-fA-F:.%a-zA-Z]+)\]:(\d+)$/;

function port(v: number, name: string): number {
  if (!Number.isInteger(v) || v < 0 || v > 65535) throw new RangeError(`${name} must be a port from 0 to 65535, got ${v}`);
  return v;
}

/** Parses a port, 'host:port', '[::1]:port' or a unix socket path. */
export function parseListen(spec: unknown, name: string): Endpoint {
  if (typeof spec === 'number') return { kind: 'tcp', host: '', port: port(spec, name) };
  if (typeof spec !== 'string' || spec === '') {
    throw new TypeError(`${name} must be a port, 'host:port', '[::1]:port' or a unix socket path`);
  }
  if (/^\d+$/.test(spec)) return { kind: 'tcp', host: '', port: port(Number(spec), name) };
  let m = V6_PORT.exec(spec);
  if (m) return { kind: 'tcp', host: m[1], port: port(Number(m[2]), name) };
  m = HOST_PORT.exec(spec);
  if (m) return { kind: 'tcp', host: m[1], port: port(Number(m[2]), name) };
  if (spec.includes('/') || spec.endsWith('.sock')) return { kind: 'unix', path: path.resolve(spec) };
  throw new TypeError(
    `${name} must be a port, 'host:port', '[::1]:port' or a unix socket path (with a '/'), got '${spec}'`,
  );
}

export function describe(e: Endpoint | Address): string {
  if ('kind' in e && e.kind === 'unix') return e.path;
  if (!('kind' in e) && e.path !== undefined) return e.path;
  const host = e.host ?? '';
  return `${host.includes(':') ? `[${host}]` : host || '*'}:${e.port}`;
}

/**
 * Opens one listening socket. With reusePort, `port` should be the port an
 * earlier socket of the same endpoint got, so that every worker's socket
 * shares it.
 */
export function openSocket(e: Endpoint, backlog: number, reusePort: boolean, portOverride?: number): Address {
  if (e.kind === 'unix') {
    try {
      return { fd: native.listenUnix(e.path, backlog), path: e.path };
    } catch (err) {
      throw withAddress(err, e);
    }
  }
  try {
    const [fd, bound] = native.listenTcp(e.host, portOverride ?? e.port, backlog, reusePort);
    return { fd, host: e.host, port: bound };
  } catch (err) {
    throw withAddress(err, e);
  }
}

function withAddress(err: unknown, e: Endpoint): Error {
  const code = (err as NodeJS.ErrnoException).code;
  const out = new Error(`prefork: cannot listen on ${describe(e)}: ${code}`, { cause: err });
  Object.assign(out, { code, address: describe(e) });
  return out;
}

export function closeSocket(a: Address): void {
  try {
    native.close(a.fd);
  } catch {
    // Already closed.
  }
  if (a.path !== undefined) {
    try {
      fs.unlinkSync(a.path);
    } catch {
      // Someone removed it already.
    }
  }
}
