/* After fork the child's copy of the loop still polls every socket the parent
 * had. Left alone, the child accepts the parent's connections and reads the
 * parent's responses. Each inherited stream, UDP or poll handle gets one end
 * of a socketpair dup2()ed over its fd, so replacing it in the child never
 * touches the parent's connection:
 *
 * - A connection to a named peer (a TCP connection, or a unix socket
 *   connected to a path: an HTTP keep-alive socket, a database or Redis
 *   connection) gets an end that is shut for writing while its peer
 *   stays open. A write fails at once with EPIPE, so a connection pool drops
 *   the connection and opens a new one instead of waiting forever for an
 *   answer; a read never completes, so the parent's in-flight requests never
 *   complete in the child.
 * - Everything else (listening sockets, pipes, TTYs, stdin when the parent
 *   reads it, and socketpairs such as Node's IPC channel to its own parent,
 *   where a failed write would make the child look disconnected) gets an end
 *   that is never readable and absorbs writes.
 *
 * The peer address of each connection replaced this way is kept, so that the
 * child can say which connection a write went to (cf_inherited_peer). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "cowfork.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct {
  int quiet_fd; /* never readable, absorbs writes */
  int dead_fd;  /* never readable, writes fail with EPIPE */
  const int* keep;
  int nkeep;
  int err;
  dev_t stdin_tty; /* the terminal fd 0 is on, or 0 */
} cf__silence_ctx_t;

/* The connections this child inherited: fd, the inode of the end now at that
 * fd (so a later socket that reuses the number is not mistaken for it), and
 * the peer the parent was talking to. */
typedef struct {
  int fd;
  ino_t ino;
  char peer[CF_ADDR_MAX];
} cf__inherited_t;

#define CF__INHERITED_MAX 256
static cf__inherited_t cf__inherited[CF__INHERITED_MAX];
static int cf__ninherited = 0;

int cf_fd_kept(const int* keep_fds, int nkeep, int fd) {
  for (int i = 0; i < nkeep; i++)
    if (keep_fds[i] == fd) return 1;
  return 0;
}

static int cf__pair(int fds[2]) {
  if (socketpair(AF_UNIX, SOCK_STREAM, 0, fds) != 0) return -errno;
  fcntl(fds[0], F_SETFD, FD_CLOEXEC);
  fcntl(fds[1], F_SETFD, FD_CLOEXEC);
  return 0;
}

static void cf__remember(int fd, const char* peer) {
  struct stat st;
  if (cf__ninherited >= CF__INHERITED_MAX || fstat(fd, &st) != 0) return;
  cf__inherited_t* e = &cf__inherited[cf__ninherited++];
  e->fd = fd;
  e->ino = st.st_ino;
  snprintf(e->peer, sizeof(e->peer), "%s", peer);
}

/* Whether a TTY handle writes to a terminal (process.stdout or stderr on a
 * terminal, a tty.WriteStream on /dev/tty) rather than reading one (the
 * parent's stdin). For a terminal, libuv's uv_tty_init() opens it again at a
 * new fd and dup2()s that onto the original, and the handle keeps the new
 * one: process.stdout on a terminal writes through, say, fd 18. Silencing that
 * fd absorbed every line a child or a prefork worker wrote to the terminal.
 * Node's tty.WriteStream makes its handle's writes blocking (setBlocking: the
 * fd has no O_NONBLOCK), while libuv leaves a reader's fd non-blocking; a
 * paused stdin is a reader too, and stays silenced, so that a child never
 * takes the parent's input. Neither the device (stdin is on the same
 * terminal) nor whether the handle is reading at the fork (a paused prompt)
 * tells them apart. */
int cf_tty_writer(uv_handle_t* handle, int fd) {
  int fl;
  if (handle->type != UV_TTY) return 0;
  fl = fcntl(fd, F_GETFL);
  return fl >= 0 && !(fl & O_NONBLOCK);
}

int cf_fd_shared(uv_handle_t* handle, int fd, const int* keep_fds, int nkeep) {
  return fd == 1 || fd == 2 || cf_tty_writer(handle, fd) || cf_fd_kept(keep_fds, nkeep, fd);
}

/* The terminal device a TTY handle's fd is on, or 0. */
static dev_t cf__terminal(int fd) {
  struct stat st;
  return fstat(fd, &st) == 0 && S_ISCHR(st.st_mode) ? st.st_rdev : 0;
}

static void cf__silence_one(uv_handle_t* handle, void* arg) {
  cf__silence_ctx_t* ctx = arg;
  uv_os_fd_t fd;
  char peer[CF_ADDR_MAX];
  int r, connected = 0;
  dev_t terminal;

  switch (handle->type) {
    case UV_TCP:
    case UV_NAMED_PIPE:
    case UV_TTY:
    case UV_UDP:
    case UV_POLL:
      break;
    default:
      return;
  }
  if (uv_fileno(handle, &fd) != 0) return;
  /* stdout, stderr, a terminal writer (see above) and kept fds stay: children
   * write to them. stdin is silenced when the parent was reading it, or the
   * child would steal the parent's input. */
  if (fd == ctx->quiet_fd || fd == ctx->dead_fd || cf_fd_shared(handle, fd, ctx->keep, ctx->nkeep)) return;

  if (handle->type == UV_TCP || handle->type == UV_NAMED_PIPE)
    connected = cf_socket_peer(fd, peer, sizeof(peer)) == CF_SOCK_CONNECTED && peer[0] != '\0';
  terminal = handle->type == UV_TTY && fd != 0 ? cf__terminal(fd) : 0;

  do
    r = dup2(connected ? ctx->dead_fd : ctx->quiet_fd, fd);
  while (r < 0 && errno == EINTR);
  if (r < 0) {
    ctx->err = -errno;
    return;
  }
  fcntl(fd, F_SETFD, FD_CLOEXEC);
  if (connected) cf__remember(fd, peer);
  /* The parent reads its terminal through a TTY handle at an fd libuv opened
   * for it (see cf_tty_writer); silencing that fd left fd 0 on the terminal,
   * and a subprocess the child spawned with inherited stdio (git or ssh asking
   * for a password, an editor) read the parent's input there. fd 0 on the
   * same terminal is silenced too, and stays inheritable: a subprocess's
   * stdin is then never readable. */
  if (terminal != 0 && terminal == ctx->stdin_tty && !cf_fd_kept(ctx->keep, ctx->nkeep, 0)) {
    ctx->stdin_tty = 0;
    while (dup2(ctx->quiet_fd, 0) < 0 && errno == EINTR) {
    }
  }
}

int cf_silence_inherited(uv_loop_t* loop, const int* keep_fds, int nkeep) {
  int quiet[2], dead[2], err;
  cf__silence_ctx_t ctx;

  /* Every end stays open for the child's lifetime: a closed peer would make
   * every silenced fd report EOF, and the parent's 'end' handlers would run. */
  if ((err = cf__pair(quiet)) < 0) return err;
  if ((err = cf__pair(dead)) < 0) return err;
  if (shutdown(dead[0], SHUT_WR) != 0) return -errno;
  cf__ninherited = 0;
  ctx.quiet_fd = quiet[0];
  ctx.dead_fd = dead[0];
  ctx.keep = keep_fds;
  ctx.nkeep = nkeep;
  ctx.err = 0;
  ctx.stdin_tty = cf__terminal(0);
  uv_walk(loop, cf__silence_one, &ctx);
  return ctx.err;
}

int cf_inherited_peer(int fd, char* out, size_t outlen) {
  struct stat st;
  if (outlen == 0 || fstat(fd, &st) != 0) return -ENOENT;
  for (int i = 0; i < cf__ninherited; i++) {
    if (cf__inherited[i].fd != fd || cf__inherited[i].ino != st.st_ino) continue;
    snprintf(out, outlen, "%s", cf__inherited[i].peer);
    return 0;
  }
  return -ENOENT;
}

int cf_inherited_count(void) {
  return cf__ninherited;
}
