/* Condition variables that lost their waiters to fork(2).
 *
 * fork() copies memory but only the calling thread. Node's V8 platform keeps
 * a pool of worker threads parked in pthread_cond_wait() on one condition
 * variable (its task queue's "tasks available"). In the child those threads
 * are gone, but the condition variable still counts them as waiters. Even
 * under --single-threaded, V8 11's mark-compact posts a ParallelClearingJob to
 * that pool, so a child's full collections signal it. glibc's
 * pthread_cond_signal() then waits for the phantom waiters of the older group
 * to wake up (__condvar_quiesce_and_switch_g1), which never happens: the
 * child hangs in its first few full GCs once the parent's pool has run any
 * task. Measured: prefork workers under `Connection: close` load stopped
 * after ~10 s; map() children doing 20 full GCs hung 2 runs out of 2.
 *
 * The repair: just before fork, note the futex each other thread is blocked
 * on (/proc/self/task/<tid>/syscall); in the child, re-initialize each one
 * that is recognisably a libuv condition variable. Its waiters are all
 * phantoms, so "no waiters" is the true state, and signals become no-ops.
 *
 * This reads glibc's private layout (2.25-2.40); anything that does not match
 * it exactly is left alone. Later glibc versions no longer block in signal. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "cowfork.h"

#include <string.h>

/* What the repair did in this process, if it was forked by cf_fork. */
static int cf__waiters_released = -1;
static int cf__pool_emptied = 0;

int cf_fork_waiters_released(void) {
  return cf__waiters_released;
}

int cf_fork_pool_emptied(void) {
  return cf__pool_emptied;
}

#if defined(__linux__) && defined(__GLIBC__)
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

/* glibc 2.25-2.40's struct __pthread_cond_s. */
struct cf__glibc_cond {
  uint64_t wseq;      /* waiter sequence << 1 | index of group 2 */
  uint64_t g1_start;  /* start of group 1 << 1 */
  uint32_t g_refs[2]; /* per group: blocked waiters << 1 | wake-request */
  uint32_t g_size[2];
  uint32_t g1_orig_size;
  uint32_t wrefs;        /* waiters << 3 | destroy wake-request | monotonic clock | pshared */
  uint32_t g_signals[2]; /* the futex words waiters block on */
};
_Static_assert(sizeof(struct cf__glibc_cond) == sizeof(pthread_cond_t), "glibc condvar layout");

/* Reads one /proc/self/task/<tid>/syscall line. Returns 1 and the futex
 * address when the thread is blocked in a futex wait, 0 when it is blocked
 * elsewhere, -1 when it is running (it may be holding a lock right now). */
static int cf__blocked_on(const char* tid, uintptr_t* addr, uintptr_t* sp) {
  char path[64], buf[256];
  snprintf(path, sizeof(path), "/proc/self/task/%s/syscall", tid);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0; /* gone, or no tracehook on this kernel */
  ssize_t n = read(fd, buf, sizeof(buf) - 1);
  close(fd);
  if (n <= 0) return 0;
  buf[n] = '\0';
  if (strncmp(buf, "running", 7) == 0) return -1;
  char* p;
  long nr = strtol(buf, &p, 10);
  if (nr != SYS_futex) return 0;
  unsigned long uaddr = strtoul(p, &p, 16);
  unsigned long op = strtoul(p, &p, 16);
  int cmd = (int)(op & FUTEX_CMD_MASK);
  if (cmd != FUTEX_WAIT && cmd != FUTEX_WAIT_BITSET) return 0;
  /* Four more arguments, then the stack pointer and the program counter. */
  for (int i = 0; i < 4; i++) strtoul(p, &p, 16);
  *addr = (uintptr_t)uaddr;
  *sp = (uintptr_t)strtoul(p, &p, 16);
  return 1;
}

int cf_waiters_census(cf_waiters_t* w) {
  pid_t self = (pid_t)syscall(SYS_gettid);
  /* A thread that is running may be between taking and releasing the queue's
   * mutex. Give running threads a few chances to park first; a thread that is
   * busy for good (a user's worker_thread) does not hold the fork up long. */
  for (int attempt = 0; attempt < 16; attempt++) {
    DIR* dir = opendir("/proc/self/task");
    if (dir == NULL) return -errno;
    int running = 0;
    struct dirent* e;
    w->n = 0;
    while ((e = readdir(dir)) != NULL) {
      if (e->d_name[0] == '.' || atoi(e->d_name) == self) continue;
      uintptr_t addr, sp;
      int r = cf__blocked_on(e->d_name, &addr, &sp);
      if (r < 0) running++;
      if (r > 0 && w->n < CF_WAITERS_MAX) {
        w->addr[w->n] = addr;
        w->sp[w->n++] = sp;
      }
    }
    closedir(dir);
    if (running == 0) break;
    sched_yield();
  }
  return w->n;
}

/* Whether futex word `addr` lies in the condvar at `cond`. */
static int cf__within(uintptr_t addr, uintptr_t cond) {
  return addr - cond < sizeof(struct cf__glibc_cond);
}

static int cf__count(const cf_waiters_t* w, uintptr_t addr) {
  int n = 0;
  for (int i = 0; i < w->n; i++) n += w->addr[i] == addr;
  return n;
}

/* Whether `c` is, beyond reasonable doubt, a libuv condition variable with
 * n[0] + n[1] of the vanished threads blocked on its two futex words. */
static int cf__is_uv_cond(const struct cf__glibc_cond* c, const int n[2]) {
  uint32_t waiters = c->wrefs >> 3;
  if ((c->wrefs & 7) != 2) return 0; /* libuv's: monotonic clock, private, no destroy pending */
  if (waiters < (uint32_t)(n[0] + n[1]) || waiters > 4096) return 0;
  for (int g = 0; g < 2; g++)
    if ((c->g_refs[g] >> 1) < (uint32_t)n[g] || (c->g_refs[g] >> 1) > waiters) return 0;
  if ((c->wseq >> 1) < waiters || (c->g1_start >> 1) > (c->wseq >> 1)) return 0;
  return 1;
}

/* Whether the pages holding [p, p + len) are mapped (mincore fails with
 * ENOMEM otherwise), so that a wrong guess below reads nothing it should not. */
static int cf__mapped(uintptr_t p, size_t len) {
  static long page = 0;
  if (page == 0) page = sysconf(_SC_PAGESIZE);
  uintptr_t first = p & ~((uintptr_t)page - 1);
  unsigned char vec[4];
  size_t span = (p + len - first + (size_t)page - 1) / (size_t)page;
  if (span > sizeof(vec)) return 0;
  return mincore((void*)first, span * (size_t)page, vec) == 0;
}

/* The second half of the hazard. Posting no longer blocks, but every task V8
 * posts to the vanished pool stays counted as outstanding, and Node's
 * NodePlatform::DrainTasks, which runs when any event loop in the process
 * runs dry (a worker_thread's exit, for one), waits for that count to reach
 * zero: forever. V8 posts min(its job's concurrency, the platform's
 * NumberOfWorkerThreads()) tasks per job, and joins the job on the calling
 * thread, so a pool that reports zero threads gets no tasks at all.
 *
 * Node's WorkerThreadsTaskRunner holds the task queue whose condvar `cond` is
 * (a mutex, two condvars, a count, a flag and a deque), then the delayed-task
 * scheduler, then `std::vector<std::unique_ptr<uv_thread_t>> threads_`, whose
 * size() NumberOfWorkerThreads() returns. Look for that vector just past the
 * queue, and accept it only if its uv_thread_t values (glibc: the thread's
 * descriptor, at the top of its stack) lie just above the stack pointers of
 * the very threads that were parked on `cond`. Then make it empty. */
static int cf__empty_pool(uintptr_t cond, int parked, const cf_waiters_t* w) {
  const uintptr_t STACK_MAX = 16u << 20; /* Node's pool threads have 4 MiB stacks */
  uintptr_t from = cond + 2 * sizeof(struct cf__glibc_cond), to = from + 320;
  if (parked == 0 || !cf__mapped(from, to - from + 24)) return 0;
  for (uintptr_t v = from; v < to; v += sizeof(uintptr_t)) {
    uintptr_t* vec = (uintptr_t*)v; /* begin, end, end of storage */
    if (vec[0] == 0 || vec[0] % sizeof(uintptr_t) != 0 || vec[1] < vec[0] || vec[2] < vec[1]) continue;
    size_t count = (vec[1] - vec[0]) / sizeof(uintptr_t);
    if ((vec[1] - vec[0]) % sizeof(uintptr_t) != 0 || count < (size_t)parked || count > (size_t)parked + 2) continue;
    if (!cf__mapped(vec[0], count * sizeof(uintptr_t))) continue;
    /* Each parked thread's descriptor: the nearest one above its stack
     * pointer. They must all exist and be distinct. */
    int matched = 0;
    uint32_t used = 0;
    for (int i = 0; i < w->n && count <= 32; i++) {
      if (!cf__within(w->addr[i], cond)) continue;
      size_t best = count;
      uintptr_t best_gap = STACK_MAX;
      for (size_t k = 0; k < count; k++) {
        uintptr_t owner = ((uintptr_t*)vec[0])[k];
        if (owner == 0 || owner % sizeof(uintptr_t) != 0 || !cf__mapped(owner, sizeof(uintptr_t))) continue;
        uintptr_t thread = *(uintptr_t*)owner;
        if (thread > w->sp[i] && thread - w->sp[i] < best_gap) {
          best_gap = thread - w->sp[i];
          best = k;
        }
      }
      if (best == count || (used & (1u << best))) break;
      used |= 1u << best;
      matched++;
    }
    if (matched != parked) continue;
    vec[1] = vec[0];
    return 1;
  }
  return 0;
}

int cf_waiters_release(const cf_waiters_t* w) {
  int reset = 0;
  for (int i = 0; i < w->n; i++) {
    uintptr_t u = w->addr[i];
    /* A condvar is 8-byte aligned, so the futex word's alignment says which
     * of the two g_signals it is. */
    if (u % 4 != 0) continue;
    int g = (u % 8) == 4;
    uintptr_t base = u - offsetof(struct cf__glibc_cond, g_signals) - 4 * (uintptr_t)g;
    int seen = 0;
    for (int j = 0; j < i; j++) seen |= cf__within(w->addr[j], base);
    if (seen) continue; /* handled with an earlier waiter */
    struct cf__glibc_cond* c = (struct cf__glibc_cond*)base;
    int n[2] = {cf__count(w, (uintptr_t)&c->g_signals[0]), cf__count(w, (uintptr_t)&c->g_signals[1])};
    if (!cf__is_uv_cond(c, n)) continue;
    memset(c, 0, sizeof(*c));
    c->wrefs = 2; /* as uv_cond_init left it: CLOCK_MONOTONIC */
    reset++;
    if (!cf__pool_emptied) cf__pool_emptied = cf__empty_pool(base, n[0] + n[1], w);
  }
  return cf__waiters_released = reset;
}

#else

int cf_waiters_census(cf_waiters_t* w) {
  w->n = 0;
  return 0;
}

int cf_waiters_release(const cf_waiters_t* w) {
  (void)w;
  return cf__waiters_released = 0;
}

#endif
