/* Pipes and close(2), the two file-descriptor calls the TypeScript side makes
 * directly. Every fd is created close-on-exec: fork() keeps it, exec() does
 * not, so a program the app spawns never holds a child's death pipe open. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "cowfork.h"

#include <errno.h>
#include <fcntl.h>
#include <unistd.h>

#if !defined(__linux__)
static int cf__set_fd_flags(int fd, int flags) {
  int fl = fcntl(fd, F_GETFD);
  if (fl < 0 || fcntl(fd, F_SETFD, fl | FD_CLOEXEC) != 0) return -errno;
  if (flags & CF_PIPE_NONBLOCK) {
    fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) != 0) return -errno;
  }
  return 0;
}
#endif

int cf_pipe(int fds[2], int flags) {
  if (flags & ~CF_PIPE_NONBLOCK) return -EINVAL;
#if defined(__linux__)
  if (pipe2(fds, O_CLOEXEC | ((flags & CF_PIPE_NONBLOCK) ? O_NONBLOCK : 0)) != 0) return -errno;
  return 0;
#else
  /* Without pipe2 there is a window in which another thread's exec() could
   * inherit the pipe; cowfork's own threads never exec. */
  int err;
  if (pipe(fds) != 0) return -errno;
  if ((err = cf__set_fd_flags(fds[0], flags)) < 0 || (err = cf__set_fd_flags(fds[1], flags)) < 0) {
    cf_close(fds[0]);
    cf_close(fds[1]);
    return err;
  }
  return 0;
#endif
}

/* close(2) is never retried on EINTR: Linux has released the fd before it
 * reports EINTR, and by the time of a retry another thread may have been given
 * the same number. The fd is gone either way, so EINTR counts as success. */
int cf_close(int fd) {
  if (close(fd) == 0 || errno == EINTR) return 0;
  return -errno;
}
