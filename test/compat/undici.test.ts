// The undici package: its global dispatcher (undici.request) and a Pool the
// app made in the parent. cowfork resets the global dispatcher in each child.
// A Pool of the app's own is the app's to replace (docs/recipes.md): with an
// atFork hook every child request is answered; without one, a request on an
// inherited connection fails at once, and never hangs.
import net from 'node:net';
import { Agent, Pool, request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { atFork } from '../../src/index';
import { type Upstream, inChildren, preforkAnswers, upstream } from './support';

let up: Upstream;
beforeAll(async () => {
  up = await upstream();
});
afterAll(() => up.close());

const viaGlobal = async (url: string): Promise<string> => (await request(url)).body.text();
const viaPool = async (pool: Pool, path: string): Promise<string> => (await pool.request({ path, method: 'GET' })).body.text();

/** How a request on a connection the child inherited fails: at once, naming the socket. */
const FAST_FAILURE = /EPIPE|ECONNRESET|UND_ERR_SOCKET|other side closed/;

describe('undici, after the parent used it', () => {
  it("request timeouts still fire in children right after the parent's requests (undici's one unref'd timer, armed in the parent, keeps running there)", async () => {
    // A server that accepts and never answers: each child request must end at undici's headersTimeout.
    const held: net.Socket[] = [];
    const silent = net.createServer((socket) => held.push(socket));
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    const url = `http://127.0.0.1:${(silent.address() as net.AddressInfo).port}/`;
    // Over 1 s, undici times a request with its shared ticker rather than a timer of its own.
    const agent = new Agent({ headersTimeout: 1500 });
    try {
      // The parent's request arms that ticker just before the fork; the children's requests then rely on it.
      expect(await viaGlobal(`${up.base}/parent`)).toBe('/parent');
      const ask = async (): Promise<string> => {
        try {
          await request(url, { dispatcher: agent });
          return 'answered';
        } catch (err) {
          return (err as { code?: string }).code ?? String(err);
        }
      };
      // Were the parent's unref'd timers dropped in a child (src/timers.ts), these would hit the 10 s item timeout.
      const timedOut = ['UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_HEADERS_TIMEOUT'];
      expect(await inChildren([0, 1], ask, 10_000)).toEqual({ pool: timedOut, isolation: timedOut });
    } finally {
      await agent.destroy();
      for (const socket of held) socket.destroy();
      await new Promise<void>((resolve) => silent.close(() => resolve()));
    }
  });

  it('undici.request (the global dispatcher): map children, pool and isolation, 4 of 4', async () => {
    expect(await viaGlobal(`${up.base}/parent`)).toBe('/parent');
    const items = [0, 1, 2, 3];
    const want = items.map((i) => `/u${i}`);
    expect(await inChildren(items, (i) => viaGlobal(`${up.base}/u${i}`), 3000)).toEqual({ pool: want, isolation: want });
  });

  it('a Pool made in the parent, replaced in atFork({ child }): children and prefork workers, every request answered', async () => {
    const opts = { connections: 2 };
    let pool = new Pool(up.base, opts);
    const off = atFork({
      child() {
        pool = new Pool(up.base, opts);
      },
    });
    try {
      expect(await viaPool(pool, '/parent')).toBe('/parent');
      const items = [0, 1, 2, 3];
      const want = items.map((i) => `/p${i}`);
      expect(await inChildren(items, (i) => viaPool(pool, `/p${i}`), 3000)).toEqual({ pool: want, isolation: want });
      const answers = await preforkAnswers((p) => viaPool(pool, `/w${p}`));
      expect(answers.map((a) => a.value)).toEqual(answers.map((_, i) => `/w/r${i}`));
      expect(await viaPool(pool, '/again')).toBe('/again');
    } finally {
      off();
      await pool.close();
    }
  });

  it('a Pool made in the parent, without a hook: each child request is answered or fails at once, never hangs', async () => {
    const pool = new Pool(up.base, { connections: 2 });
    try {
      expect(await viaPool(pool, '/parent')).toBe('/parent');
      const items = [0, 1, 2, 3];
      const got = await inChildren(items, (i) => viaPool(pool, `/p${i}`), 3000);
      for (const mode of ['pool', 'isolation'] as const) {
        for (const [i, o] of got[mode].entries()) {
          if (o !== `/p${i}`) expect(o, `${mode} item ${i}`).toMatch(FAST_FAILURE);
        }
      }
      expect(await viaPool(pool, '/again')).toBe('/again');
    } finally {
      await pool.close();
    }
  });
});
