// Inherited connections (docs/hazards.md, "Inherited connections"): a child's
// copy of a parent's connection is dead, never silent. Node's own pools start
// empty in the child, so http.get and fetch just work; any other library's
// write fails at once with EPIPE and a one-time warning names the peer.
import { once } from 'node:events';
import http from 'node:http';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { inspectFork, map } from '../src/index';

const cleanups: Array<() => void> = [];
afterEach(() => {
  for (const fn of cleanups.splice(0)) fn();
});

async function urlServer(): Promise<string> {
  const server = http.createServer((req, res) => res.end(`${req.url} ${process.pid}`));
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  cleanups.push(() => {
    server.closeAllConnections();
    server.close();
  });
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

const get = (url: string): Promise<string> =>
  new Promise((resolve, reject) => {
    http
      .get(url, (res) => {
        let body = '';
        res.on('data', (d) => (body += d));
        res.on('end', () => resolve(body));
      })
      .on('error', reject);
  });

/** A raw TCP peer that echoes each line back; the way a database or Redis connection looks to a child. */
async function echoServer(): Promise<{ port: number; received: string[] }> {
  const received: string[] = [];
  const server = net.createServer((s) => {
    s.on('data', (d) => {
      received.push(String(d));
      s.write(d);
    });
    s.on('error', () => {});
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  cleanups.push(() => server.close());
  return { port: (server.address() as AddressInfo).port, received };
}

describe('inherited connections', () => {
  for (const isolation of [false, true]) {
    const mode = isolation ? 'isolation' : 'pool';
    it(`http.get with the default keep-alive agent, used by the parent first, works in ${mode} children`, async () => {
      const base = await urlServer();
      expect(await get(`${base}/parent`)).toMatch(/^\/parent /);
      // The parent's keep-alive socket is now idle in http.globalAgent.
      expect(Object.values(http.globalAgent.freeSockets).flat().length).toBeGreaterThan(0);
      const out = await map([0, 1, 2, 3], (i) => get(`${base}/c${i}`), { concurrency: 2, timeout: 5000, isolation });
      expect(out.map((s) => s.split(' ')[0])).toEqual(['/c0', '/c1', '/c2', '/c3']);
      // The parent's pool is untouched and still works.
      expect(await get(`${base}/again`)).toMatch(/^\/again /);
    });

    it(`fetch, used by the parent first, works in ${mode} children`, async () => {
      const base = await urlServer();
      expect(await (await fetch(`${base}/parent`)).text()).toMatch(/^\/parent /);
      const out = await map([0, 1, 2, 3], async (i) => (await fetch(`${base}/f${i}`)).text(), {
        concurrency: 2,
        timeout: 5000,
        isolation,
      });
      expect(out.map((s) => s.split(' ')[0])).toEqual(['/f0', '/f1', '/f2', '/f3']);
      expect(await (await fetch(`${base}/again`)).text()).toMatch(/^\/again /);
    });
  }

  it('a write to a connection another library kept fails at once with EPIPE and warns once, naming the peer', async () => {
    const { port, received } = await echoServer();
    const conn = net.connect(port, '127.0.0.1');
    await once(conn, 'connect');
    cleanups.push(() => conn.destroy());
    conn.on('error', () => {}); // errors in children are asserted below
    conn.write('from-parent\n');
    await once(conn, 'data');

    const out = await map(
      [0, 1],
      () =>
        new Promise<{ error: string; warnings: string[] }>((resolve) => {
          const warnings: string[] = [];
          process.on('warning', (w) => warnings.push(`${(w as NodeJS.ErrnoException).code}: ${w.message}`));
          conn.removeAllListeners('error');
          conn.once('error', (err: NodeJS.ErrnoException) => {
            // A second write on another socket to the same kind of connection: no second warning.
            setTimeout(() => resolve({ error: String(err.code), warnings }), 50);
          });
          conn.write('from-child\n');
        }),
      // One fresh child per item: a pool child that takes both items would find
      // the connection already destroyed by its first EPIPE, and wait forever
      // for an 'error' that a destroyed socket never emits again.
      { timeout: 5000, isolation: true },
    );
    for (const r of out) {
      expect(r.error).toBe('EPIPE');
      expect(r.warnings).toHaveLength(1);
      expect(r.warnings[0]).toContain('COWFORK_INHERITED_CONNECTION');
      expect(r.warnings[0]).toContain(`127.0.0.1:${port}`);
      expect(r.warnings[0]).toContain('docs/recipes.md');
    }
    // Nothing the children wrote reached the parent's peer, and the parent's connection still works.
    expect(received.join('')).toBe('from-parent\n');
    conn.write('parent-again\n');
    const [echo] = await once(conn, 'data');
    expect(String(echo)).toBe('parent-again\n');
  });

  it('reads on an inherited connection never complete in a child (the parent gets its own answers)', async () => {
    const { port } = await echoServer();
    const conn = net.connect(port, '127.0.0.1');
    await once(conn, 'connect');
    cleanups.push(() => conn.destroy());
    const parentData: string[] = [];
    conn.on('data', (d) => parentData.push(String(d)));
    const out = await map(
      [0],
      async () => {
        // The parent writes while this child listens on its copy of the socket.
        let seen = 0;
        conn.removeAllListeners('data');
        conn.on('data', () => seen++);
        await new Promise((r) => setTimeout(r, 300));
        return seen;
      },
      { timeout: 5000 },
    );
    conn.write('ping\n');
    await new Promise((r) => setTimeout(r, 100));
    expect(out).toEqual([0]);
    expect(parentData.join('')).toContain('ping');
  });

  it('a connection the child opens itself on a reused fd number is not taken for an inherited one', async () => {
    const { port } = await echoServer();
    const conn = net.connect(port, '127.0.0.1');
    await once(conn, 'connect');
    cleanups.push(() => conn.destroy());
    const out = await map(
      [0],
      async () => {
        const warnings: string[] = [];
        process.on('warning', (w) => warnings.push(w.message));
        conn.destroy(); // frees the fd number in the child
        await new Promise((r) => setImmediate(r));
        const fresh = net.connect(port, '127.0.0.1');
        await once(fresh, 'connect');
        fresh.write('child\n');
        const [echo] = await once(fresh, 'data');
        fresh.destroy();
        return { echo: String(echo), warnings };
      },
      { timeout: 5000 },
    );
    expect(out[0].echo).toBe('child\n');
    expect(out[0].warnings).toEqual([]);
  });
});

describe('inspectFork()', () => {
  it('lists client connections with their peers, listening sockets, threads and active handles', async () => {
    const { port } = await echoServer();
    const conn = net.connect(port, '127.0.0.1');
    await once(conn, 'connect');
    cleanups.push(() => conn.destroy());
    const info = inspectFork();
    expect(info.connections.map((c) => c.address)).toContain(`127.0.0.1:${port}`);
    expect(info.listening.map((c) => c.address)).toContain(`127.0.0.1:${port}`);
    const mine = info.connections.find((c) => c.address === `127.0.0.1:${port}`)!;
    expect(mine.type).toBe('tcp');
    expect(mine.fd).toBeGreaterThan(2);
    expect(info.handles.tcp).toBeGreaterThanOrEqual(2);
    expect(info.threads.some((t) => t.tid === process.pid && !t.foreign)).toBe(true);
    // Node's, V8's and libuv's own threads are never foreign.
    expect(info.foreignThreads).toEqual([]);
  });
});
