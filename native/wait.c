/* Reaping. Every child cowfork forks is waited for by pid, never with
 * waitpid(-1): that would steal exit statuses from libuv's child_process. */
#include "cowfork.h"

#include <errno.h>
#include <sys/wait.h>

#if defined(__linux__)
#include <sys/syscall.h>
#include <unistd.h>
#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434 /* the same number on every architecture */
#endif
#endif

/* A pidfd (Linux >= 5.3) polls readable the moment its process terminates,
 * which is when waitpid() can reap it. Closing the files, which a pipe would
 * report, happens earlier: the mm teardown in between takes milliseconds for a
 * large process. Returns -ENOSYS where there is no pidfd. */
int cf_pidfd_open(int pid) {
#if defined(__linux__)
  long fd = syscall(SYS_pidfd_open, pid, 0);
  return fd < 0 ? -errno : (int)fd;
#else
  (void)pid;
  return -ENOSYS;
#endif
}

int cf_waitpid(int pid, int nohang, cf_wait_result_t* out) {
  int status = 0;
  pid_t r;

  do
    r = waitpid((pid_t)pid, &status, nohang ? WNOHANG : 0);
  while (r < 0 && errno == EINTR);
  if (r < 0) return -errno;
  out->pid = (int)r;
  out->exit_status = 0;
  out->term_signal = 0;
  if (r == 0) return 0;
  if (WIFEXITED(status)) {
    out->exit_status = WEXITSTATUS(status);
  } else if (WIFSIGNALED(status)) {
    out->exit_status = -1;
    out->term_signal = WTERMSIG(status);
  }
  return (int)r;
}
