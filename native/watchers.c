/* The parent's file watchers, stopped in a child.
 *
 * uv_loop_fork() gives a forked child an inotify instance of its own and adds
 * every watch of the parent's fs_event handles to it again; fs_poll handles
 * (fs.watchFile) keep their timers. So a watcher the parent started kept
 * reporting in a child that ran its event loop, and the parent's callback ran
 * there: an `fs.promises.watch()` loop's body ran in every map child, once per
 * event (docs/hazards.md, §9).
 *
 * This stops them all, whatever made them: fs.watch(), fs.watchFile(),
 * fs.promises.watch(), a watcher made before cowfork was loaded, Node's own
 * recursive watchers (src/watchers.ts also takes the parent's fs.watchFile
 * pollers out of Node's table of pollers). Each handle
 * is only stopped, not closed: no callback runs for it (a close callback
 * would settle the parent's promise in the child), its JavaScript object
 * stays as it was, and a stopped handle does not keep the loop alive. uv_walk
 * and the stop calls are libuv's public API. */
#include "cowfork.h"

static void cf__stop_one(uv_handle_t* h, void* arg) {
  int* n = arg;
  if (!uv_is_active(h) || uv_is_closing(h)) return;
  if (h->type == UV_FS_EVENT) {
    uv_fs_event_stop((uv_fs_event_t*)h);
    ++*n;
  } else if (h->type == UV_FS_POLL) {
    uv_fs_poll_stop((uv_fs_poll_t*)h);
    ++*n;
  }
}

int cf_stop_watchers(uv_loop_t* loop) {
  int n = 0;
  uv_walk(loop, cf__stop_one, &n);
  return n;
}
