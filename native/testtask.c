/* Test-only: a libuv threadpool task that holds a lock while it computes, as
 * a crypto job holds OpenSSL's at moments (docs/hazards.md §3). A test forks
 * while the task holds it and asks the child whether the lock is free: the
 * census (waiters.c) gives a running threadpool thread a few milliseconds to
 * finish its task, so a task that ends once the census waits for it ends
 * before fork(), and a long one does not. The task spins rather than sleeps:
 * only a running thread is waited for, as only a running one can be inside
 * such a lock. */
#include "cowfork.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>

static pthread_mutex_t cf__task_lock = PTHREAD_MUTEX_INITIALIZER;
static atomic_int cf__task_holding;
/* Set when the task saw the census wait for it, just before it lets go. */
static atomic_int cf__task_noticed;

typedef struct {
  uv_work_t req;
  int64_t ns;
  int until_waited;
} cf__task_t;

/* Whether a census that began after generation `gen0` is in its second pass. */
static int cf__task_waited_for(int gen0) {
  int gen, pass;
  cf_census_progress(&gen, &pass);
  return gen != gen0 && pass >= 2;
}

static void cf__task_work(uv_work_t* req) {
  cf__task_t* t = req->data;
  int gen0, pass;
  pthread_mutex_lock(&cf__task_lock);
  cf_census_progress(&gen0, &pass);
  atomic_store(&cf__task_holding, 1);
  int64_t end = cf_now_ns() + t->ns;
  int noticed = 0;
  while (!noticed && cf_now_ns() < end) noticed = t->until_waited && cf__task_waited_for(gen0);
  if (noticed) atomic_store(&cf__task_noticed, 1);
  atomic_store(&cf__task_holding, 0);
  pthread_mutex_unlock(&cf__task_lock);
}

static void cf__task_done(uv_work_t* req, int status) {
  free(req->data);
}

/* Waits up to 2 s for `cond` on the holding flag; 0, or -ETIMEDOUT. */
static int cf__task_wait(int holding) {
  int64_t until = cf_now_ns() + 2000LL * 1000 * 1000;
  while (atomic_load(&cf__task_holding) != holding)
    if (cf_now_ns() > until) return -ETIMEDOUT;
    else sched_yield();
  return 0;
}

int cf_test_task_hold(uv_loop_t* loop, int us, int until_waited) {
  int err;
  /* One task at a time: the last one has let go of the lock. */
  if ((err = cf__task_wait(0)) < 0) return err;
  cf__task_t* t = malloc(sizeof(*t));
  if (t == NULL) return -ENOMEM;
  t->req.data = t;
  t->ns = (int64_t)us * 1000;
  t->until_waited = until_waited;
  atomic_store(&cf__task_noticed, 0);
  if ((err = uv_queue_work(loop, &t->req, cf__task_work, cf__task_done)) < 0) {
    free(t);
    return err;
  }
  return cf__task_wait(1);
}

/* Whether the last task saw the census wait for it (in a child: before the
 * fork). A task that did not had no CPU during the whole wait, as on a loaded
 * machine: the fork went ahead without it, as it should. */
int cf_test_task_noticed(void) {
  return atomic_load(&cf__task_noticed);
}

int cf_test_task_lock_held(void) {
  if (pthread_mutex_trylock(&cf__task_lock) != 0) return 1;
  pthread_mutex_unlock(&cf__task_lock);
  return 0;
}
