/* After fork the child's copy of the loop still polls every socket the parent
 * had. Left alone, the child accepts the parent's connections and reads the
 * parent's responses. Each inherited stream, UDP or poll handle gets the read
 * end of a socketpair dup2()ed over its fd: that fd never becomes readable, and
 * replacing it in the child never touches the parent's connection. That
 * includes stdin when the parent has a handle reading it. */
#include "cowfork.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

typedef struct {
  int quiet_fd;
  const int* keep;
  int nkeep;
  int err;
} cf__silence_ctx_t;

static int cf__is_kept(const cf__silence_ctx_t* ctx, int fd) {
  for (int i = 0; i < ctx->nkeep; i++)
    if (ctx->keep[i] == fd) return 1;
  return 0;
}

static void cf__silence_one(uv_handle_t* handle, void* arg) {
  cf__silence_ctx_t* ctx = arg;
  uv_os_fd_t fd;
  int r;

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
  /* stdout and stderr stay: children write to them. stdin is silenced when
   * the parent was reading it, or the child would steal the parent's input. */
  if (fd == 1 || fd == 2 || fd == ctx->quiet_fd || cf__is_kept(ctx, fd)) return;

  do
    r = dup2(ctx->quiet_fd, fd);
  while (r < 0 && errno == EINTR);
  if (r < 0) {
    ctx->err = -errno;
    return;
  }
  fcntl(fd, F_SETFD, FD_CLOEXEC);
}

int cf_silence_inherited(uv_loop_t* loop, const int* keep_fds, int nkeep) {
  int pair[2];
  cf__silence_ctx_t ctx;

  if (socketpair(AF_UNIX, SOCK_STREAM, 0, pair) != 0) return -errno;
  fcntl(pair[0], F_SETFD, FD_CLOEXEC);
  fcntl(pair[1], F_SETFD, FD_CLOEXEC);
  /* Both ends stay open for the child's lifetime: a closed peer would make
   * every silenced fd report EOF, and the parent's 'end' handlers would run. */
  ctx.quiet_fd = pair[0];
  ctx.keep = keep_fds;
  ctx.nkeep = nkeep;
  ctx.err = 0;
  uv_walk(loop, cf__silence_one, &ctx);
  return ctx.err;
}
