#include "pl_fs.h"

#include <errno.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include "pl_mem.h"

int pl_mkdirs(const char *dir) {
  char path[1024];
  if (snprintf(path, sizeof path, "%s", dir) >= (int)sizeof path) {
    errno = ENAMETOOLONG;
    return -1;
  }
  for (char *p = path + 1; *p; p++) {
    if (*p != '/')
      continue;
    *p = '\0';
    if (mkdir(path, 0700) != 0 && errno != EEXIST)
      return -1;
    *p = '/';
  }
  return mkdir(path, 0700) == 0 || errno == EEXIST ? 0 : -1;
}

char *pl_read_file(const char *path, size_t max, size_t *len) {
  FILE *f = fopen(path, "rb");
  char *buf = NULL;
  size_t n = 0;
  if (!f)
    return NULL;
  buf = pl_malloc(max + 2);
  n = fread(buf, 1, max + 1, f);
  if (ferror(f) || n > max) {
    pl_free(buf);
    buf = NULL;
  } else {
    buf[n] = '\0';
    *len = n;
  }
  fclose(f);
  return buf;
}

int pl_write_full(int fd, const void *p, size_t n) {
  size_t put = 0;
  while (put < n) {
    ssize_t w = write(fd, (const char *)p + put, n - put);
    if (w < 0 && errno == EINTR)
      continue;
    if (w <= 0)
      return -1;
    put += (size_t)w;
  }
  return 0;
}
