/* pg_link: reads of users who may live on another shard (docs/scaling.md
 * 2, "What T1 knows of the user homed elsewhere"): each read goes into the
 * pipe of its user's shard, the caller's own pipe for this one, a pipe on
 * the link (pl_pg_link) for another, and all are sent before any is
 * waited for. A read from another shard is outside this transaction, at
 * READ COMMITTED, as fresh as a read here before any lock. */
#include "../../rules/pl_bucket.h"
#include "../pl_shardmap.h"
#include "pg_internal.h"

unsigned pl_pg_shard_of_id(const pl__pg *g, uint64_t id) {
  return pl_shardmap_of(g->map, pl_bucket_of_id(id), g->nshards);
}

unsigned pl_pg_shard_of_name(const pl__pg *g, const char *name) {
  return pl_shardmap_of(g->map, pl_bucket_of_name(name, strlen(name)), g->nshards);
}

/* The statements prepared on every connection (pg_queue.c's, pg_batch.c's). */
static const pl_pg_stmt pl__by_id = {"pl_q_user", PL_PG_USER_SQL("u.id = $1")};
static const pl_pg_stmt pl__by_name = {"pl_b_peer", PL_PG_USER_SQL("u.name = $1")};

void pl_pg_xpipe_begin(pl_pg_xpipe *x, pl__pg *g, pl_pg_pipe *here) {
  memset(x, 0, sizeof *x);
  x->g = g;
  x->here = here;
  if (g->nshards > 1) {
    x->there = pl_calloc(g->nshards, sizeof *x->there);
    x->err = pl_calloc(g->nshards, sizeof *x->err);
  }
}

/* The pipe of shard j's reads (NULL: j cannot be reached now). */
static pl_pg_pipe *pl__pipe(pl_pg_xpipe *x, unsigned j) {
  if (!x->there || j == x->g->shard || j >= x->g->nshards)
    return x->here;
  if (!x->there[j].g) {
    pl__pg *l = pl_pg_link(x->g, j);
    if (!l)
      return NULL;
    pl_pg_pipe_begin(&x->there[j], l);
  }
  return &x->there[j];
}

static long pl__handle(const pl_pg_xpipe *x, const pl_pg_pipe *p, int at) {
  unsigned j = p == x->here ? x->g->shard : (unsigned)(p - x->there);
  return (long)j << 32 | (long)at;
}

pl_pg_pipe *pl_pg_xpipe_at(pl_pg_xpipe *x, unsigned j) { return pl__pipe(x, j); }

void pl_pg_xpipe_every(pl_pg_xpipe *x, long *at, const char *sql, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  for (unsigned j = 0; j < pl_pg_shards(x->g); j++) {
    pl_pg_pipe *p = pl__pipe(x, j);
    va_list each;
    va_copy(each, ap);
    at[j] = p ? pl__handle(x, p, pl_pg_pipe_vadd(p, sql, fmt, each)) : -1;
    va_end(each);
  }
  va_end(ap);
}

long pl_pg_xpipe_handle(const pl_pg_xpipe *x, const pl_pg_pipe *p, int at) { return pl__handle(x, p, at); }

long pl_pg_xpipe_user(pl_pg_xpipe *x, uint64_t uid) {
  pl_pg_pipe *p = pl__pipe(x, x->g->nshards > 1 ? pl_pg_shard_of_id(x->g, uid) : 0);
  return p ? pl__handle(x, p, pl_pg_pipe_addp(p, &pl__by_id, "u", uid)) : -1;
}

long pl_pg_xpipe_user_by_name(pl_pg_xpipe *x, const char *name) {
  pl_pg_pipe *p = pl__pipe(x, x->g->nshards > 1 ? pl_pg_shard_of_name(x->g, name) : 0);
  return p ? pl__handle(x, p, pl_pg_pipe_addp(p, &pl__by_name, "s", name)) : -1;
}

pl_err pl_pg_xpipe_end(pl_pg_xpipe *x) {
  for (unsigned j = 0; x->there && j < x->g->nshards; j++) /* sent before any is waited for */
    if (x->there[j].g)
      pl_pg_pipe_send(&x->there[j]);
  pl_err e = pl_pg_pipe_end(x->here);
  for (unsigned j = 0; x->there && j < x->g->nshards; j++)
    if (x->there[j].g)
      x->err[j] = pl_pg_pipe_end(&x->there[j]);
  return e;
}

PGresult *pl_pg_xpipe_take(pl_pg_xpipe *x, long h, pl_err *e) {
  unsigned j = (unsigned)(h >> 32);
  int at = (int)(h & 0xffffffff);
  pl_pg_pipe *p = h < 0 ? NULL : j == x->g->shard || !x->there ? x->here : &x->there[j];
  *e = h < 0 ? PL_ERR_STORE : p == x->here ? PL_OK : x->err[j];
  if (*e != PL_OK || !p->res)
    return NULL;
  PGresult *res = p->res[at];
  p->res[at] = NULL;
  return res;
}

void pl_pg_xpipe_clear(pl_pg_xpipe *x) {
  for (unsigned j = 0; x->there && j < x->g->nshards; j++)
    if (x->there[j].g)
      pl_pg_pipe_clear(&x->there[j]);
  pl_free(x->there);
  pl_free(x->err);
  x->there = NULL;
  x->err = NULL;
}

void pl_pg_xpipe_each(pl_pg_xpipe *x, const char *sql, const uint64_t *ids, size_t n, long *at) {
  unsigned k = x->g->nshards > 1 ? x->g->nshards : 1;
  uint64_t *mine = pl_malloc((n + 1) * sizeof *mine);
  for (unsigned j = 0; j < k; j++) {
    size_t m = 0;
    for (size_t i = 0; i < n; i++)
      if (k == 1 || pl_pg_shard_of_id(x->g, ids[i]) == j)
        mine[m++] = ids[i];
    at[j] = -2;
    if (!m)
      continue;
    char *arr = pl_pg_array(mine, m);
    pl_pg_pipe *to = pl__pipe(x, k == 1 ? x->g->shard : j);
    at[j] = to ? pl__handle(x, to, pl_pg_pipe_add(to, sql, "s", arr)) : -1;
    pl_free(arr);
  }
  pl_free(mine);
}

pl_err pl_pg_xpipe_names(pl__pg *g, const uint64_t *ids, size_t n, char **names) {
  pl_pg_pipe p;
  pl_pg_xpipe x;
  unsigned k = g->nshards > 1 ? g->nshards : 1;
  long *at = pl_malloc(k * sizeof *at);
  pl_err e, xe = PL_OK;
  pl_pg_pipe_begin(&p, g);
  pl_pg_xpipe_begin(&x, g, &p);
  pl_pg_xpipe_each(&x, "SELECT id, name FROM users WHERE id = ANY($1::bigint[])", ids, n, at);
  e = pl_pg_xpipe_end(&x);
  for (unsigned j = 0; e == PL_OK && j < k; j++) {
    if (at[j] == -2)
      continue;
    PGresult *res = pl_pg_xpipe_take(&x, at[j], &xe);
    for (int row = 0; row < PQntuples(res); row++)
      for (size_t i = 0; i < n; i++)
        if (!names[i] && ids[i] == pl_pg_col_u64(res, row, 0))
          names[i] = pl_pg_col_str(res, row, 1);
    PQclear(res);
    if (xe != PL_OK)
      e = xe;
  }
  pl_pg_xpipe_clear(&x);
  pl_pg_pipe_clear(&p);
  pl_free(at);
  return e;
}

pl_err pl_pg_xdevices(pl__pg *g, const uint64_t *uids, size_t n, const char *cond, pl_pg_dev **out,
                      size_t *nout, unsigned char *away) {
  unsigned k = pl_pg_shards(g);
  long *at = pl_malloc(k * sizeof *at);
  size_t cap = 0;
  char sql[256];
  snprintf(sql, sizeof sql,
           "SELECT d.user_id, d.id FROM devices d WHERE d.user_id = ANY($1::bigint[])"
           " AND d.token_hash IS NOT NULL%s",
           cond ? cond : "");
  pl_pg_pipe p;
  pl_pg_xpipe x;
  pl_err xe = PL_OK;
  pl_pg_pipe_begin(&p, g);
  pl_pg_xpipe_begin(&x, g, &p);
  pl_pg_xpipe_each(&x, sql, uids, n, at);
  pl_err e = pl_pg_xpipe_end(&x);
  *out = NULL;
  *nout = 0;
  for (unsigned j = 0; e == PL_OK && j < k; j++) {
    PGresult *res = at[j] == -2 ? NULL : pl_pg_xpipe_take(&x, at[j], &xe);
    away[j] = at[j] != -2 && xe != PL_OK;
    for (int i = 0; res && i < PQntuples(res); i++) {
      *out = pl_pg_reserve(*out, *nout, &cap, sizeof **out);
      (*out)[(*nout)++] = (pl_pg_dev){pl_pg_col_u64(res, i, 0), pl_pg_col_u64(res, i, 1)};
    }
    PQclear(res);
    xe = PL_OK;
  }
  pl_pg_xpipe_clear(&x);
  pl_pg_pipe_clear(&p);
  pl_free(at);
  return e;
}

pl__pg *pl_pg_at(pl__pg *g, unsigned j) { return g->nshards < 2 || j == g->shard ? g : pl_pg_link(g, j); }

pl__pg *pl_pg_home(pl__pg *g, uint64_t uid) {
  return pl_pg_at(g, g->nshards > 1 ? pl_pg_shard_of_id(g, uid) : 0);
}

pl__pg *pl_pg_home_of_name(pl__pg *g, const char *name) {
  return pl_pg_at(g, g->nshards > 1 ? pl_pg_shard_of_name(g, name) : 0);
}

pl_err pl_pg_user_find(pl__pg *g, pl_store_req *r, uint64_t uid, const char *name, pl_pg_user **out) {
  pl__pg *h = name ? pl_pg_home_of_name(g, name) : pl_pg_home(g, uid);
  *out = NULL;
  if (!h) {
    r->status = PL_ERR_STORE;
    return PL_OK;
  }
  pl_err e = name ? pl_pg_user_by_name(h, name, out) : pl_pg_user_get(h, uid, out);
  if (e != PL_OK && h != g) { /* that shard's failure: this request's, not g's transaction's */
    r->status = e;
    return PL_OK;
  }
  return e;
}

unsigned pl_pg_shards(const pl__pg *g) { return g->nshards > 1 ? g->nshards : 1; }

static unsigned pl__shard_of_media(const pl__pg *g, const char *media_id) {
  uint32_t b;
  if (g->nshards < 2 || !media_id || pl_bucket_of_media(media_id, &b) != 0)
    return g->shard;
  return pl_shardmap_of(g->map, b, g->nshards);
}

int pl_pg_home_of_media_is(const pl__pg *g, const char *media_id) {
  return pl__shard_of_media(g, media_id) == g->shard;
}

pl__pg *pl_pg_home_of_media(pl__pg *g, const char *media_id) {
  return pl_pg_at(g, pl__shard_of_media(g, media_id));
}
