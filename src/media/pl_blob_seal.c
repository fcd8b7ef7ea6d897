/* pl_blob_seal: uploads and thumbnails sealed at rest (--key-file), a
 * pl_blob over another one (the files under <data>/media).
 *
 * A sealed blob is "PLSEALB1" and then chunks: each one pl_seal record of
 * up to 64 KiB of the bytes, every chunk but the last full. A chunk's
 * associated data is the blob key, its index and whether it is the last,
 * so chunks cannot be reordered, swapped between blobs or cut off. A
 * download opens the whole blob into a memfd (memory, never the disk)
 * that the HTTP layer serves as it serves a file, ranges included.
 *
 * A blob without the magic is a plain one from before encryption was
 * turned on: served as it is until the pass seals it. The pass (a thread
 * of its own, at open and after each rotation) re-seals every blob not
 * sealed with the current key, replacing the file by rename. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/pl_fs.h"
#include "common/pl_log.h"
#include "common/pl_mem.h"
#include "common/pl_seal.h"
#include "pl_blob.h"

#define PL__CHUNK 65536u
#define PL__REC (PL__CHUNK + PL_SEAL_OVERHEAD)
#define PL__MAGIC "PLSEALB1"
#define PL__MAGIC_LEN 8u

typedef struct pl__sb {
  pl_blob base;
  pl_blob *in;
  pl_seal_ref *ref;
  pthread_t th;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int kick, running;
  atomic_int stop;             /* read by the pass between files, without mu */
  uint64_t files[256], passes; /* under mu */
  uint64_t count[256];         /* the pass's, on its thread */
} pl__sb;

static size_t pl__ad(uint8_t *ad, const char *key, uint64_t idx, int last) {
  memcpy(ad, key, PL_BLOB_KEY_LEN);
  for (int i = 0; i < 8; i++)
    ad[PL_BLOB_KEY_LEN + i] = (uint8_t)(idx >> (8 * i));
  ad[PL_BLOB_KEY_LEN + 8] = (uint8_t)last;
  return PL_BLOB_KEY_LEN + 9;
}

static int pl__read_full(int fd, void *p, size_t n) {
  size_t got = 0;
  while (got < n) {
    ssize_t r = read(fd, (char *)p + got, n - got);
    if (r < 0 && errno == EINTR)
      continue;
    if (r <= 0)
      return -1;
    got += (size_t)r;
  }
  return 0;
}

/* The size bytes of in (from its offset) sealed into out for key. */
static pl_err pl__seal_fd(const pl_seal *s, const char *key, int in, uint64_t size, int out) {
  uint8_t *p = pl_malloc(PL__CHUNK), *c = pl_malloc(PL__REC), ad[PL_BLOB_KEY_LEN + 9];
  uint64_t n = size ? (size + PL__CHUNK - 1) / PL__CHUNK : 1;
  pl_err e = pl_write_full(out, PL__MAGIC, PL__MAGIC_LEN) == 0 ? PL_OK : PL_ERR_IO;
  for (uint64_t i = 0; i < n && e == PL_OK; i++) {
    size_t len = (size_t)(size - i * PL__CHUNK < PL__CHUNK ? size - i * PL__CHUNK : PL__CHUNK);
    if (pl__read_full(in, p, len) != 0) {
      e = PL_ERR_IO;
      break;
    }
    pl_seal_encrypt(s, ad, pl__ad(ad, key, i, i == n - 1), p, len, c);
    if (pl_write_full(out, c, len + PL_SEAL_OVERHEAD) != 0)
      e = PL_ERR_IO;
  }
  pl_free(p);
  pl_free(c);
  return e;
}

/* 1 if the blob open as fd starts with the magic; *kid its first chunk's key. */
static int pl__sealed(int fd, uint64_t size, uint8_t *kid) {
  uint8_t h[PL__MAGIC_LEN + 1];
  *kid = 0;
  if (size < PL__MAGIC_LEN + PL_SEAL_OVERHEAD || pread(fd, h, sizeof h, 0) != (ssize_t)sizeof h ||
      memcmp(h, PL__MAGIC, PL__MAGIC_LEN) != 0)
    return 0;
  *kid = h[PL__MAGIC_LEN];
  return 1;
}

/* The sealed blob in (size bytes, read from its start) opened into out;
 * *plain its opened size. */
static pl_err pl__open_fd(const pl_seal *s, const char *key, int in, uint64_t size, int out,
                          uint64_t *plain) {
  uint8_t *c = pl_malloc(PL__REC), *p = pl_malloc(PL__CHUNK), ad[PL_BLOB_KEY_LEN + 9];
  uint64_t body = size - PL__MAGIC_LEN, n = (body + PL__REC - 1) / PL__REC;
  pl_err e = lseek(in, PL__MAGIC_LEN, SEEK_SET) == (off_t)PL__MAGIC_LEN ? PL_OK : PL_ERR_IO;
  *plain = 0;
  for (uint64_t i = 0; i < n && e == PL_OK; i++) {
    size_t len = (size_t)(body - i * PL__REC < PL__REC ? body - i * PL__REC : PL__REC);
    if (len < PL_SEAL_OVERHEAD || pl__read_full(in, c, len) != 0) {
      e = PL_ERR_STORE;
      break;
    }
    e = pl_seal_decrypt(s, ad, pl__ad(ad, key, i, i == n - 1), c, len, p);
    if (e == PL_OK && pl_write_full(out, p, len - PL_SEAL_OVERHEAD) != 0)
      e = PL_ERR_IO;
    *plain += len - PL_SEAL_OVERHEAD;
  }
  pl_free(c);
  pl_free(p);
  return e;
}

/* A temporary file in the spool for a sealed copy, open for writing. */
static int pl__spool_tmp(pl__sb *b, char *path, size_t cap) {
  snprintf(path, cap, "%s/seal-XXXXXX", b->in->ops->spool(b->in));
  return mkstemp(path);
}

/* The bytes in (size from its offset) sealed for key into a new spool file
 * (its path in tmp, synced). */
static pl_err pl__seal_to_tmp(pl__sb *b, const char *key, int in, uint64_t size, char *tmp, size_t cap) {
  int out = pl__spool_tmp(b, tmp, cap);
  if (out < 0)
    return PL_ERR_IO;
  pl_err e = pl__seal_fd(pl_seal_ref_get(b->ref), key, in, size, out);
  if (e == PL_OK && fsync(out) != 0)
    e = PL_ERR_IO;
  close(out);
  if (e != PL_OK)
    unlink(tmp);
  return e;
}

static pl_err pl__put(pl_blob *bb, const char *key, const char *tmp) {
  pl__sb *b = (pl__sb *)bb;
  char sealed[4096];
  struct stat st;
  pl_err e = pl_blob_key_valid(key) ? PL_ERR_IO : PL_ERR_INVALID_ARGUMENT;
  int in = e == PL_ERR_IO ? open(tmp, O_RDONLY | O_CLOEXEC) : -1;
  if (in >= 0 && fstat(in, &st) == 0)
    e = pl__seal_to_tmp(b, key, in, (uint64_t)st.st_size, sealed, sizeof sealed);
  if (in >= 0)
    close(in);
  unlink(tmp); /* the plain bytes go at once */
  if (e != PL_OK) {
    pl_error("media: cannot seal blob %.16s...: %s", key, pl_err_msg(e));
    return e;
  }
  return b->in->ops->put_file(b->in, key, sealed);
}

/* The blob's bytes opened into a memfd (*fd, from its start). */
static pl_err pl__open(pl_blob *bb, const char *key, int *fd, uint64_t *size) {
  pl__sb *b = (pl__sb *)bb;
  int in = -1;
  uint64_t n;
  uint8_t kid;
  pl_err e = b->in->ops->open(b->in, key, &in, &n);
  if (e != PL_OK || !pl__sealed(in, n, &kid)) { /* plain: sealed by the pass soon */
    *fd = in;
    *size = n;
    return e;
  }
  int out = memfd_create("pl-media", MFD_CLOEXEC);
  e = out < 0 ? PL_ERR_IO : pl__open_fd(pl_seal_ref_get(b->ref), key, in, n, out, size);
  close(in);
  if (e == PL_OK && lseek(out, 0, SEEK_SET) != 0)
    e = PL_ERR_IO;
  if (e != PL_OK) {
    pl_error("media: blob %.16s... does not open with the key file (key id %u): %s", key, (unsigned)kid,
             e == PL_ERR_NOT_FOUND ? "the key file lacks that key" : "wrong key or altered file");
    if (out >= 0)
      close(out);
    return PL_ERR_IO;
  }
  *fd = out;
  return PL_OK;
}

static int pl__exists(pl_blob *bb, const char *key) {
  pl__sb *b = (pl__sb *)bb;
  return b->in->ops->exists(b->in, key);
}

static pl_err pl__remove(pl_blob *bb, const char *key) {
  pl__sb *b = (pl__sb *)bb;
  return b->in->ops->remove(b->in, key);
}

static const char *pl__spool(pl_blob *bb) {
  pl__sb *b = (pl__sb *)bb;
  return b->in->ops->spool(b->in);
}

/* ---- the re-encryption pass ---------------------------------------------- */

/* One blob: re-sealed with the current key unless it has it. */
static void pl__rekey_one(void *ud, const char *key) {
  pl__sb *b = ud;
  uint8_t cur = pl_seal_current(pl_seal_ref_get(b->ref)), kid;
  char tmp[4096];
  int in = -1;
  uint64_t n, plain = 0;
  if (atomic_load(&b->stop)) /* shutting down: the next start's pass goes on */
    return;
  if (b->in->ops->open(b->in, key, &in, &n) != PL_OK)
    return; /* gone meanwhile */
  int sealed = pl__sealed(in, n, &kid);
  if (sealed && kid == cur) {
    b->count[cur]++;
    close(in);
    return;
  }
  pl_err e = PL_OK;
  int src = in;
  if (sealed) { /* opened into memory first */
    src = memfd_create("pl-rekey", MFD_CLOEXEC);
    e = src < 0 ? PL_ERR_IO : pl__open_fd(pl_seal_ref_get(b->ref), key, in, n, src, &plain);
    if (e == PL_OK && lseek(src, 0, SEEK_SET) != 0)
      e = PL_ERR_IO;
    n = plain;
  }
  if (e == PL_OK)
    e = pl__seal_to_tmp(b, key, src, n, tmp, sizeof tmp);
  if (e == PL_OK && !b->in->ops->exists(b->in, key)) { /* dropped meanwhile: not brought back */
    unlink(tmp);
  } else if (e == PL_OK) {
    e = b->in->ops->replace_file(b->in, key, tmp);
  }
  b->count[e == PL_OK ? cur : kid]++;
  if (e != PL_OK)
    pl_error("media: cannot re-encrypt blob %.16s... (key id %u): %s", key, (unsigned)kid, pl_err_msg(e));
  if (src != in && src >= 0)
    close(src);
  close(in);
}

static void *pl__thread(void *arg) {
  pl__sb *b = arg;
  pthread_setname_np(pthread_self(), "pl-media-seal");
  pthread_mutex_lock(&b->mu);
  while (!atomic_load(&b->stop)) {
    if (!b->kick) {
      pthread_cond_wait(&b->cv, &b->mu);
      continue;
    }
    b->kick = 0;
    b->running = 1;
    pthread_mutex_unlock(&b->mu);
    memset(b->count, 0, sizeof b->count);
    b->in->ops->each(b->in, pl__rekey_one, b);
    pthread_mutex_lock(&b->mu);
    memcpy(b->files, b->count, sizeof b->files);
    b->passes++;
    b->running = b->kick; /* a rotation during the pass: another one */
    pl_info("media: re-encryption pass done: %llu blobs under key id %u",
            (unsigned long long)b->files[pl_seal_current(pl_seal_ref_get(b->ref))],
            (unsigned)pl_seal_current(pl_seal_ref_get(b->ref)));
  }
  pthread_mutex_unlock(&b->mu);
  return NULL;
}

void pl_blob_seal_rekey(pl_blob *bb) {
  pl__sb *b = (pl__sb *)bb;
  pthread_mutex_lock(&b->mu);
  b->kick = b->running = 1;
  pthread_cond_signal(&b->cv);
  pthread_mutex_unlock(&b->mu);
}

void pl_blob_seal_stats(pl_blob *bb, uint64_t files[256], uint64_t *passes, int *running) {
  pl__sb *b = (pl__sb *)bb;
  pthread_mutex_lock(&b->mu);
  memcpy(files, b->files, sizeof b->files);
  *passes = b->passes;
  *running = b->running;
  pthread_mutex_unlock(&b->mu);
}

static void pl__free(pl_blob *bb) {
  pl__sb *b = (pl__sb *)bb;
  pthread_mutex_lock(&b->mu);
  atomic_store(&b->stop, 1);
  pthread_cond_signal(&b->cv);
  pthread_mutex_unlock(&b->mu);
  pthread_join(b->th, NULL);
  pthread_cond_destroy(&b->cv);
  pthread_mutex_destroy(&b->mu);
  b->in->ops->free(b->in);
  pl_free(b);
}

static const pl_blob_ops pl__seal_ops = {
    .name = "sealed",
    .put_file = pl__put,
    .exists = pl__exists,
    .open = pl__open,
    .remove = pl__remove,
    .spool = pl__spool,
    .free = pl__free,
};

pl_err pl_blob_seal_open(pl_blob *inner, pl_seal_ref *ref, pl_blob **out) {
  pl__sb *b = pl_calloc(1, sizeof *b);
  b->base.ops = &pl__seal_ops;
  b->in = inner;
  b->ref = ref;
  pthread_mutex_init(&b->mu, NULL);
  pthread_cond_init(&b->cv, NULL);
  b->kick = b->running = 1; /* a first pass: plain blobs of before, and the counts */
  if (pthread_create(&b->th, NULL, pl__thread, b) != 0) {
    pthread_cond_destroy(&b->cv);
    pthread_mutex_destroy(&b->mu);
    pl_free(b);
    inner->ops->free(inner);
    return PL_ERR_INTERNAL;
  }
  *out = &b->base;
  return PL_OK;
}
