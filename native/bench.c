/* Reference points for bench/: what the kernel alone charges for a fork of
 * this process, so that cowfork's own cost can be read as a ratio to it. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* sched_getcpu, CPU_SET */
#endif
#include "cowfork.h"

#include <errno.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#if defined(__linux__)
#include <sched.h>
#endif

#if defined(__linux__) && !defined(MADV_POPULATE_WRITE)
#define MADV_POPULATE_WRITE 23 /* Linux 5.14 */
#endif

/* Reaps pid and checks that it exited 0. */
static int cf__bench_reap(pid_t pid) {
  cf_wait_result_t w;
  int r = cf_waitpid((int)pid, 0, &w);
  if (r < 0) return r;
  return w.exit_status == 0 && w.term_signal == 0 ? 0 : -ECHILD;
}

/* fork() with every signal blocked across it, as cf_fork does, so that none
 * of Node's handlers runs in the child; the child keeps them blocked until it
 * calls _exit. Returns the pid, 0 in the child, or a negative errno. */
static pid_t cf__bench_fork(void) {
  sigset_t all, saved;
  int err;
  pid_t pid;
  sigfillset(&all);
  if ((err = pthread_sigmask(SIG_SETMASK, &all, &saved)) != 0) return -err;
  pid = fork();
  if (pid == 0) return 0;
  err = pid < 0 ? -errno : 0;
  pthread_sigmask(SIG_SETMASK, &saved, NULL);
  return err < 0 ? err : pid;
}

/* fork(), _exit(0) in the child, and reap it by pid: the least any fork of
 * this process can cost. Returns the child's pid. */
int cf_bench_fork_roundtrip(void) {
  pid_t pid = cf__bench_fork();
  int err;
  if (pid == 0) _exit(0);
  if (pid < 0) return pid;
  if ((err = cf__bench_reap(pid)) < 0) return err;
  return (int)pid;
}

/* CPU time this process has used, in nanoseconds: how the benchmarks see
 * what a child spent, without the wall-clock noise of a shared machine. */
int64_t cf_bench_cpu_ns(void) {
  struct timespec ts;
  if (clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts) != 0) return -errno;
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

#if defined(__linux__)
/* A shared anonymous page, where a forked child leaves what it measured. */
static int64_t* cf__bench_shared(void) {
  void* p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  return p == MAP_FAILED ? NULL : (int64_t*)p;
}
#endif

/* What this machine charges a forked child for each page it writes: `pages`
 * private pages are written in the parent, then the child writes one byte in
 * each (one copy-on-write fault per page) or, with `populate`, copies them
 * all with one madvise(MADV_POPULATE_WRITE) call (Linux 5.14+: the same
 * copies without a trap per page). *ns gets the child's time for the pages. */
int cf_bench_cow_ns(int pages, int populate, int64_t* ns) {
#if defined(__linux__)
  size_t len = (size_t)pages * 4096;
  int64_t* shared;
  char* p;
  pid_t pid;
  int err = 0;
  if (pages <= 0) return -EINVAL;
  if ((shared = cf__bench_shared()) == NULL) return -errno;
  p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) {
    err = -errno;
    munmap(shared, 4096);
    return err;
  }
  madvise(p, len, MADV_NOHUGEPAGE); /* 4 KB pages, one fault each */
  for (size_t i = 0; i < len; i += 4096) p[i] = 1;
  pid = cf__bench_fork();
  if (pid == 0) {
    int64_t t = cf_now_ns();
    if (populate) {
      if (madvise(p, len, MADV_POPULATE_WRITE) != 0) _exit(1);
    } else {
      for (size_t i = 0; i < len; i += 4096) ((volatile char*)p)[i] = 2;
    }
    shared[0] = cf_now_ns() - t;
    _exit(0);
  }
  err = pid < 0 ? pid : cf__bench_reap(pid);
  if (err == -ECHILD && populate) err = -EINVAL; /* no MADV_POPULATE_WRITE on this kernel */
  if (err == 0) *ns = shared[0];
  munmap(p, len);
  munmap(shared, 4096);
  return err;
#else
  return -ENOSYS;
#endif
}

/* Where the kernel first runs a new child: *parent_cpu is the CPU the parent
 * forked on, *child_cpu the one the child's first instruction ran on. */
int cf_bench_fork_cpu(int* parent_cpu, int* child_cpu) {
#if defined(__linux__)
  int64_t* shared;
  pid_t pid;
  int err;
  if ((shared = cf__bench_shared()) == NULL) return -errno;
  *parent_cpu = sched_getcpu();
  pid = cf__bench_fork();
  if (pid == 0) {
    shared[0] = sched_getcpu();
    _exit(0);
  }
  err = pid < 0 ? pid : cf__bench_reap(pid);
  if (err == 0) *child_cpu = (int)shared[0];
  munmap(shared, 4096);
  return err;
#else
  return -ENOSYS;
#endif
}

static volatile uint64_t cf__bench_sink;

static void cf__bench_spin(int64_t iters) {
  for (int64_t i = 0; i < iters; i++) cf__bench_sink += (uint64_t)i;
}

/* CPU-bound work in forked children: `children` children each run `iters`
 * iterations of a loop (children == 0: this process runs it once, the serial
 * reference). With `pin`, child k first binds itself to CPU k mod the CPUs
 * this process may use, so that the kernel cannot keep it on the parent's
 * CPU. Returns the wall time in ns. */
int64_t cf_bench_spin_ns(int children, int64_t iters, int pin) {
  int64_t t = cf_now_ns();
  int err = 0;
  pid_t pids[64];
  int n = 0;
  if (children < 0 || children > 64 || iters < 0) return -EINVAL;
  if (children == 0) {
    cf__bench_spin(iters);
    return cf_now_ns() - t;
  }
#if defined(__linux__)
  cpu_set_t allowed;
  if (pin && sched_getaffinity(0, sizeof allowed, &allowed) != 0) return -errno;
#else
  if (pin) return -ENOSYS;
#endif
  for (; n < children; n++) {
    pid_t pid = cf__bench_fork();
    if (pid == 0) {
#if defined(__linux__)
      if (pin) {
        int want = n % CPU_COUNT(&allowed), seen = 0;
        for (int cpu = 0; cpu < CPU_SETSIZE; cpu++) {
          if (!CPU_ISSET(cpu, &allowed) || seen++ != want) continue;
          cpu_set_t one;
          CPU_ZERO(&one);
          CPU_SET(cpu, &one);
          if (sched_setaffinity(0, sizeof one, &one) != 0) _exit(1);
          break;
        }
      }
#endif
      cf__bench_spin(iters);
      _exit(0);
    }
    if (pid < 0) {
      err = pid;
      break;
    }
    pids[n] = pid;
  }
  for (int i = 0; i < n; i++) {
    int r = cf__bench_reap(pids[i]);
    if (err == 0) err = r;
  }
  return err < 0 ? err : cf_now_ns() - t;
}
