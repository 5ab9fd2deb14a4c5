// stdout and stderr on a terminal, in children and prefork workers. libuv's
// uv_tty_init() opens the terminal again at a new fd and dup2()s it onto fd
// 1, and the handle writes through the new fd: the child's silencing of
// inherited fds (native/silence.c) absorbed it, and every line a child or a
// worker wrote to the terminal was lost, while the same lines through a pipe
// arrived. script(1) (util-linux) gives the fixture a pseudo-terminal.
import { spawn } from 'node:child_process';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { FIXTURES } from './helpers';

/** Runs the fixture on a pseudo-terminal; `typed` is written to the terminal, a line every 300 ms after 800 ms. */
function onTerminal(mode: string, typed: string[] = []): Promise<string> {
  const command = `"${process.execPath}" --single-threaded "${path.join(FIXTURES, 'tty-children.js')}" ${mode}`;
  return new Promise((resolve, reject) => {
    const child = spawn('script', ['-qfec', command, '/dev/null'], { stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (out += d));
    const timers = typed.map((line, i) => setTimeout(() => child.stdin.write(`${line}\n`), 800 + 300 * i));
    const limit = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`timed out; output: ${out}`));
    }, 30_000);
    child.on('close', () => {
      clearTimeout(limit);
      for (const t of timers) clearTimeout(t);
      resolve(out.replace(/\r/g, ''));
    });
  });
}

describe('a terminal', () => {
  it("children's and a prefork worker's lines to stdout and stderr arrive (pool and isolation)", async () => {
    const out = await onTerminal('write');
    const lines = out.split('\n');
    const expected = ['parent out', 'parent err', 'worker out', 'worker err', 'done'];
    for (const how of ['pool', 'isolation']) {
      for (const k of [1, 2]) expected.push(`child out ${how} ${k}`, `child err ${how} ${k}`);
    }
    for (const line of expected) expect(lines).toContain(line);
  });

  it('the parent reads it, or has paused its stdin: neither the children nor their subprocesses take its input', async () => {
    // A paused stdin is not reading at the fork; told apart from stdout by its non-blocking fd (native/silence.c).
    // read-subprocess: a shell the child spawns reads fd 0, which stayed on the terminal.
    for (const mode of ['read', 'read-paused', 'read-subprocess']) {
      const out = await onTerminal(mode, ['line1', 'line2']);
      const result = /result (.*)/.exec(out);
      expect(result, out).not.toBeNull();
      expect(JSON.parse(result![1])).toEqual({ parent: ['line1', 'line2'], children: [[], []] });
    }
  });

  it("the parent's own tty.WriteStream on /dev/tty: the children's lines arrive", async () => {
    const lines = (await onTerminal('devtty')).split('\n');
    for (const line of ['parent via /dev/tty', 'child 1 via /dev/tty', 'child 2 via /dev/tty', 'done via /dev/tty']) {
      expect(lines).toContain(line);
    }
  });
});
