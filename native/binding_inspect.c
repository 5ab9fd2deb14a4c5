/* The binding's entry points for what a fork hands the child (inspect.c,
 * silence.c) and for letting the parent's Worker threads settle before it
 * (settle.c). Argument conversion only. */
#include "binding.h"

#include <errno.h>
#include <stdlib.h>

/* inheritedPeer(fd): in a child, the peer address of the parent's connection
 * that fd was, or null when fd is not an inherited connection. */
napi_value cf__InheritedPeer(napi_env env, napi_callback_info info) {
  CF__ARGS("inheritedPeer", 1);
  int fd;
  char peer[CF_ADDR_MAX];
  CF__TRY(cf__arg_fd(env, cf__fn, "fd", argv[0], &fd));
  if (cf_inherited_peer(fd, peer, sizeof(peer)) == 0) return cf__str(env, peer);
  return cf__null(env);
}

napi_value cf__InheritedCount(napi_env env, napi_callback_info info) {
  return cf__int(env, cf_inherited_count());
}

/* inspectHandles(): [type, fd, sock, active, ref, closing, addr][] for the
 * loop's handles (type is libuv's name for it, sock a CF_SOCK_* value). */
napi_value cf__InspectHandles(napi_env env, napi_callback_info info) {
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
napi_value cf__Threads(napi_env env, napi_callback_info info) {
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

napi_value cf__ThreadCount(napi_env env, napi_callback_info info) {
  int n = cf_thread_count();
  CF__ERR(n);
  return cf__int(env, n);
}

/* The arguments of settleBeforeFork and settleThreads: (tids: Int32Array, maxMs). */
static bool cf__settle_args(napi_env env, const char* fn, napi_value* argv, int32_t** tids, size_t* n,
                            int* max_us) {
  int64_t max_ms;
  if (!cf__arg_i32s(env, fn, "tids", argv[0], tids, n) ||
      !cf__arg_int(env, fn, "maxMs", argv[1], 0, 10000, &max_ms))
    return false;
  *max_us = (int)max_ms * 1000;
  return true;
}

/* settleBeforeFork(tids: Int32Array, maxMs): the next fork waits up to maxMs,
 * just before fork(), until none of those threads is running. */
napi_value cf__SettleBeforeFork(napi_env env, napi_callback_info info) {
  CF__ARGS("settleBeforeFork", 2);
  int32_t* tids;
  size_t n;
  int max_us;
  CF__TRY(cf__settle_args(env, cf__fn, argv, &tids, &n, &max_us));
  return cf__int(env, cf_fork_settle_next(tids, n, max_us));
}

/* settleThreads(tids: Int32Array, maxMs): waits up to maxMs until none of
 * those threads is running; returns how many still were. */
napi_value cf__SettleThreads(napi_env env, napi_callback_info info) {
  CF__ARGS("settleThreads", 2);
  int32_t* tids;
  size_t n;
  int max_us;
  CF__TRY(cf__settle_args(env, cf__fn, argv, &tids, &n, &max_us));
  return cf__int(env, cf_settle_threads(tids, n, max_us));
}
