/* Fresh random bytes straight from the kernel. A forked child needs new
 * randomness before it runs JavaScript, and OpenSSL's generator, the other
 * source, reseeds itself on its first use after fork(): that touches about
 * forty pages of its state, each one a copy-on-write fault in the child. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "cowfork.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#if defined(__linux__)
#include <sys/syscall.h>
#endif

#if !defined(__APPLE__) && !defined(__FreeBSD__)
/* Reads from /dev/urandom, for kernels without getrandom(2) (Linux < 3.17). */
static int cf__urandom(unsigned char* buf, size_t len) {
  int fd;
  do
    fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
  while (fd < 0 && errno == EINTR);
  if (fd < 0) return -errno;
  while (len > 0) {
    ssize_t n = read(fd, buf, len);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      int err = n < 0 ? -errno : -EIO;
      close(fd);
      return err;
    }
    buf += n;
    len -= (size_t)n;
  }
  close(fd);
  return 0;
}
#endif

int cf_random_fill(void* out, size_t len) {
  unsigned char* buf = out;
#if defined(__linux__) && defined(SYS_getrandom)
  while (len > 0) {
    long n = syscall(SYS_getrandom, buf, len, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == ENOSYS) return cf__urandom(buf, len);
    if (n < 0) return -errno;
    buf += n;
    len -= (size_t)n;
  }
  return 0;
#elif defined(__APPLE__) || defined(__FreeBSD__)
  arc4random_buf(buf, len);
  return 0;
#else
  return cf__urandom(buf, len);
#endif
}
