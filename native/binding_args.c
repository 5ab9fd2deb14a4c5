/* The binding's argument conversions, return values and errors, shared by
 * binding.c and binding_watch.c. Each argument helper takes the entry point's
 * name (fn) and the argument's (name), returns true with *out set, or throws
 * a TypeError or RangeError naming both and returns false. None of them calls
 * into JavaScript except through N-API calls whose status it checks, so a
 * getter that throws stops the conversion with its exception pending. */
#include "binding.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* An N-API call failed. Usually a JavaScript exception is already pending
 * (a getter threw); otherwise throw one that says which call failed. */
napi_value cf__napi_fail(napi_env env) {
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

napi_value cf__throw_errno(napi_env env, int err, const char* where) {
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
bool cf__throw_arg(napi_env env, bool range, const char* code, const char* fmt, ...) {
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

const char* cf__type_name(napi_env env, napi_value v) {
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

napi_value cf__int(napi_env env, int64_t v) {
  napi_value out;
  CF__CHECK(napi_create_int64(env, v, &out));
  return out;
}

/* A two-element array [a, b]: how the binding returns pairs of integers. */
napi_value cf__pair(napi_env env, int64_t a, int64_t b) {
  napi_value out, x, y;
  if ((x = cf__int(env, a)) == NULL || (y = cf__int(env, b)) == NULL) return NULL;
  CF__CHECK(napi_create_array_with_length(env, 2, &out));
  CF__CHECK(napi_set_element(env, out, 0, x));
  CF__CHECK(napi_set_element(env, out, 1, y));
  return out;
}

napi_value cf__undefined(napi_env env) {
  napi_value out;
  CF__CHECK(napi_get_undefined(env, &out));
  return out;
}

napi_value cf__null(napi_env env) {
  napi_value out;
  CF__CHECK(napi_get_null(env, &out));
  return out;
}

napi_value cf__bool(napi_env env, bool v) {
  napi_value out;
  CF__CHECK(napi_get_boolean(env, v, &out));
  return out;
}

napi_value cf__str(napi_env env, const char* s) {
  napi_value out;
  CF__CHECK(napi_create_string_utf8(env, s, NAPI_AUTO_LENGTH, &out));
  return out;
}

/* arr[i] = v, for building a result; false (with an exception pending) when
 * making v failed or the store did. */
bool cf__set(napi_env env, napi_value arr, uint32_t i, napi_value v) {
  if (v != NULL && napi_set_element(env, arr, i, v) == napi_ok) return true;
  cf__napi_fail(env);
  return false;
}

static bool cf__is_undefined(napi_env env, napi_value v) {
  napi_valuetype t;
  return napi_typeof(env, v, &t) == napi_ok && t == napi_undefined;
}

/* An integer Number in [min, max]; both bounds within the safe integers. */
bool cf__arg_int(napi_env env, const char* fn, const char* name, napi_value v, int64_t min,
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
bool cf__arg_opt_int(napi_env env, const char* fn, const char* name, napi_value v,
                            int64_t min, int64_t max, int64_t dflt, int64_t* out) {
  if (cf__is_undefined(env, v)) {
    *out = dflt;
    return true;
  }
  return cf__arg_int(env, fn, name, v, min, max, out);
}

/* A file descriptor: an integer in [0, INT_MAX]. */
bool cf__arg_fd(napi_env env, const char* fn, const char* name, napi_value v, int* out) {
  int64_t x;
  if (!cf__arg_int(env, fn, name, v, 0, INT_MAX, &x)) return false;
  *out = (int)x;
  return true;
}

/* A process id of one process: an integer in [1, INT_MAX]. 0 and negative
 * values name process groups or "any child" in waitpid() and kill(). */
bool cf__arg_pid(napi_env env, const char* fn, const char* name, napi_value v, int* out) {
  int64_t x;
  if (!cf__arg_int(env, fn, name, v, 1, INT_MAX, &x)) return false;
  *out = (int)x;
  return true;
}

bool cf__arg_bool(napi_env env, const char* fn, const char* name, napi_value v, bool* out) {
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
bool cf__arg_string(napi_env env, const char* fn, const char* name, napi_value v, size_t max,
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
bool cf__arg_fd_array(napi_env env, const char* fn, const char* name, napi_value v,
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

void cf__free_strings(char** list) {
  if (list == NULL) return;
  for (char** p = list; *p != NULL; p++) free(*p);
  free(list);
}

/* An array of strings, copied into a NULL-terminated list for execve(). */
bool cf__arg_string_array(napi_env env, const char* fn, const char* name, napi_value v,
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
bool cf__arg_bytes(napi_env env, const char* fn, const char* name, napi_value v,
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
bool cf__arg_i32s(napi_env env, const char* fn, const char* name, napi_value v,
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

bool cf__arg_function(napi_env env, const char* fn, const char* name, napi_value v) {
  napi_valuetype t;
  if (napi_typeof(env, v, &t) != napi_ok) return cf__napi_fail(env), false;
  if (t != napi_function)
    return cf__throw_arg(env, false, "ERR_INVALID_ARG_TYPE", "%s: %s must be a function, got %s", fn,
                         name, cf__type_name(env, v));
  return true;
}

/* Handles are externals tagged with their kind, so that a watch handle can
 * never be taken for a shm handle (or any other addon's external). */
const napi_type_tag cf__watch_tag = {0x636f77666f726b00ULL, 0x7761746368000001ULL};
const napi_type_tag cf__shm_tag = {0x636f77666f726b00ULL, 0x73686d0000000001ULL};

bool cf__arg_handle(napi_env env, const char* fn, const char* name, napi_value v,
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
