/* cowfork's C core. Plain C and libuv, no N-API: the binding (binding.c and
 * its binding_*.c helpers) is the only code that knows about JavaScript.
 * Every function returns 0 (or a non-negative value) on success and a
 * negative errno on failure, the way libuv does. */
#ifndef COWFORK_H
#define COWFORK_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <uv.h>

/* Flags for cf_fork. The CF_FORK_SKIP_* flags exist only so that tests can
 * show each hazard is real; production callers pass 0. */
enum {
  CF_FORK_SKIP_DOFORK = 1 << 0,    /* keep V8's MADV_DONTFORK pages out */
  CF_FORK_SKIP_SILENCE = 1 << 1,   /* let the child poll inherited sockets */
  CF_FORK_SKIP_LOOP_FORK = 1 << 2, /* share the parent's epoll instance */
  CF_FORK_SET_PDEATHSIG = 1 << 3,  /* child gets SIGKILL when the parent dies */
  CF_FORK_SKIP_WAITERS = 1 << 4,   /* keep the vanished threads' condvar waiters */
  CF_FORK_SKIP_PARENT_WORK = 1 << 5,      /* let the parent's finished threadpool work run */
  CF_FORK_SKIP_PARENT_IMMEDIATES = 1 << 6, /* let other threads' callbacks for the parent run */
  /* Leave the condvars alone, as where glibc's layout is not recognized
   * (glibc 2.41+, musl): only the layout-independent pool emptying runs. */
  CF_FORK_SKIP_COND_RESET = 1 << 7,
  CF_FORK_SKIP_POOL = 1 << 8, /* leave the child's V8 worker pool its vanished threads */
  /* Read by the JavaScript side only: fork without letting the parent's
   * Worker threads settle first (src/workers.ts). */
  CF_FORK_SKIP_SETTLE_WORKERS = 1 << 9,
  CF_FORK_SKIP_NODE_LOCKS = 1 << 10, /* leave Node's options lock as the fork found it */
  /* Run the MADV_DOFORK pass first, before the census waits for V8's pool,
   * as cowfork once did: memory a pool thread maps meanwhile is left out. */
  CF_FORK_EARLY_DOFORK = 1 << 11,
  /* Give a working pool thread only the census's short wait (16 passes, 20
   * ms), as cowfork once did, not the long one. */
  CF_FORK_SHORT_POOL_WAIT = 1 << 12,
  /* Do not give libuv threadpool threads inside a task time to finish it. */
  CF_FORK_SKIP_WORK_SETTLE = 1 << 13,
  /* Read by the JavaScript side only: leave the completions of the parent's
   * requests in flight as they are in the child (src/inherited.ts). */
  CF_FORK_SKIP_PARENT_REQUESTS = 1 << 14,
  CF_FORK_SKIP_REARM = 1 << 15, /* leave uv_loop_fork's re-arming of the fd watchers as it is */
  CF_FORK_SKIP_PARENT_WRITES = 1 << 16, /* let the child go on with the parent's stream writes */
  /* JS only: leave the parent's buffered stdout and stderr lines in a child's streams (src/stdio.ts) */
  CF_FORK_SKIP_PARENT_STDIO = 1 << 17
};

/* Exit codes a forked child uses for cowfork's own failures, so that the
 * parent can tell them apart from each other and from the app's exit codes.
 * 70 and 71 are sysexits.h's EX_SOFTWARE and EX_OSERR. The binding exports
 * this table as EXIT_CODES; the TypeScript side reads it from there. */
enum {
  CF_EXIT_UNCAUGHT = 70,  /* JavaScript in the child threw and nothing caught it */
  CF_EXIT_LOOP_FORK = 71, /* uv_loop_fork() failed: the child has no event loop */
  CF_EXIT_SILENCE = 72    /* the inherited sockets could not be silenced */
};

/* fork.c */
int cf_fork(uv_loop_t* loop, const int* keep_fds, int nkeep, int flags);
void cf_exit(int status);
int cf_getpid(void);
int cf_getppid(void);
int cf_execve(const char* path, char* const argv[], char* const envp[]);

/* fd.c: pipes and close(2). Every fd is created close-on-exec. */
enum { CF_PIPE_NONBLOCK = 1 << 0 };
int cf_pipe(int fds[2], int flags);
int cf_close(int fd);
/* dofork.c: MADV_DOFORK over the whole address space (a no-op off Linux).
 * cf_dofork_all() returns how many madvise() calls it made. The flags are for
 * tests: force the per-mapping walk, or forget the special mappings so that
 * the ranged path fails and falls back to the walk. */
enum { CF_DOFORK_RANGED = 1, CF_DOFORK_WALK = 2 };                /* cf_dofork_last() */
enum { CF_DOFORK_FORCE_WALK = 1 << 0, CF_DOFORK_FORGET_SPECIAL = 1 << 1 }; /* cf_dofork() flags */
int cf_dofork_all(void);
int cf_dofork(int flags);
int cf_dofork_last(int* calls); /* the path the last call took, 0 before the first */

/* bench.c: fork + _exit + reap with nothing else, for the benchmarks. */
int cf_bench_fork_roundtrip(void);
int64_t cf_bench_cpu_ns(void);
/* What this machine charges a fork, in C: a child's copy-on-write faults
 * (trapped one by one, or populated in one call), where a new child first
 * runs, and CPU-bound children with and without CPU pinning. */
int cf_bench_cow_ns(int pages, int populate, int64_t* ns);
int cf_bench_fork_cpu(int* parent_cpu, int* child_cpu);
int64_t cf_bench_spin_ns(int children, int64_t iters, int pin);

/* random.c: fills buf with fresh bytes from the kernel (getrandom(2)). */
int cf_random_fill(void* buf, size_t len);

/* waiters.c: the threads fork() leaves behind. The parent takes a census and
 * decides, reading only through cf_peek(); the child only writes. */
#define CF_RESET_MAX 8
typedef struct {
  int nreset;
  uintptr_t reset[CF_RESET_MAX]; /* glibc condvars to re-initialize */
  uintptr_t pool_end;            /* where Node's V8 pool keeps its vector's end, or 0 */
  uintptr_t pool_begin;          /* the vector's begin: stored at pool_end, it empties the pool */
} cf_fork_plan_t;
int cf_waiters_census(cf_fork_plan_t* plan, int flags); /* parent, just before fork */
int cf_waiters_release(const cf_fork_plan_t* plan);     /* child: condvars re-initialized */
int cf_fork_pool_emptied(void);     /* child: 1 if Node's worker pool now reports 0 threads */
int cf_fork_waiters_released(void); /* child: that count for its fork, or -1 */
int cf_fork_census_passes(void);    /* parent: passes its last census took (1 = no wait) */
int cf_fork_pool_located(void);     /* parent: 1 found, 0 not yet, -ENOENT not there, -ENOSYS no census */

/* peek.c: memory that may be unmapped or PROT_NONE, through the kernel. */
ssize_t cf_peek(uintptr_t addr, void* dst, size_t len); /* bytes read from addr on, or -errno */
int cf_peek_all(uintptr_t addr, void* dst, size_t len); /* 1 if all len bytes were read */
int cf_poke(uintptr_t addr, const void* src, size_t len);

/* testhooks.c, for tests only: a thread parked on the first word of a page
 * whose predecessor is PROT_NONE or unmapped. */
enum { CF_TEST_PARK_PROT_NONE = 0, CF_TEST_PARK_HOLE = 1 };
typedef struct cf_test_park_s cf_test_park_t;
int cf_test_park(int kind, cf_test_park_t** out, uintptr_t* word);
int cf_test_unpark(cf_test_park_t* p); /* -EINVAL the second time */
void cf_test_park_free(cf_test_park_t* p);

/* testtask.c, for tests only: a libuv threadpool task that holds a lock while
 * it spins for `us` microseconds, or, with until_waited, until a census that
 * began after it has waited for it (a second pass); returns once it holds
 * the lock. Whether the lock is held now (in a child: held at the fork). */
int cf_test_task_hold(uv_loop_t* loop, int us, int until_waited);
void cf_census_progress(int* gen, int* pass); /* waiters.c: the census running now, and its pass */
int cf_test_task_lock_held(void);
int cf_test_task_noticed(void);

/* loop.c: the parent's threadpool work, forgotten in the child. */
void cf_loop_before_fork(void);              /* parent: finds libuv's slow I/O count, once */
int cf_loop_forget_parent_work(uv_loop_t* loop);
int64_t cf_loop_requests(uv_loop_t* loop);  /* requests the loop counts as active */
int cf_loop_rearm_watchers(uv_loop_t* loop); /* child, after uv_loop_fork: every fd watcher is added anew */
int cf_tty_writer(uv_handle_t* handle, int fd); /* a TTY handle that writes (stdout on a terminal), not stdin */
int cf_fd_kept(const int* keep_fds, int nkeep, int fd); /* fd is one of keep_fds */
/* an fd a child writes through as its parent does: stdout, stderr, a TTY writer, or one of keep_fds */
int cf_fd_shared(uv_handle_t* handle, int fd, const int* keep_fds, int nkeep);
/* child, after uv_loop_fork: the parent's pending writes on stdout, stderr and keep_fds finish empty */
int cf_loop_empty_parent_writes(uv_loop_t* loop, const int* keep_fds, int nkeep);
int cf_fork_parent_work_dropped(void);       /* child: requests dropped by its fork, or -1 */
int cf_fork_slow_io_reset(void);             /* child: the slow I/O count its fork reset, or -1 */

/* watchers.c: in a child, stops every active fs_event and fs_poll handle
 * (the parent's file watchers); returns how many. */
int cf_stop_watchers(uv_loop_t* loop);

/* locks.c: Node's process-wide options lock, re-initialized in a child that
 * inherited it held by a thread of the parent (a Worker starting). */
void cf_locks_before_fork(void);     /* parent: finds the lock, once */
void cf_locks_before_fork_with_workers(void); /* parent with Workers: Abseil's one-time CPU measurement, done */
int cf_locks_found(void);            /* 1 if this Node's options lock can be found */
int cf_locks_release_in_child(void); /* child: 1 if it was held and was re-initialized */
int cf_fork_locks_released(void);    /* child: what its fork did (0 or 1), or -1 */
int cf_test_hold_options_lock(int ms); /* tests: a thread holds it for ms; -ENOENT if not found */
/* The trace categories Node's threadpool work asks for, registered by the
 * parent before its first fork (2), 0 where the controller is not V8's, -1
 * before any fork. */
int cf_fork_trace_categories(void);

/* symbols.c: a file-local variable of the ELF object holding in_object, by
 * name and size, from its symbol table; 0 when there is not exactly one. */
uintptr_t cf_static_address(uintptr_t in_object, const char* name, size_t size);

/* immediates.c: callbacks other threads queued for the parent's main thread
 * (Node's threadsafe immediates), dropped in the child. */
int cf_env_forget_parent_immediates(uv_loop_t* loop);
int cf_env_immediates_found(uv_loop_t* loop); /* 1 if this Node's queue can be found */
int cf_fork_parent_immediates_dropped(void); /* child: callbacks dropped by its fork, or -1 */
/* Tests: decoys of the run planted in a copy that made the locate miss it, or -1. */
int cf_test_immediates_decoys(uv_loop_t* loop, int* planted);

/* silence.c: inherited connections are dead in the child (writes fail with
 * EPIPE, reads never complete); other inherited I/O is quiet. */
int cf_silence_inherited(uv_loop_t* loop, const int* keep_fds, int nkeep);
int cf_inherited_peer(int fd, char* out, size_t outlen); /* child: -ENOENT unless fd is an inherited connection */
int cf_inherited_count(void);

/* inspect.c: what a fork would hand the child. */
#define CF_ADDR_MAX 128
enum { CF_SOCK_OTHER = 0, CF_SOCK_LISTENING = 1, CF_SOCK_CONNECTED = 2 };
typedef struct {
  int type;    /* uv_handle_type */
  int fd;      /* -1 when the handle has none */
  int sock;    /* CF_SOCK_* for TCP and pipe handles */
  int active;
  int ref;
  int closing;
  char addr[CF_ADDR_MAX]; /* the peer of a connection, the local address of a listener */
} cf_handle_info_t;
typedef struct {
  int tid;
  char name[32];
} cf_thread_info_t;
int cf_socket_peer(int fd, char* out, size_t outlen); /* CF_SOCK_* or -errno (not a socket) */
int cf_inspect_handles(uv_loop_t* loop, cf_handle_info_t* out, int max); /* the total, even past max */
int cf_threads(cf_thread_info_t* out, int max); /* Linux; -ENOSYS elsewhere */
int cf_thread_count(void);
/* One read of a small file (a /proc entry) into buf, NUL-terminated: its
 * length, or -errno. */
ssize_t cf_read_small(const char* path, char* buf, size_t size);
/* A thread's name (/proc/self/task/<tid>/comm, without the newline): its
 * length, 0 or a negative errno once the thread has gone. */
ssize_t cf_thread_name(const char* tid, char* name, size_t size);
int64_t cf_now_ns(void); /* CLOCK_MONOTONIC, in ns */
/* settle.c: waits up to max_us until none of tids is running (Linux; 0 at once
 * elsewhere). Returns how many were still running when it gave up. */
int cf_settle_threads(const int32_t* tids, size_t n, int max_us);
/* The next cf_fork waits the same way for these threads, up to max_us, as its
 * first step, before the census and the MADV_DOFORK pass (the first 256 are
 * kept). Returns how many. */
int cf_fork_settle_next(const int32_t* tids, size_t n, int max_us);
void cf_fork_settle_run(void); /* cf_fork's own call */

/* wait.c: status is the exit code, or -1 when term_signal is set. */
typedef struct {
  int pid;
  int exit_status;
  int term_signal;
} cf_wait_result_t;
int cf_waitpid(int pid, int nohang, cf_wait_result_t* out);
int cf_pidfd_open(int pid);

/* poll.c */
int cf_poll(const int* fds, const int* events, int* revents, int n, int64_t timeout_ms);
enum { CF_READ = 1, CF_WRITE = 2, CF_HUP = 4, CF_ERR = 8 };

/* scratch.c */
int cf_scratch_create(const char* base, char* out, size_t outlen);
int cf_scratch_open(const char* dir, const char* name, int for_write);
int cf_scratch_remove(const char* dir);

/* hmac.c */
int cf_hmac_sha256(const void* key, size_t keylen, const void* data, size_t len,
                   unsigned char out[32]);
int cf_memeq(const void* a, const void* b, size_t len);

/* shm.c: an array of int64 counters shared across fork(). */
typedef struct cf_shm_s cf_shm_t;
#define CF_SHM_MAX_COUNT (SIZE_MAX / sizeof(int64_t))
int cf_shm_create(size_t count, cf_shm_t** out);
void cf_shm_destroy(cf_shm_t* shm);
size_t cf_shm_count(const cf_shm_t* shm);
int64_t cf_shm_add(cf_shm_t* shm, size_t i, int64_t delta);
int64_t cf_shm_load(cf_shm_t* shm, size_t i);
void cf_shm_store(cf_shm_t* shm, size_t i, int64_t value);
int64_t cf_shm_claim(cf_shm_t* shm, size_t i, int64_t total, int64_t divisor,
                     int64_t max_chunk, int64_t* count);

/* listen.c: listening sockets for the prefork master, close-on-exec. Each
 * returns the fd or a negative errno (UV_EAI_* for a host that won't resolve). */
enum { CF_LISTEN_REUSEPORT = 1 << 0 };
int cf_listen_tcp(const char* host, int port, int backlog, int flags, int* bound_port);
int cf_listen_unix(const char* path, int backlog);
int cf_listen_port(int fd);
int cf_dup_cloexec(int fd);

#endif
