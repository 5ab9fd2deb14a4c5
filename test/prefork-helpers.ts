// What the prefork test files share: a bounded HTTP GET, masters started
// through the harness and stopped after each test, with no worker left alive.
import http from 'node:http';
import { expect } from 'vitest';
import { isAlive } from './helpers';
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { startMaster, startProcess } = require('./fixtures/prefork-harness.js');

export type Proc = ReturnType<typeof startProcess>;
export type Ev = {
  event: string;
  t: number;
  num: number;
  pid: number;
  generation: number;
  reason?: string;
  exitCode?: number | null;
  signal?: string | null;
  cause?: string;
  requestLimit?: number | null;
};

export { startProcess };

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** GET on a new connection, timed out after 10 s. */
export function httpGet(port: number, p = '/'): Promise<{ status: number; body: string; headers: http.IncomingHttpHeaders }> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path: p, agent: false, timeout: 10_000 }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode!, body, headers: res.headers }));
    });
    req.on('timeout', () => req.destroy(new Error(`GET ${p} timed out`)));
    req.on('error', reject);
  });
}

/** Starts test/fixtures/prefork-master.js with `options`, records it in `started`, and waits until every worker is ready. */
export async function readyMaster(started: Proc[], options: object): Promise<Proc> {
  const m = await startMaster(options);
  started.push(m);
  await m.waitEvent((e: Ev) => e.event === 'allready');
  return m;
}

/**
 * Stops every process in `started` (SIGTERM, SIGKILL after 15 s) and checks
 * that no worker it forked outlived it: workers from its spawn events
 * (prefork-master.js) or from its `forked (pid N` log lines (cowfork serve).
 */
export async function stopAll(started: Proc[]): Promise<void> {
  for (const m of started.splice(0)) {
    if (m.child.exitCode === null && m.child.signalCode === null) {
      m.child.kill('SIGTERM');
      const t = setTimeout(() => m.child.kill('SIGKILL'), 15_000);
      await m.exited;
      clearTimeout(t);
    }
    const pids = [
      ...m.events.filter((e: Ev) => e.event === 'spawn').map((e: Ev) => e.pid),
      ...[...(m.stderr as string).matchAll(/forked \(pid (\d+)/g)].map((x) => Number(x[1])),
    ];
    for (const pid of pids) expect(isAlive(pid)).toBe(false);
  }
}
