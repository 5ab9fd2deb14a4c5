/* The N-API binding: parse arguments, call into the C core, return. Errors
 * from the core become JavaScript Errors whose `code` is the errno name
 * (EAGAIN, ECHILD). A bad argument becomes a TypeError (ERR_INVALID_ARG_TYPE,
 * ERR_INVALID_ARG_VALUE) or RangeError (ERR_OUT_OF_RANGE) naming the function
 * and the argument, thrown before the core is called.
 *
 * Every napi_status is checked. An N-API call that fails leaves its output
 * unset, and a JavaScript getter can throw in the middle of reading an
 * argument (an array element, say): each entry point then returns at once
 * with that exception pending, and the core is never called.
 *
 * The argument helpers are in binding_args.c (declared in binding.h); the
 * watchers, which outlive a call, are in binding_watch.c. */
#include "binding.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>

/* fork(keepFds: number[], flags: number): number. Returns 0 in the child. */
static napi_value Fork(napi_env env, napi_callback_info info) {
  CF__ARGS("fork", 2);
  int* keep;
  int nkeep;
  int64_t flags;
  uv_loop_t* loop;
  CF__TRY(cf__arg_int(env, cf__fn, "flags", argv[1], 0, INT_MAX, &flags));
  CF__CHECK(napi_get_uv_event_loop(env, &loop));
  /* Last: from here on nothing can fail before the fork, so a getter that
   * throws in keepFds leaves no child behind. */
  CF__TRY(cf__arg_fd_array(env, cf__fn, "keepFds", argv[0], &keep, &nkeep));
  int pid = cf_fork(loop, keep, nkeep, (int)flags);
  free(keep);
  CF__ERR(pid);
  return cf__int(env, pid);
}

/* forkWaitersReleased(): in a child, how many condition variables its fork
 * re-initialized (waiters.c); -1 in a process that was not forked by cf_fork. */
static napi_value ForkWaitersReleased(napi_env env, napi_callback_info info) {
  return cf__int(env, cf_fork_waiters_released());
}

/* forkPoolEmptied(): in a child, whether its fork made Node's V8 worker pool
 * report zero threads, so that V8 posts it no tasks (waiters.c). */
static napi_value ForkPoolEmptied(napi_env env, napi_callback_info info) {
  return cf__bool(env, cf_fork_pool_emptied() != 0);
}

/* forkParentWork(): in a child, what its fork forgot of the parent's work:
 * [finished threadpool requests dropped, the slow I/O count reset to zero
 * (loop.c), callbacks other threads had queued for the parent dropped
 * (immediates.c), Node's options lock re-initialized (1) or found free (0)
 * (locks.c)]; -1 for each step that did not run. */
static napi_value ForkParentWork(napi_env env, napi_callback_info info) {
  napi_value out = NULL;
  int64_t v[4] = {cf_fork_parent_work_dropped(), cf_fork_slow_io_reset(), cf_fork_parent_immediates_dropped(),
                  cf_fork_locks_released()};
  bool ok = napi_create_array_with_length(env, 4, &out) == napi_ok;
  for (uint32_t i = 0; ok && i < 4; i++) ok = cf__set(env, out, i, cf__int(env, v[i]));
  return ok ? out : cf__napi_fail(env);
}

/* forkTraceCategories(): how many of the trace categories Node's threadpool
 * work asks for this process registered before its first fork (locks.c): 2,
 * 0 where the tracing controller is not V8's, -1 before any fork. */
static napi_value ForkTraceCategories(napi_env env, napi_callback_info info) {
  return cf__int(env, cf_fork_trace_categories());
}

/* immediatesFound(): whether this Node's cross-thread callback queue can be
 * found, so that children can drop what other threads queued for the parent. */
static napi_value ImmediatesFound(napi_env env, napi_callback_info info) {
  uv_loop_t* loop;
  CF__CHECK(napi_get_uv_event_loop(env, &loop));
  return cf__bool(env, cf_env_immediates_found(loop) != 0);
}

/* testImmediatesDecoys(): [decoys of that queue's run planted in a copy of
 * the memory around it, how many made the locate miss it (-1: not found)]. */
static napi_value TestImmediatesDecoys(napi_env env, napi_callback_info info) {
  uv_loop_t* loop;
  napi_value out = NULL;
  int planted = 0;
  CF__CHECK(napi_get_uv_event_loop(env, &loop));
  int missed = cf_test_immediates_decoys(loop, &planted);
  bool ok = napi_create_array_with_length(env, 2, &out) == napi_ok && cf__set(env, out, 0, cf__int(env, planted)) &&
            cf__set(env, out, 1, cf__int(env, missed));
  return ok ? out : cf__napi_fail(env);
}

/* stopWatchers(): in a child, stops the parent's file watchers (watchers.c);
 * returns how many were active. */
static napi_value StopWatchers(napi_env env, napi_callback_info info) {
  uv_loop_t* loop;
  CF__CHECK(napi_get_uv_event_loop(env, &loop));
  return cf__int(env, cf_stop_watchers(loop));
}

/* loopRequests(): the requests the loop counts as active (loop.c): a child
 * compares it with its count at the fork before it leaves. */
static napi_value LoopRequests(napi_env env, napi_callback_info info) {
  uv_loop_t* loop;
  CF__CHECK(napi_get_uv_event_loop(env, &loop));
  return cf__int(env, cf_loop_requests(loop));
}

/* optionsLockFound(): whether Node's process-wide options lock can be found,
 * so that a child can release it when a parent's Worker held it (locks.c). */
static napi_value OptionsLockFound(napi_env env, napi_callback_info info) {
  return cf__bool(env, cf_locks_found() != 0);
}

/* doforkAll(flags = 0): the madvise() calls made; flags are CF_DOFORK_* (tests). */
static napi_value DoforkAll(napi_env env, napi_callback_info info) {
  CF__ARGS("doforkAll", 1);
  int64_t flags = 0;
  CF__TRY(cf__arg_opt_int(env, cf__fn, "flags", argv[0], 0, INT32_MAX, 0, &flags));
  int r = cf_dofork((int)flags);
  CF__ERR(r);
  return cf__int(env, r);
}

/* doforkLast(): [path, calls] of the last MADV_DOFORK pass (dofork.c). */
static napi_value DoforkLast(napi_env env, napi_callback_info info) {
  int calls = 0;
  int path = cf_dofork_last(&calls);
  return cf__pair(env, path, calls);
}

/* benchCpuNs(): CPU time of this process in ns. */
static napi_value BenchCpuNs(napi_env env, napi_callback_info info) {
  int64_t r = cf_bench_cpu_ns();
  CF__ERR(r);
  return cf__int(env, r);
}

/* benchForkRoundtrip(): a bare fork + _exit + reap; returns the child's pid. */
static napi_value BenchForkRoundtrip(napi_env env, napi_callback_info info) {
  int r = cf_bench_fork_roundtrip();
  CF__ERR(r);
  return cf__int(env, r);
}

/* benchCowNs(pages, populate): a forked child's time to write `pages` pages (bench.c). */
static napi_value BenchCowNs(napi_env env, napi_callback_info info) {
  CF__ARGS("benchCowNs", 2);
  int64_t pages, ns = 0;
  bool populate;
  CF__TRY(cf__arg_int(env, cf__fn, "pages", argv[0], 1, 1 << 20, &pages));
  CF__TRY(cf__arg_bool(env, cf__fn, "populate", argv[1], &populate));
  CF__ERR(cf_bench_cow_ns((int)pages, populate, &ns));
  return cf__int(env, ns);
}

/* benchForkCpu(): [CPU the parent forked on, CPU the child first ran on]. */
static napi_value BenchForkCpu(napi_env env, napi_callback_info info) {
  int parent = -1, child = -1;
  CF__ERR(cf_bench_fork_cpu(&parent, &child));
  return cf__pair(env, parent, child);
}

/* benchSpinNs(children, iters, pin): wall ns of CPU-bound children (bench.c). */
static napi_value BenchSpinNs(napi_env env, napi_callback_info info) {
  CF__ARGS("benchSpinNs", 3);
  int64_t children, iters;
  bool pin;
  CF__TRY(cf__arg_int(env, cf__fn, "children", argv[0], 0, 64, &children));
  CF__TRY(cf__arg_int(env, cf__fn, "iters", argv[1], 0, INT64_C(1) << 40, &iters));
  CF__TRY(cf__arg_bool(env, cf__fn, "pin", argv[2], &pin));
  int64_t r = cf_bench_spin_ns((int)children, iters, pin);
  CF__ERR(r);
  return cf__int(env, r);
}

/* exit(code): _exit(2). The kernel keeps the low 8 bits, as for process.exit. */
static napi_value Exit(napi_env env, napi_callback_info info) {
  CF__ARGS("exit", 1);
  int64_t code;
  CF__TRY(cf__arg_int(env, cf__fn, "code", argv[0], INT_MIN, INT_MAX, &code));
  cf_exit((int)code);
  return NULL;
}

static napi_value Getpid(napi_env env, napi_callback_info info) {
  return cf__int(env, cf_getpid());
}

static napi_value Getppid(napi_env env, napi_callback_info info) {
  return cf__int(env, cf_getppid());
}

/* pipe(nonblock: boolean): [readFd, writeFd], both close-on-exec. */
static napi_value Pipe(napi_env env, napi_callback_info info) {
  CF__ARGS("pipe", 1);
  int fds[2];
  bool nonblock;
  CF__TRY(cf__arg_bool(env, cf__fn, "nonblock", argv[0], &nonblock));
  int r = cf_pipe(fds, nonblock ? CF_PIPE_NONBLOCK : 0);
  CF__ERR(r);
  return cf__pair(env, fds[0], fds[1]);
}

static napi_value Close(napi_env env, napi_callback_info info) {
  CF__ARGS("close", 1);
  int fd;
  CF__TRY(cf__arg_fd(env, cf__fn, "fd", argv[0], &fd));
  int r = cf_close(fd);
  CF__ERR(r);
  return cf__undefined(env);
}

/* waitpid(pid, nohang): null while the child runs, else [pid, code, signal].
 * Only one pid: waitpid(-1) or a process group would reap children that
 * libuv's child_process is waiting for. */
static napi_value Waitpid(napi_env env, napi_callback_info info) {
  CF__ARGS("waitpid", 2);
  int pid;
  bool nohang;
  cf_wait_result_t res;
  napi_value out, a, b, c;
  CF__TRY(cf__arg_pid(env, cf__fn, "pid", argv[0], &pid));
  CF__TRY(cf__arg_bool(env, cf__fn, "nohang", argv[1], &nohang));
  int r = cf_waitpid(pid, nohang, &res);
  CF__ERR(r);
  if (r == 0) return cf__null(env);
  if ((a = cf__int(env, res.pid)) == NULL || (b = cf__int(env, res.exit_status)) == NULL ||
      (c = cf__int(env, res.term_signal)) == NULL)
    return NULL;
  CF__CHECK(napi_create_array_with_length(env, 3, &out));
  CF__CHECK(napi_set_element(env, out, 0, a));
  CF__CHECK(napi_set_element(env, out, 1, b));
  CF__CHECK(napi_set_element(env, out, 2, c));
  return out;
}

/* pidfdOpen(pid): a close-on-exec fd that polls readable when pid terminates. */
static napi_value PidfdOpen(napi_env env, napi_callback_info info) {
  CF__ARGS("pidfdOpen", 1);
  int pid;
  CF__TRY(cf__arg_pid(env, cf__fn, "pid", argv[0], &pid));
  int r = cf_pidfd_open(pid);
  CF__ERR(r);
  return cf__int(env, r);
}

/* poll(fds: Int32Array, events: Int32Array, revents: Int32Array, timeoutMs): number.
 * A negative or infinite timeout waits forever; a fractional one is rounded
 * up, so that a wait never ends before its deadline. */
static napi_value Poll(napi_env env, napi_callback_info info) {
  CF__ARGS("poll", 4);
  int32_t *fds, *events, *revents;
  size_t n1, n2, n3;
  double t;
  int64_t timeout;
  CF__TRY(cf__arg_i32s(env, cf__fn, "fds", argv[0], &fds, &n1));
  CF__TRY(cf__arg_i32s(env, cf__fn, "events", argv[1], &events, &n2));
  CF__TRY(cf__arg_i32s(env, cf__fn, "revents", argv[2], &revents, &n3));
  if (n1 != n2 || n1 != n3)
    return cf__throw_arg(env, true, "ERR_OUT_OF_RANGE",
                         "poll needs three Int32Arrays of one length, got %zu, %zu and %zu", n1,
                         n2, n3), NULL;
  if (n1 > INT_MAX)
    return cf__throw_arg(env, true, "ERR_OUT_OF_RANGE", "poll: fds has more than %d entries",
                         INT_MAX), NULL;
  napi_valuetype type;
  CF__CHECK(napi_typeof(env, argv[3], &type));
  if (type != napi_number)
    return cf__throw_arg(env, false, "ERR_INVALID_ARG_TYPE", "poll: timeoutMs must be a number, got %s",
                         cf__type_name(env, argv[3])), NULL;
  CF__CHECK(napi_get_value_double(env, argv[3], &t));
  if (isnan(t))
    return cf__throw_arg(env, true, "ERR_OUT_OF_RANGE", "poll: timeoutMs must not be NaN"), NULL;
  timeout = t < 0 || t > (double)CF__SAFE_INT ? -1 : (int64_t)ceil(t);
  int r = cf_poll(fds, events, revents, (int)n1, timeout);
  CF__ERR(r);
  return cf__int(env, r);
}

/* randomFill(bytes: Uint8Array): fills it with fresh bytes from the kernel. */
static napi_value RandomFill(napi_env env, napi_callback_info info) {
  CF__ARGS("randomFill", 1);
  void* data;
  size_t len;
  CF__TRY(cf__arg_bytes(env, cf__fn, "bytes", argv[0], &data, &len));
  int r = cf_random_fill(data, len);
  CF__ERR(r);
  return cf__undefined(env);
}

/* execve(path, argv[], envp[]): only returns by throwing. */
static napi_value Execve(napi_env env, napi_callback_info info) {
  CF__ARGS("execve", 3);
  char *path, **av, **ev;
  CF__TRY(cf__arg_string(env, cf__fn, "path", argv[0], PATH_MAX - 1, &path));
  if (!cf__arg_string_array(env, cf__fn, "argv", argv[1], &av)) {
    free(path);
    return NULL;
  }
  if (!cf__arg_string_array(env, cf__fn, "env", argv[2], &ev)) {
    free(path);
    cf__free_strings(av);
    return NULL;
  }
  int r = cf_execve(path, av, ev);
  free(path);
  cf__free_strings(av);
  cf__free_strings(ev);
  return cf__throw_errno(env, r, "execve");
}

/* listenTcp(host, port, backlog, reusePort): [fd, boundPort] */
static napi_value ListenTcp(napi_env env, napi_callback_info info) {
  CF__ARGS("listenTcp", 4);
  char* host;
  int64_t port, backlog;
  bool reuse;
  int bound = 0;
  CF__TRY(cf__arg_int(env, cf__fn, "port", argv[1], 0, 65535, &port));
  CF__TRY(cf__arg_int(env, cf__fn, "backlog", argv[2], 0, INT_MAX, &backlog));
  CF__TRY(cf__arg_bool(env, cf__fn, "reusePort", argv[3], &reuse));
  /* NI_MAXHOST (1025) bounds a host name, with its NUL. */
  CF__TRY(cf__arg_string(env, cf__fn, "host", argv[0], 1024, &host));
  int fd = cf_listen_tcp(host, (int)port, (int)backlog, reuse ? CF_LISTEN_REUSEPORT : 0, &bound);
  free(host);
  CF__ERR(fd);
  return cf__pair(env, fd, bound);
}

/* listenUnix(path, backlog): fd */
static napi_value ListenUnix(napi_env env, napi_callback_info info) {
  CF__ARGS("listenUnix", 2);
  char* path;
  int64_t backlog;
  CF__TRY(cf__arg_int(env, cf__fn, "backlog", argv[1], 0, INT_MAX, &backlog));
  CF__TRY(cf__arg_string(env, cf__fn, "path", argv[0], PATH_MAX - 1, &path));
  int fd = cf_listen_unix(path, (int)backlog);
  free(path);
  CF__ERR(fd);
  return cf__int(env, fd);
}

/* dup(fd): a close-on-exec duplicate */
static napi_value Dup(napi_env env, napi_callback_info info) {
  CF__ARGS("dup", 1);
  int fd;
  CF__TRY(cf__arg_fd(env, cf__fn, "fd", argv[0], &fd));
  int r = cf_dup_cloexec(fd);
  CF__ERR(r);
  return cf__int(env, r);
}

/* Sets exports[name] to an object of integer constants. */
typedef struct {
  const char* name;
  int64_t value;
} cf__const_t;

static bool cf__set_consts(napi_env env, napi_value exports, const char* name,
                           const cf__const_t* consts, size_t n) {
  napi_value obj, v;
  if (napi_create_object(env, &obj) != napi_ok) return false;
  for (size_t i = 0; i < n; i++) {
    if ((v = cf__int(env, consts[i].value)) == NULL ||
        napi_set_named_property(env, obj, consts[i].name, v) != napi_ok)
      return false;
  }
  return napi_object_freeze(env, obj) == napi_ok &&
         napi_set_named_property(env, exports, name, obj) == napi_ok;
}

static napi_value Init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
#define CF__FN(name, fn) {name, NULL, fn, NULL, NULL, NULL, napi_enumerable, NULL}
      CF__FN("fork", Fork),
      CF__FN("doforkAll", DoforkAll),
      CF__FN("doforkLast", DoforkLast),
      CF__FN("benchForkRoundtrip", BenchForkRoundtrip),
      CF__FN("benchCowNs", BenchCowNs),
      CF__FN("benchForkCpu", BenchForkCpu),
      CF__FN("benchSpinNs", BenchSpinNs),
      CF__FN("benchCpuNs", BenchCpuNs),
      CF__FN("randomFill", RandomFill),
      CF__FN("exit", Exit),
      CF__FN("getpid", Getpid),
      CF__FN("getppid", Getppid),
      CF__FN("pipe", Pipe),
      CF__FN("close", Close),
      CF__FN("waitpid", Waitpid),
      CF__FN("pidfdOpen", PidfdOpen),
      CF__FN("poll", Poll),
      CF__FN("watch", cf__Watch),
      CF__FN("watchUpdate", cf__WatchUpdate),
      CF__FN("unwatch", cf__Unwatch),
      CF__FN("scratchCreate", cf__ScratchCreate),
      CF__FN("scratchOpen", cf__ScratchOpen),
      CF__FN("scratchRemove", cf__ScratchRemove),
      CF__FN("hmac", cf__Hmac),
      CF__FN("memeq", cf__Memeq),
      CF__FN("shmCreate", cf__ShmCreate),
      CF__FN("shmAdd", cf__ShmAdd),
      CF__FN("shmLoad", cf__ShmLoad),
      CF__FN("shmStore", cf__ShmStore),
      CF__FN("shmClaim", cf__ShmClaim),
      CF__FN("execve", Execve),
      CF__FN("listenTcp", ListenTcp),
      CF__FN("listenUnix", ListenUnix),
      CF__FN("dup", Dup),
      CF__FN("forkWaitersReleased", ForkWaitersReleased),
      CF__FN("forkPoolEmptied", ForkPoolEmptied),
      CF__FN("inheritedPeer", cf__InheritedPeer),
      CF__FN("inheritedCount", cf__InheritedCount),
      CF__FN("inspectHandles", cf__InspectHandles),
      CF__FN("threads", cf__Threads),
      CF__FN("threadCount", cf__ThreadCount),
      CF__FN("settleThreads", cf__SettleThreads),
      CF__FN("settleBeforeFork", cf__SettleBeforeFork),
      CF__FN("forkParentWork", ForkParentWork),
      CF__FN("stopWatchers", StopWatchers),
      CF__FN("loopRequests", LoopRequests),
      CF__FN("forkTraceCategories", ForkTraceCategories),
      CF__FN("immediatesFound", ImmediatesFound),
      CF__FN("testImmediatesDecoys", TestImmediatesDecoys),
      CF__FN("optionsLockFound", OptionsLockFound),
      CF__FN("testHoldOptionsLock", cf__TestHoldOptionsLock),
      CF__FN("testTaskHold", cf__TestTaskHold),
      CF__FN("testTaskLockHeld", cf__TestTaskLockHeld),
      CF__FN("testTaskNoticed", cf__TestTaskNoticed),
      CF__FN("forkCensusPasses", cf__ForkCensusPasses),
      CF__FN("forkPoolLocated", cf__ForkPoolLocated),
      CF__FN("testPark", cf__TestPark),
      CF__FN("testUnpark", cf__TestUnpark),
#undef CF__FN
  };
  const cf__const_t fork_flags[] = {
      {"SKIP_DOFORK", CF_FORK_SKIP_DOFORK},
      {"SKIP_SILENCE", CF_FORK_SKIP_SILENCE},
      {"SKIP_LOOP_FORK", CF_FORK_SKIP_LOOP_FORK},
      {"SET_PDEATHSIG", CF_FORK_SET_PDEATHSIG},
      {"SKIP_WAITERS", CF_FORK_SKIP_WAITERS},
      {"SKIP_PARENT_WORK", CF_FORK_SKIP_PARENT_WORK},
      {"SKIP_PARENT_IMMEDIATES", CF_FORK_SKIP_PARENT_IMMEDIATES},
      {"SKIP_COND_RESET", CF_FORK_SKIP_COND_RESET},
      {"SKIP_POOL", CF_FORK_SKIP_POOL},
      {"SKIP_SETTLE_WORKERS", CF_FORK_SKIP_SETTLE_WORKERS},
      {"SKIP_NODE_LOCKS", CF_FORK_SKIP_NODE_LOCKS},
      {"EARLY_DOFORK", CF_FORK_EARLY_DOFORK},
      {"SHORT_POOL_WAIT", CF_FORK_SHORT_POOL_WAIT},
      {"SKIP_WORK_SETTLE", CF_FORK_SKIP_WORK_SETTLE},
      {"SKIP_PARENT_REQUESTS", CF_FORK_SKIP_PARENT_REQUESTS},
      {"SKIP_REARM", CF_FORK_SKIP_REARM},
      {"SKIP_PARENT_WRITES", CF_FORK_SKIP_PARENT_WRITES},
      {"SKIP_PARENT_STDIO", CF_FORK_SKIP_PARENT_STDIO},
  };
  const cf__const_t dofork[] = {
      {"RANGED", CF_DOFORK_RANGED},
      {"WALK", CF_DOFORK_WALK},
      {"FORCE_WALK", CF_DOFORK_FORCE_WALK},
      {"FORGET_SPECIAL", CF_DOFORK_FORGET_SPECIAL},
  };
  const cf__const_t exit_codes[] = {
      {"UNCAUGHT", CF_EXIT_UNCAUGHT},
      {"LOOP_FORK", CF_EXIT_LOOP_FORK},
      {"SILENCE", CF_EXIT_SILENCE},
  };
  if (napi_define_properties(env, exports, sizeof(props) / sizeof(props[0]), props) != napi_ok ||
      !cf__set_consts(env, exports, "FORK_FLAGS", fork_flags,
                      sizeof(fork_flags) / sizeof(fork_flags[0])) ||
      !cf__set_consts(env, exports, "DOFORK", dofork, sizeof(dofork) / sizeof(dofork[0])) ||
      !cf__set_consts(env, exports, "EXIT_CODES", exit_codes,
                      sizeof(exit_codes) / sizeof(exit_codes[0])))
    return cf__napi_fail(env);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, Init)
