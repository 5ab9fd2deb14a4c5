/* An array of int64 counters in a MAP_SHARED anonymous mapping. A mapping
 * made before fork() is shared by the parent and every child, so pool
 * children claim work and report progress with one atomic instruction and no
 * message to the parent. */
#include "cowfork.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/mman.h>

#ifndef MAP_ANONYMOUS
#define MAP_ANONYMOUS MAP_ANON
#endif

struct cf_shm_s {
  int64_t* slots;
  size_t count;
};

int cf_shm_create(size_t count, cf_shm_t** out) {
  cf_shm_t* shm;
  void* p;

  if (count == 0) return -EINVAL;
  /* count * 8 must not wrap: a wrapped size maps a few bytes, and every slot
   * past them would be written out of bounds. */
  if (count > CF_SHM_MAX_COUNT) return -ENOMEM;
  shm = malloc(sizeof(*shm));
  if (shm == NULL) return -ENOMEM;
  p = mmap(NULL, count * sizeof(int64_t), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
           -1, 0);
  if (p == MAP_FAILED) {
    int err = -errno;
    free(shm);
    return err;
  }
  shm->slots = p;
  shm->count = count;
  *out = shm;
  return 0;
}

void cf_shm_destroy(cf_shm_t* shm) {
  munmap(shm->slots, shm->count * sizeof(int64_t));
  free(shm);
}

size_t cf_shm_count(const cf_shm_t* shm) {
  return shm->count;
}

int64_t cf_shm_add(cf_shm_t* shm, size_t i, int64_t delta) {
  return __atomic_fetch_add(&shm->slots[i], delta, __ATOMIC_SEQ_CST);
}

int64_t cf_shm_load(cf_shm_t* shm, size_t i) {
  return __atomic_load_n(&shm->slots[i], __ATOMIC_SEQ_CST);
}

void cf_shm_store(cf_shm_t* shm, size_t i, int64_t value) {
  __atomic_store_n(&shm->slots[i], value, __ATOMIC_SEQ_CST);
}

/* Guided self-scheduling: claim ceil(remaining / divisor) items from the
 * cursor in slot i, at least 1 and at most max_chunk. Returns the first index
 * claimed, or -1 when nothing is left; *count gets how many. */
int64_t cf_shm_claim(cf_shm_t* shm, size_t i, int64_t total, int64_t divisor,
                     int64_t max_chunk, int64_t* count) {
  int64_t cur = __atomic_load_n(&shm->slots[i], __ATOMIC_SEQ_CST);
  for (;;) {
    int64_t left = total - cur;
    int64_t take;
    if (left <= 0) {
      *count = 0;
      return -1;
    }
    take = (left + divisor - 1) / divisor;
    if (take < 1) take = 1;
    if (max_chunk > 0 && take > max_chunk) take = max_chunk;
    if (__atomic_compare_exchange_n(&shm->slots[i], &cur, cur + take, 0, __ATOMIC_SEQ_CST,
                                    __ATOMIC_SEQ_CST)) {
      *count = take;
      return cur;
    }
  }
}
