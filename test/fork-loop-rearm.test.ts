// A parent socket whose poll interest changed in the forking turn of the loop
// (native/loop.c, cf_loop_rearm_watchers). uv_loop_fork() re-adds every fd
// watcher to the child's new epoll instance, except one already queued for an
// update: a partial write in a 'data' callback queues its POLLOUT, and a map()
// called there forks in the same turn. The child's first poll then modified a
// registration its epoll instance never had, got ENOENT, and libuv aborted it.
// Through map, the way a server calls it from a socket's callback.
import net from 'node:net';
import { describe, expect, it } from 'vitest';
import { map } from '../src/index';
import { native } from '../src/native';

/** Calls map() from a socket's 'data' callback, right after a write the peer does not read (a partial write). */
async function mapFromDataCallback(): Promise<string> {
  const server = net.createServer((s) => {
    setTimeout(() => {
      s.write('hi');
      s.pause();
    }, 20);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const sock = net.connect((server.address() as net.AddressInfo).port, '127.0.0.1');
  sock.on('error', () => {});
  try {
    return await new Promise<string>((resolve) => {
      sock.once('data', () => {
        sock.write(Buffer.alloc(16 << 20));
        map([1, 2], async (i) => {
          await new Promise((r) => setTimeout(r, 50));
          return i;
        }, { concurrency: 2, timeout: 10_000 }).then(
          (r) => resolve(JSON.stringify(r)),
          (err: Error) => resolve(err.message),
        );
      });
    });
  } finally {
    sock.destroy();
    server.close();
  }
}

describe("a parent socket's watcher changed in the forking turn", () => {
  it('the children run: every watcher is added to their new epoll instance', async () => {
    expect(await mapFromDataCallback()).toBe('[1,2]');
  });

  it('without the re-arm, a child is killed by SIGABRT', async () => {
    process.env.COWFORK_TEST_UNSAFE_FLAGS = String(native.FORK_FLAGS.SKIP_REARM);
    try {
      expect(await mapFromDataCallback()).toMatch(/killed by SIGABRT/);
    } finally {
      delete process.env.COWFORK_TEST_UNSAFE_FLAGS;
    }
  });
});
