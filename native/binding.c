/* The N-API binding: parse arguments, call into the C core, return. Errors
 * from the core become JavaScript Errors whose `code` is the errno name
 * (EAGAIN, ECHILD). A bad argument becomes a TypeError (ERR_INVALID_ARG_TYPE,
 * ERR_INVALID_ARG_VALUE) or RangeError (ERR_OUT_OF_RANGE) naming the function
 * and the argument, thrown before the core is called.
 *
 * Every napi_status is checked. An N-API call that fails leaves its output
 * unset, and a JavaScript getter can throw in the middle of reading an
 * argument (an array element, say): each entry point then returns at once
 * with that exception pending, and the core is never called. */
#ifndef NAPI_VERSION
#define NAPI_VERSION 8
#endif
#include <stdio.h>
#include <node_api.h>

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "cowfork.h"

#ifndef PATH_MAX
#define PATH_MAX 4096
#endif
#ifndef NAME_MAX
#define NAME_MAX 255
#endif

#define CF__MAX_ARGS 6
/* Number.MAX_SAFE_INTEGER: every integer argument is exact in a double. */
#define CF__SAFE_INT 9007199254740991LL
/* The longest fd or string list an entry point takes: far above any real
 * use (Linux's default nr_open), and low enough that the copy is bounded. */
#define CF__MAX_LIST (1 << 20)

/* Returns from the entry point when an N-API call fails, making sure an
 * exception is pending. */
#define CF__CHECK(call)                                   \
  do {                                                    \
    if ((call) != napi_ok) return cf__napi_fail(env);     \
  } while (0)
/* Returns from the entry point when an argument helper has thrown. */
#define CF__TRY(ok)             \
  do {                          \
    if (!(ok)) return NULL;     \
  } while (0)
/* Reads up to n arguments (missing ones are undefined) and names the entry
 * point, as JavaScript sees it, for the argument helpers' messages. */
#define CF__ARGS(name, n)                                 \
  static const char cf__fn[] = name;                      \
  size_t argc = (n);                                      \
  napi_value argv[CF__MAX_ARGS];                          \
  CF__CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL))
#define CF__ERR(r)                                        \
  do {                                                    \
    if ((r) < 0) return cf__throw_errno(env, (r), __func__); \
  } while (0)

/* An N-API call failed. Usually a JavaScript exception is already pending
 * (a getter threw); otherwise throw one that says which call failed. */
static napi_value cf__napi_fail(napi_env env) {
  const napi_extended_error_info* info = NULL;
  bool pending = false;
  if (napi_is_exception_pending(env, &pending) == napi_ok && pending) return NULL;
  if (napi_get_last_error_info(env, &info) != napi_ok) info = NULL;
  napi_throw_error(env, "ERR_COWFORK_NAPI",
                   info && info->error_message ? info->error_message : "N-API call failed");
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
  napi_value msg, code, error, errnum;
  char text[256];
  snprintf(text, sizeof(text), "%s: %s (%s)", where, strerror(-err), cf__errno_name(err));
  if (napi_create_string_utf8(env, text, NAPI_AUTO_LENGTH, &msg) != napi_ok ||
      napi_create_string_utf8(env, cf__errno_name(err), NAPI_AUTO_LENGTH, &code) != napi_ok ||
      napi_create_error(env, code, msg, &error) != napi_ok ||
      napi_create_int32(env, -err, &errnum) != napi_ok ||
      napi_set_named_property(env, error, "errno", errnum) != napi_ok ||
      napi_throw(env, error) != napi_ok)
    return cf__napi_fail(env);
  return NULL;
}

/* Throws a TypeError (or, with range set, a RangeError) with a Node-style
 * code and a message formatted like printf. Returns false, so that argument
 * helpers can `return cf__throw_arg(...)`. */
static bool cf__throw_arg(napi_env env, bool range, const char* code, const char* fmt, ...) {
  char text[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(text, sizeof(text), fmt, ap);
  va_end(ap);
  if (range)
    napi_throw_range_error(env, code, text);
  else
    napi_throw_type_error(env, code, text);
  return false;
}

static const char* cf__type_name(napi_env env, napi_value v) {
  napi_valuetype t;
  if (napi_typeof(env, v, &t) != napi_ok) return "an unknown value";
  switch (t) {
    case napi_undefined: return "undefined";
    case napi_null: return "null";
    case napi_boolean: return "a boolean";
    case napi_number: return "a number";
    case napi_string: return "a string";
    case napi_symbol: return "a symbol";
    case napi_object: return "an object";
    case napi_function: return "a function";
    case napi_external: return "a native handle";
    case napi_bigint: return "a bigint";
    default: return "an unknown value";
  }
}

static napi_value cf__int(napi_env env, int64_t v) {
  napi_value out;
  CF__CHECK(napi_create_int64(env, v, &out));
  return out;
}

/* A two-element array [a, b]: how the binding returns pairs of integers. */
static napi_value cf__pair(napi_env env, int64_t a, int64_t b) {
  napi_value out, x, y;
  if ((x = cf__int(env, a)) == NULL || (y = cf__int(env, b)) == NULL) return NULL;
  CF__CHECK(napi_create_array_with_length(env, 2, &out));
  CF__CHECK(napi_set_element(env, out, 0, x));
  CF__CHECK(napi_set_element(env, out, 1, y));
  return out;
}

static napi_value cf__undefined(napi_env env) {
  napi_value out;
  CF__CHECK(napi_get_undefined(env, &out));
  return out;
}

static napi_value cf__null(napi_env env) {
  napi_value out;
  CF__CHECK(napi_get_null(env, &out));
  return out;
}

static napi_value cf__bool(napi_env env, bool v) {
  napi_value out;
  CF__CHECK(napi_get_boolean(env, v, &out));
  return out;
}

static napi_value cf__str(napi_env env, const char* s) {
  napi_value out;
  CF__CHECK(napi_create_string_utf8(env, s, NAPI_AUTO_LENGTH, &out));
  return out;
}

/* arr[i] = v, for building a result; false (with an exception pending) when
 * making v failed or the store did. */
static bool cf__set(napi_env env, napi_value arr, uint32_t i, napi_value v) {
  if (v != NULL && napi_set_element(env, arr, i, v) == napi_ok) return true;
  cf__napi_fail(env);
  return false;
}

/* ---------------------------------------------------------------------------
 * Argument helpers. Each takes the entry point's name (fn) and the argument's
 * (name), returns true with *out set, or throws an error naming both and
 * returns false. None of them calls into JavaScript except through N-API
 * calls whose status it checks, so a throwing getter stops the conversion. */

static bool cf__is_undefined(napi_env env, napi_value v) {
  napi_valuetype t;
  return napi_typeof(env, v, &t) == napi_ok && t == napi_undefined;
}

/* An integer Number in [min, max]; both bounds within the safe integers. */
static bool cf__arg_int(napi_env env, const char* fn, const char* name, napi_value v, int64_t min,
                        int64_t max, int64_t* out) {
  napi_valuetype t;
  double d;
  if (napi_typeof(env, v, &t) != napi_ok) return cf__napi_fail(env), false;
  if (t != napi_number)
    return cf__throw_arg(env, false, "ERR_INVALID_ARG_TYPE", "%s: %s must be an integer, got %s", fn,
                         name, cf__type_name(env, v));
  if (napi_get_value_double(env, v, &d) != napi_ok) return cf__napi_fail(env), false;
  if (!isfinite(d) || floor(d) != d || d < (double)min || d > (double)max)
    return cf__throw_arg(env, true, "ERR_OUT_OF_RANGE",
                         "%s: %s must be an integer from %lld to %lld, got %.17g", fn, name,
                         (long long)min, (long long)max, d);
  *out = (int64_t)d;
  return true;
}

/* As cf__arg_int, but undefined gives dflt. */
static bool cf__arg_opt_int(napi_env env, const char* fn, const char* name, napi_value v,
                            int64_t min, int64_t max, int64_t dflt, int64_t* out) {
  if (cf__is_undefined(env, v)) {
    *out = dflt;
    return true;
  }
  return cf__arg_int(env, fn, name, v, min, max, out);
}

/* A file descriptor: an integer in [0, INT_MAX]. */
static bool cf__arg_fd(napi_env env, const char* fn, const char* name, napi_value v, int* out) {
  int64_t x;
  if (!cf__arg_int(env, fn, name, v, 0, INT_MAX, &x)) return false;
  *out = (int)x;
  return true;
}

/* A process id of one process: an integer in [1, INT_MAX]. 0 and negative
 * values name process groups or "any child" in waitpid() and kill(). */
static bool cf__arg_pid(napi_env env, const char* fn, const char* name, napi_value v, int* out) {
  int64_t x;
  if (!cf__arg_int(env, fn, name, v, 1, INT_MAX, &x)) return false;
  *out = (int)x;
  return true;
}

static bool cf__arg_bool(napi_env env, const char* fn, const char* name, napi_value v, bool* out) {
  napi_valuetype t;
  if (napi_typeof(env, v, &t) != napi_ok) return cf__napi_fail(env), false;
  if (t != napi_boolean)
    return cf__throw_arg(env, false, "ERR_INVALID_ARG_TYPE", "%s: %s must be a boolean, got %s", fn,
                         name, cf__type_name(env, v));
  if (napi_get_value_bool(env, v, out) != napi_ok) return cf__napi_fail(env), false;
  return true;
}

/* A string for a C path or name: copied whole into *out (malloc'd, the
 * caller frees it), at most max bytes of UTF-8, with no NUL inside, since C
 * would silently end the string there. */
static bool cf__arg_string(napi_env env, const char* fn, const char* name, napi_value v, size_t max,
                           char** out) {
  napi_valuetype t;
  size_t len = 0, copied = 0;
  *out = NULL;
  if (napi_typeof(env, v, &t) != napi_ok) return cf__napi_fail(env), false;
  if (t != napi_string)
    return cf__throw_arg(env, false, "ERR_INVALID_ARG_TYPE", "%s: %s must be a string, got %s", fn,
                         name, cf__type_name(env, v));
  if (napi_get_value_string_utf8(env, v, NULL, 0, &len) != napi_ok)
    return cf__napi_fail(env), false;
  if (len > max)
    return cf__throw_arg(env, true, "ERR_OUT_OF_RANGE",
                         "%s: %s must be at most %zu bytes of UTF-8, got %zu", fn, name, max, len);
  *out = malloc(len + 1);
  if (*out == NULL) return cf__throw_errno(env, -ENOMEM, fn), false;
  if (napi_get_value_string_utf8(env, v, *out, len + 1, &copied) != napi_ok || copied != len) {
    free(*out);
    *out = NULL;
    return cf__napi_fail(env), false;
  }
  if (memchr(*out, '\0', len) != NULL) {
    free(*out);
    *out = NULL;
    return cf__throw_arg(env, false, "ERR_INVALID_ARG_VALUE",
                         "%s: %s must be a string without null bytes", fn, name);
  }
  return true;
}

/* The length of a JavaScript array, at most CF__MAX_LIST. */
static bool cf__arg_array(napi_env env, const char* fn, const char* name, napi_value v,
                          uint32_t* len) {
  bool is_array = false;
  if (napi_is_array(env, v, &is_array) != napi_ok) return cf__napi_fail(env), false;
  if (!is_array)
    return cf__throw_arg(env, false, "ERR_INVALID_ARG_TYPE", "%s: %s must be an array, got %s", fn,
                         name, cf__type_name(env, v));
  if (napi_get_array_length(env, v, len) != napi_ok) return cf__napi_fail(env), false;
  if (*len > CF__MAX_LIST)
    return cf__throw_arg(env, true, "ERR_OUT_OF_RANGE", "%s: %s must have at most %d elements, got %u",
                         fn, name, CF__MAX_LIST, *len);
  return true;
}

/* An array of fds, copied into *out (malloc'd, NULL when empty). */
static bool cf__arg_fd_array(napi_env env, const char* fn, const char* name, napi_value v,
                             int** out, int* n) {
  uint32_t len;
  char elem[64];
  *out = NULL;
  *n = 0;
  if (!cf__arg_array(env, fn, name, v, &len)) return false;
  if (len == 0) return true;
  int* fds = malloc(sizeof(int) * len);
  if (fds == NULL) return cf__throw_errno(env, -ENOMEM, fn), false;
  for (uint32_t i = 0; i < len; i++) {
    napi_value e;
    snprintf(elem, sizeof(elem), "%s[%u]", name, i);
    if (napi_get_element(env, v, i, &e) != napi_ok) {
      free(fds);
      return cf__napi_fail(env), false;
    }
    if (!cf__arg_fd(env, fn, elem, e, &fds[i])) {
      free(fds);
      return false;
    }
  }
  *out = fds;
  *n = (int)len;
  return true;
}

static void cf__free_strings(char** list) {
  if (list == NULL) return;
  for (char** p = list; *p != NULL; p++) free(*p);
  free(list);
}

/* An array of strings, copied into a NULL-terminated list for execve(). */
static bool cf__arg_string_array(napi_env env, const char* fn, const char* name, napi_value v,
                                 char*** out) {
  uint32_t len;
  char elem[64];
  *out = NULL;
  if (!cf__arg_array(env, fn, name, v, &len)) return false;
  char** list = calloc((size_t)len + 1, sizeof(char*));
  if (list == NULL) return cf__throw_errno(env, -ENOMEM, fn), false;
  for (uint32_t i = 0; i < len; i++) {
    napi_value e;
    snprintf(elem, sizeof(elem), "%s[%u]", name, i);
    if (napi_get_element(env, v, i, &e) != napi_ok) {
      cf__free_strings(list);
      return cf__napi_fail(env), false;
    }
    /* The kernel enforces ARG_MAX on the total with E2BIG. */
    if (!cf__arg_string(env, fn, elem, e, SIZE_MAX - 1, &list[i])) {
      cf__free_strings(list);
      return false;
    }
  }
  *out = list;
  return true;
}

/* A Uint8Array (a Buffer is one): its bytes, not copied. */
static bool cf__arg_bytes(napi_env env, const char* fn, const char* name, napi_value v,
                          void** data, size_t* len) {
  bool is = false;
  napi_typedarray_type type;
  napi_value ab;
  size_t off;
  if (napi_is_typedarray(env, v, &is) != napi_ok) return cf__napi_fail(env), false;
  if (is && napi_get_typedarray_info(env, v, &type, len, data, &ab, &off) != napi_ok)
    return cf__napi_fail(env), false;
  if (!is || type != napi_uint8_array)
    return cf__throw_arg(env, false, "ERR_INVALID_ARG_TYPE",
                         "%s: %s must be a Buffer or Uint8Array, got %s", fn, name,
                         cf__type_name(env, v));
  return true;
}

/* An Int32Array: its elements, not copied. */
static bool cf__arg_i32s(napi_env env, const char* fn, const char* name, napi_value v,
                         int32_t** data, size_t* len) {
  bool is = false;
  napi_typedarray_type type;
  napi_value ab;
  size_t off;
  void* raw = NULL;
  if (napi_is_typedarray(env, v, &is) != napi_ok) return cf__napi_fail(env), false;
  if (is && napi_get_typedarray_info(env, v, &type, len, &raw, &ab, &off) != napi_ok)
    return cf__napi_fail(env), false;
  if (!is || type != napi_int32_array)
    return cf__throw_arg(env, false, "ERR_INVALID_ARG_TYPE", "%s: %s must be an Int32Array, got %s",
                         fn, name, cf__type_name(env, v));
  *data = raw;
  return true;
}

static bool cf__arg_function(napi_env env, const char* fn, const char* name, napi_value v) {
  napi_valuetype t;
  if (napi_typeof(env, v, &t) != napi_ok) return cf__napi_fail(env), false;
  if (t != napi_function)
    return cf__throw_arg(env, false, "ERR_INVALID_ARG_TYPE", "%s: %s must be a function, got %s", fn,
                         name, cf__type_name(env, v));
  return true;
}

/* Handles are externals tagged with their kind, so that a watch handle can
 * never be taken for a shm handle (or any other addon's external). */
static const napi_type_tag cf__watch_tag = {0x636f77666f726b00ULL, 0x7761746368000001ULL};
static const napi_type_tag cf__shm_tag = {0x636f77666f726b00ULL, 0x73686d0000000001ULL};

static bool cf__arg_handle(napi_env env, const char* fn, const char* name, napi_value v,
                           const napi_type_tag* tag, const char* kind, void** out) {
  napi_valuetype t;
  bool tagged = false;
  if (napi_typeof(env, v, &t) != napi_ok) return cf__napi_fail(env), false;
  if (t == napi_external && napi_check_object_type_tag(env, v, tag, &tagged) != napi_ok)
    return cf__napi_fail(env), false;
  if (!tagged)
    return cf__throw_arg(env, false, "ERR_INVALID_ARG_TYPE", "%s: %s must be a %s handle, got %s",
                         fn, name, kind, cf__type_name(env, v));
  if (napi_get_value_external(env, v, out) != napi_ok) return cf__napi_fail(env), false;
  return true;
}

/* ------------------------------------------------------------------------- */

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

static napi_value DoforkAll(napi_env env, napi_callback_info info) {
  int r = cf_dofork_all();
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

/* A uv_poll_t watcher that calls back into JavaScript: how a forked child's
 * exit pipe or the Scheduler's fds are watched from Node's own event loop.
 *
 * Its JavaScript handle (an external) and its uv handle end separately:
 * unwatch() closes the uv handle, and the external lives on until it is
 * collected. The struct is freed once both have ended, so unwatch() on a
 * handle that is already closed finds valid memory and does nothing. */
typedef struct {
  uv_poll_t handle;
  napi_env env;
  napi_ref callback;
  napi_async_context async;
  bool closed;      /* unwatch() ran: no more callbacks, uv_close() called */
  bool uv_done;     /* libuv's close callback ran */
  bool js_done;     /* the external was collected */
} cf__watch_t;

static void cf__watch_cb(uv_poll_t* handle, int status, int events) {
  cf__watch_t* w = handle->data;
  napi_handle_scope scope;
  napi_value cb, recv, args[2], result;
  int bits = ((events & UV_READABLE) ? CF_READ : 0) | ((events & UV_WRITABLE) ? CF_WRITE : 0) |
             ((events & UV_DISCONNECT) ? CF_HUP : 0) | (status < 0 ? CF_ERR : 0);
  if (w->closed) return;
  if (napi_open_handle_scope(w->env, &scope) != napi_ok) return;
  if (napi_get_reference_value(w->env, w->callback, &cb) == napi_ok && cb != NULL &&
      napi_get_global(w->env, &recv) == napi_ok &&
      napi_create_int32(w->env, bits, &args[0]) == napi_ok &&
      napi_create_int32(w->env, status, &args[1]) == napi_ok &&
      napi_make_callback(w->env, w->async, recv, cb, 2, args, &result) != napi_ok) {
    /* The callback threw. Nothing in C can handle it: report it the way
     * Node reports an exception thrown from any event-loop callback. */
    napi_value err;
    bool pending = false;
    if (napi_is_exception_pending(w->env, &pending) == napi_ok && pending &&
        napi_get_and_clear_last_exception(w->env, &err) == napi_ok)
      napi_fatal_exception(w->env, err);
  }
  napi_close_handle_scope(w->env, scope);
}

static void cf__watch_uv_closed(uv_handle_t* handle) {
  cf__watch_t* w = handle->data;
  w->uv_done = true;
  if (w->js_done) free(w);
}

static void cf__watch_finalize(napi_env env, void* data, void* hint) {
  cf__watch_t* w = data;
  w->js_done = true;
  if (w->uv_done) free(w);
}

static void cf__watch_close(cf__watch_t* w) {
  if (w->closed) return;
  w->closed = true;
  napi_delete_reference(w->env, w->callback);
  napi_async_destroy(w->env, w->async);
  uv_close((uv_handle_t*)&w->handle, cf__watch_uv_closed);
}

/* The CF_* readiness bits a watcher can ask for. */
#define CF__WATCH_MODES (CF_READ | CF_WRITE | CF_HUP)

static int cf__uv_events(int64_t mode) {
  return ((mode & CF_READ) ? UV_READABLE : 0) | ((mode & CF_WRITE) ? UV_WRITABLE : 0) |
         ((mode & CF_HUP) ? UV_DISCONNECT : 0);
}

/* watch(fd, mode, callback(bits, status)): a watch handle */
static napi_value Watch(napi_env env, napi_callback_info info) {
  CF__ARGS("watch", 3);
  int fd;
  int64_t mode;
  uv_loop_t* loop;
  napi_value name, out;
  CF__TRY(cf__arg_fd(env, cf__fn, "fd", argv[0], &fd));
  CF__TRY(cf__arg_int(env, cf__fn, "mode", argv[1], 0, CF__WATCH_MODES, &mode));
  CF__TRY(cf__arg_function(env, cf__fn, "callback", argv[2]));
  CF__CHECK(napi_get_uv_event_loop(env, &loop));
  CF__CHECK(napi_create_string_utf8(env, "cowfork.watch", NAPI_AUTO_LENGTH, &name));
  cf__watch_t* w = calloc(1, sizeof(*w));
  if (w == NULL) return cf__throw_errno(env, -ENOMEM, "watch");
  w->env = env;
  if (napi_create_reference(env, argv[2], 1, &w->callback) != napi_ok) {
    free(w);
    return cf__napi_fail(env);
  }
  if (napi_async_init(env, NULL, name, &w->async) != napi_ok) {
    napi_delete_reference(env, w->callback);
    free(w);
    return cf__napi_fail(env);
  }
  int r = uv_poll_init(loop, &w->handle, fd);
  if (r < 0) {
    napi_delete_reference(env, w->callback);
    napi_async_destroy(env, w->async);
    free(w);
    return cf__throw_errno(env, r, "watch");
  }
  w->handle.data = w;
  r = uv_poll_start(&w->handle, cf__uv_events(mode), cf__watch_cb);
  if (r < 0 || napi_create_external(env, w, cf__watch_finalize, NULL, &out) != napi_ok) {
    /* No JavaScript handle owns it: free it as soon as libuv lets go. */
    w->js_done = true;
    cf__watch_close(w);
    return r < 0 ? cf__throw_errno(env, r, "watch") : cf__napi_fail(env);
  }
  /* From here the external owns its half of the struct. */
  if (napi_type_tag_object(env, out, &cf__watch_tag) != napi_ok) {
    cf__watch_close(w);
    return cf__napi_fail(env);
  }
  return out;
}

static bool cf__arg_watch(napi_env env, const char* fn, napi_value v, cf__watch_t** out) {
  return cf__arg_handle(env, fn, "handle", v, &cf__watch_tag, "watch", (void**)out);
}

/* watchUpdate(w, mode): change the events of interest; 0 pauses. A closed
 * watch has nothing to update. */
static napi_value WatchUpdate(napi_env env, napi_callback_info info) {
  CF__ARGS("watchUpdate", 2);
  int64_t mode;
  cf__watch_t* w;
  CF__TRY(cf__arg_watch(env, cf__fn, argv[0], &w));
  CF__TRY(cf__arg_int(env, cf__fn, "mode", argv[1], 0, CF__WATCH_MODES, &mode));
  if (w->closed) return cf__throw_errno(env, -EBADF, "watchUpdate");
  int r = mode == 0 ? uv_poll_stop(&w->handle)
                    : uv_poll_start(&w->handle, cf__uv_events(mode), cf__watch_cb);
  CF__ERR(r);
  return cf__undefined(env);
}

/* unwatch(w): stop and close the watcher. A second unwatch does nothing. */
static napi_value Unwatch(napi_env env, napi_callback_info info) {
  CF__ARGS("unwatch", 1);
  cf__watch_t* w;
  CF__TRY(cf__arg_watch(env, cf__fn, argv[0], &w));
  cf__watch_close(w);
  return cf__undefined(env);
}

/* scratchCreate(base): a new private directory inside base. */
static napi_value ScratchCreate(napi_env env, napi_callback_info info) {
  CF__ARGS("scratchCreate", 1);
  char *base, out[PATH_MAX];
  napi_value res;
  CF__TRY(cf__arg_string(env, cf__fn, "base", argv[0], PATH_MAX - 1, &base));
  int r = cf_scratch_create(base, out, sizeof(out));
  free(base);
  CF__ERR(r);
  CF__CHECK(napi_create_string_utf8(env, out, NAPI_AUTO_LENGTH, &res));
  return res;
}

static napi_value ScratchOpen(napi_env env, napi_callback_info info) {
  CF__ARGS("scratchOpen", 3);
  char *dir, *name;
  bool for_write;
  CF__TRY(cf__arg_bool(env, cf__fn, "forWrite", argv[2], &for_write));
  CF__TRY(cf__arg_string(env, cf__fn, "dir", argv[0], PATH_MAX - 1, &dir));
  if (!cf__arg_string(env, cf__fn, "name", argv[1], NAME_MAX, &name)) {
    free(dir);
    return NULL;
  }
  int r = cf_scratch_open(dir, name, for_write);
  free(dir);
  free(name);
  CF__ERR(r);
  return cf__int(env, r);
}

static napi_value ScratchRemove(napi_env env, napi_callback_info info) {
  CF__ARGS("scratchRemove", 1);
  char* dir;
  CF__TRY(cf__arg_string(env, cf__fn, "dir", argv[0], PATH_MAX - 1, &dir));
  int r = cf_scratch_remove(dir);
  free(dir);
  CF__ERR(r);
  return cf__undefined(env);
}

/* hmac(key, data, offset?, length?): Buffer of 32 bytes over
 * data[offset, offset + length); length defaults to the rest of data. */
static napi_value Hmac(napi_env env, napi_callback_info info) {
  CF__ARGS("hmac", 4);
  void *key, *data, *out;
  size_t keylen, len;
  int64_t off, n;
  napi_value buf;
  CF__TRY(cf__arg_bytes(env, cf__fn, "key", argv[0], &key, &keylen));
  CF__TRY(cf__arg_bytes(env, cf__fn, "data", argv[1], &data, &len));
  /* A typed array is shorter than 2^53 bytes, so len fits the bounds. */
  CF__TRY(cf__arg_opt_int(env, cf__fn, "offset", argv[2], 0, (int64_t)len, 0, &off));
  CF__TRY(cf__arg_opt_int(env, cf__fn, "length", argv[3], 0, (int64_t)len - off,
                          (int64_t)len - off, &n));
  CF__CHECK(napi_create_buffer(env, 32, &out, &buf));
  int r = cf_hmac_sha256(key, keylen, (char*)data + off, (size_t)n, out);
  CF__ERR(r);
  return buf;
}

static napi_value Memeq(napi_env env, napi_callback_info info) {
  CF__ARGS("memeq", 2);
  void *a, *b;
  size_t la, lb;
  CF__TRY(cf__arg_bytes(env, cf__fn, "a", argv[0], &a, &la));
  CF__TRY(cf__arg_bytes(env, cf__fn, "b", argv[1], &b, &lb));
  return cf__bool(env, la == lb && cf_memeq(a, b, la));
}

static void cf__shm_finalize(napi_env env, void* data, void* hint) {
  cf_shm_destroy(data);
}

/* The most slots a shm array can have: its size in bytes must fit size_t. */
#define CF__SHM_MAX \
  ((int64_t)(CF_SHM_MAX_COUNT < (uint64_t)CF__SAFE_INT ? CF_SHM_MAX_COUNT : CF__SAFE_INT))

static napi_value ShmCreate(napi_env env, napi_callback_info info) {
  CF__ARGS("shmCreate", 1);
  int64_t count;
  cf_shm_t* shm;
  napi_value out;
  CF__TRY(cf__arg_int(env, cf__fn, "count", argv[0], 1, CF__SHM_MAX, &count));
  int r = cf_shm_create((size_t)count, &shm);
  CF__ERR(r);
  if (napi_create_external(env, shm, cf__shm_finalize, NULL, &out) != napi_ok) {
    cf_shm_destroy(shm);
    return cf__napi_fail(env);
  }
  CF__CHECK(napi_type_tag_object(env, out, &cf__shm_tag));
  return out;
}

/* A shm handle and a slot index inside it. */
static bool cf__arg_slot(napi_env env, const char* fn, napi_value* argv, cf_shm_t** shm,
                         size_t* i) {
  int64_t x;
  if (!cf__arg_handle(env, fn, "shm", argv[0], &cf__shm_tag, "shm", (void**)shm)) return false;
  if (!cf__arg_int(env, fn, "slot", argv[1], 0, (int64_t)cf_shm_count(*shm) - 1, &x)) return false;
  *i = (size_t)x;
  return true;
}

static napi_value ShmAdd(napi_env env, napi_callback_info info) {
  CF__ARGS("shmAdd", 3);
  size_t i;
  int64_t d;
  cf_shm_t* shm;
  CF__TRY(cf__arg_slot(env, cf__fn, argv, &shm, &i));
  CF__TRY(cf__arg_int(env, cf__fn, "delta", argv[2], -CF__SAFE_INT, CF__SAFE_INT, &d));
  return cf__int(env, cf_shm_add(shm, i, d));
}

static napi_value ShmLoad(napi_env env, napi_callback_info info) {
  CF__ARGS("shmLoad", 2);
  size_t i;
  cf_shm_t* shm;
  CF__TRY(cf__arg_slot(env, cf__fn, argv, &shm, &i));
  return cf__int(env, cf_shm_load(shm, i));
}

static napi_value ShmStore(napi_env env, napi_callback_info info) {
  CF__ARGS("shmStore", 3);
  size_t i;
  int64_t v;
  cf_shm_t* shm;
  CF__TRY(cf__arg_slot(env, cf__fn, argv, &shm, &i));
  CF__TRY(cf__arg_int(env, cf__fn, "value", argv[2], -CF__SAFE_INT, CF__SAFE_INT, &v));
  cf_shm_store(shm, i, v);
  return cf__undefined(env);
}

/* shmClaim(shm, slot, total, divisor, maxChunk): [start, count] or null */
static napi_value ShmClaim(napi_env env, napi_callback_info info) {
  CF__ARGS("shmClaim", 5);
  size_t i;
  int64_t total, divisor, max_chunk, count = 0;
  cf_shm_t* shm;
  CF__TRY(cf__arg_slot(env, cf__fn, argv, &shm, &i));
  CF__TRY(cf__arg_int(env, cf__fn, "total", argv[2], 0, CF__SAFE_INT, &total));
  CF__TRY(cf__arg_int(env, cf__fn, "divisor", argv[3], 1, CF__SAFE_INT, &divisor));
  CF__TRY(cf__arg_int(env, cf__fn, "maxChunk", argv[4], 0, CF__SAFE_INT, &max_chunk));
  int64_t start = cf_shm_claim(shm, i, total, divisor, max_chunk, &count);
  if (start < 0) return cf__null(env);
  return cf__pair(env, start, count);
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

/* ---- inspect.c and silence.c: what a fork hands the child. ---- */

/* inheritedPeer(fd): in a child, the peer address of the parent's connection
 * that fd was, or null when fd is not an inherited connection. */
static napi_value InheritedPeer(napi_env env, napi_callback_info info) {
  CF__ARGS("inheritedPeer", 1);
  int fd;
  char peer[CF_ADDR_MAX];
  CF__TRY(cf__arg_fd(env, cf__fn, "fd", argv[0], &fd));
  if (cf_inherited_peer(fd, peer, sizeof(peer)) == 0) return cf__str(env, peer);
  return cf__null(env);
}

static napi_value InheritedCount(napi_env env, napi_callback_info info) {
  return cf__int(env, cf_inherited_count());
}

/* inspectHandles(): [type, fd, sock, active, ref, closing, addr][] for the
 * loop's handles (type is libuv's name for it, sock a CF_SOCK_* value). */
static napi_value InspectHandles(napi_env env, napi_callback_info info) {
  uv_loop_t* loop;
  napi_value arr = NULL;
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
  bool ok = napi_create_array_with_length(env, (size_t)n, &arr) == napi_ok;
  for (int i = 0; ok && i < n; i++) {
    const char* type = uv_handle_type_name((uv_handle_type)h[i].type);
    napi_value row;
    ok = napi_create_array_with_length(env, 7, &row) == napi_ok &&
         cf__set(env, row, 0, cf__str(env, type ? type : "unknown")) &&
         cf__set(env, row, 1, cf__int(env, h[i].fd)) && cf__set(env, row, 2, cf__int(env, h[i].sock)) &&
         cf__set(env, row, 3, cf__int(env, h[i].active)) && cf__set(env, row, 4, cf__int(env, h[i].ref)) &&
         cf__set(env, row, 5, cf__int(env, h[i].closing)) && cf__set(env, row, 6, cf__str(env, h[i].addr)) &&
         cf__set(env, arr, (uint32_t)i, row);
  }
  free(h);
  return ok ? arr : cf__napi_fail(env);
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
    CF__CHECK(napi_create_array_with_length(env, 2, &row));
    if (!cf__set(env, row, 0, cf__int(env, t[i].tid)) || !cf__set(env, row, 1, cf__str(env, t[i].name)) ||
        !cf__set(env, arr, (uint32_t)i, row))
      return NULL;
  }
  return arr;
}

static napi_value ThreadCount(napi_env env, napi_callback_info info) {
  int n = cf_thread_count();
  CF__ERR(n);
  return cf__int(env, n);
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
  const cf__const_t fork_flags[] = {
      {"SKIP_DOFORK", CF_FORK_SKIP_DOFORK},
      {"SKIP_SILENCE", CF_FORK_SKIP_SILENCE},
      {"SKIP_LOOP_FORK", CF_FORK_SKIP_LOOP_FORK},
      {"SET_PDEATHSIG", CF_FORK_SET_PDEATHSIG},
      {"SKIP_WAITERS", CF_FORK_SKIP_WAITERS},
  };
  const cf__const_t exit_codes[] = {
      {"UNCAUGHT", CF_EXIT_UNCAUGHT},
      {"LOOP_FORK", CF_EXIT_LOOP_FORK},
      {"SILENCE", CF_EXIT_SILENCE},
  };
  if (napi_define_properties(env, exports, sizeof(props) / sizeof(props[0]), props) != napi_ok ||
      !cf__set_consts(env, exports, "FORK_FLAGS", fork_flags,
                      sizeof(fork_flags) / sizeof(fork_flags[0])) ||
      !cf__set_consts(env, exports, "EXIT_CODES", exit_codes,
                      sizeof(exit_codes) / sizeof(exit_codes[0])))
    return cf__napi_fail(env);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, Init)
