#include "pl_blob.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/pl_fs.h"
#include "common/pl_log.h"
#include "common/pl_mem.h"

typedef struct pl__fs {
  pl_blob base;
  char *dir, *spool;
} pl__fs;

int pl_blob_key_valid(const char *key) {
  size_t i = 0;
  for (; key[i]; i++)
    if (!((key[i] >= '0' && key[i] <= '9') || (key[i] >= 'a' && key[i] <= 'f')))
      return 0;
  return i == PL_BLOB_KEY_LEN;
}

/* dir/ab/<key>; with mk, the fan-out directory is made. */
static pl_err pl__path(pl__fs *f, const char *key, char *out, size_t cap, int mk) {
  if (!pl_blob_key_valid(key))
    return PL_ERR_INVALID_ARGUMENT;
  snprintf(out, cap, "%s/%.2s", f->dir, key);
  if (mk && mkdir(out, 0700) != 0 && errno != EEXIST)
    return PL_ERR_IO;
  snprintf(out, cap, "%s/%.2s/%s", f->dir, key, key);
  return PL_OK;
}

/* The new name is durable once its directory is synced. */
static pl_err pl__sync_dir_of(const char *path) {
  char dir[4096];
  snprintf(dir, sizeof dir, "%s", path);
  char *slash = strrchr(dir, '/');
  if (slash)
    *slash = '\0';
  int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0)
    return PL_ERR_IO;
  int rc = fsync(fd);
  close(fd);
  return rc == 0 ? PL_OK : PL_ERR_IO;
}

/* The caller synced tmp's bytes; a crash leaves the blob whole or absent. */
static pl_err pl__put(pl_blob *b, const char *key, const char *tmp) {
  pl__fs *f = (pl__fs *)b;
  char path[4096];
  pl_err e = pl__path(f, key, path, sizeof path, 1);
  if (e != PL_OK) {
    unlink(tmp);
    return e;
  }
  /* link() fails on an existing name: the bytes are there, keep those */
  if (link(tmp, path) != 0 && errno != EEXIST) {
    pl_error("media: cannot store %s: %s", path, strerror(errno));
    e = PL_ERR_IO;
  }
  unlink(tmp);
  if (e == PL_OK)
    e = pl__sync_dir_of(path);
  return e;
}

static int pl__exists(pl_blob *b, const char *key) {
  char path[4096];
  struct stat st;
  return pl__path((pl__fs *)b, key, path, sizeof path, 0) == PL_OK && stat(path, &st) == 0;
}

static pl_err pl__open(pl_blob *b, const char *key, int *fd, uint64_t *size) {
  char path[4096];
  struct stat st;
  pl_err e = pl__path((pl__fs *)b, key, path, sizeof path, 0);
  if (e != PL_OK)
    return e;
  *fd = open(path, O_RDONLY | O_CLOEXEC);
  if (*fd < 0)
    return errno == ENOENT ? PL_ERR_NOT_FOUND : PL_ERR_IO;
  if (fstat(*fd, &st) != 0) {
    close(*fd);
    return PL_ERR_IO;
  }
  *size = (uint64_t)st.st_size;
  return PL_OK;
}

static pl_err pl__remove(pl_blob *b, const char *key) {
  char path[4096];
  pl_err e = pl__path((pl__fs *)b, key, path, sizeof path, 0);
  if (e == PL_OK && unlink(path) != 0 && errno != ENOENT)
    e = PL_ERR_IO;
  return e;
}

static pl_err pl__replace(pl_blob *b, const char *key, const char *tmp) {
  char path[4096];
  pl_err e = pl__path((pl__fs *)b, key, path, sizeof path, 0);
  if (e == PL_OK && rename(tmp, path) != 0)
    e = PL_ERR_IO;
  if (e != PL_OK)
    unlink(tmp);
  return e == PL_OK ? pl__sync_dir_of(path) : e;
}

static void pl__each(pl_blob *b, void (*fn)(void *ud, const char *key), void *ud) {
  pl__fs *f = (pl__fs *)b;
  char sub[4096];
  for (unsigned i = 0; i < 256; i++) {
    snprintf(sub, sizeof sub, "%s/%02x", f->dir, i);
    DIR *d = opendir(sub);
    struct dirent *de;
    while (d && (de = readdir(d)))
      if (pl_blob_key_valid(de->d_name))
        fn(ud, de->d_name);
    if (d)
      closedir(d);
  }
}

static const char *pl__spool(pl_blob *b) { return ((pl__fs *)b)->spool; }

static void pl__free(pl_blob *b) {
  pl__fs *f = (pl__fs *)b;
  if (!f)
    return;
  pl_free(f->dir);
  pl_free(f->spool);
  pl_free(f);
}

static const pl_blob_ops pl__fs_ops = {
    .name = "fs",
    .put_file = pl__put,
    .exists = pl__exists,
    .open = pl__open,
    .remove = pl__remove,
    .replace_file = pl__replace,
    .each = pl__each,
    .spool = pl__spool,
    .free = pl__free,
};

pl_err pl_blob_fs_open(const char *dir, pl_blob **out) {
  pl__fs *f = pl_calloc(1, sizeof *f);
  f->base.ops = &pl__fs_ops;
  f->dir = pl_strdup(dir);
  size_t n = strlen(dir) + sizeof "/tmp";
  f->spool = pl_malloc(n);
  snprintf(f->spool, n, "%s/tmp", dir);
  if (pl_mkdirs(f->spool) != 0) {
    pl_error("media: cannot make %s: %s", f->spool, strerror(errno));
    pl__free(&f->base);
    return PL_ERR_IO;
  }
  *out = &f->base;
  return PL_OK;
}
