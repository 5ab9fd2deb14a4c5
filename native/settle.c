/* Letting a parent's worker_threads settle before a fork.
 *
 * fork() copies only the calling thread, with every lock exactly as it was.
 * A Node Worker's thread takes process-wide locks while it starts and while
 * it tears down: Node's options lock while it makes the Worker's isolate,
 * the main isolate's interrupt lock (the inspector tells the main thread
 * about each Worker it starts and finishes), V8's Wasm engine lock around
 * isolate creation (seen on Node 24 and 26). A fork that lands inside one of those short sections
 * leaves the lock held by a thread that does not exist in the child, and the
 * child waits on it forever (measured: about 1 child in 300 that starts a
 * Worker right after its parent's Worker answered, docs/hazards.md).
 *
 * Those sections never block: a thread inside one is running (or runnable,
 * preempted), never asleep. So before forking, the parent waits, for a
 * bounded time, until each Worker thread it knows of is asleep or gone,
 * reading each thread's state from /proc. Layout-independent: nothing of
 * Node's or V8's memory is read. It narrows the window to the moment between
 * the last look and fork(); it does not close it. */
#include "cowfork.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#if defined(__linux__)
/* 1 when the thread is running or runnable (R), in uninterruptible sleep (D)
 * or cannot be looked at, 0 when asleep, stopped or gone. */
static int cf__thread_busy(int tid) {
  char path[64], buf[512];
  snprintf(path, sizeof(path), "/proc/self/task/%d/stat", tid);
  ssize_t len = cf_read_small(path, buf, sizeof(buf));
  if (len == -ENOENT || len == -ESRCH || len == 0) return 0; /* gone */
  if (len < 0) return 1;                                   /* unknown: wait (bounded) */
  /* The name (field 2) may hold spaces and parentheses: the state follows the last ')'. */
  char* p = strrchr(buf, ')');
  if (p == NULL || p[1] != ' ') return 0;
  return p[2] == 'R' || p[2] == 'D';
}
#endif

/* The threads the next cf_fork waits for, first thing, before its other
 * steps (fork.c says why): set by cf_fork_settle_next, used once. Only the
 * main thread forks. */
#define CF__SETTLE_MAX 256
static int32_t cf__next_tids[CF__SETTLE_MAX];
static size_t cf__next_n;
static int cf__next_max_us;

int cf_fork_settle_next(const int32_t* tids, size_t n, int max_us) {
  if (n > CF__SETTLE_MAX) n = CF__SETTLE_MAX;
  memcpy(cf__next_tids, tids, n * sizeof(*tids));
  cf__next_n = n;
  cf__next_max_us = max_us;
  return (int)n;
}

void cf_fork_settle_run(void) {
  size_t n = cf__next_n;
  cf__next_n = 0;
  if (n == 0) return;
  cf_locks_before_fork_with_workers();
  cf_settle_threads(cf__next_tids, n, cf__next_max_us);
}

int cf_settle_threads(const int32_t* tids, size_t n, int max_us) {
#if defined(__linux__)
  int64_t deadline = cf_now_ns() + (int64_t)max_us * 1000;
  for (;;) {
    int busy = 0;
    for (size_t i = 0; i < n; i++) busy += cf__thread_busy(tids[i]);
    if (busy == 0 || cf_now_ns() >= deadline) return busy;
    /* Give the core to the busy thread: on a small machine it may be waiting for ours. */
    struct timespec pause = {0, 100000};
    nanosleep(&pause, NULL);
  }
#else
  (void)tids;
  (void)n;
  (void)max_us;
  return 0;
#endif
}
