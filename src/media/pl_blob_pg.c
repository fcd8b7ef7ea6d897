/* pl_blob_pg: the blob store in PostgreSQL, for a cluster (--store
 * postgresql://): every node reaches the database, so an upload through one
 * node downloads through any other, and the bytes share the rows' backups
 * (docs/architecture.md 17).
 *
 * A blob is its chunks (blob_chunks(key, n, bytes), PL__CHUNK bytes each)
 * and, written last in the same transaction, its blobs(key, size) row: a
 * blob is visible whole or not at all. Uploads are bounded (64 MiB by
 * default), so a blob is at most a few dozen rows.
 *
 * Who removes a blob is the store's sweep (pg_media.c), in the transaction
 * that deletes the last media row naming it, so across nodes it is removed
 * exactly once and never under an upload recording it; remove here is the
 * same deletion on its own.
 *
 * Any thread calls these (media workers, the download path): each call takes
 * a connection of this module's own from a small pool (never the store
 * thread's), and gives it back unless it broke; a broken one is dropped and
 * the next call connects again, so a restarted database costs the calls in
 * flight an error, never the process. */
#include "pl_blob_pg.h"

#include <errno.h>
#include <fcntl.h>
#include <libpq-fe.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/pl_fs.h"
#include "common/pl_log.h"
#include "common/pl_mem.h"
#include "common/pl_time.h"
#include "rules/pl_bucket.h"
#include "store/pl_shardmap.h"

/* 1 MiB: a row PostgreSQL moves out of line once (TOAST), few rows per
 * blob, and the most one call holds in memory. */
#define PL__CHUNK (1u << 20)
/* Idle connections kept; more callers at once connect and then close. */
#define PL__POOL 4

typedef struct pl__pgb {
  pl_blob base;
  char *conninfo, *spool;
  pthread_mutex_t mu;
  PGconn *idle[PL__POOL];
  int nidle;
  int down; /* the last connect failed: said once in the log, until one works (under mu) */
} pl__pgb;

/* ---- connections -------------------------------------------------------------- */

static PGconn *pl__take(pl__pgb *p) {
  PGconn *c = NULL;
  pthread_mutex_lock(&p->mu);
  if (p->nidle)
    c = p->idle[--p->nidle];
  pthread_mutex_unlock(&p->mu);
  if (c && PQstatus(c) == CONNECTION_OK)
    return c;
  if (c)
    PQfinish(c);
  /* a database that does not answer costs a call 10 s, not the TCP
   * timeout's minutes (the connection string's own connect_timeout wins) */
  const char *const kw[] = {"connect_timeout", "dbname", NULL}, *const val[] = {"10", p->conninfo, NULL};
  c = PQconnectdbParams(kw, val, 1);
  int ok = PQstatus(c) == CONNECTION_OK;
  if (ok) { /* a put's transaction streams from a local file: never idle long */
    PGresult *r =
        PQexec(c, "SET client_min_messages = warning; SET idle_in_transaction_session_timeout = '60s'");
    ok = PQresultStatus(r) == PGRES_COMMAND_OK;
    PQclear(r);
  }
  pthread_mutex_lock(&p->mu);
  int was = p->down;
  p->down = !ok;
  pthread_mutex_unlock(&p->mu);
  if (!ok) {
    if (!was)
      pl_error("media: cannot connect to postgresql for blobs: %s", PQerrorMessage(c));
    PQfinish(c);
    return NULL;
  }
  if (was)
    pl_info("media: connected to postgresql for blobs again");
  return c;
}

/* Back to the pool if it is whole and out of any transaction. */
static void pl__give(pl__pgb *p, PGconn *c) {
  if (!c)
    return;
  if (PQstatus(c) == CONNECTION_OK && PQtransactionStatus(c) != PQTRANS_IDLE) {
    PGresult *r = PQexec(c, "ROLLBACK");
    PQclear(r);
  }
  if (PQstatus(c) == CONNECTION_OK && PQtransactionStatus(c) == PQTRANS_IDLE) {
    pthread_mutex_lock(&p->mu);
    if (p->nidle < PL__POOL) {
      p->idle[p->nidle++] = c;
      c = NULL;
    }
    pthread_mutex_unlock(&p->mu);
  }
  if (c)
    PQfinish(c);
}

/* One statement with text parameters (and, with blen, a last binary one);
 * 0 on success, with the result in *out if out. */
static pl_err pl__q(PGconn *c, PGresult **out, const char *sql, int n, const char *const *vals,
                    const void *bin, int blen) {
  const char *v[4];
  int lens[4] = {0}, fmts[4] = {0};
  for (int i = 0; i < n; i++)
    v[i] = vals[i];
  if (bin) {
    v[n] = bin;
    lens[n] = blen;
    fmts[n] = 1;
    n++;
  }
  PGresult *r = PQexecParams(c, sql, n, NULL, v, lens, fmts, 1);
  ExecStatusType st = PQresultStatus(r);
  if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
    pl_error("media: postgresql blob store: %s",
             PQstatus(c) == CONNECTION_OK ? PQresultErrorMessage(r) : PQerrorMessage(c));
    PQclear(r);
    return PL_ERR_IO;
  }
  if (out)
    *out = r;
  else
    PQclear(r);
  return PL_OK;
}

/* ---- the ops -------------------------------------------------------------------- */

/* What one op does on a connection, with its arguments. */
typedef struct pl__call {
  const char *key, *tmp, *name;
  int fd;
  uint64_t size;
  uint8_t *out;
  size_t n;
} pl__call;

/* fn on a pooled connection; when it failed because the connection broke
 * (the database restarted, a proxy dropped it), once more on a new one:
 * every op is safe to repeat (a put's transaction was rolled back whole). */
static pl_err pl__run(pl__pgb *p, pl_err (*fn)(pl__pgb *p, PGconn *c, pl__call *a), pl__call *a) {
  pl_err e = PL_ERR_IO;
  for (int attempt = 0; attempt < 2; attempt++) {
    PGconn *c = pl__take(p);
    if (!c)
      return PL_ERR_IO;
    e = fn(p, c, a);
    int broken = PQstatus(c) != CONNECTION_OK;
    pl__give(p, c);
    if (e == PL_OK || !broken)
      break;
    pl_warn("media: the postgresql connection for blobs broke; trying once more on a new one");
  }
  return e;
}

static pl_err pl__have(pl__pgb *p, PGconn *c, pl__call *a) {
  PGresult *r = NULL;
  const char *v[] = {a->key};
  (void)p;
  pl_err e = pl__q(c, &r, "SELECT 1 FROM blobs WHERE key = $1", 1, v, NULL, 0);
  if (e == PL_OK)
    a->n = (size_t)PQntuples(r);
  PQclear(r);
  return e;
}

/* a->tmp's bytes as chunks, then the row that makes them visible, in one
 * transaction. Another node putting the same key at once (the same bytes:
 * the key is their hash) waits on the first's rows and then adds nothing. */
static pl_err pl__stream(PGconn *c, const char *key, int fd, uint64_t size, uint8_t *buf) {
  char num[24], sz[24], now[24];
  pl_err e = pl__q(c, NULL, "BEGIN", 0, NULL, NULL, 0);
  uint64_t off = 0;
  for (int n = 0; e == PL_OK && (off < size || n == 0); n++) {
    size_t want = size - off < PL__CHUNK ? (size_t)(size - off) : PL__CHUNK;
    ssize_t got = want ? pread(fd, buf, want, (off_t)off) : 0;
    if (got != (ssize_t)want) {
      pl_error("media: cannot read a spooled upload: %s", got < 0 ? strerror(errno) : "short read");
      e = PL_ERR_IO;
      break;
    }
    snprintf(num, sizeof num, "%d", n);
    const char *v[] = {key, num};
    e = pl__q(c, NULL, "INSERT INTO blob_chunks(key, n, bytes) VALUES($1, $2, $3) ON CONFLICT DO NOTHING", 2,
              v, buf, (int)want);
    off += want;
  }
  snprintf(sz, sizeof sz, "%llu", (unsigned long long)size);
  snprintf(now, sizeof now, "%llu", (unsigned long long)pl_now_ms());
  const char *v[] = {key, sz, now};
  if (e == PL_OK)
    e = pl__q(c, NULL, "INSERT INTO blobs(key, size, created) VALUES($1, $2, $3) ON CONFLICT DO NOTHING", 3,
              v, NULL, 0);
  if (e == PL_OK)
    e = pl__q(c, NULL, "COMMIT", 0, NULL, NULL, 0);
  return e; /* on failure pl__give rolls back */
}

static pl_err pl__put_on(pl__pgb *p, PGconn *c, pl__call *a) {
  pl_err e = pl__have(p, c, a);
  if (e != PL_OK || a->n) /* stored already: the same bytes, keep those */
    return e;
  uint8_t *buf = pl_malloc(PL__CHUNK);
  e = pl__stream(c, a->key, a->fd, a->size, buf);
  pl_free(buf);
  return e;
}

static pl_err pl__put(pl_blob *b, const char *key, const char *tmp) {
  pl__call a = {.key = key, .fd = -1};
  struct stat st;
  pl_err e = pl_blob_key_valid(key) ? PL_OK : PL_ERR_INVALID_ARGUMENT;
  if (e == PL_OK && ((a.fd = open(tmp, O_RDONLY | O_CLOEXEC)) < 0 || fstat(a.fd, &st) != 0)) {
    pl_error("media: cannot read %s: %s", tmp, strerror(errno));
    e = PL_ERR_IO;
  }
  if (e == PL_OK) {
    a.size = (uint64_t)st.st_size;
    e = pl__run((pl__pgb *)b, pl__put_on, &a);
  }
  if (a.fd >= 0)
    close(a.fd);
  unlink(tmp);
  return e;
}

static int pl__exists(pl_blob *b, const char *key) {
  pl__call a = {.key = key};
  return pl_blob_key_valid(key) && pl__run((pl__pgb *)b, pl__have, &a) == PL_OK && a.n > 0;
}

/* A file of no name in the spool directory (on the node's disk, gone with
 * its last descriptor), or a memfd where the file system has no O_TMPFILE. */
static int pl__anon(pl__pgb *p) {
  int fd = open(p->spool, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
  return fd >= 0 ? fd : memfd_create("parley-blob", MFD_CLOEXEC);
}

/* The chunks one row at a time (single-row mode): memory holds one chunk
 * whatever the blob's size. They must add up to the blobs row's size (a
 * remove between the two reads leaves fewer). */
static pl_err pl__fetch(PGconn *c, const char *key, int fd, uint64_t size) {
  const char *v[] = {key};
  uint64_t got = 0;
  pl_err e = PL_OK;
  if (!PQsendQueryParams(c, "SELECT bytes FROM blob_chunks WHERE key = $1 ORDER BY n", 1, NULL, v, NULL, NULL,
                         1) ||
      !PQsetSingleRowMode(c)) {
    pl_error("media: postgresql blob store: %s", PQerrorMessage(c));
    return PL_ERR_IO;
  }
  for (PGresult *r; (r = PQgetResult(c));) {
    ExecStatusType st = PQresultStatus(r);
    if (st == PGRES_SINGLE_TUPLE && e == PL_OK) {
      size_t n = (size_t)PQgetlength(r, 0, 0);
      got += n;
      if (pl_write_full(fd, PQgetvalue(r, 0, 0), n) != 0) {
        pl_error("media: cannot spool blob %s: %s", key, strerror(errno));
        e = PL_ERR_IO;
      }
    } else if (st != PGRES_SINGLE_TUPLE && st != PGRES_TUPLES_OK && e == PL_OK) {
      pl_error("media: postgresql blob store: %s", PQresultErrorMessage(r));
      e = PL_ERR_IO;
    }
    PQclear(r);
  }
  if (e == PL_OK && got != size)
    e = PL_ERR_NOT_FOUND; /* removed meanwhile */
  return e;
}

static pl_err pl__open_on(pl__pgb *p, PGconn *c, pl__call *a) {
  PGresult *r = NULL;
  const char *v[] = {a->key};
  pl_err e = pl__q(c, &r, "SELECT size FROM blobs WHERE key = $1", 1, v, NULL, 0);
  if (e == PL_OK && PQntuples(r) == 0)
    e = PL_ERR_NOT_FOUND;
  if (e == PL_OK) { /* binary int8: network order */
    const uint8_t *s = (const uint8_t *)PQgetvalue(r, 0, 0);
    a->size = 0;
    for (int i = 0; i < 8; i++)
      a->size = a->size << 8 | s[i];
  }
  PQclear(r);
  if (e == PL_OK && (a->fd = pl__anon(p)) < 0) {
    pl_error("media: no file to spool blob %s into: %s", a->key, strerror(errno));
    e = PL_ERR_IO;
  }
  if (e == PL_OK)
    e = pl__fetch(c, a->key, a->fd, a->size);
  if (e == PL_OK && lseek(a->fd, 0, SEEK_SET) != 0)
    e = PL_ERR_IO;
  if (e != PL_OK && a->fd >= 0) {
    close(a->fd);
    a->fd = -1;
  }
  return e;
}

static pl_err pl__open(pl_blob *b, const char *key, int *fd, uint64_t *size) {
  pl__call a = {.key = key, .fd = -1};
  *fd = -1;
  if (!pl_blob_key_valid(key))
    return PL_ERR_INVALID_ARGUMENT;
  pl_err e = pl__run((pl__pgb *)b, pl__open_on, &a);
  *fd = a.fd;
  *size = a.size;
  return e;
}

/* Both tables in one transaction; removing what another node removed
 * already deletes nothing and succeeds. */
static pl_err pl__remove_on(pl__pgb *p, PGconn *c, pl__call *a) {
  const char *v[] = {a->key};
  (void)p;
  pl_err e = pl__q(c, NULL, "BEGIN", 0, NULL, NULL, 0);
  if (e == PL_OK)
    e = pl__q(c, NULL, "DELETE FROM blobs WHERE key = $1", 1, v, NULL, 0);
  if (e == PL_OK)
    e = pl__q(c, NULL, "DELETE FROM blob_chunks WHERE key = $1", 1, v, NULL, 0);
  if (e == PL_OK)
    e = pl__q(c, NULL, "COMMIT", 0, NULL, NULL, 0);
  return e;
}

static pl_err pl__remove(pl_blob *b, const char *key) {
  pl__call a = {.key = key};
  return pl_blob_key_valid(key) ? pl__run((pl__pgb *)b, pl__remove_on, &a) : PL_ERR_INVALID_ARGUMENT;
}

static pl_err pl__secret_on(pl__pgb *p, PGconn *c, pl__call *a) {
  PGresult *r = NULL;
  const char *v[] = {a->name};
  (void)p;
  pl_err e = pl__q(c, NULL, "INSERT INTO secrets(name, value) VALUES($1, $2) ON CONFLICT DO NOTHING", 1, v,
                   a->out, (int)a->n);
  if (e == PL_OK)
    e = pl__q(c, &r, "SELECT value FROM secrets WHERE name = $1", 1, v, NULL, 0);
  if (e == PL_OK && (PQntuples(r) != 1 || (size_t)PQgetlength(r, 0, 0) != a->n))
    e = PL_ERR_STORE;
  if (e == PL_OK)
    memcpy(a->out, PQgetvalue(r, 0, 0), a->n);
  PQclear(r);
  return e;
}

static const pl_blob_ops pl__shard_ops;

typedef struct pl__shards {
  pl_blob base;
  unsigned n;
  pl_blob **shard; /* [n] */
  const struct pl_shardmap *map;
} pl__shards;

pl_err pl_blob_pg_secret(pl_blob *b, const char *name, uint8_t *out, size_t n) {
  pl__call a = {.name = name, .out = out, .n = n};
  if (b->ops == &pl__shard_ops) /* a server-wide secret: shard 0's */
    b = ((pl__shards *)b)->shard[0];
  return pl__run((pl__pgb *)b, pl__secret_on, &a);
}

static const char *pl__spool(pl_blob *b) { return ((pl__pgb *)b)->spool; }

static void pl__free(pl_blob *b) {
  pl__pgb *p = (pl__pgb *)b;
  if (!p)
    return;
  for (int i = 0; i < p->nidle; i++)
    PQfinish(p->idle[i]);
  pthread_mutex_destroy(&p->mu);
  pl_free(p->conninfo);
  pl_free(p->spool);
  pl_free(p);
}

/* No replace_file nor each: those serve re-encryption at rest, which a
 * PostgreSQL store leaves to the database's own (the store refuses
 * --key-file). */
static const pl_blob_ops pl__pg_ops = {
    .name = "postgresql",
    .remote = 1,
    .put_file = pl__put,
    .exists = pl__exists,
    .open = pl__open,
    .remove = pl__remove,
    .spool = pl__spool,
    .free = pl__free,
};

pl_err pl_blob_pg_open(const char *conninfo, const char *spool, pl_blob **out) {
  pl__pgb *p = pl_calloc(1, sizeof *p);
  p->base.ops = &pl__pg_ops;
  p->conninfo = pl_strdup(conninfo);
  p->spool = pl_strdup(spool);
  pthread_mutex_init(&p->mu, NULL);
  if (pl_mkdirs(p->spool) != 0) {
    pl_error("media: cannot make %s: %s", p->spool, strerror(errno));
    pl__free(&p->base);
    return PL_ERR_IO;
  }
  /* no connection yet: the store, opened next, makes the tables */
  *out = &p->base;
  return PL_OK;
}

/* ---- shards ------------------------------------------------------------------- */

/* A sharded store's blobs: each on its owner's shard, named by the bucket
 * in the key's first 4 hex digits (pl_media_work.c gives keys it), beside
 * the media rows that pg_media.c keeps in the same transactions. */
static pl_blob *pl__shard_of(pl_blob *b, const char *key) {
  pl__shards *s = (pl__shards *)b;
  uint32_t bucket = 0;
  if (pl_bucket_of_key(key, &bucket) != 0)
    bucket = 0;
  return s->shard[pl_shardmap_of(s->map, bucket, s->n)];
}

static pl_err pl__shard_put(pl_blob *b, const char *key, const char *tmp) {
  pl_blob *t = pl__shard_of(b, key);
  return t->ops->put_file(t, key, tmp);
}

static int pl__shard_exists(pl_blob *b, const char *key) {
  pl_blob *t = pl__shard_of(b, key);
  return t->ops->exists(t, key);
}

static pl_err pl__shard_open(pl_blob *b, const char *key, int *fd, uint64_t *size) {
  pl_blob *t = pl__shard_of(b, key);
  return t->ops->open(t, key, fd, size);
}

static pl_err pl__shard_remove(pl_blob *b, const char *key) {
  pl_blob *t = pl__shard_of(b, key);
  return t->ops->remove(t, key);
}

static const char *pl__shard_spool(pl_blob *b) {
  pl_blob *t = ((pl__shards *)b)->shard[0];
  return t->ops->spool(t);
}

static void pl__shard_free(pl_blob *b) {
  pl__shards *s = (pl__shards *)b;
  if (!s)
    return;
  for (unsigned i = 0; i < s->n; i++)
    if (s->shard[i])
      s->shard[i]->ops->free(s->shard[i]);
  pl_free(s->shard);
  pl_free(s);
}

static const pl_blob_ops pl__shard_ops = {
    .name = "postgresql shards",
    .remote = 1,
    .put_file = pl__shard_put,
    .exists = pl__shard_exists,
    .open = pl__shard_open,
    .remove = pl__shard_remove,
    .spool = pl__shard_spool,
    .free = pl__shard_free,
};

pl_err pl_blob_pg_open_shards(const char *const *conninfo, unsigned n, const struct pl_shardmap *map,
                              const char *spool, pl_blob **out) {
  pl__shards *s = pl_calloc(1, sizeof *s);
  pl_err e = PL_OK;
  s->base.ops = &pl__shard_ops;
  s->n = n;
  s->map = map;
  s->shard = pl_calloc(n, sizeof *s->shard);
  for (unsigned i = 0; i < n && e == PL_OK; i++)
    e = pl_blob_pg_open(conninfo[i], spool, &s->shard[i]); /* one spool: every shard's uploads start there */
  if (e != PL_OK) {
    pl__shard_free(&s->base);
    return e;
  }
  *out = &s->base;
  return PL_OK;
}
