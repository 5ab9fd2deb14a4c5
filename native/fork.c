/* fork(2) for a running Node.js process. See docs/hazards.md for why
 * each step exists; every step here has a test that fails without it. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "cowfork.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#if defined(__linux__)
#include <sys/mman.h>
#include <sys/prctl.h>
#endif

/* The MADV_DOFORK pass at one of its two points: early (first, a test flag's
 * old order) or last (right before fork(), the default); none with
 * CF_FORK_SKIP_DOFORK. Returns the pass's result, 0 when it does not run here. */
static int cf__dofork_pass(int flags, int early) {
  if (flags & CF_FORK_SKIP_DOFORK) return 0;
  if (((flags & CF_FORK_EARLY_DOFORK) != 0) != early) return 0;
  return cf_dofork_all();
}

/* Fork the process. Signals are blocked across the fork, as libuv's uv_spawn
 * does, so that no handler runs in the child before its state is repaired. The
 * loop's work-queue mutex is held across the fork so that a threadpool thread
 * cannot own it at the instant of the fork: a copy of a held mutex would stay
 * held in the child forever. For the same reason the condition variables the
 * other threads wait on are reset in the child (waiters.c). In the child,
 * inherited I/O is silenced and the loop is re-armed before any JavaScript
 * runs again. */
int cf_fork(uv_loop_t* loop, const int* keep_fds, int nkeep, int flags) {
  sigset_t all, saved;
  cf_fork_plan_t plan = {0};
  int err = 0;
  pid_t pid;
#if defined(__linux__)
  /* Recorded before fork(): the child's death check compares with it. */
  pid_t parent = getpid();
#endif

  /* First, the wait for the threads registered by cf_fork_settle_next (a
   * parent's Workers, src/workers.ts): every later step must see the process
   * as it is at fork(). While a Worker starts it maps memory and parks and
   * wakes threads; a wait after the census would let the child repair
   * condvars that were freed meanwhile, and any wait before the MADV_DOFORK
   * pass must stay before it (both measured: children died of SIGSEGV). */
  cf_fork_settle_run();
  /* Test only: the pass before the census, where a pool thread's new pages
   * are left out (see below). */
  if ((err = cf__dofork_pass(flags, 1)) < 0) return err;

  if (!(flags & CF_FORK_SKIP_PARENT_WORK)) cf_loop_before_fork();
  cf_locks_before_fork();

  /* Program failures stay deliverable, as in libuv's uv_spawn: a fault in
   * the child's repairs must kill it at once through the normal handlers, not
   * be forced past a mask (or, for SIGABRT, left pending) while it hangs. */
  sigfillset(&all);
  sigdelset(&all, SIGSEGV);
  sigdelset(&all, SIGBUS);
  sigdelset(&all, SIGABRT);
  sigdelset(&all, SIGFPE);
  sigdelset(&all, SIGILL);
  sigdelset(&all, SIGTRAP);
  sigdelset(&all, SIGSYS);
  if ((err = pthread_sigmask(SIG_SETMASK, &all, &saved)) != 0) return -err;
  if (!(flags & CF_FORK_SKIP_WAITERS)) cf_waiters_census(&plan, flags);
  /* The MADV_DOFORK pass comes last, right before fork(): the census may
   * have waited for V8's pool, and a pool thread maps new pages (each one
   * MADV_DONTFORK) while it works, e.g. while it compiles WebAssembly after
   * an app's first fetch(). Run any earlier and the child lacks those pages
   * while it has the code that points into them (measured: children died of
   * SIGSEGV running undici's parser, docs/hazards.md). */
  if ((err = cf__dofork_pass(flags, 0)) < 0) {
    pthread_sigmask(SIG_SETMASK, &saved, NULL);
    return err;
  }
  uv_mutex_lock(&loop->wq_mutex);

  pid = fork();
  if (pid < 0) err = -errno;

  uv_mutex_unlock(&loop->wq_mutex);

  if (pid == 0) {
    cf_waiters_release(&plan);
    if (!(flags & CF_FORK_SKIP_NODE_LOCKS)) cf_locks_release_in_child();
    if (!(flags & CF_FORK_SKIP_PARENT_WORK)) cf_loop_forget_parent_work(loop);
    if (!(flags & CF_FORK_SKIP_PARENT_IMMEDIATES)) cf_env_forget_parent_immediates(loop);
#if defined(__linux__)
    if (flags & CF_FORK_SET_PDEATHSIG) {
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      /* The parent may have died between fork() and prctl(); then the child
       * was re-parented. Not "== 1": the parent may itself be PID 1 of a
       * container, and a subreaper adopts orphans under another pid. */
      if (getppid() != parent) _exit(1);
    }
#endif
    if (!(flags & CF_FORK_SKIP_SILENCE)) {
      err = cf_silence_inherited(loop, keep_fds, nkeep);
      if (err < 0) _exit(CF_EXIT_SILENCE);
    }
    if (!(flags & CF_FORK_SKIP_LOOP_FORK)) {
      err = uv_loop_fork(loop);
      if (err < 0) _exit(CF_EXIT_LOOP_FORK);
      if (!(flags & CF_FORK_SKIP_REARM)) cf_loop_rearm_watchers(loop);
      if (!(flags & CF_FORK_SKIP_PARENT_WRITES)) cf_loop_empty_parent_writes(loop, keep_fds, nkeep);
    }
  }

  pthread_sigmask(SIG_SETMASK, &saved, NULL);
  return pid < 0 ? err : (int)pid;
}

/* A forked child must not run the parent's exit handlers or libuv's teardown,
 * which aborts in a forked child (libuv#4443). stdout and stderr writes are
 * synchronous for files, pipes and TTYs on POSIX, so nothing is left to flush. */
void cf_exit(int status) {
  _exit(status);
}

int cf_getpid(void) {
  return (int)getpid();
}

int cf_getppid(void) {
  return (int)getppid();
}

/* Replace the process image in place: same pid, so a supervisor, a shell's job
 * control and signals keep working. Used by the launcher to add V8 flags. */
int cf_execve(const char* path, char* const argv[], char* const envp[]) {
  /* Node marks stdin, stdout and stderr close-on-exec; the new image needs them. */
  for (int fd = 0; fd <= 2; fd++) {
    int fl = fcntl(fd, F_GETFD);
    if (fl >= 0 && (fl & FD_CLOEXEC)) fcntl(fd, F_SETFD, fl & ~FD_CLOEXEC);
  }
  execve(path, argv, envp);
  return -errno;
}
