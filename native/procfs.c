/* The small /proc files cowfork looks at (a thread's state, name or current
 * syscall; the process's stat), each taken in one read, and the monotonic
 * clock its bounded waits use. Every such read goes through here. */
#include "cowfork.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

ssize_t cf_read_small(const char* path, char* buf, size_t size) {
  int fd;
  ssize_t len;
  if (size == 0) return -EINVAL;
  do
    fd = open(path, O_RDONLY | O_CLOEXEC);
  while (fd < 0 && errno == EINTR);
  if (fd < 0) return -errno;
  do
    len = read(fd, buf, size - 1);
  while (len < 0 && errno == EINTR);
  if (len < 0) len = -errno;
  close(fd);
  buf[len < 0 ? 0 : len] = '\0';
  return len;
}

ssize_t cf_thread_name(const char* tid, char* name, size_t size) {
  char path[300];
  snprintf(path, sizeof(path), "/proc/self/task/%s/comm", tid);
  ssize_t len = cf_read_small(path, name, size);
  if (len > 0 && name[len - 1] == '\n') name[--len] = '\0';
  return len;
}

int64_t cf_now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}
