/* The N-API binding: parse arguments, call into the C core, return. Errors
 * become JavaScript Errors whose `code` is the errno name (EAGAIN, ECHILD). */
#ifndef NAPI_VERSION
#define NAPI_VERSION 8
#endif
#include <stdio.h>
#include <node_api.h>

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cowfork.h"

#define CF__MAX_ARGS 6
#define CF__CHECK(call)                                   \
  do {                                                    \
    if ((call) != napi_ok) return cf__napi_fail(env);     \
  } while (0)
#define CF__ARGS(n)                                       \
  size_t argc = (n);                                      \
  napi_value argv[CF__MAX_ARGS];                          \
  CF__CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL))
#define CF__ERR(r)                                        \
  do {                                                    \
    if ((r) < 0) return cf__throw_errno(env, (r), __func__); \
  } while (0)

static napi_value cf__napi_fail(napi_env env) {
  const napi_extended_error_info* info;
  bool pending = false;
  napi_is_exception_pending(env, &pending);
  if (!pending) {
    napi_get_last_error_info(env, &info);
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE",
                          info && info->error_message ? info->error_message : "invalid argument");
  }
  return NULL;
}

/* The errno name for a negative errno. libuv's table lacks some (ECHILD). */
static const char* cf__errno_name(int err) {
  switch (-err) {
#define CF__E(name) \
  case name:        \
    return #name;
    CF__E(EPERM) CF__E(ENOENT) CF__E(ESRCH) CF__E(EINTR) CF__E(EIO) CF__E(EBADF) CF__E(ECHILD)
    CF__E(EAGAIN) CF__E(ENOMEM) CF__E(EACCES) CF__E(EEXIST) CF__E(ENOTDIR) CF__E(EISDIR)
    CF__E(EINVAL) CF__E(ENFILE) CF__E(EMFILE) CF__E(ENOSPC) CF__E(EPIPE) CF__E(ERANGE)
    CF__E(ELOOP) CF__E(ENAMETOOLONG) CF__E(ENOSYS) CF__E(ENOTEMPTY)
#undef CF__E
    default:
      return uv_err_name(err);
  }
}

static napi_value cf__throw_errno(napi_env env, int err, const char* where) {
  napi_value msg, code, error;
  char text[256];
  snprintf(text, sizeof(text), "%s: %s (%s)", where, strerror(-err), cf__errno_name(err));
  napi_create_string_utf8(env, text, NAPI_AUTO_LENGTH, &msg);
  napi_create_string_utf8(env, cf__errno_name(err), NAPI_AUTO_LENGTH, &code);
  napi_create_error(env, code, msg, &error);
  napi_value errnum;
  napi_create_int32(env, -err, &errnum);
  napi_set_named_property(env, error, "errno", errnum);
  napi_throw(env, error);
  return NULL;
}

static napi_value cf__int(napi_env env, int64_t v) {
  napi_value out;
  napi_create_int64(env, v, &out);
  return out;
}

/* A two-element array [a, b]: how the binding returns pairs of integers. */
static napi_value cf__pair(napi_env env, int64_t a, int64_t b) {
  napi_value out;
  napi_create_array_with_length(env, 2, &out);
  napi_set_element(env, out, 0, cf__int(env, a));
  napi_set_element(env, out, 1, cf__int(env, b));
  return out;
}

static napi_value cf__undefined(napi_env env) {
  napi_value out;
  napi_get_undefined(env, &out);
  return out;
}

static int cf__get_i64(napi_env env, napi_value v, int64_t* out) {
  return napi_get_value_int64(env, v, out) == napi_ok;
}

/* Reads a JS array of integers into a malloc'd int array. */
static int cf__get_int_array(napi_env env, napi_value v, int** out, int* n) {
  uint32_t len = 0;
  bool is_array = false;
  *out = NULL;
  *n = 0;
  if (napi_is_array(env, v, &is_array) != napi_ok || !is_array) return 0;
  napi_get_array_length(env, v, &len);
  if (len == 0) return 1;
  *out = malloc(sizeof(int) * len);
  if (*out == NULL) return 0;
  for (uint32_t i = 0; i < len; i++) {
    napi_value e;
    int32_t x;
    napi_get_element(env, v, i, &e);
    if (napi_get_value_int32(env, e, &x) != napi_ok) {
      free(*out);
      *out = NULL;
      return 0;
    }
    (*out)[i] = x;
  }
  *n = (int)len;
  return 1;
}

static int cf__get_string(napi_env env, napi_value v, char* buf, size_t len) {
  size_t copied;
  if (napi_get_value_string_utf8(env, v, buf, len, &copied) != napi_ok) return 0;
  return copied < len - 1;
}

/* fork(keepFds: number[], flags: number): number. Returns 0 in the child. */
static napi_value Fork(napi_env env, napi_callback_info info) {
  CF__ARGS(2);
  int* keep;
  int nkeep;
  int64_t flags = 0;
  uv_loop_t* loop;
  if (!cf__get_int_array(env, argv[0], &keep, &nkeep))
    return napi_throw_type_error(env, NULL, "keepFds must be an array of fds"), NULL;
  cf__get_i64(env, argv[1], &flags);
  CF__CHECK(napi_get_uv_event_loop(env, &loop));
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
  napi_value out;
  napi_get_boolean(env, cf_fork_pool_emptied() != 0, &out);
  return out;
}

/* doforkAll(flags = 0): the madvise() calls made; flags are CF_DOFORK_* (tests). */
static napi_value DoforkAll(napi_env env, napi_callback_info info) {
  CF__ARGS(1);
  int64_t flags = 0;
  if (argc > 0) cf__get_i64(env, argv[0], &flags);
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

static napi_value Exit(napi_env env, napi_callback_info info) {
  CF__ARGS(1);
  int64_t code = 0;
  cf__get_i64(env, argv[0], &code);
  cf_exit((int)code);
  return NULL;
}

static napi_value Getpid(napi_env env, napi_callback_info info) {
  return cf__int(env, getpid());
}

static napi_value Getppid(napi_env env, napi_callback_info info) {
  return cf__int(env, getppid());
}

/* pipe(nonblock: boolean): [readFd, writeFd], both close-on-exec. */
static napi_value Pipe(napi_env env, napi_callback_info info) {
  CF__ARGS(1);
  int fds[2];
  bool nonblock = false;
  napi_get_value_bool(env, argv[0], &nonblock);
  int r = cf_pipe(fds);
  CF__ERR(r);
  if (nonblock) {
    fcntl(fds[0], F_SETFL, fcntl(fds[0], F_GETFL) | O_NONBLOCK);
    fcntl(fds[1], F_SETFL, fcntl(fds[1], F_GETFL) | O_NONBLOCK);
  }
  return cf__pair(env, fds[0], fds[1]);
}

static napi_value Close(napi_env env, napi_callback_info info) {
  CF__ARGS(1);
  int64_t fd;
  if (!cf__get_i64(env, argv[0], &fd)) return cf__napi_fail(env);
  /* Never retry close() on EINTR: on Linux the fd is already gone. */
  if (close((int)fd) != 0 && errno != EINTR) CF__ERR(-errno);
  return cf__undefined(env);
}

/* waitpid(pid, nohang): null while the child runs, else [pid, code, signal]. */
static napi_value Waitpid(napi_env env, napi_callback_info info) {
  CF__ARGS(2);
  int64_t pid;
  bool nohang = true;
  cf_wait_result_t res;
  napi_value out;
  if (!cf__get_i64(env, argv[0], &pid)) return cf__napi_fail(env);
  napi_get_value_bool(env, argv[1], &nohang);
  int r = cf_waitpid((int)pid, nohang, &res);
  CF__ERR(r);
  if (r == 0) {
    napi_get_null(env, &out);
    return out;
  }
  napi_create_array_with_length(env, 3, &out);
  napi_set_element(env, out, 0, cf__int(env, res.pid));
  napi_set_element(env, out, 1, cf__int(env, res.exit_status));
  napi_set_element(env, out, 2, cf__int(env, res.term_signal));
  return out;
}

/* pidfdOpen(pid): a close-on-exec fd that polls readable when pid terminates. */
static napi_value PidfdOpen(napi_env env, napi_callback_info info) {
  CF__ARGS(1);
  int64_t pid;
  if (!cf__get_i64(env, argv[0], &pid)) return cf__napi_fail(env);
  int r = cf_pidfd_open((int)pid);
  CF__ERR(r);
  return cf__int(env, r);
}

static int cf__get_i32_array(napi_env env, napi_value v, int32_t** data, size_t* len) {
  napi_typedarray_type type;
  void* raw;
  napi_value ab;
  size_t off;
  if (napi_get_typedarray_info(env, v, &type, len, &raw, &ab, &off) != napi_ok) return 0;
  if (type != napi_int32_array) return 0;
  *data = raw;
  return 1;
}

/* poll(fds: Int32Array, events: Int32Array, revents: Int32Array, timeoutMs): number */
static napi_value Poll(napi_env env, napi_callback_info info) {
  CF__ARGS(4);
  int32_t *fds, *events, *revents;
  size_t n1, n2, n3;
  int64_t timeout = -1;
  if (!cf__get_i32_array(env, argv[0], &fds, &n1) ||
      !cf__get_i32_array(env, argv[1], &events, &n2) ||
      !cf__get_i32_array(env, argv[2], &revents, &n3) || n1 != n2 || n1 != n3)
    return napi_throw_type_error(env, NULL, "poll needs three Int32Arrays of one length"), NULL;
  cf__get_i64(env, argv[3], &timeout);
  int r = cf_poll(fds, events, revents, (int)n1, timeout);
  CF__ERR(r);
  return cf__int(env, r);
}

/* A uv_poll_t watcher that calls back into JavaScript: how a forked child's
 * exit pipe or the Scheduler's fds are watched from Node's own event loop. */
typedef struct {
  uv_poll_t handle;
  napi_env env;
  napi_ref callback;
  napi_async_context async;
  int closed;
} cf__watch_t;

static void cf__watch_cb(uv_poll_t* handle, int status, int events) {
  cf__watch_t* w = handle->data;
  napi_handle_scope scope;
  napi_value cb, recv, args[2], result;
  int bits = ((events & UV_READABLE) ? CF_READ : 0) | ((events & UV_WRITABLE) ? CF_WRITE : 0) |
             ((events & UV_DISCONNECT) ? CF_HUP : 0) | (status < 0 ? CF_ERR : 0);
  if (w->closed) return;
  napi_open_handle_scope(w->env, &scope);
  napi_get_reference_value(w->env, w->callback, &cb);
  napi_get_global(w->env, &recv);
  args[0] = cf__int(w->env, bits);
  args[1] = cf__int(w->env, status);
  napi_make_callback(w->env, w->async, recv, cb, 2, args, &result);
  napi_close_handle_scope(w->env, scope);
}

static void cf__watch_free(uv_handle_t* handle) {
  free(handle->data);
}

static void cf__watch_close(cf__watch_t* w) {
  if (w->closed) return;
  w->closed = 1;
  napi_delete_reference(w->env, w->callback);
  napi_async_destroy(w->env, w->async);
  uv_close((uv_handle_t*)&w->handle, cf__watch_free);
}

static int cf__uv_events(int64_t mode) {
  return ((mode & CF_READ) ? UV_READABLE : 0) | ((mode & CF_WRITE) ? UV_WRITABLE : 0) |
         ((mode & CF_HUP) ? UV_DISCONNECT : 0);
}

/* watch(fd, mode, callback(bits, status)): external */
static napi_value Watch(napi_env env, napi_callback_info info) {
  CF__ARGS(3);
  int64_t fd, mode;
  uv_loop_t* loop;
  napi_value name, out;
  if (!cf__get_i64(env, argv[0], &fd) || !cf__get_i64(env, argv[1], &mode))
    return cf__napi_fail(env);
  CF__CHECK(napi_get_uv_event_loop(env, &loop));
  cf__watch_t* w = calloc(1, sizeof(*w));
  if (w == NULL) return cf__throw_errno(env, -ENOMEM, "watch");
  int r = uv_poll_init(loop, &w->handle, (int)fd);
  if (r < 0) {
    free(w);
    return cf__throw_errno(env, r, "watch");
  }
  w->handle.data = w;
  w->env = env;
  napi_create_reference(env, argv[2], 1, &w->callback);
  napi_create_string_utf8(env, "cowfork.watch", NAPI_AUTO_LENGTH, &name);
  napi_async_init(env, NULL, name, &w->async);
  r = uv_poll_start(&w->handle, cf__uv_events(mode), cf__watch_cb);
  if (r < 0) {
    cf__watch_close(w);
    return cf__throw_errno(env, r, "watch");
  }
  CF__CHECK(napi_create_external(env, w, NULL, NULL, &out));
  return out;
}

static cf__watch_t* cf__get_watch(napi_env env, napi_value v) {
  void* p = NULL;
  napi_get_value_external(env, v, &p);
  return p;
}

/* watchUpdate(w, mode): change the events of interest; 0 pauses. */
static napi_value WatchUpdate(napi_env env, napi_callback_info info) {
  CF__ARGS(2);
  int64_t mode;
  cf__watch_t* w = cf__get_watch(env, argv[0]);
  if (w == NULL || !cf__get_i64(env, argv[1], &mode)) return cf__napi_fail(env);
  if (w->closed) return cf__undefined(env);
  int r = mode == 0 ? uv_poll_stop(&w->handle)
                    : uv_poll_start(&w->handle, cf__uv_events(mode), cf__watch_cb);
  CF__ERR(r);
  return cf__undefined(env);
}

/* watchRef(w, ref): whether the watcher keeps the event loop alive. */
static napi_value WatchRef(napi_env env, napi_callback_info info) {
  CF__ARGS(2);
  bool ref = true;
  cf__watch_t* w = cf__get_watch(env, argv[0]);
  if (w == NULL) return cf__napi_fail(env);
  napi_get_value_bool(env, argv[1], &ref);
  if (!w->closed) {
    if (ref)
      uv_ref((uv_handle_t*)&w->handle);
    else
      uv_unref((uv_handle_t*)&w->handle);
  }
  return cf__undefined(env);
}

static napi_value Unwatch(napi_env env, napi_callback_info info) {
  CF__ARGS(1);
  cf__watch_t* w = cf__get_watch(env, argv[0]);
  if (w == NULL) return cf__napi_fail(env);
  cf__watch_close(w);
  return cf__undefined(env);
}

static napi_value ScratchCreate(napi_env env, napi_callback_info info) {
  CF__ARGS(1);
  char base[2048], out[4096];
  napi_value res;
  if (!cf__get_string(env, argv[0], base, sizeof(base))) return cf__napi_fail(env);
  int r = cf_scratch_create(base, out, sizeof(out));
  CF__ERR(r);
  napi_create_string_utf8(env, out, NAPI_AUTO_LENGTH, &res);
  return res;
}

static napi_value ScratchOpen(napi_env env, napi_callback_info info) {
  CF__ARGS(3);
  char dir[4096], name[256];
  bool for_write = false;
  if (!cf__get_string(env, argv[0], dir, sizeof(dir)) ||
      !cf__get_string(env, argv[1], name, sizeof(name)))
    return cf__napi_fail(env);
  napi_get_value_bool(env, argv[2], &for_write);
  int r = cf_scratch_open(dir, name, for_write);
  CF__ERR(r);
  return cf__int(env, r);
}

static napi_value ScratchRemove(napi_env env, napi_callback_info info) {
  CF__ARGS(1);
  char dir[4096];
  if (!cf__get_string(env, argv[0], dir, sizeof(dir))) return cf__napi_fail(env);
  int r = cf_scratch_remove(dir);
  CF__ERR(r);
  return cf__undefined(env);
}

static int cf__get_bytes(napi_env env, napi_value v, void** data, size_t* len) {
  bool is;
  if (napi_is_buffer(env, v, &is) == napi_ok && is)
    return napi_get_buffer_info(env, v, data, len) == napi_ok;
  napi_typedarray_type type;
  napi_value ab;
  size_t off, n;
  if (napi_get_typedarray_info(env, v, &type, &n, data, &ab, &off) != napi_ok) return 0;
  if (type != napi_uint8_array) return 0;
  *len = n;
  return 1;
}

/* hmac(key, data, offset?, length?): Buffer of 32 bytes */
static napi_value Hmac(napi_env env, napi_callback_info info) {
  CF__ARGS(4);
  void *key, *data, *out;
  size_t keylen, len;
  int64_t off = 0, n = -1;
  napi_value buf;
  if (!cf__get_bytes(env, argv[0], &key, &keylen) || !cf__get_bytes(env, argv[1], &data, &len))
    return napi_throw_type_error(env, NULL, "hmac needs a key and data as Uint8Arrays"), NULL;
  if (argc > 2) cf__get_i64(env, argv[2], &off);
  if (argc > 3) cf__get_i64(env, argv[3], &n);
  if (n < 0) n = (int64_t)len - off;
  if (off < 0 || off + n > (int64_t)len) return cf__throw_errno(env, -ERANGE, "hmac");
  CF__CHECK(napi_create_buffer(env, 32, &out, &buf));
  int r = cf_hmac_sha256(key, keylen, (char*)data + off, (size_t)n, out);
  CF__ERR(r);
  return buf;
}

static napi_value Memeq(napi_env env, napi_callback_info info) {
  CF__ARGS(2);
  void *a, *b;
  size_t la, lb;
  napi_value out;
  if (!cf__get_bytes(env, argv[0], &a, &la) || !cf__get_bytes(env, argv[1], &b, &lb))
    return cf__napi_fail(env);
  napi_get_boolean(env, la == lb && cf_memeq(a, b, la), &out);
  return out;
}

/* randomFill(bytes: Uint8Array): fills it with fresh bytes from the kernel. */
static napi_value RandomFill(napi_env env, napi_callback_info info) {
  CF__ARGS(1);
  void* data;
  size_t len;
  if (argc < 1 || !cf__get_bytes(env, argv[0], &data, &len))
    return napi_throw_type_error(env, NULL, "randomFill needs a Uint8Array"), NULL;
  int r = cf_random_fill(data, len);
  CF__ERR(r);
  return cf__undefined(env);
}

static void cf__shm_finalize(napi_env env, void* data, void* hint) {
  cf_shm_destroy(data);
}

static napi_value ShmCreate(napi_env env, napi_callback_info info) {
  CF__ARGS(1);
  int64_t count;
  cf_shm_t* shm;
  napi_value out;
  if (!cf__get_i64(env, argv[0], &count) || count <= 0)
    return cf__throw_errno(env, -EINVAL, "shmCreate");
  int r = cf_shm_create((size_t)count, &shm);
  CF__ERR(r);
  CF__CHECK(napi_create_external(env, shm, cf__shm_finalize, NULL, &out));
  return out;
}

static cf_shm_t* cf__get_shm(napi_env env, napi_value v, napi_value index, size_t* i) {
  void* p = NULL;
  int64_t x;
  if (napi_get_value_external(env, v, &p) != napi_ok || p == NULL) return NULL;
  if (!cf__get_i64(env, index, &x) || x < 0 || (size_t)x >= cf_shm_count(p)) return NULL;
  *i = (size_t)x;
  return p;
}

static napi_value ShmAdd(napi_env env, napi_callback_info info) {
  CF__ARGS(3);
  size_t i;
  int64_t d = 0;
  cf_shm_t* shm = cf__get_shm(env, argv[0], argv[1], &i);
  if (shm == NULL) return cf__throw_errno(env, -EINVAL, "shmAdd");
  cf__get_i64(env, argv[2], &d);
  return cf__int(env, cf_shm_add(shm, i, d));
}

static napi_value ShmLoad(napi_env env, napi_callback_info info) {
  CF__ARGS(2);
  size_t i;
  cf_shm_t* shm = cf__get_shm(env, argv[0], argv[1], &i);
  if (shm == NULL) return cf__throw_errno(env, -EINVAL, "shmLoad");
  return cf__int(env, cf_shm_load(shm, i));
}

static napi_value ShmStore(napi_env env, napi_callback_info info) {
  CF__ARGS(3);
  size_t i;
  int64_t v = 0;
  cf_shm_t* shm = cf__get_shm(env, argv[0], argv[1], &i);
  if (shm == NULL) return cf__throw_errno(env, -EINVAL, "shmStore");
  cf__get_i64(env, argv[2], &v);
  cf_shm_store(shm, i, v);
  return cf__undefined(env);
}

/* shmClaim(shm, slot, total, divisor, maxChunk): [start, count] or null */
static napi_value ShmClaim(napi_env env, napi_callback_info info) {
  CF__ARGS(5);
  size_t i;
  int64_t total = 0, divisor = 1, max_chunk = 0, count = 0;
  napi_value out;
  cf_shm_t* shm = cf__get_shm(env, argv[0], argv[1], &i);
  if (shm == NULL) return cf__throw_errno(env, -EINVAL, "shmClaim");
  cf__get_i64(env, argv[2], &total);
  cf__get_i64(env, argv[3], &divisor);
  cf__get_i64(env, argv[4], &max_chunk);
  if (divisor < 1) divisor = 1;
  int64_t start = cf_shm_claim(shm, i, total, divisor, max_chunk, &count);
  if (start < 0) {
    napi_get_null(env, &out);
    return out;
  }
  return cf__pair(env, start, count);
}

/* execve(path, argv[], envp[]): only returns by throwing. */
static napi_value Execve(napi_env env, napi_callback_info info) {
  CF__ARGS(3);
  char path[4096];
  uint32_t na = 0, ne = 0;
  if (!cf__get_string(env, argv[0], path, sizeof(path))) return cf__napi_fail(env);
  napi_get_array_length(env, argv[1], &na);
  napi_get_array_length(env, argv[2], &ne);
  char** av = calloc(na + 1, sizeof(char*));
  char** ev = calloc(ne + 1, sizeof(char*));
  napi_value arrays[2] = {argv[1], argv[2]};
  char** outs[2] = {av, ev};
  uint32_t lens[2] = {na, ne};
  for (int k = 0; k < 2; k++) {
    for (uint32_t i = 0; i < lens[k]; i++) {
      napi_value e;
      size_t sz;
      napi_get_element(env, arrays[k], i, &e);
      napi_get_value_string_utf8(env, e, NULL, 0, &sz);
      outs[k][i] = malloc(sz + 1);
      napi_get_value_string_utf8(env, e, outs[k][i], sz + 1, &sz);
    }
  }
  int r = cf_execve(path, av, ev);
  for (int k = 0; k < 2; k++) {
    for (uint32_t i = 0; i < lens[k]; i++) free(outs[k][i]);
    free(outs[k]);
  }
  return cf__throw_errno(env, r, "execve");
}

/* listenTcp(host, port, backlog, reusePort): [fd, boundPort] */
static napi_value ListenTcp(napi_env env, napi_callback_info info) {
  CF__ARGS(4);
  char host[1024];
  int64_t port = 0, backlog = 511;
  bool reuse = false;
  int bound = 0;
  if (!cf__get_string(env, argv[0], host, sizeof(host)) || !cf__get_i64(env, argv[1], &port))
    return cf__napi_fail(env);
  cf__get_i64(env, argv[2], &backlog);
  napi_get_value_bool(env, argv[3], &reuse);
  int fd = cf_listen_tcp(host, (int)port, (int)backlog, reuse ? CF_LISTEN_REUSEPORT : 0, &bound);
  CF__ERR(fd);
  return cf__pair(env, fd, bound);
}

/* listenUnix(path, backlog): fd */
static napi_value ListenUnix(napi_env env, napi_callback_info info) {
  CF__ARGS(2);
  char path[4096];
  int64_t backlog = 511;
  if (!cf__get_string(env, argv[0], path, sizeof(path))) return cf__napi_fail(env);
  cf__get_i64(env, argv[1], &backlog);
  int fd = cf_listen_unix(path, (int)backlog);
  CF__ERR(fd);
  return cf__int(env, fd);
}

/* dup(fd): a close-on-exec duplicate */
static napi_value Dup(napi_env env, napi_callback_info info) {
  CF__ARGS(1);
  int64_t fd;
  if (!cf__get_i64(env, argv[0], &fd)) return cf__napi_fail(env);
  int r = cf_dup_cloexec((int)fd);
  CF__ERR(r);
  return cf__int(env, r);
}

/* ---- inspect.c and silence.c: what a fork hands the child. ---- */

static napi_value cf__str(napi_env env, const char* s) {
  napi_value out;
  napi_create_string_utf8(env, s, NAPI_AUTO_LENGTH, &out);
  return out;
}

/* inheritedPeer(fd): in a child, the peer address of the parent's connection
 * that fd was, or null when fd is not an inherited connection. */
static napi_value InheritedPeer(napi_env env, napi_callback_info info) {
  CF__ARGS(1);
  int64_t fd = -1;
  char peer[CF_ADDR_MAX];
  napi_value out;
  if (!cf__get_i64(env, argv[0], &fd) || fd < 0 || fd > INT32_MAX)
    return napi_throw_range_error(env, NULL, "fd must be a non-negative integer"), NULL;
  if (cf_inherited_peer((int)fd, peer, sizeof(peer)) == 0) return cf__str(env, peer);
  napi_get_null(env, &out);
  return out;
}

static napi_value InheritedCount(napi_env env, napi_callback_info info) {
  return cf__int(env, cf_inherited_count());
}

/* inspectHandles(): [type, fd, sock, active, ref, closing, addr][] for the
 * loop's handles (type is libuv's name for it, sock a CF_SOCK_* value). */
static napi_value InspectHandles(napi_env env, napi_callback_info info) {
  uv_loop_t* loop;
  napi_value arr;
  int max = 256, n;
  cf_handle_info_t* h = NULL;
  CF__CHECK(napi_get_uv_event_loop(env, &loop));
  for (;;) {
    free(h);
    h = malloc(sizeof(*h) * (size_t)max);
    if (h == NULL) return cf__throw_errno(env, -ENOMEM, __func__);
    n = cf_inspect_handles(loop, h, max);
    if (n <= max) break;
    max = n + 16;
  }
  CF__CHECK(napi_create_array_with_length(env, (size_t)n, &arr));
  for (int i = 0; i < n; i++) {
    napi_value row;
    napi_create_array_with_length(env, 7, &row);
    napi_set_element(env, row, 0, cf__str(env, uv_handle_type_name((uv_handle_type)h[i].type)));
    napi_set_element(env, row, 1, cf__int(env, h[i].fd));
    napi_set_element(env, row, 2, cf__int(env, h[i].sock));
    napi_set_element(env, row, 3, cf__int(env, h[i].active));
    napi_set_element(env, row, 4, cf__int(env, h[i].ref));
    napi_set_element(env, row, 5, cf__int(env, h[i].closing));
    napi_set_element(env, row, 6, cf__str(env, h[i].addr));
    napi_set_element(env, arr, (uint32_t)i, row);
  }
  free(h);
  return arr;
}

/* threads(): [tid, name][] (Linux; ENOSYS elsewhere). */
static napi_value Threads(napi_env env, napi_callback_info info) {
  cf_thread_info_t t[512];
  napi_value arr;
  int n = cf_threads(t, 512);
  CF__ERR(n);
  if (n > 512) n = 512;
  CF__CHECK(napi_create_array_with_length(env, (size_t)n, &arr));
  for (int i = 0; i < n; i++) {
    napi_value row;
    napi_create_array_with_length(env, 2, &row);
    napi_set_element(env, row, 0, cf__int(env, t[i].tid));
    napi_set_element(env, row, 1, cf__str(env, t[i].name));
    napi_set_element(env, arr, (uint32_t)i, row);
  }
  return arr;
}

static napi_value ThreadCount(napi_env env, napi_callback_info info) {
  int n = cf_thread_count();
  CF__ERR(n);
  return cf__int(env, n);
}

static napi_value Init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
#define CF__FN(name, fn) {name, NULL, fn, NULL, NULL, NULL, napi_enumerable, NULL}
      CF__FN("fork", Fork),
      CF__FN("doforkAll", DoforkAll),
      CF__FN("doforkLast", DoforkLast),
      CF__FN("benchForkRoundtrip", BenchForkRoundtrip),
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
      CF__FN("watch", Watch),
      CF__FN("watchUpdate", WatchUpdate),
      CF__FN("watchRef", WatchRef),
      CF__FN("unwatch", Unwatch),
      CF__FN("scratchCreate", ScratchCreate),
      CF__FN("scratchOpen", ScratchOpen),
      CF__FN("scratchRemove", ScratchRemove),
      CF__FN("hmac", Hmac),
      CF__FN("memeq", Memeq),
      CF__FN("shmCreate", ShmCreate),
      CF__FN("shmAdd", ShmAdd),
      CF__FN("shmLoad", ShmLoad),
      CF__FN("shmStore", ShmStore),
      CF__FN("shmClaim", ShmClaim),
      CF__FN("execve", Execve),
      CF__FN("listenTcp", ListenTcp),
      CF__FN("listenUnix", ListenUnix),
      CF__FN("dup", Dup),
      CF__FN("forkWaitersReleased", ForkWaitersReleased),
      CF__FN("forkPoolEmptied", ForkPoolEmptied),
      CF__FN("inheritedPeer", InheritedPeer),
      CF__FN("inheritedCount", InheritedCount),
      CF__FN("inspectHandles", InspectHandles),
      CF__FN("threads", Threads),
      CF__FN("threadCount", ThreadCount),
#undef CF__FN
  };
  napi_define_properties(env, exports, sizeof(props) / sizeof(props[0]), props);
  napi_value flags;
  napi_create_object(env, &flags);
  napi_set_named_property(env, flags, "SKIP_DOFORK", cf__int(env, CF_FORK_SKIP_DOFORK));
  napi_set_named_property(env, flags, "SKIP_SILENCE", cf__int(env, CF_FORK_SKIP_SILENCE));
  napi_set_named_property(env, flags, "SKIP_LOOP_FORK", cf__int(env, CF_FORK_SKIP_LOOP_FORK));
  napi_set_named_property(env, flags, "SET_PDEATHSIG", cf__int(env, CF_FORK_SET_PDEATHSIG));
  napi_set_named_property(env, flags, "SKIP_WAITERS", cf__int(env, CF_FORK_SKIP_WAITERS));
  napi_set_named_property(env, exports, "FORK_FLAGS", flags);
  napi_value dofork;
  napi_create_object(env, &dofork);
  napi_set_named_property(env, dofork, "RANGED", cf__int(env, CF_DOFORK_RANGED));
  napi_set_named_property(env, dofork, "WALK", cf__int(env, CF_DOFORK_WALK));
  napi_set_named_property(env, dofork, "FORCE_WALK", cf__int(env, CF_DOFORK_FORCE_WALK));
  napi_set_named_property(env, dofork, "FORGET_SPECIAL", cf__int(env, CF_DOFORK_FORGET_SPECIAL));
  napi_set_named_property(env, exports, "DOFORK", dofork);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, Init)
