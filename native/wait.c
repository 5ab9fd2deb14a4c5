/* Reaping. Every child cowfork forks is waited for by pid, never with
 * waitpid(-1): that would steal exit statuses from libuv's child_process. */
#include "cowfork.h"

#include <errno.h>
#include <sys/wait.h>

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
