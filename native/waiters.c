/* The threads fork(2) leaves behind, and what they leave in the child.
 *
 * fork() copies memory but only the calling thread. Node's V8 platform keeps
 * a pool of worker threads parked in a condition variable wait (its task
 * queue's "tasks available"). In the child those threads are gone, and two
 * things go wrong when the child posts work to the pool, as V8 11's full
 * collections and V8 14's scavenges do even under --single-threaded
 * (docs/hazards.md §2):
 *
 * - glibc 2.25-2.40's pthread_cond_signal() waits for the phantom waiters of
 *   the older of its two groups to wake up, which never happens: the child
 *   hangs in its first few full GCs once the parent's pool has run a task.
 * - Every task posted to the vanished pool stays counted as outstanding, and
 *   Node drains that count whenever an event loop runs dry (a worker_thread's
 *   exit, for one): forever.
 *
 * The repair has two parts, both decided in the parent just before fork():
 *
 * 1. Empty the pool. Node's WorkerThreadsTaskRunner keeps its threads in a
 *    std::vector<std::unique_ptr<uv_thread_t>>, and NumberOfWorkerThreads()
 *    is its size(). V8 posts min(a job's concurrency, that number) tasks per
 *    job and runs the job on the thread that joins it, so a pool that reports
 *    zero threads gets nothing posted at all. The vector is found from the
 *    parked threads alone: it lies a little past the futex word they wait on,
 *    and each parked thread's own pthread_t (its descriptor, just above its
 *    stack) is one of its entries. This depends on neither the libc's condvar
 *    layout nor the exact offsets in Node's classes (they differ between
 *    Node 20, 22, 24 and 26).
 * 2. Where glibc 2.25-2.40's condvar layout is recognized, re-initialize the
 *    condvars the vanished threads waited on: their waiters are all phantoms,
 *    so "no waiters" is the true state, and a signal becomes a no-op.
 *
 * Every byte is read through cf_peek() (peek.c), so a futex word next to an
 * unmapped or PROT_NONE page costs nothing but a failed match. The child
 * only writes, through cf_poke(), to addresses the parent read. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "cowfork.h"

#include <errno.h>
#include <string.h>

/* What the repair did in this process: in a child, for its own fork; in a
 * parent, for its last census. */
static int cf__waiters_released = -1;
static int cf__pool_emptied = 0;
static int cf__census_passes = 0;
/* Which census is running and which pass it is in, for testtask.c's task to
 * see the census wait for it (tests only; relaxed atomics). */
static _Atomic int cf__census_gen, cf__census_pass_now;
#if defined(__linux__)
static int cf__pool_located = 0;
#else
static int cf__pool_located = -ENOSYS;
#endif

int cf_fork_waiters_released(void) {
  return cf__waiters_released;
}

int cf_fork_pool_emptied(void) {
  return cf__pool_emptied;
}

void cf_census_progress(int* gen, int* pass) {
  *gen = cf__census_gen;
  *pass = cf__census_pass_now;
}

int cf_fork_census_passes(void) {
  return cf__census_passes;
}

int cf_fork_pool_located(void) {
  return cf__pool_located;
}

#if defined(__linux__)
#include <dirent.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#if defined(__GLIBC__)
#include <gnu/libc-version.h>
#endif

/* A census gives up waiting for threads it cannot tell apart (before the
 * pool is found) after this many passes or this long, whichever comes first;
 * the fork then goes ahead as it is. */
#define CF__CENSUS_PASSES 16
#define CF__CENSUS_NS (20 * 1000 * 1000)
/* Once the pool is found, a census waits this long for a pool thread that is
 * still working, sleeping between looks. Under --single-threaded V8 gives its
 * pool one kind of job that runs long: compiling WebAssembly, e.g. undici's
 * HTTP parser after an app's first fetch() calls, for 100 to 300 ms on a
 * 2-core machine. A thread inside that job holds V8's code-space locks at
 * moments and maps new code pages; the fork waits for it to finish. */
#define CF__POOL_SETTLE_NS (2000LL * 1000 * 1000)
#define CF__POOL_SETTLE_SLEEP_NS (200 * 1000)
/* A libuv threadpool thread that is running is inside a task: a crypto job
 * takes OpenSSL's locks at moments (its method store's, in every fetch), and
 * a child that inherits one held hangs on it for good (docs/hazards.md §3).
 * The census gives such threads this long to finish their task and park.
 * Short tasks, whose time in a lock is a large share of the whole, finish
 * well within it; a long one (a costly pbkdf2, a big zlib call) spends almost
 * all its time outside any lock, and the fork does not wait for it. The time
 * is the thread's own time on a CPU (its per-thread CPU clock), not the clock's:
 * on a loaded machine a runnable thread can get no CPU for the whole 5 ms
 * (measured: 29 to 40 of 60 such forks, with four other CPU-bound processes
 * on 2 cores), and the fork went ahead with the lock held. A thread that gets
 * no CPU is waited for up to CF__WORK_SETTLE_CAP_NS of the clock's time. */
#define CF__WORK_SETTLE_NS (5 * 1000 * 1000)
#define CF__WORK_SETTLE_CAP_NS (20 * 1000 * 1000)
#define CF__LIBUV_MAX 64
#define CF__THREADS_MAX 256
/* A parked thread's stack pointer is within this distance below its own
 * descriptor (measured: 2 to 17 KiB); a pool thread's stack is 4 MiB, so the
 * descriptor of the thread whose stack lies above is never this close. */
#define CF__DESCRIPTOR_GAP (1u << 20)
/* How far past a futex word the pool's vector is looked for (measured: 104 to
 * 152 bytes past the word on Node 20 to 26). */
#define CF__POOL_WINDOW 512
#define CF__POOL_MAX 64

enum { CF__RUNNING, CF__FUTEX, CF__BLOCKED };

typedef struct {
  int state;
  int libuv;       /* CF__RUNNING: a libuv threadpool thread (by its name) */
  int tid;
  int64_t cpu_ns;  /* libuv: its time on a CPU so far, or -1 where unknown */
  uintptr_t futex; /* CF__FUTEX: the word it waits on */
  uintptr_t sp;    /* CF__FUTEX, CF__BLOCKED: its stack pointer */
} cf__thread_t;

/* Whether thread `tid` is one of libuv's threadpool threads. libuv 1.48 and
 * later (Node 22 and later) name them; Node 20's are unnamed, and there none
 * is recognized. */
static int cf__is_libuv_worker(const char* tid) {
  char name[32];
  return cf_thread_name(tid, name, sizeof(name)) > 0 && strcmp(name, "libuv-worker") == 0;
}

/* Thread `tid`'s time on a CPU in ns, or -1 where it cannot be read. The
 * clock id is the kernel's per-thread CPU clock, as glibc's
 * pthread_getcpuclockid builds it (MAKE_THREAD_CPUCLOCK(tid, CPUCLOCK_SCHED)):
 * exact, where /proc/<tid>/schedstat moves only at scheduler ticks. */
static int64_t cf__cpu_ns(int tid) {
  struct timespec ts;
  clockid_t clock = (clockid_t)((~(unsigned)tid << 3) | 6);
  if (clock_gettime(clock, &ts) != 0) return -1;
  return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* How many busy libuv threads are still owed time: each is owed
 * CF__WORK_SETTLE_NS of its own CPU time from when this census first saw it
 * running (of the clock's where its CPU time is unknown). `seen` keeps, per
 * thread, that first reading across the census's passes. */
typedef struct {
  int tid;
  int64_t cpu0;
} cf__work_seen_t;

static int cf__work_owed(const cf__thread_t* t, int nt, cf__work_seen_t* seen, int* nseen, int64_t elapsed) {
  int owed = 0;
  for (int i = 0; i < nt; i++) {
    if (t[i].state != CF__RUNNING || !t[i].libuv) continue;
    int k = 0;
    while (k < *nseen && seen[k].tid != t[i].tid) k++;
    if (k == *nseen) {
      /* More busy threads than slots: those are owed clock time. */
      if (*nseen == CF__LIBUV_MAX) {
        owed += elapsed < CF__WORK_SETTLE_NS;
        continue;
      }
      seen[k].tid = t[i].tid;
      seen[k].cpu0 = t[i].cpu_ns;
      (*nseen)++;
    }
    int64_t used = t[i].cpu_ns >= 0 && seen[k].cpu0 >= 0 ? t[i].cpu_ns - seen[k].cpu0 : elapsed;
    owed += used < CF__WORK_SETTLE_NS;
  }
  return owed;
}

/* Reads one /proc/self/task/<tid>/syscall line: "running", or the syscall
 * number, its six arguments, the stack pointer and the program counter. */
static void cf__read_thread(const char* tid, cf__thread_t* t) {
  char path[320], buf[256];
  t->state = CF__BLOCKED;
  t->libuv = 0;
  t->tid = 0;
  t->cpu_ns = -1;
  t->futex = t->sp = 0;
  snprintf(path, sizeof(path), "/proc/self/task/%s/syscall", tid);
  if (cf_read_small(path, buf, sizeof(buf)) <= 0) return; /* gone, or no tracehook on this kernel */
  if (strncmp(buf, "running", 7) == 0) {
    t->state = CF__RUNNING;
    t->libuv = cf__is_libuv_worker(tid);
    t->tid = atoi(tid);
    t->cpu_ns = t->libuv ? cf__cpu_ns(t->tid) : -1;
    return;
  }
  char* p;
  long nr = strtol(buf, &p, 10);
  unsigned long arg[6];
  for (int i = 0; i < 6; i++) arg[i] = strtoul(p, &p, 16);
  /* "-1 sp pc" when blocked outside a syscall: no arguments. */
  t->sp = (uintptr_t)(nr == -1 ? arg[0] : strtoul(p, &p, 16));
  int cmd = (int)(arg[1] & FUTEX_CMD_MASK);
  if (nr == SYS_futex && (cmd == FUTEX_WAIT || cmd == FUTEX_WAIT_BITSET)) {
    t->state = CF__FUTEX;
    t->futex = (uintptr_t)arg[0];
  }
}

/* Every other thread's state. Returns how many, or a negative errno. */
static int cf__snapshot(cf__thread_t* t, int max, int* running, int* busy_libuv) {
  pid_t self = (pid_t)syscall(SYS_gettid);
  DIR* dir = opendir("/proc/self/task");
  if (dir == NULL) return -errno;
  int n = 0;
  struct dirent* e;
  *running = *busy_libuv = 0;
  while ((e = readdir(dir)) != NULL && n < max) {
    if (e->d_name[0] == '.' || atoi(e->d_name) == self) continue;
    cf__read_thread(e->d_name, &t[n]);
    *running += t[n].state == CF__RUNNING;
    *busy_libuv += t[n].libuv;
    n++;
  }
  closedir(dir);
  return n;
}

/* ---- Node's V8 worker pool ------------------------------------------------ */

/* Where the pool's thread vector is, once found. It never moves or changes
 * while the process lives (Node fills it at startup), so one search serves
 * every later fork; each census re-reads it to be sure. */
static struct {
  int n;                          /* entries; 0 when not found */
  uintptr_t vec;                  /* &threads_: begin, end, end of storage */
  uintptr_t head[3];              /* the values found there */
  uintptr_t desc[CF__POOL_MAX];   /* each entry's uv_thread_t: a pthread_t */
} cf__pool;
static int cf__pool_misses = 0;

/* Reads the vector at `v`: its three pointers and the descriptor each entry
 * points at. Returns the entry count, or 0 if it does not look like a vector
 * of pointers to distinct non-null descriptors. */
static int cf__read_vector(uintptr_t v, uintptr_t head[3], uintptr_t* desc) {
  if (!cf_peek_all(v, head, 3 * sizeof(uintptr_t))) return 0;
  uintptr_t b = head[0], e = head[1], c = head[2];
  if (b == 0 || b % sizeof(uintptr_t) != 0 || e <= b || c < e) return 0;
  if ((e - b) % sizeof(uintptr_t) != 0 || (e - b) / sizeof(uintptr_t) > CF__POOL_MAX) return 0;
  int n = (int)((e - b) / sizeof(uintptr_t));
  uintptr_t entry[CF__POOL_MAX];
  if (!cf_peek_all(b, entry, (size_t)n * sizeof(uintptr_t))) return 0;
  for (int k = 0; k < n; k++) {
    if (entry[k] == 0 || entry[k] % sizeof(uintptr_t) != 0) return 0;
    if (!cf_peek_all(entry[k], &desc[k], sizeof(uintptr_t))) return 0;
    if (desc[k] == 0 || desc[k] % sizeof(uintptr_t) != 0) return 0;
    for (int j = 0; j < k; j++)
      if (desc[j] == desc[k]) return 0;
  }
  return n;
}

/* The entry whose descriptor is the nearest above `sp`, close enough to be
 * that thread's own; -1 if none. */
static int cf__owner(const uintptr_t* desc, int n, uintptr_t sp) {
  int best = -1;
  for (int k = 0; k < n; k++)
    if (desc[k] > sp && desc[k] - sp < CF__DESCRIPTOR_GAP && (best < 0 || desc[k] < desc[best])) best = k;
  return best;
}

/* How many entries belong to a thread that is blocked now (not running). A
 * running pool thread may hold the queue's mutex or be inside a task. */
static int cf__pool_parked(const cf__thread_t* t, int nt) {
  uint64_t seen = 0;
  int parked = 0;
  for (int i = 0; i < nt; i++) {
    if (t[i].state == CF__RUNNING) continue;
    int k = cf__owner(cf__pool.desc, cf__pool.n, t[i].sp);
    if (k >= 0 && !(seen & (1ull << k))) {
      seen |= 1ull << k;
      parked++;
    }
  }
  return parked;
}

/* Whether `v` holds the pool's vector: every thread parked on futex word `w`
 * owns a distinct entry. */
static int cf__is_pool(uintptr_t v, uintptr_t w, const cf__thread_t* t, int nt) {
  uintptr_t head[3], desc[CF__POOL_MAX];
  int n = cf__read_vector(v, head, desc);
  if (n == 0 || n > nt) return 0;
  uint64_t seen = 0;
  int parked = 0;
  for (int i = 0; i < nt; i++) {
    if (t[i].state != CF__FUTEX || t[i].futex != w) continue;
    int k = cf__owner(desc, n, t[i].sp);
    if (k < 0 || (seen & (1ull << k))) return 0;
    seen |= 1ull << k;
    parked++;
  }
  if (parked == 0) return 0;
  cf__pool.n = n;
  cf__pool.vec = v;
  memcpy(cf__pool.head, head, sizeof(head));
  memcpy(cf__pool.desc, desc, sizeof(desc));
  return 1;
}

/* Looks for the vector a little past each futex word that threads wait on. */
static void cf__find_pool(const cf__thread_t* t, int nt) {
  for (int i = 0; i < nt && cf__pool.n == 0; i++) {
    if (t[i].state != CF__FUTEX) continue;
    uintptr_t w = t[i].futex;
    int seen = 0;
    for (int j = 0; j < i; j++) seen |= t[j].state == CF__FUTEX && t[j].futex == w;
    if (seen) continue;
    uintptr_t window[CF__POOL_WINDOW / sizeof(uintptr_t)];
    uintptr_t from = w & ~(uintptr_t)(sizeof(uintptr_t) - 1);
    ssize_t got = cf_peek(from, window, sizeof(window));
    for (ssize_t off = 0; off + 3 * (ssize_t)sizeof(uintptr_t) <= got && cf__pool.n == 0; off += sizeof(uintptr_t)) {
      const uintptr_t* h = &window[off / sizeof(uintptr_t)];
      /* The cheap part of cf__read_vector first: most words are no vector. */
      if (h[0] == 0 || h[1] <= h[0] || h[2] < h[1] || (h[1] - h[0]) / sizeof(uintptr_t) > CF__POOL_MAX) continue;
      cf__is_pool(from + (uintptr_t)off, w, t, nt);
    }
  }
}

/* Whether the vector found earlier is still there, unchanged. */
static int cf__pool_intact(void) {
  uintptr_t head[3], desc[CF__POOL_MAX];
  int n = cf__read_vector(cf__pool.vec, head, desc);
  return n == cf__pool.n && memcmp(head, cf__pool.head, sizeof(head)) == 0 &&
         memcmp(desc, cf__pool.desc, (size_t)n * sizeof(uintptr_t)) == 0;
}

/* ---- glibc 2.25-2.40's condition variables --------------------------------- */

#if defined(__GLIBC__)
/* glibc 2.25-2.40's struct __pthread_cond_s. 2.41 dropped g_refs and moved
 * the futex words, so a version gate guards the layout check below. */
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

static int cf__glibc_layout_known(void) {
  static int known = -1;
  if (known < 0) {
    int major = 0, minor = 0;
    known = sscanf(gnu_get_libc_version(), "%d.%d", &major, &minor) == 2 && major == 2 && minor >= 25 &&
            minor <= 40;
  }
  return known;
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

/* The condvars to re-initialize in the child: every one that a vanished
 * thread waits on and that reads as a libuv condvar. */
static void cf__plan_resets(const cf__thread_t* t, int nt, cf_fork_plan_t* plan) {
  if (!cf__glibc_layout_known()) return;
  for (int i = 0; i < nt && plan->nreset < CF_RESET_MAX; i++) {
    uintptr_t u = t[i].futex;
    /* A condvar is 8-byte aligned, so the futex word's alignment says which
     * of the two g_signals it is. */
    if (t[i].state != CF__FUTEX || u % 4 != 0) continue;
    uintptr_t base = u - offsetof(struct cf__glibc_cond, g_signals) - (u % 8 == 4 ? 4 : 0);
    int seen = 0;
    for (int j = 0; j < plan->nreset; j++) seen |= plan->reset[j] == base;
    if (seen) continue;
    struct cf__glibc_cond c;
    if (!cf_peek_all(base, &c, sizeof(c))) continue;
    int n[2] = {0, 0};
    for (int j = 0; j < nt; j++)
      if (t[j].state == CF__FUTEX && t[j].futex - (base + offsetof(struct cf__glibc_cond, g_signals)) < 8)
        n[(t[j].futex - base - offsetof(struct cf__glibc_cond, g_signals)) / 4]++;
    if (cf__is_uv_cond(&c, n)) plan->reset[plan->nreset++] = base;
  }
}
#endif

/* ---- Before and after fork() ---------------------------------------------- */

int cf_waiters_census(cf_fork_plan_t* plan, int flags) {
  cf__thread_t t[CF__THREADS_MAX];
  cf__work_seen_t work_seen[CF__LIBUV_MAX];
  int nt = 0, running = 0, busy_libuv = 0, pass = 0, nwork_seen = 0;
  int64_t start = cf_now_ns();
  /* A child whose fork emptied the pool has nothing left there to repair. */
  int want_pool = !(flags & CF_FORK_SKIP_POOL) && !cf__pool_emptied;
  memset(plan, 0, sizeof(*plan));

  /* A pool thread that is running may be between taking and releasing the
   * task queue's mutex, or inside a task that the child would count as
   * outstanding forever. Give those few threads a moment to park. A libuv
   * threadpool thread inside a task gets a short moment too (a lock it holds
   * would stay held in the child); the finished work itself is locked out by
   * the loop's wq_mutex, which cf_fork holds across fork(), and the pool is
   * re-created in the child. A user's busy worker_thread does not hold a
   * fork up here (src/workers.ts settles those first). */
  cf__census_gen++;
  for (;;) {
    cf__census_pass_now = ++pass;
    nt = cf__snapshot(t, CF__THREADS_MAX, &running, &busy_libuv);
    if (nt < 0) {
      cf__census_passes = pass;
      cf__pool_located = nt == -ENOENT ? -ENOSYS : nt; /* no /proc */
      return nt;
    }
    /* A child whose pool was emptied has no V8 pool thread to wait for. */
    int waiting = cf__pool_emptied ? 0 : running;
    if (want_pool) {
      if (pass == 1 && cf__pool.n > 0 && !cf__pool_intact()) cf__pool.n = 0;
      if (cf__pool.n == 0) cf__find_pool(t, nt);
      /* Until the pool is found, any running thread might be one of it. */
      if (cf__pool.n > 0) waiting = cf__pool.n - cf__pool_parked(t, nt);
    }
    /* Known pool threads get the long wait; unknown running threads (libuv's,
     * a user's Worker) only the short one. */
    int long_wait = want_pool && cf__pool.n > 0 && !(flags & CF_FORK_SHORT_POOL_WAIT);
    int64_t elapsed = cf_now_ns() - start;
    int pool_done = waiting == 0 ||
                    (long_wait ? elapsed >= CF__POOL_SETTLE_NS : (pass >= CF__CENSUS_PASSES || elapsed >= CF__CENSUS_NS));
    /* Busy libuv threads: up to CF__WORK_SETTLE_NS of each one's CPU time, within CF__WORK_SETTLE_CAP_NS. */
    int work_wait = !(flags & CF_FORK_SKIP_WORK_SETTLE) && busy_libuv > 0 && elapsed < CF__WORK_SETTLE_CAP_NS
                        ? cf__work_owed(t, nt, work_seen, &nwork_seen, elapsed)
                        : 0;
    if (pool_done && work_wait == 0) break;
    /* sched_yield() would hand this CPU to a busy thread for a whole slice. */
    if (pass < CF__CENSUS_PASSES && !pool_done) {
      sched_yield();
    } else {
      struct timespec pause = {0, CF__POOL_SETTLE_SLEEP_NS};
      nanosleep(&pause, NULL);
    }
  }
  cf__census_passes = pass;

  if (cf__pool_emptied) {
    cf__pool_located = 1;
  } else if (want_pool && cf__pool.n > 0) {
    plan->pool_end = cf__pool.vec + sizeof(uintptr_t);
    plan->pool_begin = cf__pool.head[0];
    cf__pool_located = 1;
    cf__pool_misses = 0;
  } else if (want_pool) {
    /* Not found. If nothing was running, the pool's threads (if it has any)
     * were parked and still did not match: say so. Otherwise try again at the
     * next fork, but not forever. */
    cf__pool_located = running == 0 || ++cf__pool_misses >= 8 ? -ENOENT : 0;
  }
#if defined(__GLIBC__)
  if (!(flags & CF_FORK_SKIP_COND_RESET)) cf__plan_resets(t, nt, plan);
#endif
  return nt;
}

int cf_waiters_release(const cf_fork_plan_t* plan) {
  int reset = 0;
#if defined(__GLIBC__)
  /* As uv_cond_init() leaves one: no waiters, CLOCK_MONOTONIC. */
  struct cf__glibc_cond fresh;
  memset(&fresh, 0, sizeof(fresh));
  fresh.wrefs = 2;
  for (int i = 0; i < plan->nreset; i++) reset += cf_poke(plan->reset[i], &fresh, sizeof(fresh)) == 0;
#endif
  if (plan->pool_end != 0 && cf_poke(plan->pool_end, &plan->pool_begin, sizeof(uintptr_t)) == 0) {
    cf__pool_emptied = 1;
    cf__pool.n = 0;
  }
  return cf__waiters_released = reset;
}

#else

int cf_waiters_census(cf_fork_plan_t* plan, int flags) {
  (void)flags;
  memset(plan, 0, sizeof(*plan));
  return 0;
}

int cf_waiters_release(const cf_fork_plan_t* plan) {
  (void)plan;
  return cf__waiters_released = 0;
}

#endif
