/* Per-call scratch directories: mode 0700, named by pid and monotonic time,
 * created with mkdir's built-in exclusivity and never followed through a
 * symlink. Files inside are created O_EXCL | O_NOFOLLOW, mode 0600. */
#include "cowfork.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int cf_scratch_create(const char* base, char* out, size_t outlen) {
  uint64_t now = uv_hrtime();
  struct stat st;

  for (int attempt = 0; attempt < 100; attempt++) {
    int n = snprintf(out, outlen, "%s/cowfork-%ld-%llu-%d", base, (long)getpid(),
                     (unsigned long long)now, attempt);
    if (n < 0 || (size_t)n >= outlen) return -ENAMETOOLONG;
    if (mkdir(out, 0700) == 0) {
      /* Refuse anything that is not our own private directory. */
      if (lstat(out, &st) != 0) return -errno;
      if (!S_ISDIR(st.st_mode) || st.st_uid != geteuid()) return -EPERM;
      if ((st.st_mode & 0777) != 0700 && chmod(out, 0700) != 0) return -errno;
      return 0;
    }
    if (errno != EEXIST) return -errno;
  }
  return -EEXIST;
}

static int cf__open_dir(const char* dir) {
  int fd;
  do
    fd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  while (fd < 0 && errno == EINTR);
  return fd < 0 ? -errno : fd;
}

int cf_scratch_open(const char* dir, const char* name, int for_write) {
  int dfd = cf__open_dir(dir);
  int fd;
  int flags = O_CLOEXEC | O_NOFOLLOW |
              (for_write ? (O_WRONLY | O_CREAT | O_EXCL | O_APPEND) : O_RDONLY);

  if (dfd < 0) return dfd;
  if (strchr(name, '/') != NULL) {
    close(dfd);
    return -EINVAL;
  }
  do
    fd = openat(dfd, name, flags, 0600);
  while (fd < 0 && errno == EINTR);
  if (fd < 0) fd = -errno;
  close(dfd);
  return fd;
}

int cf_scratch_remove(const char* dir) {
  int dfd = cf__open_dir(dir);
  DIR* d;
  struct dirent* ent;
  int err = 0;

  if (dfd < 0) return dfd == -ENOENT ? 0 : dfd;
  d = fdopendir(dfd);
  if (d == NULL) {
    err = -errno;
    close(dfd);
    return err;
  }
  while ((ent = readdir(d)) != NULL) {
    if (strcmp(ent->d_name, ".") == 0 || strcmp(ent->d_name, "..") == 0) continue;
    if (unlinkat(dfd, ent->d_name, 0) != 0 && errno != ENOENT) err = -errno;
  }
  closedir(d);
  if (rmdir(dir) != 0 && errno != ENOENT) err = -errno;
  return err;
}
