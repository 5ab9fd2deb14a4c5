/* Listening sockets made by the prefork master. The master binds them before
 * it forks, so every worker inherits the same accept queue (or, with
 * SO_REUSEPORT, its own) and a worker that dies never takes a socket with it:
 * connections keep queueing in the kernel until a replacement accepts them.
 * Every fd is close-on-exec; fork() keeps it, exec() does not. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "cowfork.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

static int cf__socket(int domain) {
  int fd;
#if defined(SOCK_CLOEXEC)
  fd = socket(domain, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd >= 0 || errno != EINVAL) return fd < 0 ? -errno : fd;
#endif
  fd = socket(domain, SOCK_STREAM, 0);
  if (fd < 0) return -errno;
  fcntl(fd, F_SETFD, FD_CLOEXEC);
  return fd;
}

static void cf__close(int fd) {
  int saved = errno;
  cf_close(fd);
  errno = saved;
}

/* getaddrinfo() reports errors in its own space; libuv maps them to UV_EAI_*,
 * which uv_err_name() can name. */
static int cf__gai_error(int r) {
  switch (r) {
    case EAI_NONAME: return UV_EAI_NONAME;
    case EAI_AGAIN: return UV_EAI_AGAIN;
    case EAI_FAMILY: return UV_EAI_FAMILY;
    case EAI_MEMORY: return UV_EAI_MEMORY;
    case EAI_SERVICE: return UV_EAI_SERVICE;
#if defined(EAI_NODATA) && EAI_NODATA != EAI_NONAME
    case EAI_NODATA: return UV_EAI_NODATA;
#endif
    case EAI_SYSTEM: return -errno;
    default: return UV_EAI_FAIL;
  }
}

static int cf__bind_listen(const struct addrinfo* ai, int backlog, int flags) {
  int one = 1, zero = 0;
  int fd = cf__socket(ai->ai_family);
  if (fd < 0) return fd;
  /* Restarting the server must not wait out TIME_WAIT. */
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (flags & CF_LISTEN_REUSEPORT) {
#if defined(SO_REUSEPORT)
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0) {
      int err = -errno;
      cf__close(fd);
      return err;
    }
#else
    cf__close(fd);
    return -ENOTSUP;
#endif
  }
  /* "::" accepts IPv4 too, as Node's own default listen does. */
  if (ai->ai_family == AF_INET6) setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero));
  if (bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 || listen(fd, backlog) != 0) {
    int err = -errno;
    cf__close(fd);
    return err;
  }
  return fd;
}

int cf_listen_tcp(const char* host, int port, int backlog, int flags, int* bound_port) {
  struct addrinfo hints, *res = NULL, *ai;
  char service[16];
  int fd = -EADDRNOTAVAIL, r;

  if (port < 0 || port > 65535) return -EINVAL;
  memset(&hints, 0, sizeof(hints));
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  snprintf(service, sizeof(service), "%d", port);
  if (host != NULL && host[0] == '\0') host = NULL;
  r = getaddrinfo(host, service, &hints, &res);
  if (r != 0) return cf__gai_error(r);

  /* With no host, prefer the dual-stack IPv6 wildcard and fall back to IPv4. */
  for (int pass = 0; pass < 2 && fd < 0; pass++) {
    for (ai = res; ai != NULL; ai = ai->ai_next) {
      if (host == NULL && (pass == 0) != (ai->ai_family == AF_INET6)) continue;
      if (host != NULL && pass == 1) break;
      fd = cf__bind_listen(ai, backlog, flags);
      if (fd >= 0) break;
    }
  }
  freeaddrinfo(res);
  if (fd < 0) return fd;
  r = cf_listen_port(fd);
  if (r < 0) {
    cf__close(fd);
    return r;
  }
  *bound_port = r;
  return fd;
}

int cf_listen_port(int fd) {
  struct sockaddr_storage ss;
  socklen_t len = sizeof(ss);
  if (getsockname(fd, (struct sockaddr*)&ss, &len) != 0) return -errno;
  if (ss.ss_family == AF_INET) return ntohs(((struct sockaddr_in*)&ss)->sin_port);
  if (ss.ss_family == AF_INET6) return ntohs(((struct sockaddr_in6*)&ss)->sin6_port);
  return -EAFNOSUPPORT;
}

/* A socket file left by a server that died is removed; one that a live server
 * still accepts on is EADDRINUSE, as it would be for a TCP port. */
static int cf__unlink_if_stale(const struct sockaddr_un* sa) {
  struct stat st;
  int fd, r;
  if (lstat(sa->sun_path, &st) != 0 || !S_ISSOCK(st.st_mode)) return -EADDRINUSE;
  fd = cf__socket(AF_UNIX);
  if (fd < 0) return fd;
  do
    r = connect(fd, (const struct sockaddr*)sa, sizeof(*sa));
  while (r != 0 && errno == EINTR);
  r = (r != 0 && errno == ECONNREFUSED) ? 0 : -EADDRINUSE;
  cf__close(fd);
  if (r == 0 && unlink(sa->sun_path) != 0 && errno != ENOENT) return -errno;
  return r;
}

int cf_listen_unix(const char* path, int backlog) {
  struct sockaddr_un sa;
  int fd, r;

  if (strlen(path) >= sizeof(sa.sun_path)) return -ENAMETOOLONG;
  memset(&sa, 0, sizeof(sa));
  sa.sun_family = AF_UNIX;
  strcpy(sa.sun_path, path);
  for (int attempt = 0; attempt < 2; attempt++) {
    fd = cf__socket(AF_UNIX);
    if (fd < 0) return fd;
    if (bind(fd, (struct sockaddr*)&sa, sizeof(sa)) == 0) {
      if (listen(fd, backlog) == 0) return fd;
      r = -errno;
      cf__close(fd);
      unlink(path);
      return r;
    }
    r = -errno;
    cf__close(fd);
    if (r != -EADDRINUSE || attempt > 0) return r;
    r = cf__unlink_if_stale(&sa);
    if (r < 0) return r;
  }
  return -EADDRINUSE;
}

int cf_dup_cloexec(int fd) {
  int r = fcntl(fd, F_DUPFD_CLOEXEC, 3);
  return r < 0 ? -errno : r;
}
