#include "pl_blob_cache.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/pl_fs.h"
#include "common/pl_log.h"
#include "common/pl_map.h"
#include "common/pl_mem.h"

/* A kept copy: in the map by its key's hash, in the list by last use. */
typedef struct pl__copy {
  char key[PL_BLOB_KEY_LEN + 1];
  uint64_t size;
  struct pl__copy *newer, *older;
} pl__copy;

typedef struct pl__cache {
  pl_blob base;
  pl_blob *inner;
  char *dir;
  uint64_t max, one_max; /* all copies; one copy */
  pthread_mutex_t mu;    /* everything below; file names change only under it */
  pl_map map;
  pl__copy *newest, *oldest;
  pl_blob_cache_stats st;
  uint64_t tmp_n;
  uint64_t removes; /* a read that began before a remove keeps no copy */
} pl__cache;

static void pl__path(const pl__cache *c, const char *key, char *out, size_t cap) {
  snprintf(out, cap, "%s/%s", c->dir, key);
}

static pl__copy *pl__find(pl__cache *c, const char *key) {
  pl__copy *x = pl_map_get(&c->map, pl_hash_bytes(key, PL_BLOB_KEY_LEN));
  return x && !strcmp(x->key, key) ? x : NULL;
}

static void pl__unlist(pl__cache *c, pl__copy *x) {
  if (x->newer)
    x->newer->older = x->older;
  else
    c->newest = x->older;
  if (x->older)
    x->older->newer = x->newer;
  else
    c->oldest = x->newer;
  x->newer = x->older = NULL;
}

static void pl__list_front(pl__cache *c, pl__copy *x) {
  x->older = c->newest;
  x->newer = NULL;
  if (c->newest)
    c->newest->newer = x;
  c->newest = x;
  if (!c->oldest)
    c->oldest = x;
}

/* The copy and its file go (under mu). */
static void pl__drop(pl__cache *c, pl__copy *x) {
  char path[4096];
  pl__path(c, x->key, path, sizeof path);
  if (unlink(path) != 0 && errno != ENOENT)
    pl_warn("media: cannot remove the cached blob %s: %s", path, strerror(errno));
  pl__unlist(c, x);
  pl_map_del(&c->map, pl_hash_bytes(x->key, PL_BLOB_KEY_LEN));
  c->st.bytes -= x->size;
  c->st.files--;
  pl_free(x);
}

/* A file named path now holds key's size bytes: it becomes the newest
 * copy, and the oldest go until the copies fit (under mu). */
static void pl__add(pl__cache *c, const char *key, uint64_t size) {
  pl__copy *x = pl_calloc(1, sizeof *x);
  memcpy(x->key, key, PL_BLOB_KEY_LEN + 1);
  x->size = size;
  pl_map_put(&c->map, pl_hash_bytes(key, PL_BLOB_KEY_LEN), x);
  pl__list_front(c, x);
  c->st.bytes += size;
  c->st.files++;
  while (c->st.bytes > c->max && c->oldest != x) {
    pl__drop(c, c->oldest);
    c->st.evictions++;
  }
}

/* May key's bytes be kept (under mu)? Not if too big, kept already, or
 * its hash is another kept key's (then the first keeps its place). */
static int pl__wanted(pl__cache *c, const char *key, uint64_t size) {
  return size <= c->one_max && !pl_map_get(&c->map, pl_hash_bytes(key, PL_BLOB_KEY_LEN));
}

/* Copies fd's bytes (from offset 0, fd's own offset untouched) into a new
 * file named tmp. */
static int pl__copy_fd(int fd, uint64_t size, const char *tmp) {
  int out = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (out < 0)
    return -1;
  off_t off = 0;
  while ((uint64_t)off < size) {
    ssize_t n = sendfile(out, fd, &off, (size_t)(size - (uint64_t)off));
    if (n <= 0 && !(n < 0 && errno == EINTR))
      break;
  }
  int ok = (uint64_t)off == size;
  close(out);
  if (!ok)
    unlink(tmp);
  return ok ? 0 : -1;
}

/* Keeps the bytes behind fd (which inner opened) as key's copy: a second
 * name for the spooled file (linkat of /proc/self/fd), else a copy of
 * them. Not if a remove came since the read began (removes: the count
 * then): the copy would outlive the blob. Failing is only a miss next time. */
static void pl__keep_fd(pl__cache *c, const char *key, int fd, uint64_t size, uint64_t removes) {
  char path[4096], tmp[4096], proc[64];
  pthread_mutex_lock(&c->mu);
  int want = pl__wanted(c, key, size);
  uint64_t n = ++c->tmp_n;
  pthread_mutex_unlock(&c->mu);
  if (!want)
    return;
  snprintf(tmp, sizeof tmp, "%s/.tmp-%llu", c->dir, (unsigned long long)n);
  snprintf(proc, sizeof proc, "/proc/self/fd/%d", fd);
  if (linkat(AT_FDCWD, proc, AT_FDCWD, tmp, AT_SYMLINK_FOLLOW) != 0 && pl__copy_fd(fd, size, tmp) != 0)
    return;
  pl__path(c, key, path, sizeof path);
  pthread_mutex_lock(&c->mu);
  if (c->removes == removes && pl__wanted(c, key, size) && rename(tmp, path) == 0)
    pl__add(c, key, size);
  else
    unlink(tmp);
  pthread_mutex_unlock(&c->mu);
}

static pl_err pl__open(pl_blob *b, const char *key, int *fd, uint64_t *size) {
  pl__cache *c = (pl__cache *)b;
  char path[4096];
  *fd = -1;
  if (!pl_blob_key_valid(key))
    return PL_ERR_INVALID_ARGUMENT;
  pl__path(c, key, path, sizeof path);
  pthread_mutex_lock(&c->mu);
  pl__copy *x = pl__find(c, key);
  if (x && (*fd = open(path, O_RDONLY | O_CLOEXEC)) >= 0) { /* (names change under mu only) */
    *size = x->size;
    pl__unlist(c, x);
    pl__list_front(c, x);
    c->st.hits++;
    pthread_mutex_unlock(&c->mu);
    return PL_OK;
  }
  if (x) /* its file went behind our back */
    pl__drop(c, x);
  c->st.misses++;
  uint64_t removes = c->removes;
  pthread_mutex_unlock(&c->mu);
  pl_err e = c->inner->ops->open(c->inner, key, fd, size);
  if (e == PL_OK)
    pl__keep_fd(c, key, *fd, *size, removes);
  return e;
}

/* An upload is kept as it goes in: a second name for its spooled file,
 * taken before inner takes the file; dropped again if inner fails. */
static pl_err pl__put(pl_blob *b, const char *key, const char *tmp) {
  pl__cache *c = (pl__cache *)b;
  char path[4096];
  struct stat st;
  int kept = 0;
  if (pl_blob_key_valid(key) && stat(tmp, &st) == 0) {
    pl__path(c, key, path, sizeof path);
    pthread_mutex_lock(&c->mu);
    if (pl__wanted(c, key, (uint64_t)st.st_size) && link(tmp, path) == 0) {
      pl__add(c, key, (uint64_t)st.st_size);
      kept = 1;
    }
    pthread_mutex_unlock(&c->mu);
  }
  pl_err e = c->inner->ops->put_file(c->inner, key, tmp);
  if (e != PL_OK && kept) {
    pthread_mutex_lock(&c->mu);
    pl__copy *x = pl__find(c, key);
    if (x)
      pl__drop(c, x);
    pthread_mutex_unlock(&c->mu);
  }
  return e;
}

/* Always inner's answer: a copy says nothing of whether inner still has
 * the bytes (another node may have removed them), and an upload that
 * trusted a copy would leave the blob missing for every other node. */
static int pl__exists(pl_blob *b, const char *key) {
  pl__cache *c = (pl__cache *)b;
  return c->inner->ops->exists(c->inner, key);
}

static pl_err pl__remove(pl_blob *b, const char *key) {
  pl__cache *c = (pl__cache *)b;
  pthread_mutex_lock(&c->mu);
  pl__copy *x = pl_blob_key_valid(key) ? pl__find(c, key) : NULL;
  if (x)
    pl__drop(c, x);
  c->removes++;
  pthread_mutex_unlock(&c->mu);
  return c->inner->ops->remove(c->inner, key);
}

static const char *pl__spool(pl_blob *b) {
  pl__cache *c = (pl__cache *)b;
  return c->inner->ops->spool(c->inner);
}

static void pl__free(pl_blob *b) {
  pl__cache *c = (pl__cache *)b;
  if (!c)
    return;
  while (c->oldest) {
    pl__copy *x = c->oldest;
    pl__unlist(c, x);
    pl_free(x);
  }
  pl_map_free(&c->map);
  pthread_mutex_destroy(&c->mu);
  c->inner->ops->free(c->inner);
  pl_free(c->dir);
  pl_free(c);
}

/* No replace_file nor each: the cache fronts a remote store, which has
 * none (they serve encryption at rest of files, pl_blob_seal). */
static const pl_blob_ops pl__cache_ops = {
    .name = "cache",
    .remote = 1,
    .put_file = pl__put,
    .exists = pl__exists,
    .open = pl__open,
    .remove = pl__remove,
    .spool = pl__spool,
    .free = pl__free,
};

/* Every file in dir goes: copies of a previous run are not trusted. */
static pl_err pl__empty(const char *dir) {
  char path[4096];
  DIR *d = opendir(dir);
  if (!d)
    return PL_ERR_IO;
  for (struct dirent *e; (e = readdir(d));) {
    if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
      continue;
    snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
    if (unlink(path) != 0)
      pl_warn("media: cannot remove %s: %s", path, strerror(errno));
  }
  closedir(d);
  return PL_OK;
}

pl_err pl_blob_cache_open(pl_blob *inner, const char *dir, uint64_t max_bytes, pl_blob **out) {
  *out = NULL;
  if (pl_mkdirs(dir) != 0 || pl__empty(dir) != PL_OK) {
    pl_error("media: cannot use %s for the blob cache: %s", dir, strerror(errno));
    inner->ops->free(inner);
    return PL_ERR_IO;
  }
  pl__cache *c = pl_calloc(1, sizeof *c);
  c->base.ops = &pl__cache_ops;
  c->inner = inner;
  c->dir = pl_strdup(dir);
  c->max = max_bytes;
  c->one_max = max_bytes / 8;
  pthread_mutex_init(&c->mu, NULL);
  pl_map_init(&c->map);
  *out = &c->base;
  return PL_OK;
}

int pl_blob_cache_stats_get(pl_blob *b, pl_blob_cache_stats *s) {
  memset(s, 0, sizeof *s);
  if (!b || b->ops != &pl__cache_ops)
    return 0;
  pl__cache *c = (pl__cache *)b;
  pthread_mutex_lock(&c->mu);
  *s = c->st;
  pthread_mutex_unlock(&c->mu);
  return 1;
}
