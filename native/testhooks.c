/* Test-only: a thread parked where a careless fork repair would fault.
 *
 * The repair (waiters.c) looks at memory around each futex word other threads
 * wait on. This parks a thread on the first word of a page whose predecessor
 * is PROT_NONE (CF_TEST_PARK_PROT_NONE) or unmapped (CF_TEST_PARK_HOLE), so a
 * test can show that neither the parent nor its children touch that page.
 * JavaScript cannot do this itself: Atomics.wait() waits on a condvar of its
 * own, not on the shared word. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "cowfork.h"

#include <errno.h>
#include <stdlib.h>

#if defined(__linux__)
#include <linux/futex.h>
#include <pthread.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

struct cf_test_park_s {
  pthread_t thread;
  char* map;   /* three pages: [before][word's page][after] */
  size_t page;
  volatile uint32_t* word;
  int hole;     /* the first page was unmapped: another mapping may use it now */
  int unparked; /* cf_test_unpark() ran: the thread is joined, the pages gone */
};

static void cf__unmap(cf_test_park_t* p) {
  if (p->hole)
    munmap(p->map + p->page, 2 * p->page);
  else
    munmap(p->map, 3 * p->page);
}

static void* cf__parked(void* arg) {
  cf_test_park_t* p = arg;
  while (__atomic_load_n(p->word, __ATOMIC_ACQUIRE) == 0)
    syscall(SYS_futex, p->word, FUTEX_WAIT_PRIVATE, 0, NULL, NULL, 0);
  return NULL;
}

int cf_test_park(int kind, cf_test_park_t** out, uintptr_t* word) {
  cf_test_park_t* p = calloc(1, sizeof(*p));
  if (p == NULL) return -ENOMEM;
  p->page = (size_t)sysconf(_SC_PAGESIZE);
  /* The third page keeps the word's page from merging into a neighbour. */
  p->map = mmap(NULL, 3 * p->page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p->map == MAP_FAILED) {
    free(p);
    return -ENOMEM;
  }
  int r = kind == CF_TEST_PARK_HOLE ? munmap(p->map, p->page) : mprotect(p->map, p->page, PROT_NONE);
  if (r != 0) r = -errno;
  p->hole = kind == CF_TEST_PARK_HOLE && r == 0;
  p->word = (volatile uint32_t*)(p->map + p->page);
  if (r == 0) r = -pthread_create(&p->thread, NULL, cf__parked, p);
  if (r != 0) {
    cf__unmap(p);
    free(p);
    return r;
  }
  *out = p;
  *word = (uintptr_t)p->word;
  return 0;
}

int cf_test_unpark(cf_test_park_t* p) {
  if (p->unparked) return -EINVAL;
  p->unparked = 1;
  __atomic_store_n(p->word, 1, __ATOMIC_RELEASE);
  syscall(SYS_futex, p->word, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
  pthread_join(p->thread, NULL);
  cf__unmap(p);
  return 0;
}

/* The handle was collected. A thread still parked is left alone (a forked
 * child has no such thread to join); only an unparked one is freed. */
void cf_test_park_free(cf_test_park_t* p) {
  if (p->unparked) free(p);
}

#else

int cf_test_park(int kind, cf_test_park_t** out, uintptr_t* word) {
  return -ENOSYS;
}

int cf_test_unpark(cf_test_park_t* p) {
  return -ENOSYS;
}

void cf_test_park_free(cf_test_park_t* p) {
}

#endif
