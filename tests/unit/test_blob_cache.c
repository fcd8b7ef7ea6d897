/* pl_blob_cache: a node's copies of blobs in front of a blob store (here
 * the real file store, pl_blob_fs, as inner: the cache only sees its ops). */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "media/pl_blob_cache.h"
#include "testlib.h"

static char root[64];

/* A key that looks like a SHA-256 (the cache trusts inner's naming). */
static void key_of(int n, char key[PL_BLOB_KEY_LEN + 1]) {
  for (int i = 0; i < PL_BLOB_KEY_LEN; i++)
    key[i] = "0123456789abcdef"[(n * 7 + i) % 16];
  snprintf(key, 9, "%08x", (unsigned)n);
  key[8] = 'a';
  key[PL_BLOB_KEY_LEN] = 0;
}

/* Puts size bytes of the byte n under key n, through b. */
static void put(pl_blob *b, int n, size_t size) {
  char key[PL_BLOB_KEY_LEN + 1], tmp[256];
  key_of(n, key);
  snprintf(tmp, sizeof tmp, "%s/tmp-%d", b->ops->spool(b), n);
  char *buf = malloc(size);
  memset(buf, n, size);
  int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0600);
  CHECK(fd >= 0 && write(fd, buf, size) == (ssize_t)size);
  close(fd);
  free(buf);
  CHECK_EQ_I(b->ops->put_file(b, key, tmp), PL_OK);
}

/* Reads key n through b: its bytes must be size bytes of n. */
static void get(pl_blob *b, int n, size_t size) {
  char key[PL_BLOB_KEY_LEN + 1];
  key_of(n, key);
  int fd = -1;
  uint64_t got = 0;
  CHECK_EQ_I(b->ops->open(b, key, &fd, &got), PL_OK);
  CHECK_EQ_U(got, size);
  char *buf = malloc(size + 1);
  CHECK(fd >= 0 && read(fd, buf, size + 1) == (ssize_t)size);
  size_t bad = 0;
  for (size_t i = 0; i < size; i++)
    bad += (unsigned char)buf[i] != (unsigned char)n;
  CHECK_EQ_U(bad, 0);
  free(buf);
  if (fd >= 0)
    close(fd);
}

static pl_blob *open_cache(uint64_t max, pl_blob **inner_out) {
  char dir[128], cdir[128];
  snprintf(dir, sizeof dir, "%s/store", root);
  snprintf(cdir, sizeof cdir, "%s/cache", root);
  pl_blob *inner = NULL, *c = NULL;
  CHECK_EQ_I(pl_blob_fs_open(dir, &inner), PL_OK);
  CHECK_EQ_I(pl_blob_cache_open(inner, cdir, max, &c), PL_OK);
  if (inner_out)
    *inner_out = inner;
  return c;
}

static uint64_t files_in(const char *sub) {
  char cmd[256];
  snprintf(cmd, sizeof cmd, "ls -A %s/%s | wc -l", root, sub);
  FILE *p = popen(cmd, "r");
  unsigned long long n = 0;
  CHECK(p && fscanf(p, "%llu", &n) == 1);
  if (p)
    pclose(p);
  return n;
}

/* An upload is kept as it goes in; a read of it is a hit; a blob read
 * through inner first is a miss, then a hit; the counts say so. */
static void test_hits_and_misses(void) {
  pl_blob *c = open_cache(1 << 20, NULL);
  pl_blob_cache_stats s;
  put(c, 1, 1000);
  get(c, 1, 1000);
  CHECK(pl_blob_cache_stats_get(c, &s));
  CHECK_EQ_U(s.hits, 1);
  CHECK_EQ_U(s.misses, 0);
  CHECK_EQ_U(s.files, 1);
  CHECK_EQ_U(s.bytes, 1000);
  c->ops->free(c);
  /* a new cache starts empty (its directory emptied): the blob comes from
   * inner, then from the copy */
  c = open_cache(1 << 20, NULL);
  CHECK_EQ_U(files_in("cache"), 0);
  get(c, 1, 1000);
  get(c, 1, 1000);
  pl_blob_cache_stats_get(c, &s);
  CHECK_EQ_U(s.misses, 1);
  CHECK_EQ_U(s.hits, 1);
  CHECK_EQ_U(files_in("cache"), 1);
  c->ops->free(c);
}

/* The least recently read goes first; the copies stay within max; a blob
 * over an eighth of max is served but never kept. */
static void test_eviction(void) {
  pl_blob *c = open_cache(16000, NULL); /* one copy: at most 2000 bytes */
  pl_blob_cache_stats s;
  for (int n = 10; n < 18; n++)
    put(c, n, 2000); /* 16000: full */
  get(c, 10, 2000);  /* 10 is now the newest: 11 the oldest */
  put(c, 18, 2000);  /* 11 goes */
  pl_blob_cache_stats_get(c, &s);
  CHECK_EQ_U(s.bytes, 16000);
  CHECK_EQ_U(s.evictions, 1);
  uint64_t hits = s.hits;
  get(c, 10, 2000); /* kept: a hit */
  pl_blob_cache_stats_get(c, &s);
  CHECK_EQ_U(s.hits, hits + 1);
  CHECK_EQ_U(s.misses, 0);
  get(c, 11, 2000); /* evicted: from inner, bytes intact, kept again (12 goes) */
  pl_blob_cache_stats_get(c, &s);
  CHECK_EQ_U(s.misses, 1);
  CHECK_EQ_U(s.evictions, 2);
  CHECK_EQ_U(s.bytes, 16000);
  get(c, 11, 2000);
  put(c, 19, 2001); /* over an eighth of max: stored, served, never kept */
  get(c, 19, 2001);
  get(c, 19, 2001);
  pl_blob_cache_stats_get(c, &s);
  CHECK_EQ_U(s.hits, hits + 2);
  CHECK_EQ_U(s.misses, 3);
  CHECK_EQ_U(s.files, 8);
  CHECK_EQ_U(files_in("cache"), s.files);
  c->ops->free(c);
}

/* A removed blob's copy goes with it: the next read is inner's answer
 * (not found), never the old copy; exists is always inner's. */
static void test_remove(void) {
  pl_blob *inner = NULL, *c = open_cache(1 << 20, &inner);
  char key[PL_BLOB_KEY_LEN + 1];
  put(c, 20, 500);
  get(c, 20, 500);
  key_of(20, key);
  CHECK_EQ_I(c->ops->remove(c, key), PL_OK);
  int fd = -1;
  uint64_t size = 0;
  CHECK(c->ops->open(c, key, &fd, &size) != PL_OK);
  CHECK(!c->ops->exists(c, key));
  pl_blob_cache_stats s;
  pl_blob_cache_stats_get(c, &s);
  CHECK_EQ_U(s.files, 0);
  CHECK_EQ_U(s.bytes, 0);
  /* a copy inner lost behind the cache's back is not trusted for exists */
  put(c, 21, 500);
  key_of(21, key);
  CHECK_EQ_I(inner->ops->remove(inner, key), PL_OK);
  CHECK(!c->ops->exists(c, key));
  CHECK(c->ops->open(c, "not-a-key", &fd, &size) == PL_ERR_INVALID_ARGUMENT);
  c->ops->free(c);
  CHECK(!pl_blob_cache_stats_get(NULL, &s));
}

int main(void) {
  snprintf(root, sizeof root, "/tmp/pl-blob-cache-XXXXXX");
  CHECK(mkdtemp(root) != NULL);
  RUN(test_hits_and_misses);
  RUN(test_eviction);
  RUN(test_remove);
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf %s", root);
  CHECK(system(cmd) == 0);
  return tl_summary();
}
