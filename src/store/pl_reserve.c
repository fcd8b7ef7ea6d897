/* pl_reserve: disk space held back for when the disk fills. */
#include "pl_reserve.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "../common/pl_log.h"
#include "../common/pl_mem.h"

#define PL__RESERVE_MIN_HEADROOM (1u << 20)

void pl_reserve_init(pl_reserve *r, const char *dir, uint64_t size) {
  size_t n = strlen(dir) + sizeof "/reserve";
  memset(r, 0, sizeof *r);
  r->path = pl_malloc(n);
  snprintf(r->path, n, "%s/reserve", dir);
  r->dir = pl_strdup(dir);
  r->size = size;
}

void pl_reserve_free(pl_reserve *r) {
  pl_free(r->path);
  pl_free(r->dir);
  memset(r, 0, sizeof *r);
}

pl_err pl_reserve_hold(pl_reserve *r) {
  pl_err e = PL_OK;
  if (!r->size || r->held)
    return PL_OK;
  int fd = open(r->path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) {
    e = errno == ENOSPC ? PL_ERR_STORAGE_FULL : PL_ERR_IO;
    pl_error("store: cannot create the disk reserve %s: %s", r->path, strerror(errno));
    goto out;
  }
  if (ftruncate(fd, (off_t)r->size) != 0) /* a larger one from a bigger --disk-reserve shrinks */
    pl_warn("store: cannot size the disk reserve %s: %s", r->path, strerror(errno));
  /* posix_fallocate returns the error number rather than setting errno. */
  int rc = posix_fallocate(fd, 0, (off_t)r->size);
  if (rc == ENOSPC || rc == EDQUOT) {
    e = PL_ERR_STORAGE_FULL; /* give back what it got: the store needs it more */
    if (ftruncate(fd, 0) != 0)
      pl_warn("store: cannot empty the disk reserve %s: %s", r->path, strerror(errno));
  } else if (rc != 0) {
    e = PL_ERR_IO;
    pl_error("store: cannot allocate the disk reserve %s: %s", r->path, strerror(rc));
  } else {
    r->held = 1;
  }
  close(fd);
out:
  return e;
}

void pl_reserve_release(pl_reserve *r) {
  if (!r->size)
    return;
  if (truncate(r->path, 0) != 0 && errno != ENOENT)
    pl_error("store: cannot release the disk reserve %s: %s", r->path, strerror(errno));
  r->held = 0;
}

uint64_t pl_reserve_avail(const pl_reserve *r) {
  struct statvfs v;
  if (statvfs(r->dir, &v) != 0)
    return UINT64_MAX;
  return (uint64_t)v.f_bavail * (uint64_t)v.f_frsize;
}

uint64_t pl_reserve_needed(const pl_reserve *r) {
  return r->size + (r->size > PL__RESERVE_MIN_HEADROOM ? r->size : PL__RESERVE_MIN_HEADROOM);
}
