/* Callbacks that other threads handed to the parent's main thread.
 *
 * Node's Environment keeps a queue of "threadsafe immediates": callbacks that
 * another thread queues for the main thread (SetImmediateThreadsafe), and that
 * the main thread runs on its next check phase or when task_queues_async_
 * fires. A worker_thread's last act is to queue one that joins the thread and
 * emits 'exit'. fork() copies that queue. A child forked after a Worker
 * finished, but before the parent ran that callback, joins a thread it does
 * not have. glibc has put the vanished thread's descriptor in its stack cache,
 * so the child's own next thread gets the same pthread_t: the inherited join
 * waits for the child's Worker instead, and that Worker's own join then fails
 * with ESRCH. Worker::JoinThread checks the result, and the child aborts
 * (SIGABRT, usually in its second Worker).
 *
 * libuv's uv_loop_fork() already clears the async handle's pending flag (since
 * libuv 1.45); Node's queue is what survives. Everything in it, and in the
 * interrupt queue next to it, was handed over by threads the child does not
 * have, for the parent. So the child empties both. The callbacks are leaked,
 * neither run nor destroyed: destroying the Worker's would run ~Worker, which
 * checks that the thread was joined.
 *
 * Node has no API for this queue, so this reads its private layout, checked
 * on Node 20, 22, 24 and 26. The Environment is found by its five libuv handles, which are
 * declared in a row (immediate check, immediate idle, idle prepare, idle check,
 * task_queues_async_). A few kilobytes after them come, also in a row: the
 * list of at-exit callbacks, the main thread's own immediates, the mutex, the
 * threadsafe queue, the interrupt queue and a bool that is true once libuv is
 * set up. Each queue is { size, head, tail }, and each callback is
 * { vtable, flags, next }. A match needs all of that to hold, with every
 * callback's vtable inside the image that holds task_queues_async_'s callback
 * (Node's), and must be the only match; otherwise nothing is written. Memory
 * is read through a pipe, so a wrong guess gets EFAULT instead of a crash.
 *
 * The list is what makes the match unique. Empty queues, a free mutex and a
 * true bool are 112 zero bytes and then a 1, which other memory can hold too:
 * Node 24 under vitest sometimes had such bytes 5.4 KB past the run, in the
 * heap past the Environment, and the locate saw two matches and gave up. A
 * std::list's nodes point back at its header's own address, which stray
 * bytes do not. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "cowfork.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#if defined(__linux__)
#include <link.h>
#else
#include <dlfcn.h>
#endif

/* How far past task_queues_async_ the run may lie. Measured: 1,528 bytes on
 * Node 20.20, 1,640 on 22.23, 1,704 on 24.22, 1,880 on 26.12. */
#define CF__SCAN_BYTES 8192
#define CF__MAX_CALLBACKS 4096

static int cf__dropped = -1;

int cf_fork_parent_immediates_dropped(void) {
  return cf__dropped;
}

/* Node's CallbackQueue<void, Environment*>. */
typedef struct {
  uintptr_t size; /* std::atomic<size_t> */
  uintptr_t head; /* std::unique_ptr<Callback> */
  uintptr_t tail;
} cf__queue_t;

/* A std::list: a circular doubly linked list whose sentinel node is the
 * header itself. */
typedef struct {
  uintptr_t link[2]; /* libstdc++: { next, prev }; libc++: { prev, next } */
  uintptr_t size;
} cf__list_t;

/* The run of Environment members this file looks for. */
typedef struct {
  cf__list_t at_exit; /* at_exit_functions_ (std::list<ExitCallback>) */
  cf__queue_t own; /* native_immediates_: the main thread's own */
  uv_mutex_t mutex;
  cf__queue_t threadsafe;
  cf__queue_t interrupts;
  unsigned char initialized; /* task_queues_async_initialized_ */
} cf__immediates_t;

typedef struct {
  int probe[2];      /* a pipe: write() from an address reads it safely */
  uintptr_t lo, hi;  /* the loaded object that holds Node's code */
} cf__reader_t;

/* Copies len bytes at address src into dst. Returns 0, or -1 when any of it
 * is unreadable: through cf_peek (peek.c), which lets the kernel do the read,
 * so an unmapped or PROT_NONE page is an error, not a fault. */
static int cf__read(cf__reader_t* r, void* dst, uintptr_t src, size_t len) {
  (void)r;
  if (src == 0) return -1;
  return cf_peek_all(src, dst, len) ? 0 : -1;
}

#if defined(__linux__)
typedef struct {
  uintptr_t target, lo, hi;
} cf__image_t;

static int cf__image_cb(struct dl_phdr_info* info, size_t size, void* arg) {
  cf__image_t* img = arg;
  uintptr_t lo = UINTPTR_MAX, hi = 0;
  (void)size;
  for (int i = 0; i < info->dlpi_phnum; i++) {
    const ElfW(Phdr)* ph = &info->dlpi_phdr[i];
    if (ph->p_type != PT_LOAD) continue;
    uintptr_t start = info->dlpi_addr + ph->p_vaddr;
    if (start < lo) lo = start;
    if (start + ph->p_memsz > hi) hi = start + ph->p_memsz;
  }
  if (img->target < lo || img->target >= hi) return 0;
  img->lo = lo;
  img->hi = hi;
  return 1;
}
#endif

/* The address range of the executable or library that holds `code`: Node's,
 * and so the vtables of its callbacks. */
static int cf__image_of(uintptr_t target, uintptr_t* lo, uintptr_t* hi) {
#if defined(__linux__)
  cf__image_t img = {target, 0, 0};
  if (!dl_iterate_phdr(cf__image_cb, &img)) return -1;
  *lo = img.lo;
  *hi = img.hi;
#else
  Dl_info info;
  if (!dladdr((void*)target, &info)) return -1;
  /* Without the segment table, accept the next 1 GiB past the image's base. */
  *lo = (uintptr_t)info.dli_fbase;
  *hi = *lo + ((uintptr_t)1 << 30);
#endif
  return 0;
}

static int cf__in_image(const cf__reader_t* r, uintptr_t p) {
  return p >= r->lo && p < r->hi && p % sizeof(uintptr_t) == 0;
}

/* The number of callbacks in a well-formed queue: 0 when empty, or -1. */
static long cf__queue_len(cf__reader_t* r, const cf__queue_t* q) {
  if (q->head == 0 && q->tail == 0 && q->size == 0) return 0;
  if (q->head == 0 || q->tail == 0 || q->size == 0 || q->size > CF__MAX_CALLBACKS) return -1;
  uintptr_t cb = q->head;
  for (uintptr_t i = 1;; i++) {
    uintptr_t words[3], vtable[3];
    /* { vtable, flags (kUnrefed = 0, kRefed = 1), next } */
    if (cb % sizeof(uintptr_t) != 0 || cf__read(r, words, cb, sizeof(words)) != 0) return -1;
    if (!cf__in_image(r, words[0]) || (uint32_t)words[1] > 1) return -1;
    /* The vtable's entries: two destructors, then Call(). */
    if (cf__read(r, vtable, words[0], sizeof(vtable)) != 0 || !cf__in_image(r, vtable[2])) return -1;
    if (i == q->size) return cb == q->tail && words[2] == 0 ? (long)i : -1;
    cb = words[2];
  }
}

/* Whether the list at `header` (a copy of it in `l`), followed through link
 * `next`, visits `size` nodes that each link back to the one before and
 * returns to the header. */
static int cf__list_walks(cf__reader_t* r, uintptr_t header, const cf__list_t* l, int next) {
  int prev = 1 - next;
  uintptr_t before = header, node = l->link[next];
  for (uintptr_t i = 0; i < l->size; i++) {
    uintptr_t links[2];
    if (node == header || node % sizeof(uintptr_t) != 0 || cf__read(r, links, node, sizeof(links)) != 0) return 0;
    if (links[prev] != before) return 0;
    before = node;
    node = links[next];
  }
  return node == header && l->link[prev] == before;
}

/* Whether the bytes at `header` are a well-formed std::list, in either C++
 * library's order of the links (the main thread alone changes this one, so
 * it is never mid-update at a fork). */
static int cf__is_list(cf__reader_t* r, uintptr_t header, const cf__list_t* l) {
  if (l->size > CF__MAX_CALLBACKS) return 0;
  return cf__list_walks(r, header, l, 0) || cf__list_walks(r, header, l, 1);
}

/* The mutex: 0 when free, 1 when a thread (one the child does not have) held
 * it at the fork, -1 when the bytes do not look like a libuv mutex. Only
 * glibc's layout is known; elsewhere any bytes pass. */
static int cf__mutex_state(const uv_mutex_t* m) {
#if defined(__GLIBC__)
  const int* w = (const int*)m; /* __lock, __count, __owner, __nusers, __kind */
  /* libuv makes a default mutex, or an error-checking one in debug builds. */
  if ((w[4] != 0 && w[4] != PTHREAD_MUTEX_ERRORCHECK) || w[1] != 0) return -1;
  if (w[0] == 0) return w[2] == 0 && w[3] == 0 ? 0 : -1;
  return (w[0] == 1 || w[0] == 2) && w[2] > 0 && w[3] >= 1 ? 1 : -1;
#else
  (void)m;
  return 0;
#endif
}

/* Releases a mutex held by a thread that does not exist in this process. */
static void cf__mutex_forget_owner(uv_mutex_t* m) {
#if defined(__GLIBC__)
  int* w = (int*)m;
  w[0] = w[1] = w[2] = w[3] = 0; /* __kind stays */
#else
  (void)m;
#endif
}

/* Whether the bytes at `at` (a copy of them in `c`) are the run of members,
 * and the threadsafe queue is either well-formed or was mid-update under a
 * held mutex. */
static int cf__is_immediates(cf__reader_t* r, uintptr_t at, const cf__immediates_t* c) {
  if (c->initialized != 1) return 0;
  int locked = cf__mutex_state(&c->mutex);
  if (locked < 0) return 0;
  if (cf__queue_len(r, &c->own) < 0 || cf__queue_len(r, &c->interrupts) < 0) return 0;
  if (!cf__is_list(r, at + offsetof(cf__immediates_t, at_exit), &c->at_exit)) return 0;
  if (cf__queue_len(r, &c->threadsafe) >= 0) return 1;
  return locked == 1 && c->threadsafe.size <= CF__MAX_CALLBACKS;
}

typedef struct {
  uintptr_t addr;
  uv_handle_type type;
} cf__handle_t;

typedef struct {
  size_t n, cap;
  cf__handle_t* all;
} cf__handles_t;

static void cf__collect(uv_handle_t* h, void* arg) {
  cf__handles_t* hs = arg;
  if (hs->n == hs->cap) {
    size_t cap = hs->cap ? 2 * hs->cap : 256;
    cf__handle_t* all = realloc(hs->all, cap * sizeof(*all));
    if (all == NULL) return;
    hs->all = all;
    hs->cap = cap;
  }
  hs->all[hs->n].addr = (uintptr_t)h;
  hs->all[hs->n++].type = h->type;
}

static int cf__by_addr(const void* a, const void* b) {
  uintptr_t x = ((const cf__handle_t*)a)->addr, y = ((const cf__handle_t*)b)->addr;
  return x < y ? -1 : x > y;
}

static int cf__handle_is(const cf__handles_t* hs, uintptr_t p, uv_handle_type type) {
  cf__handle_t key = {p, UV_UNKNOWN_HANDLE};
  const cf__handle_t* h = bsearch(&key, hs->all, hs->n, sizeof(key), cf__by_addr);
  return h != NULL && h->type == type;
}

/* The Environment's task_queues_async_: the last of five handles that each
 * directly follow the one before. 0 unless there is exactly one such run. */
static uintptr_t cf__find_async(uv_loop_t* loop) {
  cf__handles_t hs = {0, 0, NULL};
  uintptr_t async = 0;
  int runs = 0;
  uv_walk(loop, cf__collect, &hs);
  qsort(hs.all, hs.n, sizeof(*hs.all), cf__by_addr);
  for (size_t i = 0; i < hs.n; i++) {
    if (hs.all[i].type != UV_CHECK) continue;
    uintptr_t idle = hs.all[i].addr + sizeof(uv_check_t);
    uintptr_t prepare = idle + sizeof(uv_idle_t);
    uintptr_t check = prepare + sizeof(uv_prepare_t);
    uintptr_t next = check + sizeof(uv_check_t);
    if (cf__handle_is(&hs, idle, UV_IDLE) && cf__handle_is(&hs, prepare, UV_PREPARE) &&
        cf__handle_is(&hs, check, UV_CHECK) && cf__handle_is(&hs, next, UV_ASYNC)) {
      async = next;
      runs++;
    }
  }
  free(hs.all);
  return runs == 1 ? async : 0;
}

/* Where the run is, once found: the Environment does not move, and a child
 * inherits this from the parent that looked. */
static uintptr_t cf__run;
static uintptr_t cf__image_lo, cf__image_hi;

/* The bytes from just past task_queues_async_, where the run must lie: into
 * window (CF__WINDOW_BYTES), from *from. Returns how many read, 0 if none. */
#define CF__WINDOW_BYTES (CF__SCAN_BYTES + sizeof(cf__immediates_t))
static size_t cf__window(cf__reader_t* r, uv_loop_t* loop, unsigned char* window, uintptr_t* from) {
  uintptr_t async = cf__find_async(loop);
  if (async == 0) return 0;
  if (cf__image_of((uintptr_t)((uv_async_t*)async)->async_cb, &r->lo, &r->hi) != 0) return 0;
  *from = async + sizeof(uv_async_t);
  *from = (*from + sizeof(uintptr_t) - 1) & ~(uintptr_t)(sizeof(uintptr_t) - 1);
  size_t len = CF__WINDOW_BYTES;
  /* The Environment may end before the window does; shrink to what reads. */
  while (len > sizeof(cf__immediates_t) && cf__read(r, window, *from, len) != 0) len /= 2;
  return len > sizeof(cf__immediates_t) ? len : 0;
}

/* The address of the member run in window (len bytes read at from), or 0
 * when there is not exactly one. */
static uintptr_t cf__scan(cf__reader_t* r, const unsigned char* window, size_t len, uintptr_t from) {
  uintptr_t found = 0;
  int matches = 0;
  for (size_t off = 0; off + sizeof(cf__immediates_t) <= len; off += sizeof(uintptr_t)) {
    cf__immediates_t c;
    memcpy(&c, window + off, sizeof(c));
    if (!cf__is_immediates(r, from + off, &c)) continue;
    found = from + off;
    matches++;
  }
  return matches == 1 ? found : 0;
}

/* The address of the member run, or 0 when there is not exactly one. */
static uintptr_t cf__locate(cf__reader_t* r, uv_loop_t* loop) {
  static unsigned char window[CF__WINDOW_BYTES];
  uintptr_t from = 0;
  size_t len = cf__window(r, loop, window, &from);
  return len == 0 ? 0 : cf__scan(r, window, len, from);
}

static int cf__reader_open(cf__reader_t* r) {
  /* Non-blocking: a write larger than the pipe's buffer must fail, not block. */
  if (cf_pipe(r->probe, CF_PIPE_NONBLOCK) != 0) return -1;
  r->lo = cf__image_lo;
  r->hi = cf__image_hi;
  return 0;
}

static void cf__reader_close(cf__reader_t* r) {
  cf_close(r->probe[0]);
  cf_close(r->probe[1]);
}

int cf_env_immediates_found(uv_loop_t* loop) {
  cf__reader_t r;
  if (cf__run != 0) return 1;
  if (cf__reader_open(&r) != 0) return 0;
  cf__run = cf__locate(&r, loop);
  cf__image_lo = r.lo;
  cf__image_hi = r.hi;
  cf__reader_close(&r);
  return cf__run != 0;
}

int cf_env_forget_parent_immediates(uv_loop_t* loop) {
  cf__reader_t r;
  cf__immediates_t* c = NULL;
  if (cf__reader_open(&r) != 0) return cf__dropped = -1;
  if (cf__run != 0) {
    /* Where the parent found it; check that it still reads as the run. */
    cf__immediates_t copy;
    if (cf__read(&r, &copy, cf__run, sizeof(copy)) == 0 && cf__is_immediates(&r, cf__run, &copy)) c = (cf__immediates_t*)cf__run;
  } else {
    c = (cf__immediates_t*)cf__locate(&r, loop);
  }
  cf__reader_close(&r);
  if (c == NULL) return cf__dropped = -1;
  cf__dropped = (int)(c->threadsafe.size + c->interrupts.size);
  memset(&c->threadsafe, 0, sizeof(c->threadsafe));
  memset(&c->interrupts, 0, sizeof(c->interrupts));
  /* Held by a thread that does not exist here: it would never be released. */
  if (cf__mutex_state(&c->mutex) == 1) cf__mutex_forget_owner(&c->mutex);
  return cf__dropped;
}

/* Test only: in a copy of the window, plants at each offset clear of the run
 * the bytes that Node 24 under vitest had 5.4 KB past it (empty queues, a
 * free mutex and a true bool: zeros and a 1), and scans the copy. Returns how
 * many of those scans did not find the run alone, or -1 when the run is not
 * found to begin with; *planted is how many decoys were planted. */
int cf_test_immediates_decoys(uv_loop_t* loop, int* planted) {
  static unsigned char window[CF__WINDOW_BYTES], copy[CF__WINDOW_BYTES];
  cf__immediates_t decoy;
  cf__reader_t r;
  uintptr_t from = 0, run = 0;
  int missed = 0;
  *planted = 0;
  if (cf__reader_open(&r) != 0) return -1;
  size_t len = cf__window(&r, loop, window, &from);
  if (len != 0) run = cf__scan(&r, window, len, from);
  memset(&decoy, 0, sizeof(decoy));
  decoy.initialized = 1;
  for (size_t off = 0; run != 0 && off + sizeof(decoy) <= len; off += sizeof(uintptr_t)) {
    /* Not over the run itself. */
    if (from + off + sizeof(decoy) > run && from + off < run + sizeof(decoy)) continue;
    memcpy(copy, window, len);
    memcpy(copy + off, &decoy, sizeof(decoy));
    (*planted)++;
    if (cf__scan(&r, copy, len, from) != run) missed++;
  }
  cf__reader_close(&r);
  return run == 0 ? -1 : missed;
}
