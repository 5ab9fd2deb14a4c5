/* poll(2) with EINTR handled the way libuv does: the timeout is recomputed
 * from a monotonic clock after each interruption, so a stream of signals
 * cannot stretch the wait. */
#include "cowfork.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>

#define CF__POLL_STACK 64

int cf_poll(const int* fds, const int* events, int* revents, int n, int64_t timeout_ms) {
  struct pollfd stack[CF__POLL_STACK];
  struct pollfd* pfd = stack;
  uint64_t deadline = 0;
  int r;

  if (n < 0) return -EINVAL;
  if (n > CF__POLL_STACK) {
    pfd = malloc(sizeof(*pfd) * (size_t)n);
    if (pfd == NULL) return -ENOMEM;
  }
  for (int i = 0; i < n; i++) {
    pfd[i].fd = fds[i];
    pfd[i].events = (short)(((events[i] & CF_READ) ? POLLIN : 0) |
                            ((events[i] & CF_WRITE) ? POLLOUT : 0));
    pfd[i].revents = 0;
  }
  if (timeout_ms > 0) deadline = uv_hrtime() / 1000000 + (uint64_t)timeout_ms;

  for (;;) {
    int wait_ms = timeout_ms < 0 ? -1 : (timeout_ms > 0x7fffffff ? 0x7fffffff : (int)timeout_ms);
    r = poll(pfd, (nfds_t)n, wait_ms);
    if (r >= 0 || errno != EINTR) break;
    if (timeout_ms > 0) {
      uint64_t now = uv_hrtime() / 1000000;
      timeout_ms = now >= deadline ? 0 : (int64_t)(deadline - now);
    }
  }
  if (r < 0) {
    r = -errno;
  } else {
    for (int i = 0; i < n; i++) {
      short re = pfd[i].revents;
      revents[i] = ((re & POLLIN) ? CF_READ : 0) | ((re & POLLOUT) ? CF_WRITE : 0) |
                   ((re & POLLHUP) ? CF_HUP : 0) | ((re & (POLLERR | POLLNVAL)) ? CF_ERR : 0);
    }
  }
  if (pfd != stack) free(pfd);
  return r;
}
