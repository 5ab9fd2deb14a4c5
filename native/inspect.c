/* What a fork would hand the child: the loop's handles with their sockets'
 * addresses, and the process's threads by name. The parent uses this to warn
 * before a fork (threads that will not exist in the child, connections that
 * will be dead there), and users call it through inspectFork(). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "cowfork.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

/* "127.0.0.1:5432", "[::1]:6379", "/run/postgresql/.s.PGSQL.5432", or "" for
 * an unnamed unix socket. */
static void cf__format_addr(const struct sockaddr_storage* ss, socklen_t len, char* out, size_t outlen) {
  char host[INET6_ADDRSTRLEN];
  out[0] = '\0';
  if (ss->ss_family == AF_INET) {
    const struct sockaddr_in* in = (const struct sockaddr_in*)ss;
    inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host));
    snprintf(out, outlen, "%s:%u", host, (unsigned)ntohs(in->sin_port));
  } else if (ss->ss_family == AF_INET6) {
    const struct sockaddr_in6* in6 = (const struct sockaddr_in6*)ss;
    inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
    snprintf(out, outlen, "[%s]:%u", host, (unsigned)ntohs(in6->sin6_port));
  } else if (ss->ss_family == AF_UNIX) {
    const struct sockaddr_un* un = (const struct sockaddr_un*)ss;
    size_t n = len > offsetof(struct sockaddr_un, sun_path) ? len - offsetof(struct sockaddr_un, sun_path) : 0;
    if (n > sizeof(un->sun_path)) n = sizeof(un->sun_path);
    if (n > 0 && un->sun_path[0] == '\0') {
      /* Linux abstract namespace: shown with a leading '@', as ss(8) does. */
      snprintf(out, outlen, "@%.*s", (int)(n - 1), un->sun_path + 1);
    } else {
      snprintf(out, outlen, "%.*s", (int)strnlen(un->sun_path, n), un->sun_path);
    }
  }
}

int cf_socket_peer(int fd, char* out, size_t outlen) {
  struct sockaddr_storage ss;
  socklen_t len = sizeof(ss);
  int listening = 0;
  socklen_t optlen = sizeof(listening);
  if (outlen > 0) out[0] = '\0';
  if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &optlen) != 0) return -errno;
  if (listening) {
    if (getsockname(fd, (struct sockaddr*)&ss, &len) == 0) cf__format_addr(&ss, len, out, outlen);
    return CF_SOCK_LISTENING;
  }
  if (getpeername(fd, (struct sockaddr*)&ss, &len) != 0) return CF_SOCK_OTHER;
  cf__format_addr(&ss, len, out, outlen);
  return CF_SOCK_CONNECTED;
}

typedef struct {
  cf_handle_info_t* out;
  int max;
  int n;
} cf__walk_ctx_t;

static void cf__inspect_one(uv_handle_t* handle, void* arg) {
  cf__walk_ctx_t* ctx = arg;
  if (ctx->n >= ctx->max) {
    ctx->n++;
    return;
  }
  cf_handle_info_t* h = &ctx->out[ctx->n++];
  uv_os_fd_t fd;
  memset(h, 0, sizeof(*h));
  h->type = (int)handle->type;
  h->active = uv_is_active(handle);
  h->ref = uv_has_ref(handle);
  h->closing = uv_is_closing(handle);
  h->fd = -1;
  h->sock = CF_SOCK_OTHER;
  switch (handle->type) {
    case UV_TCP:
    case UV_NAMED_PIPE:
    case UV_TTY:
    case UV_UDP:
    case UV_POLL:
      if (uv_fileno(handle, &fd) == 0) h->fd = fd;
      break;
    default:
      break;
  }
  if (h->fd >= 0 && (handle->type == UV_TCP || handle->type == UV_NAMED_PIPE)) {
    int r = cf_socket_peer(h->fd, h->addr, sizeof(h->addr));
    if (r >= 0) h->sock = r;
  }
}

int cf_inspect_handles(uv_loop_t* loop, cf_handle_info_t* out, int max) {
  cf__walk_ctx_t ctx = {out, max, 0};
  uv_walk(loop, cf__inspect_one, &ctx);
  return ctx.n;
}

int cf_threads(cf_thread_info_t* out, int max) {
#if defined(__linux__)
  DIR* dir = opendir("/proc/self/task");
  struct dirent* e;
  int n = 0;
  if (dir == NULL) return -errno;
  while ((e = readdir(dir)) != NULL) {
    if (e->d_name[0] == '.') continue;
    if (n >= max) {
      n++;
      continue;
    }
    cf_thread_info_t* t = &out[n];
    t->tid = atoi(e->d_name);
    t->name[0] = '\0';
    if (cf_thread_name(e->d_name, t->name, sizeof(t->name)) <= 0) continue; /* the thread exited meanwhile */
    n++;
  }
  closedir(dir);
  return n;
#else
  (void)out;
  (void)max;
  return -ENOSYS;
#endif
}

int cf_thread_count(void) {
#if defined(__linux__)
  /* Field 20 of /proc/self/stat; one read, cheap enough for every fork. */
  char buf[1024];
  int field;
  ssize_t len = cf_read_small("/proc/self/stat", buf, sizeof(buf));
  if (len < 0) return (int)len;
  if (len == 0) return -EIO;
  /* The command name (field 2) may hold spaces and parentheses: count from
   * the last ')'. */
  char* p = strrchr(buf, ')');
  if (p == NULL) return -EIO;
  field = 2;
  for (; *p && field < 20; p++)
    if (*p == ' ') field++;
  return atoi(p);
#else
  return -ENOSYS;
#endif
}
