/* pl_media.c: the media service's life cycle (config defaults, the link key,
 * libvips, the media threads), the store's blob hooks, the routing of /media
 * requests, and the helpers the other pl_media_*.c files share
 * (pl_media_int.h). */
#include "pl_media_int.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <vips/vips.h>

#include "common/pl_log.h"
#include "common/pl_mem.h"
#include "core/pl_auth.h"
#include "media/pl_blob_cache.h"
#include "media/pl_blob_pg.h"
#include "rules/pl_bucket.h"

/* ---- store requests from a loop ------------------------------------------ */

static void pl__mreq_task(pl_task *t) {
  pl_media_mreq *r = (pl_media_mreq *)((char *)t - offsetof(pl_media_mreq, task));
  r->fn(r);
}

/* On the store thread (or, refused at shutdown, on the submitter's). */
static void pl__mreq_done(pl_store_req *req) {
  pl_media_mreq *r = (pl_media_mreq *)req;
  r->task.fn = pl__mreq_task;
  if (pl_loop_post(r->loop, &r->task) != PL_OK)
    r->fn(r); /* the loop's mailbox is closed: the submit came from it */
}

void pl_media_mreq_submit(pl_media *m, pl_media_mreq *r, pl_loop *loop, void (*fn)(pl_media_mreq *)) {
  r->req.done = pl__mreq_done;
  r->req.origin = NULL;
  r->loop = loop;
  r->fn = fn;
  pl_store_submit(m->store, &r->req);
}

/* ---- small HTTP helpers ---------------------------------------------------- */

void pl_media_json_res(pl_http_res *res, int status, json_t *j) {
  char *s = json_dumps(j, JSON_COMPACT);
  json_decref(j);
  res->status = status;
  res->type = "application/json";
  pl_bytes_append(&res->body, s, strlen(s));
  pl_bytes_append(&res->body, "\n", 1);
  free(s);
}

void pl_media_error_res(pl_http_res *res, int status, const char *why) {
  pl_media_json_res(res, status, json_pack("{s:s,s:i}", "error", why, "status", status));
}

int pl_media_bearer(const pl_http_req *req, uint8_t hash[PL_TOKEN_HASH_LEN], uint32_t *route) {
  const char *a = pl_http_bearer(req);
  size_t n = a ? strlen(a) : 0;
  if (n == 0 || n >= PL_AUTH_TOKEN_MAX)
    return 0;
  pl_auth_token_hash(a, n, hash);
  uint32_t bucket;
  *route = pl_bucket_token_get(a, n, &bucket) == 0 ? 1 + bucket : 0; /* the user's shard */
  return 1;
}

int pl_media_query(const char *url, const char *k, char *out, size_t cap) {
  const char *q = strchr(url, '?');
  size_t kl = strlen(k);
  while (q && *q) {
    q++;
    if (!strncmp(q, k, kl) && q[kl] == '=') {
      const char *v = q + kl + 1;
      size_t o = 0;
      while (*v && *v != '&' && o + 1 < cap) {
        if (*v == '%' && v[1] && v[2]) {
          char hex[3] = {v[1], v[2], 0};
          out[o++] = (char)strtol(hex, NULL, 16);
          v += 3;
        } else {
          out[o++] = *v == '+' ? ' ' : *v;
          v++;
        }
      }
      out[o] = '\0';
      return 1;
    }
    q = strchr(q, '&');
  }
  return 0;
}

void pl_media_clean_name(char *s) {
  for (char *p = s; *p; p++)
    if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '.' ||
          *p == '-' || *p == '_' || *p == ' '))
      *p = '_';
}

int pl_media_id_valid(const char *id, size_t n) {
  if (n != 32)
    return 0;
  for (size_t i = 0; i < n; i++)
    if (!((id[i] >= '0' && id[i] <= '9') || (id[i] >= 'a' && id[i] <= 'f')))
      return 0;
  return 1;
}

void pl_media_hex(const uint8_t *d, size_t n, char *out) {
  static const char hx[] = "0123456789abcdef";
  for (size_t i = 0; i < n; i++) {
    out[2 * i] = hx[d[i] >> 4];
    out[2 * i + 1] = hx[d[i] & 15];
  }
  out[2 * n] = '\0';
}

/* ---- routing ------------------------------------------------------------------- */

int pl_media_route(pl_media *m, const pl_http_req *req, const char *path, pl_http_res *res, pl_http_ex *x) {
  if (!strncmp(path, "/media/uploads", 14) && (path[14] == '\0' || path[14] == '/'))
    return pl_media_up_route(m, req, path, res, x);
  if (strncmp(path, "/media/", 7))
    return 0;
  pl_media_get_route(m, req, path + 7, res, x);
  return 1;
}

/* ---- the service --------------------------------------------------------------- */

static void pl__blob_gone(void *ud, const char *key) {
  pl_media *m = ud;
  if (m->blob->ops->remove(m->blob, key) != PL_OK)
    pl_warn("media: cannot remove blob %s", key);
}

static int pl__blob_exists(void *ud, const char *key) {
  pl_media *m = ud;
  return m->blob->ops->exists(m->blob, key);
}

void pl_media_store_hooks(pl_media *m, pl_store_config *sc) {
  sc->blob_gone = pl__blob_gone;
  sc->blob_exists = pl__blob_exists;
  sc->blob_ud = m;
}

typedef struct pl__import {
  pl_media *m;
  const char *dir;
  unsigned moved, failed;
} pl__import;

/* One file of the file store into the database, under a second name in the
 * spool (put_file takes that); the file goes once the database has it. */
static void pl__import_one(void *ud, const char *key) {
  pl__import *im = ud;
  char from[4200], tmp[4200];
  snprintf(from, sizeof from, "%s/%.2s/%s", im->dir, key, key);
  snprintf(tmp, sizeof tmp, "%s/import-%s", im->m->blob->ops->spool(im->m->blob), key);
  unlink(tmp);
  if (link(from, tmp) == 0 && im->m->blob->ops->put_file(im->m->blob, key, tmp) == PL_OK &&
      unlink(from) == 0) {
    im->moved++;
    *strrchr(from, '/') = '\0';
    rmdir(from); /* the fan-out directory, once empty */
  } else {
    im->failed++;
  }
}

/* Blobs a node stored in its own directory before its store was
 * PostgreSQL (an upgrade, or a single node becoming a cluster's first)
 * move into the database, so that every node serves them; the files go. */
static pl_err pl__import_files(pl_media *m, const char *dir) {
  pl_blob *fs = NULL;
  pl__import im = {.m = m, .dir = dir};
  pl_err e = pl_blob_fs_open(dir, &fs);
  if (e != PL_OK)
    return e;
  fs->ops->each(fs, pl__import_one, &im);
  fs->ops->free(fs);
  if (im.moved || im.failed)
    pl_info("media: %u blob(s) of %s moved into postgresql, %u could not be", im.moved, dir, im.failed);
  return im.failed ? PL_ERR_IO : PL_OK;
}

/* On PostgreSQL, the key that signs links is the database's, so a link one
 * node signed opens on any other (the tables are there once the store is
 * open). The first node's candidate wins: its key file's, if it had one
 * before the cluster (its links stay good), else random. */
pl_err pl_media_set_store(pl_media *m, pl_store *store) {
  m->store = store;
  if (!m->cfg.blob_pg)
    return PL_OK;
  char dir[4096 + 8];
  pl_err e = pl_blob_pg_secret(m->blob_db, "media_link_key", m->link_key, sizeof m->link_key);
  if (e != PL_OK) {
    pl_error("media: cannot read the link key from postgresql: %s", pl_err_msg(e));
    return e;
  }
  snprintf(dir, sizeof dir, "%s/media", m->cfg.dir);
  /* what could not move stays, served by no node, and the next start
   * tries again: no reason to refuse this one */
  if (pl__import_files(m, dir) != PL_OK)
    pl_warn("media: blobs are left in %s that postgresql does not have; a restart tries again", dir);
  return PL_OK;
}

/* The key that signs links: made once, kept in the data directory, so
 * links survive a restart (on PostgreSQL: pl_media_set_store). */
static pl_err pl__link_key(pl_media *m, const char *dir) {
  char path[4096 + 16];
  snprintf(path, sizeof path, "%s/link.key", dir);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd >= 0) {
    ssize_t n = read(fd, m->link_key, sizeof m->link_key);
    close(fd);
    return n == (ssize_t)sizeof m->link_key ? PL_OK : PL_ERR_IO;
  }
  randombytes_buf(m->link_key, sizeof m->link_key);
  if (m->cfg.blob_pg) /* a candidate for the database's (pl_media_set_store); no file */
    return PL_OK;
  fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0)
    return PL_ERR_IO;
  int ok = write(fd, m->link_key, sizeof m->link_key) == (ssize_t)sizeof m->link_key && fsync(fd) == 0;
  close(fd);
  return ok ? PL_OK : PL_ERR_IO;
}

/* Files under dir, sealed with --key-file; or, on a PostgreSQL store, the
 * database, with only the spool (uploads on their way in) on this node's
 * disk. */
static pl_err pl__blob_open(pl_media *m, const char *dir) {
  char spool[4096 + 8];
  if (m->cfg.blob_pg && m->cfg.seal) { /* as the store says (pg_db.c), and before it */
    pl_error("media: --key-file (encryption at rest) works with the SQLite store only, not PostgreSQL");
    return PL_ERR_CONFIG;
  }
  if (m->cfg.blob_pg) {
    snprintf(spool, sizeof spool, "%s/tmp", dir);
    pl_err e;
    if (m->cfg.sharded > 1) { /* the array is the caller's: read here only */
      e = pl_blob_pg_open_shards(m->cfg.blob_shards, m->cfg.sharded, m->cfg.shardmap, spool, &m->blob);
      m->cfg.blob_shards = NULL;
    } else {
      e = pl_blob_pg_open(m->cfg.blob_pg, spool, &m->blob);
    }
    m->blob_db = m->blob;
    if (e == PL_OK && m->cfg.blob_cache) { /* a copy of what this node serves, on its own disk */
      char cache[4096 + 16];
      snprintf(cache, sizeof cache, "%s/blobcache", dir);
      e = pl_blob_cache_open(m->blob_db, cache, m->cfg.blob_cache, &m->blob);
      m->blob_db = e == PL_OK ? m->blob_db : NULL;
    }
    return e;
  }
  pl_err e = pl_blob_fs_open(dir, &m->blob);
  if (e == PL_OK && m->cfg.seal) /* encryption at rest: over the files */
    e = pl_blob_seal_open(m->blob, m->cfg.seal, &m->blob);
  return e;
}

static void pl__vips_log(const gchar *domain, GLogLevelFlags level, const gchar *msg, gpointer ud) {
  (void)domain;
  (void)level;
  (void)ud;
  pl_debug("media: libvips: %s", msg);
}

pl_err pl_media_open(pl_media **out, const pl_media_config *cfg) {
  pl_media *m = pl_calloc(1, sizeof *m);
  char dir[4096];
  m->cfg = *cfg;
  if (!m->cfg.max_upload)
    m->cfg.max_upload = 64u << 20;
  if (!m->cfg.thumb_px)
    m->cfg.thumb_px = 320;
  if (!m->cfg.link_ttl_s)
    m->cfg.link_ttl_s = 3600;
  if (!m->cfg.workers)
    m->cfg.workers = 2;
  if (!m->cfg.limits.max_side) {
    pl_img_limits d = PL_IMG_LIMITS_DEFAULT;
    m->cfg.limits = d;
  }
  snprintf(dir, sizeof dir, "%s/media", cfg->dir);
  pthread_mutex_init(&m->rs_mu, NULL);
  pl_quota_init(&m->quota, m->cfg.quota, m->cfg.max_pending);
  pl_err e = pl__blob_open(m, dir);
  if (e == PL_OK)
    e = pl__link_key(m, dir);
  if (e == PL_OK && VIPS_INIT("parleyd") != 0) {
    pl_error("media: libvips: %s", vips_error_buffer());
    e = PL_ERR_CONFIG;
  }
  if (e == PL_OK)
    e = pl_mpool_new(1, "pl-media-io", NULL, &m->io);
  if (e == PL_OK)
    e = pl_mpool_new(m->cfg.workers, "pl-media", vips_thread_shutdown, &m->work);
  if (e == PL_OK && m->blob->ops->remote) /* two downloads read at once; more wait their turn */
    e = pl_mpool_new(2, "pl-media-dl", NULL, &m->dl);
  if (e != PL_OK) {
    pl_mpool_free(m->io);
    pl_mpool_free(m->work);
    if (m->blob)
      m->blob->ops->free(m->blob);
    pl_quota_free(&m->quota);
    pthread_mutex_destroy(&m->rs_mu);
    pl_free(m);
    return e;
  }
  pl_media_up_load(m); /* unfinished uploads of before a restart, with their reservations */
  /* one thread per image (uploads run side by side on the media workers), no
   * operation cache (every image is new), and no loaders beyond the ones
   * marked safe for untrusted input */
  vips_concurrency_set(1);
  vips_cache_set_max(0);
  vips_block_untrusted_set(TRUE);
  /* libvips' warnings about a bad upload are the answer's business, not the log's */
  g_log_set_handler("VIPS", G_LOG_LEVEL_WARNING | G_LOG_LEVEL_MESSAGE, pl__vips_log, NULL);
  *out = m;
  return PL_OK;
}

void pl_media_close(pl_media *m) {
  if (!m)
    return;
  pl_mpool_free(m->io); /* idle: the loops, which wait for their jobs, have ended */
  pl_mpool_free(m->work);
  pl_mpool_free(m->dl);
  m->blob->ops->free(m->blob);
  void *v;
  uint64_t k;
  for (size_t i = 0; pl_map_next(&m->rs, &i, &k, &v);)
    pl_free(v);
  pl_map_free(&m->rs);
  pl_quota_free(&m->quota);
  pthread_mutex_destroy(&m->rs_mu);
  vips_shutdown();
  pl_free(m);
}

void pl_media_rekey(pl_media *m) {
  if (m && m->cfg.seal)
    pl_blob_seal_rekey(m->blob);
}

void pl_media_get_seal_stats(pl_media *m, pl_media_seal_stats *st) {
  memset(st, 0, sizeof *st);
  if (m && m->cfg.seal)
    pl_blob_seal_stats(m->blob, st->files, &st->passes, &st->running);
}

void pl_media_get_stats(pl_media *m, pl_media_stats *st) {
  st->uploads = atomic_load_explicit(&m->uploads, memory_order_relaxed);
  st->upload_bytes = atomic_load_explicit(&m->upload_bytes, memory_order_relaxed);
  st->refused = atomic_load_explicit(&m->refused, memory_order_relaxed);
  st->downloads = atomic_load_explicit(&m->downloads, memory_order_relaxed);
  pl_blob_cache_stats cs;
  pl_blob_cache_stats_get(m->blob, &cs);
  st->cache_hits = cs.hits;
  st->cache_misses = cs.misses;
  st->cache_evictions = cs.evictions;
  st->cache_files = cs.files;
  st->cache_bytes = cs.bytes;
}
