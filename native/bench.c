/* Reference points for bench/: what the kernel alone charges for a fork of
 * this process, so that cowfork's own cost can be read as a ratio to it. */
#include "cowfork.h"

#include <errno.h>
#include <signal.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* fork(), _exit(0) in the child, and reap it by pid: the least any fork of
 * this process can cost. Signals are blocked across it, as cf_fork does, so
 * that none of Node's handlers runs in the child. Returns the child's pid. */
int cf_bench_fork_roundtrip(void) {
  sigset_t all, saved;
  int status;
  int err;
  pid_t pid, r;

  sigfillset(&all);
  if ((err = pthread_sigmask(SIG_SETMASK, &all, &saved)) != 0) return -err;
  pid = fork();
  if (pid == 0) _exit(0);
  err = pid < 0 ? -errno : 0;
  pthread_sigmask(SIG_SETMASK, &saved, NULL);
  if (err < 0) return err;
  do
    r = waitpid(pid, &status, 0);
  while (r < 0 && errno == EINTR);
  if (r < 0) return -errno;
  return (int)pid;
}

/* CPU time this process has used, in nanoseconds: how the benchmarks see
 * what a child spent, without the wall-clock noise of a shared machine. */
int64_t cf_bench_cpu_ns(void) {
  struct timespec ts;
  if (clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts) != 0) return -errno;
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}
