/* What the binding's files share: the argument helpers (binding_args.c), the
 * handle tags, and the macros every entry point is written with. Only the
 * binding's files include this; the C core knows nothing of N-API. */
#ifndef COWFORK_BINDING_H
#define COWFORK_BINDING_H

#ifndef NAPI_VERSION
#define NAPI_VERSION 8
#endif
#include <node_api.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

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
/* Throws the core's negative errno as an Error whose code is its name. */
#define CF__ERR(r)                                        \
  do {                                                    \
    if ((r) < 0) return cf__throw_errno(env, (r), __func__); \
  } while (0)

/* Errors. Each returns NULL (or false) with an exception pending. */
napi_value cf__napi_fail(napi_env env);
napi_value cf__throw_errno(napi_env env, int err, const char* where);
bool cf__throw_arg(napi_env env, bool range, const char* code, const char* fmt, ...);
const char* cf__type_name(napi_env env, napi_value v);

/* Return values; NULL with an exception pending if N-API fails. */
napi_value cf__int(napi_env env, int64_t v);
napi_value cf__pair(napi_env env, int64_t a, int64_t b);
napi_value cf__undefined(napi_env env);
napi_value cf__null(napi_env env);
napi_value cf__bool(napi_env env, bool v);
napi_value cf__str(napi_env env, const char* s);
bool cf__set(napi_env env, napi_value arr, uint32_t i, napi_value v); /* arr[i] = v */

/* Arguments: true with *out set, or false with a TypeError or RangeError
 * naming fn and name pending. */
bool cf__arg_int(napi_env env, const char* fn, const char* name, napi_value v, int64_t min,
                 int64_t max, int64_t* out);
bool cf__arg_opt_int(napi_env env, const char* fn, const char* name, napi_value v, int64_t min,
                     int64_t max, int64_t dflt, int64_t* out);
bool cf__arg_fd(napi_env env, const char* fn, const char* name, napi_value v, int* out);
bool cf__arg_pid(napi_env env, const char* fn, const char* name, napi_value v, int* out);
bool cf__arg_bool(napi_env env, const char* fn, const char* name, napi_value v, bool* out);
bool cf__arg_string(napi_env env, const char* fn, const char* name, napi_value v, size_t max,
                    char** out);
bool cf__arg_fd_array(napi_env env, const char* fn, const char* name, napi_value v, int** out,
                      int* n);
bool cf__arg_string_array(napi_env env, const char* fn, const char* name, napi_value v,
                          char*** out);
void cf__free_strings(char** list);
bool cf__arg_bytes(napi_env env, const char* fn, const char* name, napi_value v, void** data,
                   size_t* len);
bool cf__arg_i32s(napi_env env, const char* fn, const char* name, napi_value v, int32_t** data,
                  size_t* len);
bool cf__arg_function(napi_env env, const char* fn, const char* name, napi_value v);

/* Handles are externals tagged with their kind, so that a watch handle can
 * never be taken for a shm handle (or any other addon's external). */
extern const napi_type_tag cf__watch_tag;
extern const napi_type_tag cf__shm_tag;
bool cf__arg_handle(napi_env env, const char* fn, const char* name, napi_value v,
                    const napi_type_tag* tag, const char* kind, void** out);

/* binding_pool.c */
extern const napi_type_tag cf__park_tag;
napi_value cf__ForkCensusPasses(napi_env env, napi_callback_info info);
napi_value cf__ForkPoolLocated(napi_env env, napi_callback_info info);
napi_value cf__TestPark(napi_env env, napi_callback_info info);
napi_value cf__TestUnpark(napi_env env, napi_callback_info info);
napi_value cf__TestHoldOptionsLock(napi_env env, napi_callback_info info);
napi_value cf__TestTaskHold(napi_env env, napi_callback_info info);
napi_value cf__TestTaskLockHeld(napi_env env, napi_callback_info info);
napi_value cf__TestTaskNoticed(napi_env env, napi_callback_info info);

/* binding_store.c */
napi_value cf__ScratchCreate(napi_env env, napi_callback_info info);
napi_value cf__ScratchOpen(napi_env env, napi_callback_info info);
napi_value cf__ScratchRemove(napi_env env, napi_callback_info info);
napi_value cf__Hmac(napi_env env, napi_callback_info info);
napi_value cf__Memeq(napi_env env, napi_callback_info info);
napi_value cf__ShmCreate(napi_env env, napi_callback_info info);
napi_value cf__ShmAdd(napi_env env, napi_callback_info info);
napi_value cf__ShmLoad(napi_env env, napi_callback_info info);
napi_value cf__ShmStore(napi_env env, napi_callback_info info);
napi_value cf__ShmClaim(napi_env env, napi_callback_info info);

/* binding_inspect.c */
napi_value cf__InheritedPeer(napi_env env, napi_callback_info info);
napi_value cf__InheritedCount(napi_env env, napi_callback_info info);
napi_value cf__InspectHandles(napi_env env, napi_callback_info info);
napi_value cf__Threads(napi_env env, napi_callback_info info);
napi_value cf__ThreadCount(napi_env env, napi_callback_info info);
napi_value cf__SettleThreads(napi_env env, napi_callback_info info);
napi_value cf__SettleBeforeFork(napi_env env, napi_callback_info info);

/* binding_watch.c */
napi_value cf__Watch(napi_env env, napi_callback_info info);
napi_value cf__WatchUpdate(napi_env env, napi_callback_info info);
napi_value cf__Unwatch(napi_env env, napi_callback_info info);

#endif
