// A prefork master that holds client connections when it forks warns once,
// naming their peers: every worker inherits them dead (docs/hazards.md,
// "Inherited connections").
import { once } from 'node:events';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { FIXTURES, ROOT, runNode } from './helpers';

const { startProcess } = require('./fixtures/prefork-harness.js');
const CLI = path.join(ROOT, 'bin', 'cowfork.js');

const cleanups: Array<() => void> = [];
afterEach(() => {
  for (const fn of cleanups.splice(0)) fn();
});

describe('prefork and the master\'s client connections', () => {
  it('the master warns once at fork time, listing the peers its workers inherit dead; workers still serve', async () => {
    const server = net.createServer((s) => s.on('error', () => {}));
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    cleanups.push(() => server.close());
    const dbPort = (server.address() as AddressInfo).port;

    const proc = startProcess(
      [CLI, 'serve', 'test/fixtures/prefork-db-app.js', '--workers', '2', '--host', '127.0.0.1', '--port', '0'],
      { env: { DB_PORT: String(dbPort) } },
    );
    cleanups.push(() => proc.child.kill('SIGKILL'));
    const stderr: string = await proc.waitStderr((s: string) => /ready on http:\/\/127\.0\.0\.1:\d+/.test(s), 20_000);
    const port = Number(/ready on http:\/\/127\.0\.0\.1:(\d+)/.exec(stderr)![1]);
    const warned = await proc.waitStderr((s: string) => /COWFORK_INHERITED_CONNECTIONS/.test(s), 10_000);
    expect(warned).toContain(`127.0.0.1:${dbPort}`);
    expect(warned).toContain('docs/recipes.md');
    // Once, though two workers were forked.
    expect(warned.match(/COWFORK_INHERITED_CONNECTIONS/g)).toHaveLength(1);

    const res = await fetch(`http://127.0.0.1:${port}/`);
    expect(await res.text()).toMatch(/^worker \d+/);
    proc.child.kill('SIGTERM');
    const [code] = await Promise.race([
      once(proc.child, 'exit'),
      new Promise<never>((_, rej) => setTimeout(() => rej(new Error('master did not exit')), 15_000)),
    ]);
    expect(code).toBe(0);
  });

  it('prefork() from code warns the same way, unless the app registered an atFork({ child }) hook', async () => {
    const server = net.createServer((s) => s.on('error', () => {}));
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    cleanups.push(() => server.close());
    const env = { DB_PORT: String((server.address() as AddressInfo).port) };
    const script = path.join(FIXTURES, 'prefork-api-db.js');
    const bare = await runNode(['--single-threaded', script], { env, timeoutMs: 30_000 });
    expect(bare.stdout).toContain('stopped');
    expect(bare.stderr).toContain('COWFORK_INHERITED_CONNECTIONS');
    const hooked = await runNode(['--single-threaded', script, 'hook'], { env, timeoutMs: 30_000 });
    expect(hooked.stdout).toContain('stopped');
    expect(hooked.stderr).not.toContain('COWFORK_INHERITED_CONNECTIONS');
  });
});
