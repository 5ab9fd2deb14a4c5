/* Reading and writing memory that may not be there.
 *
 * The fork repair (waiters.c) looks at memory next to the futex words other
 * threads wait on. Those words can sit anywhere: at the start of a page whose
 * predecessor is unmapped or PROT_NONE, say. A plain load there is a SIGSEGV,
 * and mincore(2) cannot tell, because a PROT_NONE page is still mapped. So
 * every read goes through the kernel, which answers EFAULT instead:
 * process_vm_readv(2) on our own pid, or, where a seccomp filter or an old
 * kernel refuses it, write(2) into a pipe and read the bytes back. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "cowfork.h"

#include <errno.h>
#include <string.h>

#if defined(__linux__)
#include <fcntl.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

/* What process_vm_readv/writev gave last time: 0 untried, 1 works, -1 refused. */
static int cf__vm_works = 0;

static size_t cf__page(void) {
  static size_t page = 0;
  if (page == 0) page = (size_t)sysconf(_SC_PAGESIZE);
  return page;
}

/* Splits [addr, addr + len) at page boundaries into at most `max` iovecs, so
 * that the kernel can stop at the first page it cannot touch and still report
 * the pages before it: it never splits one iovec. */
static int cf__split(uintptr_t addr, size_t len, struct iovec* iov, int max) {
  int n = 0;
  while (len > 0 && n < max) {
    size_t room = cf__page() - (addr & (cf__page() - 1));
    size_t take = len < room ? len : room;
    iov[n].iov_base = (void*)addr;
    iov[n++].iov_len = take;
    addr += take;
    len -= take;
  }
  return n;
}

/* The pipe fallback: the kernel reads our memory for write(2), returning
 * EFAULT (or a short count) where it cannot. The raw syscall, not libc's
 * write(): probing memory that may not belong to any object is the point, and
 * AddressSanitizer's write() interceptor would report it as an overflow. */
static ssize_t cf__peek_pipe(uintptr_t addr, void* dst, size_t len) {
  int fds[2];
  if (pipe2(fds, O_CLOEXEC | O_NONBLOCK) != 0) return -errno;
  size_t done = 0;
  while (done < len) {
    size_t chunk = len - done < 4096 ? len - done : 4096;
    ssize_t w;
    do
      w = syscall(SYS_write, fds[1], (const void*)(addr + done), chunk);
    while (w < 0 && errno == EINTR);
    if (w <= 0) break;
    ssize_t r;
    do
      r = read(fds[0], (char*)dst + done, (size_t)w);
    while (r < 0 && errno == EINTR);
    if (r != w) break;
    done += (size_t)w;
    if ((size_t)w < chunk) break;
  }
  close(fds[0]);
  close(fds[1]);
  return (ssize_t)done;
}

ssize_t cf_peek(uintptr_t addr, void* dst, size_t len) {
  if (len == 0) return 0;
  if (cf__vm_works >= 0) {
    struct iovec remote[16];
    struct iovec local = {dst, len};
    int n = cf__split(addr, len, remote, 16);
    ssize_t r;
    do
      r = process_vm_readv(getpid(), &local, 1, remote, (unsigned long)n, 0);
    while (r < 0 && errno == EINTR);
    if (r >= 0) {
      cf__vm_works = 1;
      return r;
    }
    if (errno == EFAULT) return 0;
    /* ENOSYS (no such syscall) or EPERM (a seccomp profile refuses it). */
    if (cf__vm_works == 0 && (errno == ENOSYS || errno == EPERM)) cf__vm_works = -1;
    if (cf__vm_works >= 0) return -errno;
  }
  return cf__peek_pipe(addr, dst, len);
}

int cf_peek_all(uintptr_t addr, void* dst, size_t len) {
  return cf_peek(addr, dst, len) == (ssize_t)len;
}

int cf_poke(uintptr_t addr, const void* src, size_t len) {
  if (cf__vm_works >= 0) {
    struct iovec remote[16];
    struct iovec local = {(void*)src, len};
    int n = cf__split(addr, len, remote, 16);
    ssize_t r;
    do
      r = process_vm_writev(getpid(), &local, 1, remote, (unsigned long)n, 0);
    while (r < 0 && errno == EINTR);
    if (r == (ssize_t)len) return 0;
    if (r >= 0 || errno == EFAULT) return -EFAULT;
    if (errno != ENOSYS && errno != EPERM) return -errno;
  }
  /* The syscall is refused. The caller only writes where the parent read
   * successfully, into memory that a waiting thread had itself written. */
  memcpy((void*)addr, src, len);
  return 0;
}

#else

/* No census runs off Linux, so nothing reads foreign memory. */
ssize_t cf_peek(uintptr_t addr, void* dst, size_t len) {
  (void)addr;
  (void)dst;
  (void)len;
  return -ENOSYS;
}

int cf_peek_all(uintptr_t addr, void* dst, size_t len) {
  return 0;
}

int cf_poke(uintptr_t addr, const void* src, size_t len) {
  return -ENOSYS;
}

#endif
