/* The parent's threadpool work, in a child's copy of the loop.
 *
 * libuv's threadpool threads put each finished request on loop->wq and wake
 * the loop through loop->wq_async; the loop thread then runs each request's
 * completion callback (uv__work_done). fork() copies loop->wq with whatever
 * the parent had not yet collected. uv_loop_fork() clears wq_async's pending
 * flag, but not the queue, so the child's first threadpool completion of its
 * own also ran the parent's: fs callbacks of the parent ran in children, up to
 * 8 per child while the parent kept 8 fs.stat calls in flight.
 *
 * The parent's requests in flight at the fork, all of them the parent's:
 *  - finished but not collected (on loop->wq): dropped here, never run;
 *  - running on a pool thread: the thread does not exist in the child, so the
 *    request never finishes there;
 *  - queued but not started (libuv's process-wide queue): libuv's atfork
 *    handler makes the child's first submission re-create the pool and its
 *    queue, so these are forgotten too.
 * Each still counts in loop->active_reqs. The dropped ones are subtracted
 * here; the other two kinds cannot be counted from outside libuv and keep
 * the child's loop alive, which a cowfork child never waits on (it leaves
 * through _exit). In the parent every request completes as usual.
 *
 * One more count outlives the running requests. libuv runs at most half its
 * pool on "slow I/O" (getaddrinfo, getnameinfo: dns.lookup) and counts the
 * running ones in a file-local slow_io_work_running, which its post-fork
 * re-initialization does not reset. A child forked while the parent had two
 * lookups running kept a count of two that no thread would ever lower, and
 * every dns.lookup in it waited forever. The child sets the count to zero;
 * it is found by name in Node's symbol table (symbols.c), once, before the
 * first fork.
 *
 * A child leaves once its own requests are done (src/child-exit.ts): those
 * it made raise the count above what it was at the fork, and the parent's
 * that never finish there keep it at that level.
 *
 * loop->wq and loop->active_reqs are in uv.h's public struct; their layout is
 * the same in libuv 1.46 to 1.52 (Node 20 to 26). cf_fork holds wq_mutex
 * across fork(), so the copied queue is consistent. */
#include "cowfork.h"

static int cf__dropped = -1;
static unsigned int* cf__slow_io_running;
static int cf__slow_io_looked_up;
static int cf__slow_io_reset = -1;

int64_t cf_loop_requests(uv_loop_t* loop) {
  return (int64_t)loop->active_reqs.count;
}

/* uv_loop_fork() makes a new epoll (kqueue) instance, and re-queues every fd
 * watcher with `events` set to 0, so that the child's first poll adds it there
 * anew; but it skips a watcher already queued for an update, whose `events`
 * still holds what the parent's instance had. A socket whose interest changed
 * in the forking turn of the loop (a partial write in a 'data' callback adds
 * POLLOUT; a map() called there forks in the same turn) was then modified,
 * not added: epoll_ctl(EPOLL_CTL_MOD) failed with ENOENT on the new instance,
 * and libuv aborted the child (SIGABRT in uv__epoll_ctl_prep). Every watcher
 * in the table is queued after uv_loop_fork(); with `events` at 0 each is
 * added. `watchers`, `nwatchers` and uv__io_t's `events` are in uv.h's unix
 * header, the same in libuv 1.46 to 1.52. Returns how many it reset. */
int cf_loop_rearm_watchers(uv_loop_t* loop) {
  int n = 0;
  for (unsigned int i = 0; i < loop->nwatchers; i++) {
    uv__io_t* w = loop->watchers[i];
    if (w == NULL || w->events == 0) continue;
    w->events = 0;
    n++;
  }
  return n;
}

/* The parent's stream writes in flight at the fork, on the streams the child
 * shares with the parent's peer: stdout, stderr (on a terminal, at the fd
 * libuv opened for it: cf_tty_writer) and keepFds (native/silence.c
 * replaces every other stream's fd, and a write there fails or is absorbed).
 * libuv keeps a stream's pending writes on its write_queue, each with the part
 * of its buffers not yet written; the child's copy of the loop went on writing
 * that part once it ran. The parent writes it too, so every child sent the
 * rest of the parent's write again: 1 MiB written to a stdout pipe read slowly
 * arrived three times with two children. In the child each such write keeps
 * only an empty buffer, and the stream is queued for the loop's first turn
 * (its pending queue, as libuv's own uv__io_feed does): a zero-length write
 * then finishes it at once, even on a full pipe, and Node completes it as
 * usual, so the child's own writes queued behind it go out. A handle to send
 * along (IPC) is dropped as well.
 *
 * stream->write_queue, write_queue_size, io_watcher, loop->pending_queue and
 * uv_write_t's write_index, bufs, nbufs and send_handle are in uv.h and its
 * unix header, the same in libuv 1.46 to 1.52. */
typedef struct {
  const int* keep;
  int nkeep;
  int emptied;
} cf__empty_ctx_t;

static void cf__queue_tail(struct uv__queue* head, struct uv__queue* q) {
  q->next = head;
  q->prev = head->prev;
  head->prev->next = q;
  head->prev = q;
}

static void cf__empty_writes(uv_handle_t* handle, void* arg) {
  cf__empty_ctx_t* ctx = (cf__empty_ctx_t*)arg;
  uv_stream_t* stream = (uv_stream_t*)handle;
  struct uv__queue* head = &stream->write_queue;
  struct uv__queue* pending = &stream->io_watcher.pending_queue;

  if (handle->type != UV_TCP && handle->type != UV_NAMED_PIPE && handle->type != UV_TTY) return;
  if (uv_is_closing(handle) || !cf_fd_shared(handle, stream->io_watcher.fd, ctx->keep, ctx->nkeep)) return;
  if (head->next == head) return;

  for (struct uv__queue* q = head->next; q != head; q = q->next) {
    uv_write_t* req = (uv_write_t*)((char*)q - offsetof(uv_write_t, queue));
    if (req->bufs == NULL || req->write_index >= req->nbufs) continue;
    for (unsigned int i = req->write_index; i < req->nbufs; i++) {
      size_t len = req->bufs[i].len;
      stream->write_queue_size -= len < stream->write_queue_size ? len : stream->write_queue_size;
    }
    req->bufs[req->write_index].len = 0;
    req->nbufs = req->write_index + 1;
    req->send_handle = NULL;
    ctx->emptied++;
  }
  if (pending->next == pending) cf__queue_tail(&stream->loop->pending_queue, pending);
}

int cf_loop_empty_parent_writes(uv_loop_t* loop, const int* keep_fds, int nkeep) {
  cf__empty_ctx_t ctx = {keep_fds, nkeep, 0};
  uv_walk(loop, cf__empty_writes, &ctx);
  return ctx.emptied;
}

int cf_fork_parent_work_dropped(void) {
  return cf__dropped;
}

int cf_fork_slow_io_reset(void) {
  return cf__slow_io_reset;
}

void cf_loop_before_fork(void) {
  if (cf__slow_io_looked_up) return;
  cf__slow_io_looked_up = 1;
  cf__slow_io_running = (unsigned int*)cf_static_address((uintptr_t)&uv_default_loop, "slow_io_work_running",
                                                         sizeof(unsigned int));
}

int cf_loop_forget_parent_work(uv_loop_t* loop) {
  struct uv__queue* head = &loop->wq;
  int n = 0;

  /* No pool thread exists in the child yet, so none can be running slow I/O.
   * A count above the largest pool libuv makes is not that variable. */
  if (cf__slow_io_running != NULL && *cf__slow_io_running <= 1024) {
    cf__slow_io_reset = (int)*cf__slow_io_running;
    *cf__slow_io_running = 0;
  }

  while (head->next != head) {
    struct uv__queue* q = head->next;
    q->next->prev = q->prev;
    q->prev->next = q->next;
    /* Linked to itself, as libuv leaves a request it has taken off a queue:
     * uv_cancel() then reports EBUSY instead of unlinking it again. */
    q->next = q;
    q->prev = q;
    n++;
  }
  /* Each dropped request was registered once when it was submitted. */
  loop->active_reqs.count -= (unsigned)n < loop->active_reqs.count ? (unsigned)n : loop->active_reqs.count;
  return cf__dropped = n;
}
