/* The binding's watcher entry points: watch(), watchUpdate() and unwatch(). */
#include "binding.h"

#include <errno.h>
#include <stdlib.h>

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
napi_value cf__Watch(napi_env env, napi_callback_info info) {
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
  if (w == NULL) return cf__throw_errno(env, -ENOMEM, cf__fn);
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
    return cf__throw_errno(env, r, cf__fn);
  }
  w->handle.data = w;
  r = uv_poll_start(&w->handle, cf__uv_events(mode), cf__watch_cb);
  if (r < 0 || napi_create_external(env, w, cf__watch_finalize, NULL, &out) != napi_ok) {
    /* No JavaScript handle owns it: free it as soon as libuv lets go. */
    w->js_done = true;
    cf__watch_close(w);
    return r < 0 ? cf__throw_errno(env, r, cf__fn) : cf__napi_fail(env);
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
napi_value cf__WatchUpdate(napi_env env, napi_callback_info info) {
  CF__ARGS("watchUpdate", 2);
  int64_t mode;
  cf__watch_t* w;
  CF__TRY(cf__arg_watch(env, cf__fn, argv[0], &w));
  CF__TRY(cf__arg_int(env, cf__fn, "mode", argv[1], 0, CF__WATCH_MODES, &mode));
  if (w->closed) return cf__throw_errno(env, -EBADF, cf__fn);
  int r = mode == 0 ? uv_poll_stop(&w->handle)
                    : uv_poll_start(&w->handle, cf__uv_events(mode), cf__watch_cb);
  if (r < 0) return cf__throw_errno(env, r, cf__fn);
  return cf__undefined(env);
}

/* unwatch(w): stop and close the watcher. A second unwatch does nothing. */
napi_value cf__Unwatch(napi_env env, napi_callback_info info) {
  CF__ARGS("unwatch", 1);
  cf__watch_t* w;
  CF__TRY(cf__arg_watch(env, cf__fn, argv[0], &w));
  cf__watch_close(w);
  return cf__undefined(env);
}
