/* Node's process-wide options lock, released in a child; and two locks a
 * parent's threads take once per process (Abseil's CPU-frequency call-once,
 * V8's tracing lock for a new trace category), whose one-time work the
 * forking thread does itself, so that no thread of the parent is inside it
 * at a later fork (below).
 *
 * fork() copies only the calling thread, with every mutex as it was. Node
 * guards its process-wide options with one mutex,
 * node::per_process::cli_options_mutex, and every Worker's thread takes it
 * while it makes the Worker's isolate (SetIsolateMiscHandlers). A parent
 * whose Workers start while it forks can hand a child that mutex held by a
 * thread that does not exist there; the child's own first Worker then waits
 * on it forever (gdb on hung children, Node 20 to 26). Letting the parent's
 * Workers settle first (settle.c) narrows that window but cannot close it:
 * on Node 24 and 26, with the parent's Workers starting and finishing all the
 * time, about 1 child in 100 still inherited the lock held.
 *
 * The child holds no lock at the fork itself (only the forking thread exists,
 * and it is not inside Node's C++ code). A mutex it finds held was held by a
 * vanished thread, whose critical section will never end: the child
 * re-initializes it, as glibc does with its own locks in a child. The data the
 * lock guards is read-mostly (the options are parsed at startup); a thread of
 * the parent that held it was reading.
 *
 * The mutex is found by name in Node's dynamic symbol table (Node exports its
 * symbols for addons) and used only when the symbol's size is that of a
 * pthread_mutex_t (node::Mutex wraps one uv_mutex_t). Where the symbol is
 * missing or of another size (a Node built differently, musl, macOS), nothing
 * is touched and the settling alone applies. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "cowfork.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <time.h>

#if defined(__linux__) && defined(__GLIBC__)
#include <dlfcn.h>
#include <elf.h>
#include <link.h>
#define CF__HAVE_LOOKUP 1
#else
/* The ELF symbol types, for the calls below (the lookup finds nothing here). */
#define STT_OBJECT 1
#define STT_FUNC 2
#endif

static const char cf__options_mutex_name[] = "_ZN4node11per_process17cli_options_mutexE";
static pthread_mutex_t* cf__options_mutex;
static int cf__looked_up;
static int cf__released = -1;

/* A symbol of Node's dynamic symbol table, by name, only if it is of that
 * type (STT_OBJECT, STT_FUNC) and, for size > 0, of that size; else NULL. */
static void* cf__node_symbol(const char* name, int type, size_t size) {
#if defined(CF__HAVE_LOOKUP)
  void* addr = dlsym(RTLD_DEFAULT, name);
  Dl_info info;
  const ElfW(Sym)* sym = NULL;
  if (addr == NULL || !dladdr1(addr, &info, (void**)&sym, RTLD_DL_SYMENT) || sym == NULL) return NULL;
  if (ELF64_ST_TYPE(sym->st_info) != type || (size > 0 && sym->st_size != size)) return NULL;
  return addr;
#else
  (void)name;
  (void)type;
  (void)size;
  return NULL;
#endif
}

static void cf__trace_categories_before_fork(void);

/* Once, in the parent: the address of Node's options mutex, or NULL; and
 * the trace categories of Node's threadpool work registered (below). */
void cf_locks_before_fork(void) {
  cf__trace_categories_before_fork();
  if (cf__looked_up) return;
  cf__looked_up = 1;
  cf__options_mutex = cf__node_symbol(cf__options_mutex_name, STT_OBJECT, sizeof(pthread_mutex_t));
}

/* Abseil (in V8 since Node 22) measures the CPU's frequency once per process,
 * the first time a mutex is contended, under a call-once flag, and the
 * measurement sleeps for milliseconds. A Worker thread of the parent that is
 * measuring when the parent forks leaves the flag "running" in the child, and
 * the child's first contended mutex then spins on it forever (gdb, Node 26:
 * NominalCPUFrequency <- absl::Enqueue <- absl::Mutex::LockSlow in a Worker
 * starting in the child). The settling cannot see it: the measuring thread is
 * asleep. So, once, before a fork of a process with Workers, the forking
 * thread asks for the frequency itself: it measures, or waits for the thread
 * that is measuring, and every later fork finds the flag done. The function
 * is public in Node's dynamic symbols on 22 to 26; where it is missing,
 * nothing is done. */
static const char cf__cpu_frequency_name[] = "_ZN4absl13base_internal19NominalCPUFrequencyEv";
static int cf__cpu_frequency_known;

void cf_locks_before_fork_with_workers(void) {
  if (cf__cpu_frequency_known) return;
  cf__cpu_frequency_known = 1;
  void* fn = cf__node_symbol(cf__cpu_frequency_name, STT_FUNC, 0);
  if (fn != NULL) ((double (*)(void))fn)();
}

/* V8's tracing controller registers a trace category the first time any
 * thread asks for it, under the controller's own lock (an absl::Mutex on
 * Node 26), and finds it without the lock from then on. Node's threadpool
 * work (crypto, zlib) asks for "node,node.threadpoolwork,...sync" on the
 * libuv thread that runs it, so a parent whose first such work is running
 * while it forks can hand a child that lock held by a thread the child does
 * not have: the child's own first crypto call then waits on it forever (gdb,
 * Node 26: absl::Mutex::lock <- TracingController::GetCategoryGroupEnabled
 * <- ThreadPoolWork::ScheduleWork's work callback, on the child's libuv
 * thread). cf_fork gives a running libuv thread only a few milliseconds to
 * finish its task, and only where it can tell libuv's threads apart
 * (waiters.c), so the parent registers Node's threadpool categories itself,
 * once, before its first fork; no thread takes that lock for them again.
 *
 * The controller comes from Node's public node::GetTracingController(). It
 * is asked through its own virtual function, and only when that is V8's
 * (the slot after the two destructors, in the Itanium C++ ABI, holds the
 * address of V8's TracingController::GetCategoryGroupEnabled, looked up by
 * name); any other controller, or a missing symbol, is left alone. */
static const char cf__tracing_controller_name[] = "_ZN4node20GetTracingControllerEv";
static const char cf__category_enabled_name[] =
    "_ZN2v88platform7tracing17TracingController23GetCategoryGroupEnabledEPKc";
static const char* const cf__threadpool_categories[] = {
    "node,node.threadpoolwork,node.threadpoolwork.sync",
    "node,node.threadpoolwork,node.threadpoolwork.async",
};
static int cf__trace_categories = -1;

static int cf__register_trace_categories(void) {
  void* (*get)(void) = (void* (*)(void))cf__node_symbol(cf__tracing_controller_name, STT_FUNC, 0);
  void* v8_fn = cf__node_symbol(cf__category_enabled_name, STT_FUNC, 0);
  if (get == NULL || v8_fn == NULL) return 0;
  void* controller = get();
  uintptr_t vptr = 0, slot = 0;
  if (controller == NULL || !cf_peek_all((uintptr_t)controller, &vptr, sizeof(vptr))) return 0;
  if (vptr == 0 || !cf_peek_all(vptr + 2 * sizeof(uintptr_t), &slot, sizeof(slot))) return 0;
  if (slot != (uintptr_t)v8_fn) return 0;
  const unsigned char* (*enabled)(void*, const char*) = (const unsigned char* (*)(void*, const char*))v8_fn;
  int n = 0;
  for (size_t i = 0; i < sizeof(cf__threadpool_categories) / sizeof(*cf__threadpool_categories); i++)
    n += enabled(controller, cf__threadpool_categories[i]) != NULL;
  return n;
}

/* Once, in the parent, before its first fork. */
static void cf__trace_categories_before_fork(void) {
  if (cf__trace_categories < 0) cf__trace_categories = cf__register_trace_categories();
}

int cf_fork_trace_categories(void) {
  return cf__trace_categories;
}

int cf_locks_found(void) {
  cf_locks_before_fork();
  return cf__options_mutex != NULL;
}

/* In the child, before any JavaScript runs: 1 if the mutex was held (by a
 * thread of the parent) and was re-initialized, 0 if it was free. */
int cf_locks_release_in_child(void) {
  cf__released = 0;
  if (cf__options_mutex == NULL) return 0;
  int err = pthread_mutex_trylock(cf__options_mutex);
  if (err == 0) {
    pthread_mutex_unlock(cf__options_mutex);
    return 0;
  }
  if (err != EBUSY) return 0;
  pthread_mutex_init(cf__options_mutex, NULL);
  cf__released = 1;
  return 1;
}

int cf_fork_locks_released(void) {
  return cf__released;
}

/* Tests only: a thread that holds Node's options mutex for `ms`, as a parent's
 * Worker does while its isolate is made. -ENOENT where it was not found. */
static void* cf__hold(void* arg) {
  struct timespec ts = {0, 0};
  long ms = (long)(intptr_t)arg;
  ts.tv_sec = ms / 1000;
  ts.tv_nsec = (ms % 1000) * 1000000L;
  pthread_mutex_lock(cf__options_mutex);
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
  pthread_mutex_unlock(cf__options_mutex);
  return NULL;
}

int cf_test_hold_options_lock(int ms) {
  pthread_t t;
  pthread_attr_t attr;
  int err;
  if (!cf_locks_found()) return -ENOENT;
  pthread_attr_init(&attr);
  pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
  err = pthread_create(&t, &attr, cf__hold, (void*)(intptr_t)ms);
  pthread_attr_destroy(&attr);
  if (err != 0) return -err;
  /* Return once the thread holds it, so the caller's next fork inherits it held. */
  while (pthread_mutex_trylock(cf__options_mutex) == 0) {
    pthread_mutex_unlock(cf__options_mutex);
    sched_yield();
  }
  return 0;
}
