/* MADV_DOFORK over the whole address space, before every fork.
 *
 * Node >= 20 builds V8 with the private-mapping fork optimization: every page
 * V8 maps is MADV_DONTFORK, so a plain fork() child has no heap and dies on its
 * first JavaScript instruction. Every mapping is marked DOFORK again, and
 * because V8 keeps mapping new pages, this runs before every fork.
 *
 * A 200 MB heap is about 1,000 mappings. Reading /proc/self/maps and calling
 * madvise() once per mapping costs 1.5 to 9 ms on a shared 2-core VM; the
 * ranged calls below cost 0.1 to 0.3 ms there (docs/benchmarks.md). The kernel
 * applies madvise() advice to every mapping in a range, so a few calls over
 * the address space do the same work in one pass over the kernel's own VMA
 * tree. A range with holes in it still advises every mapping and then fails
 * with ENOMEM, which is expected here. But a range that meets one of the
 * kernel's special mappings ([vvar], [vvar_vclock], [uprobes], any VM_IO
 * mapping) stops there with EINVAL and leaves the mappings above it alone. So
 * the ranged calls go around the special mappings. These are learned once from
 * the per-mapping walk, which is also the fallback whenever a ranged call
 * fails with anything but ENOMEM.
 *
 * Only the thread that forks calls these functions, so the state below needs
 * no lock. A child inherits it, and its address space, unchanged. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "cowfork.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

#if defined(__linux__)
#include <sys/mman.h>
#endif

static int cf__last_path;  /* CF_DOFORK_RANGED or CF_DOFORK_WALK; 0 before the first call */
static int cf__last_calls; /* madvise() calls the last cf_dofork_all() made */

#if defined(__linux__) && defined(MADV_DOFORK)

/* The special mappings that refuse DOFORK, sorted and merged where adjacent.
 * They are set up at exec and never move: [vvar] and [vvar_vclock] sit next
 * to each other below [vdso], so there is one range on x86_64 today. */
#define CF__SPECIAL_MAX 16
typedef struct {
  uintptr_t start;
  uintptr_t end;
} cf__range_t;
static cf__range_t cf__special[CF__SPECIAL_MAX];
static int cf__nspecial = -1; /* -1: not learned yet */

static int cf__madvise(uintptr_t start, uintptr_t end) {
  return madvise((void*)start, end - start, MADV_DOFORK) == 0 ? 0 : -errno;
}

/* Records [start, end) as a special mapping, merging it with the one before
 * when they touch. Mappings arrive in address order. Returns 0, or -1 when
 * the table is full: then the ranged path is not used at all. */
static int cf__note_special(cf__range_t* out, int* n, uintptr_t start, uintptr_t end) {
  if (*n > 0 && out[*n - 1].end == start) {
    out[*n - 1].end = end;
    return 0;
  }
  if (*n == CF__SPECIAL_MAX) return -1;
  out[*n].start = start;
  out[*n].end = end;
  (*n)++;
  return 0;
}

/* Parses "start-end perms offset dev inode   name" and tells whether the name
 * is a kernel one in brackets, like [vvar]. [heap], [stack] and [anon:...] are
 * ordinary memory, but they accept DOFORK, so they are never noted anyway. */
static int cf__parse_line(const char* line, uintptr_t* start, uintptr_t* end, int* bracketed) {
  char* p;
  *start = (uintptr_t)strtoull(line, &p, 16);
  if (*p != '-') return 0;
  *end = (uintptr_t)strtoull(p + 1, &p, 16);
  /* The name is the sixth field; a bracketed one is never a file path. */
  const char* name = p;
  for (int field = 1; field < 5 && *name; field++) {
    while (*name == ' ') name++;
    while (*name && *name != ' ') name++;
  }
  while (*name == ' ') name++;
  *bracketed = *name == '[';
  return *end > *start;
}

/* The per-mapping walk: madvise() each line of /proc/self/maps. A kernel
 * special mapping that refuses (EINVAL) is remembered, so that the ranged
 * calls can go around it next time. Returns the number of madvise() calls. */
static int cf__walk(void) {
  char buf[65536];
  char line[4096];
  size_t linelen = 0;
  cf__range_t special[CF__SPECIAL_MAX];
  int nspecial = 0;
  int full = 0;
  int calls = 0;
  int fd;
  ssize_t n;

  do
    fd = open("/proc/self/maps", O_RDONLY | O_CLOEXEC);
  while (fd < 0 && errno == EINTR);
  if (fd < 0) return -errno;

  for (;;) {
    do
      n = read(fd, buf, sizeof(buf));
    while (n < 0 && errno == EINTR);
    if (n < 0) {
      int err = -errno;
      close(fd);
      return err;
    }
    if (n == 0) break;
    for (ssize_t i = 0; i < n; i++) {
      if (buf[i] != '\n') {
        if (linelen < sizeof(line) - 1) line[linelen++] = buf[i];
        continue;
      }
      line[linelen] = '\0';
      linelen = 0;
      uintptr_t start, end;
      int bracketed;
      if (!cf__parse_line(line, &start, &end, &bracketed)) continue;
      calls++;
      /* [vsyscall] lies above the task's address space and fails with ENOMEM:
       * it is no mapping of the process, and fork() does not copy it. */
      if (cf__madvise(start, end) == -EINVAL && bracketed)
        full |= cf__note_special(special, &nspecial, start, end);
    }
  }
  close(fd);

  if (full) {
    cf__nspecial = -1;
  } else {
    for (int i = 0; i < nspecial; i++) cf__special[i] = special[i];
    cf__nspecial = nspecial;
  }
  return calls;
}

/* The ranged path: one call for each gap between special mappings, and one
 * per special range to check that it still refuses, so that a mapping that
 * took its place after an mremap() is not left out. Returns the number of
 * calls, or -1 when the walk must run instead. */
static int cf__ranged(void) {
  const uintptr_t top = (uintptr_t)0 - (uintptr_t)sysconf(_SC_PAGESIZE);
  uintptr_t from = 0;
  int calls = 0;
  int r;

  for (int i = 0; i <= cf__nspecial; i++) {
    uintptr_t to = i < cf__nspecial ? cf__special[i].start : top;
    if (to > from) {
      calls++;
      r = cf__madvise(from, to);
      if (r < 0 && r != -ENOMEM) return -1;
    }
    if (i == cf__nspecial) break;
    calls++;
    if (cf__madvise(cf__special[i].start, cf__special[i].end) != -EINVAL) return -1;
    from = cf__special[i].end;
  }
  return calls;
}

int cf_dofork(int flags) {
  int calls = -1;
  if (flags & CF_DOFORK_FORGET_SPECIAL) cf__nspecial = 0;
  if (!(flags & CF_DOFORK_FORCE_WALK) && cf__nspecial >= 0) calls = cf__ranged();
  if (calls >= 0) {
    cf__last_path = CF_DOFORK_RANGED;
  } else {
    calls = cf__walk();
    if (calls < 0) return calls;
    cf__last_path = CF_DOFORK_WALK;
  }
  cf__last_calls = calls;
  return calls;
}

#else

int cf_dofork(int flags) {
  (void)flags;
  return 0;
}

#endif

int cf_dofork_all(void) {
  return cf_dofork(0);
}

int cf_dofork_last(int* calls) {
  if (calls != NULL) *calls = cf__last_calls;
  return cf__last_path;
}
