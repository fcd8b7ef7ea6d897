/* pg_db: the PostgreSQL backend's frame: connecting and reconnecting,
 * the query helpers, begin/commit/rollback, the TTL sweep, the dispatch of a
 * request by op, and the pl_store_pg vtable. The tables are described in
 * pg_internal.h and created by pg_schema.c. */
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>

#include "../pl_shardmap.h"
#include "../pl_store_valid.h"
#include "pg_internal.h"

/* Reconnect attempts while the database is away: the first at once, then
 * doubling up to this wait. Requests meanwhile fail at once with the
 * retryable INTERNAL: a client retries with the same id and dedup holds. */
#define PL__BACKOFF_MIN_MS 100u
#define PL__BACKOFF_MAX_MS 2000u
#define PL__MAX_PARAMS 24

/* ---- queries --------------------------------------------------------------------- */

/* SQLSTATEs of a transaction the database aborted for a conflict with
 * another one: nothing of it stays, so the batch may simply run again. */
static int pl__conflict(const char *state) {
  return state && (!strcmp(state, "40001") || !strcmp(state, "40P01") || !strcmp(state, "23505"));
}

static pl_err pl__result(pl__pg *g, PGresult *res, const char *sql) {
  ExecStatusType st = res ? PQresultStatus(res) : PGRES_FATAL_ERROR;
  if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK)
    return PL_OK;
  if (st == PGRES_PIPELINE_ABORTED) /* skipped after an earlier statement's error, which was told */
    return PL_ERR_STORE;
  const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
  if (state && !strcmp(state, PL_PG_FENCED)) { /* a bucket moved: read the map, the client retries */
    atomic_fetch_add(&g->fenced, 1);
    if (!g->map_stale)
      pl_info("store: shard %u refused a write for an older bucket map: reading the map again", g->shard);
    g->map_stale = 1;
    return PL_ERR_MOVED;
  }
  if (pl__conflict(state)) {
    pl_warn("store: postgresql conflict (%s), the batch runs again: %s", state, sql);
    return PL_ERR_AGAIN;
  }
  if (PQstatus(g->conn) != CONNECTION_OK) {
    if (!atomic_exchange(&g->down, 1))
      pl_error("store: lost the postgresql connection: %s", PQerrorMessage(g->conn));
    g->retry_at_ms = 0; /* the next batch tries at once */
    return PL_ERR_STORE;
  }
  pl_error("store: postgresql error %s (%s) in: %s", state ? state : "?",
           res ? PQresultErrorMessage(res) : PQerrorMessage(g->conn), sql);
  return PL_ERR_STORE;
}

/* A statement's parameters in libpq's form, from pl_pg_q's fmt. */
typedef struct pl__params {
  char nums[PL__MAX_PARAMS][24];
  const char *vals[PL__MAX_PARAMS];
  int lens[PL__MAX_PARAMS], fmts[PL__MAX_PARAMS], n;
} pl__params;

static void pl__params_fill(pl__params *p, const char *fmt, va_list ap) {
  p->n = 0;
  for (const char *f = fmt ? fmt : ""; *f && p->n < PL__MAX_PARAMS; f++, p->n++) {
    int n = p->n;
    p->lens[n] = 0;
    p->fmts[n] = 0;
    switch (*f) {
    case 'u':
      snprintf(p->nums[n], sizeof p->nums[n], "%llu", (unsigned long long)pl_pg_clamp(va_arg(ap, uint64_t)));
      p->vals[n] = p->nums[n];
      break;
    case 'i':
      snprintf(p->nums[n], sizeof p->nums[n], "%d", va_arg(ap, int));
      p->vals[n] = p->nums[n];
      break;
    case 's': p->vals[n] = va_arg(ap, const char *); break;
    default: /* 'b' */
      p->vals[n] = va_arg(ap, const char *);
      p->lens[n] = (int)va_arg(ap, size_t);
      p->fmts[n] = 1;
      if (!p->vals[n] && p->lens[n])
        p->vals[n] = ""; /* (NULL with 0: SQL NULL) */
      break;
    }
  }
}

static void pl__pipe_send(pl_pg_pipe *pp, const char *name, const char *sql, const pl__params *p);

static pl_err pl__vq(pl__pg *g, PGresult **out, const char *sql, const char *fmt, va_list ap) {
  pl__params p;
  pl__params_fill(&p, fmt, ap);
  if (out)
    *out = NULL;
  if (atomic_load(&g->down))
    return PL_ERR_STORE;
  pl_pg_map_sync(g);
  if (g->begin_pending) { /* the transaction's BEGIN goes with its first statement */
    pl_pg_pipe pp;
    pl_pg_pipe_begin(&pp, g);
    pl__pipe_send(&pp, NULL, sql, &p);
    pl_err e = pl_pg_pipe_end(&pp);
    if (e == PL_OK && out) {
      *out = pp.res[0];
      pp.res[0] = NULL;
    }
    pl_pg_pipe_clear(&pp);
    return e;
  }
  atomic_fetch_add(&g->round_trips, 1);
  /* no parameters: PQexec, which also takes several statements (migrations) */
  PGresult *res =
      p.n ? PQexecParams(g->conn, sql, p.n, NULL, p.vals, p.lens, p.fmts, 0) : PQexec(g->conn, sql);
  pl_err e = pl__result(g, res, sql);
  if (e == PL_OK && out)
    *out = res;
  else
    PQclear(res);
  return e;
}

/* ---- pipeline mode: several statements, one round trip ----------------------------- */

/* A transaction's BEGIN is not sent alone: the pipe (or statement) that
 * follows takes it along as its first statement (pl__pg_begin). */
void pl_pg_pipe_begin(pl_pg_pipe *pp, pl__pg *g) {
  memset(pp, 0, sizeof *pp);
  pp->g = g;
  if (atomic_load(&g->down))
    pp->err = PL_ERR_STORE;
  else
    pl_pg_map_sync(g);
}

/* Pipeline mode is entered with the first statement, so that a pipe that
 * gets none costs no round trip (and leaves a pending BEGIN pending). */
static void pl__pipe_start(pl_pg_pipe *pp) {
  pl__pg *g = pp->g;
  pp->started = 1;
  if (PQenterPipelineMode(g->conn) != 1) {
    pp->err = PL_ERR_STORE;
    return;
  }
  if (g->begin_pending) {
    g->begin_pending = 0;
    pp->lead = 1;
    if (PQsendQueryParams(g->conn, "BEGIN", 0, NULL, NULL, NULL, NULL, 0) != 1)
      pp->err = pl__result(g, NULL, "BEGIN");
  }
}

/* A statement into the pipe: prepared (name) or sql with its parameters. */
static void pl__pipe_send(pl_pg_pipe *pp, const char *name, const char *sql, const pl__params *p) {
  if (pp->err == PL_OK && !pp->started)
    pl__pipe_start(pp);
  if (pp->err != PL_OK)
    return;
  pp->sql = pl_pg_reserve(pp->sql, (size_t)pp->n, &pp->cap, sizeof *pp->sql);
  pp->sql[pp->n] = sql;
  int ok = name ? PQsendQueryPrepared(pp->g->conn, name, p->n, p->vals, p->lens, p->fmts, 0)
                : PQsendQueryParams(pp->g->conn, sql, p->n, NULL, p->vals, p->lens, p->fmts, 0);
  if (ok != 1)
    pp->err = pl__result(pp->g, NULL, sql);
  else
    pp->n++;
}

static int pl__pipe_vadd(pl_pg_pipe *pp, const char *name, const char *sql, const char *fmt, va_list ap) {
  pl__params p;
  pl__params_fill(&p, fmt, ap);
  pl__pipe_send(pp, name, sql, &p);
  return pp->n - 1;
}

int pl_pg_pipe_addp(pl_pg_pipe *pp, const pl_pg_stmt *st, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int i = pl__pipe_vadd(pp, st->name, st->sql, fmt, ap);
  va_end(ap);
  return i;
}

int pl_pg_pipe_vadd(pl_pg_pipe *pp, const char *sql, const char *fmt, va_list ap) {
  return pl__pipe_vadd(pp, NULL, sql, fmt, ap);
}

int pl_pg_pipe_add(pl_pg_pipe *pp, const char *sql, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int i = pl__pipe_vadd(pp, NULL, sql, fmt, ap);
  va_end(ap);
  return i;
}

/* The next result of the pipeline, and the NULL that ends it. */
static pl_err pl__pipe_next(pl__pg *g, const char *sql, PGresult **keep) {
  PGresult *res = PQgetResult(g->conn);
  pl_err e = pl__result(g, res, sql);
  if (e == PL_OK && keep)
    *keep = res;
  else
    PQclear(res);
  while (res && (res = PQgetResult(g->conn)) != NULL)
    PQclear(res);
  return e;
}

void pl_pg_pipe_send(pl_pg_pipe *pp) {
  if (!pp->started || pp->synced || PQpipelineStatus(pp->g->conn) != PQ_PIPELINE_ON)
    return;
  pp->synced = 1;
  atomic_fetch_add(&pp->g->round_trips, 1);
  if (PQpipelineSync(pp->g->conn) != 1 && pp->err == PL_OK) /* it flushes: the server has them */
    pp->err = pl__result(pp->g, NULL, "pipeline sync");
}

/* One sync, then each statement's result in order (and the NULL that ends
 * it), then the sync's own: the connection is back out of pipeline mode.
 * However many statements: one round trip (/metrics counts it as one). */
pl_err pl_pg_pipe_end(pl_pg_pipe *pp) {
  pl__pg *g = pp->g;
  pl_err e = pp->err;
  if (!pp->started) { /* nothing sent */
    pp->res = pl_calloc(1, sizeof *pp->res);
    if (e != PL_OK)
      pl_pg_pipe_clear(pp);
    return e;
  }
  if (e == PL_OK || PQpipelineStatus(g->conn) == PQ_PIPELINE_ON) {
    pl_pg_pipe_send(pp);
    e = e == PL_OK ? pp->err : e;
    pp->res = pl_calloc((size_t)pp->n + 1, sizeof *pp->res);
    if (pp->lead) {
      pl_err el = pl__pipe_next(g, "BEGIN", NULL);
      e = e == PL_OK ? el : e;
    }
    for (int i = 0; i < pp->n; i++) {
      pl_err ei = pl__pipe_next(g, pp->sql[i], e == PL_OK ? &pp->res[i] : NULL);
      e = e == PL_OK ? ei : e;
    }
    PGresult *sync;
    while ((sync = PQgetResult(g->conn)) != NULL && PQresultStatus(sync) != PGRES_PIPELINE_SYNC)
      PQclear(sync);
    PQclear(sync);
    PQexitPipelineMode(g->conn);
  }
  if (e != PL_OK)
    pl_pg_pipe_clear(pp);
  return e;
}

void pl_pg_pipe_clear(pl_pg_pipe *pp) {
  for (int i = 0; pp->res && i < pp->n; i++)
    PQclear(pp->res[i]);
  pl_free(pp->res);
  pl_free(pp->sql);
  pp->res = NULL;
  pp->sql = NULL;
  pp->n = 0;
  pp->cap = 0;
}

pl_err pl_pg_q(pl__pg *g, PGresult **res, const char *sql, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  pl_err e = pl__vq(g, res, sql, fmt, ap);
  va_end(ap);
  return e;
}

pl_err pl_pg_u64(pl__pg *g, uint64_t *v, const char *sql, const char *fmt, ...) {
  PGresult *res;
  va_list ap;
  va_start(ap, fmt);
  pl_err e = pl__vq(g, &res, sql, fmt, ap);
  va_end(ap);
  *v = e == PL_OK && PQntuples(res) > 0 ? pl_pg_col_u64(res, 0, 0) : 0;
  PQclear(res);
  return e;
}

uint8_t *pl_pg_col_bytes(const PGresult *r, int row, int col, size_t *len) {
  *len = 0;
  if (PQgetisnull(r, row, col))
    return NULL;
  size_t n = 0;
  unsigned char *raw = PQunescapeBytea((const unsigned char *)PQgetvalue(r, row, col), &n);
  uint8_t *v = raw ? pl_memdup(raw, n) : NULL;
  *len = raw ? n : 0;
  PQfreemem(raw);
  return v;
}

char *pl_pg_array(const uint64_t *v, size_t n) {
  char *s = pl_malloc(n * 21 + 3), *p = s;
  *p++ = '{';
  for (size_t i = 0; i < n; i++)
    p += sprintf(p, "%s%llu", i ? "," : "", (unsigned long long)v[i]);
  *p++ = '}';
  *p = 0;
  return s;
}

/* ---- connection ------------------------------------------------------------------- */

/* (Re)connects. A multi-host string with target_session_attrs=read-write
 * lands on whichever host is the primary now: after a failover the same
 * string finds the promoted standby. */
static pl_err pl__connect(pl__pg *g) {
  if (g->conn)
    PQfinish(g->conn);
  g->conn = PQconnectdb(g->conninfo);
  g->epoch_told = 0; /* a new session has no parley.epoch */
  if (PQstatus(g->conn) != CONNECTION_OK) {
    pl_error("store: cannot connect to postgresql: %s", PQerrorMessage(g->conn));
    return PL_ERR_STORE;
  }
  /* Every session:
   * - idle_in_transaction_session_timeout: a node that stops
   *   mid-transaction (SIGSTOP, a hung host) would hold its row locks, and
   *   every node waiting on them would stall with it: the database ends
   *   such a transaction after 4 s idle (a running node sends its
   *   statements back to back; its own next statement then fails, a
   *   retryable error, and it reconnects). 4 s, not more: a client that
   *   gives up a silent node (3 s at most in the tests) and resumes
   *   elsewhere waits on those locks, and must be back within one
   *   heartbeat (10 s); cluster_fault_sigstop took 12 s under load with 10.
   * - client_connection_check_interval: a node killed while its statement
   *   waits on a lock is seen gone within a second and rolled back, rather
   *   than the statements piped behind it (a COMMIT among them) running
   *   once the lock comes.
   * A link (pl_pg_link) also gets statement_timeout: it copies to another
   * shard after its own store's commit, so a shard that hangs holds that
   * store up for 3 s at most, after which the sweep retries. */
  char set[320];
  snprintf(set, sizeof set, "%s%s",
           "SET synchronous_commit = on; SET client_min_messages = warning;"
           " SET idle_in_transaction_session_timeout = '4s'; SET client_connection_check_interval = '1s'",
           g->is_link ? "; SET statement_timeout = '3s'" : "");
  PGresult *res = PQexec(g->conn, set);
  pl_err e = PQresultStatus(res) == PGRES_COMMAND_OK ? PL_OK : PL_ERR_STORE;
  PQclear(res);
  return e;
}

/* The hot statements, parsed and planned once per connection (after the
 * migrations, which create what they name). */
static pl_err pl__prepare(pl__pg *g) {
  const pl_pg_stmt *(*tables[])(size_t *) = {pl_pg_batch_stmts, pl_pg_queue_stmts, pl_pg_relay_stmts};
  for (size_t k = 0; k < sizeof tables / sizeof tables[0]; k++) {
    size_t n;
    const pl_pg_stmt *st = tables[k](&n);
    for (size_t i = 0; i < n; i++) {
      PGresult *res = PQprepare(g->conn, st[i].name, st[i].sql, 0, NULL);
      pl_err e = pl__result(g, res, st[i].sql);
      PQclear(res);
      if (e != PL_OK)
        return e;
    }
  }
  return PL_OK;
}

/* Between transactions while down: one attempt when its time has come. */
static pl_err pl__reconnect(pl__pg *g) {
  uint64_t now = pl_now_ms();
  if (now < g->retry_at_ms)
    return PL_ERR_STORE;
  if (pl__connect(g) != PL_OK || pl__prepare(g) != PL_OK) {
    g->backoff_ms = g->backoff_ms ? g->backoff_ms * 2 : PL__BACKOFF_MIN_MS;
    if (g->backoff_ms > PL__BACKOFF_MAX_MS)
      g->backoff_ms = PL__BACKOFF_MAX_MS;
    g->retry_at_ms = now + g->backoff_ms;
    return PL_ERR_STORE;
  }
  pl_info("store: connected to postgresql again");
  g->backoff_ms = 0;
  atomic_store(&g->down, 0);
  return PL_OK;
}

pl__pg *pl_pg_link(pl__pg *g, unsigned j) {
  pl__pg *l = g->links && j < g->nshards ? g->links[j] : NULL;
  if (!l || (atomic_load(&l->down) && pl__reconnect(l) != PL_OK))
    return NULL;
  return l;
}

/* ---- the vtable --------------------------------------------------------------------- */

typedef pl_err (*pl__exec_fn)(pl__pg *g, pl_store_req *r);

/* The backend's third of the table of ops (pl_store_ops.c and
 * pl_store_valid.c have the others): what runs each op. */
static const pl__exec_fn pl__ops[] = {
    [PL_STORE_REGISTER] = pl_pg_acct_register,
    [PL_STORE_GET_USER] = pl_pg_acct_get_user,
    [PL_STORE_LOGIN_DEVICE] = pl_pg_acct_login_device,
    [PL_STORE_RESUME] = pl_pg_acct_resume,
    [PL_STORE_LOGOUT] = pl_pg_acct_logout,
    [PL_STORE_SEND] = pl_pg_conv_send,
    [PL_STORE_FETCH] = pl_pg_queue_fetch,
    [PL_STORE_ACK] = pl_pg_queue_ack,
    [PL_STORE_MARK_READ] = pl_pg_conv_mark_read,
    [PL_STORE_SETTINGS] = pl_pg_acct_settings,
    [PL_STORE_UNREAD] = pl_pg_conv_unread,
    [PL_STORE_CONTACTS] = pl_pg_social_contacts,
    [PL_STORE_BLOCK] = pl_pg_social_block,
    [PL_STORE_PRESENCE] = pl_pg_social_presence,
    [PL_STORE_SEEN] = pl_pg_social_seen,
    [PL_STORE_TYPING] = pl_pg_social_typing,
    [PL_STORE_DEVICES] = pl_pg_acct_devices,
    [PL_STORE_GROUP_CREATE] = pl_pg_group_create,
    [PL_STORE_GROUP_UPDATE] = pl_pg_group_update,
    [PL_STORE_GROUP_LIST] = pl_pg_group_list,
    [PL_STORE_GROUP_RECEIPTS] = pl_pg_group_receipts,
    [PL_STORE_GROUP_DEVICES] = pl_pg_group_devices,
    [PL_STORE_MEDIA_AUTH] = pl_pg_media_auth,
    [PL_STORE_MEDIA_PUT] = pl_pg_media_put,
    [PL_STORE_MEDIA_GET] = pl_pg_media_get,
    [PL_STORE_PUSH_TOKEN] = pl_pg_push_token,
    [PL_STORE_PUSH_TOKENS] = pl_pg_push_tokens,
    [PL_STORE_PUSH_ENQUEUE] = pl_pg_push_enqueue,
    [PL_STORE_PUSH_CLAIM] = pl_pg_push_claim,
    [PL_STORE_PUSH_DONE] = pl_pg_push_done,
    [PL_STORE_STATS] = pl_pg_conv_stats,
    [PL_STORE_ADMIN] = pl_pg_admin,
};

static pl_err pl__pg_exec(void *be, pl_store_req *r) {
  int op = (int)r->op;
  pl__exec_fn fn = op >= 0 && (size_t)op < sizeof pl__ops / sizeof pl__ops[0] ? pl__ops[op] : NULL;
  if (!fn)
    pl_error("store: postgresql has no operation %d (%s)", op, pl_store_op_name(op));
  if (!fn || !pl_store_req_valid(r)) {
    r->status = PL_ERR_INVALID_ARGUMENT;
    return PL_OK;
  }
  return fn(be, r);
}

static pl_err pl__pg_begin(void *be) {
  pl__pg *g = be;
  if (atomic_load(&g->down) && pl__reconnect(g) != PL_OK)
    return PL_ERR_STORE;
  /* READ COMMITTED: every counter is moved by an UPDATE (or a read FOR
   * UPDATE) that locks its row, so two nodes never take the same seq or
   * qid, and nothing else needs a snapshot over the whole batch. BEGIN is
   * not a round trip of its own: it goes with the first statement. The
   * map's epoch is told now, before the store checks the batch's routes
   * against the map, and held until the transaction ends (epoch_held). */
  g->epoch_held = 0;
  pl_pg_map_sync(g);
  g->epoch_held = 1;
  g->begin_pending = 1;
  return PL_OK;
}

/* The batch pipeline (pg_batch.c) takes the runs of plain 1:1 sends; any
 * other request runs alone, as exec would, after the writes before it
 * were read. The last run's writes stay pending: COMMIT follows them in
 * the same round trip (pl__pg_commit). */
static pl_err pl__pg_exec_batch(void *be, pl_store_req *batch) {
  pl__pg *g = be;
  pl_err e = PL_OK;
  for (pl_store_req *r = batch; e == PL_OK && r; r = r->next) {
    if (r->status != PL_OK)
      continue;
    if (pl_pg_batch_fits(g, r)) {
      e = pl_pg_batch_add(g, r);
      continue;
    }
    e = pl_pg_batch_run(g);
    if (e == PL_OK && pl_pg_batch_pending(g))
      e = pl_pg_batch_sync(g, 0);
    if (e == PL_OK)
      e = pl__pg_exec(g, r);
  }
  return e == PL_OK ? pl_pg_batch_run(g) : e;
}

static pl_err pl__pg_commit(void *be) {
  pl__pg *g = be;
  PGresult *res = NULL;
  pl_err e = PL_OK;
  if (pl_pg_batch_pending(g)) {
    e = pl_pg_batch_sync(g, 1);  /* (checks the COMMIT's answer too) */
  } else if (g->begin_pending) { /* nothing ran: no transaction was opened */
    g->begin_pending = 0;
  } else {
    e = pl_pg_q(g, &res, "COMMIT", NULL);
    /* COMMIT of an aborted transaction answers ROLLBACK, not an error */
    if (e == PL_OK && strcmp(PQcmdStatus(res), "COMMIT") != 0)
      e = PL_ERR_STORE;
    PQclear(res);
  }
  g->epoch_held = 0; /* the transaction is over (its pipe, BEGIN included, went out held) */
  if (e == PL_OK)
    pl_pg_relay_after(g); /* committed: the copies owed to other shards */
  return e;
}

static void pl__pg_rollback(void *be) {
  pl__pg *g = be;
  g->epoch_held = 0;
  pl_pg_batch_drop(g); /* (reads what pending writes answered) */
  pl_pg_relay_drop(g);
  g->begin_pending = 0;
  if (!atomic_load(&g->down) && PQtransactionStatus(g->conn) != PQTRANS_IDLE)
    pl_pg_q(g, NULL, "ROLLBACK", NULL);
}

static int pl__pg_down(void *be) { return atomic_load(&((pl__pg *)be)->down); }

static void pl__pg_relayed(void *be, uint64_t *copies, uint64_t *swept) {
  const pl__pg *g = be;
  *copies = atomic_load(&g->copies);
  *swept = atomic_load(&g->swept);
}

/* The counter at offset off of g and of its links (the copies to other
 * shards are this store's work). */
static uint64_t pl__sum(pl__pg *g, size_t off) {
  uint64_t n = atomic_load((atomic_uint_fast64_t *)((char *)g + off));
  for (unsigned j = 0; g->links && j < g->nshards; j++)
    n += g->links[j] ? atomic_load((atomic_uint_fast64_t *)((char *)g->links[j] + off)) : 0;
  return n;
}

static uint64_t pl__pg_round_trips(void *be) { return pl__sum(be, offsetof(pl__pg, round_trips)); }

static uint64_t pl__pg_fenced(void *be) { return pl__sum(be, offsetof(pl__pg, fenced)); }

/* Expired queue rows, then the messages they pointed at, the group
 * histories' entries every member device has, then the dedup records
 * past the TTL. Messages of other nodes' sweeps are deleted once:
 * DELETE takes each row's lock. */
static pl_err pl__pg_expire(void *be, uint64_t now_ms, uint64_t *deleted) {
  pl__pg *g = be;
  PGresult *res = NULL;
  *deleted = 0;
  pl_err e = pl_pg_q(g, NULL,
                     "WITH d AS (DELETE FROM queue q USING messages m WHERE m.mid = q.mid AND m.expires <= $1"
                     " RETURNING q.device_id)" PL_PG_QUEUE_UNCOUNT,
                     "u", now_ms);
  if (e == PL_OK)
    e = pl_pg_q(g, &res, "DELETE FROM messages WHERE expires <= $1", "u", now_ms);
  if (e == PL_OK)
    *deleted = strtoull(PQcmdTuples(res), NULL, 10);
  PQclear(res);
  if (e == PL_OK) /* what every member device of a group has (pg_gtrim.c) */
    e = pl_pg_gtrim(g, deleted);
  if (e == PL_OK)
    e = pl_pg_q(g, NULL, "DELETE FROM dedup WHERE server_ts <= $1", "u",
                pl_retention_dedup_cut(g->ttl_ms, now_ms));
  if (e == PL_OK && g->nshards > 1) /* copies owed of messages gone by now: none is needed */
    e = pl_pg_q(g, NULL, "DELETE FROM outbox WHERE expires <= $1", "u", now_ms);
  if (e == PL_OK)
    e = pl_pg_acts_expire(g, now_ms);
  if (e == PL_OK)
    e = pl_pg_media_expire(g, now_ms);
  return e;
}

static void pl__pg_close(void *be) {
  pl__pg *g = be;
  if (!g)
    return;
  if (g->conn)
    PQfinish(g->conn);
  for (unsigned j = 0; g->links && j < g->nshards; j++)
    pl__pg_close(g->links[j]);
  pl_free(g->links);
  pl_pg_relay_free(g);
  pl_pg_batch_free(g);
  pl_free(g->conninfo);
  pl_free(g);
}

static pl_err pl__pg_open(void **out, const pl_store_config *cfg) {
  if (cfg->seal) { /* docs/operations.md, "Encryption at rest" */
    pl_error("store: --key-file (encryption at rest) works with the SQLite store only, not PostgreSQL;"
             " use PostgreSQL's own (disk or tablespace) encryption");
    *out = NULL;
    return PL_ERR_CONFIG;
  }
  pl__pg *g = pl_calloc(1, sizeof *g);
  pl_err e = PL_ERR_STORE;
  *out = NULL;
  g->conninfo = pl_strdup(cfg->conninfo ? cfg->conninfo : "");
  g->ttl_ms = cfg->ttl_ms;
  g->acts = cfg->acts;
  if (!g->acts.edit_ms) /* 0: the documented defaults (protocol.md 11.9) */
    g->acts.edit_ms = PL_ACTS_EDIT_WINDOW_S * 1000ull;
  if (!g->acts.delete_ms)
    g->acts.delete_ms = PL_ACTS_DELETE_WINDOW_S * 1000ull;
  g->max_devices = cfg->max_devices;
  g->max_queue = cfg->max_queue;
  g->rules = cfg->rules;
  g->max_group = cfg->max_group ? cfg->max_group : 100000u;
  g->group_detail = cfg->group_detail;
  g->online = cfg->online;
  g->online_ud = cfg->online_ud;
  g->media_ttl_ms = pl_retention_media_ttl(cfg->media_ttl_ms, cfg->ttl_ms);
  /* cfg->blob_gone, blob_exists: not for this store, whose blobs are in its
   * own database (pl_blob_pg) and go in its own transactions (pg_media.c) */
  g->shard = cfg->shard;
  g->nshards = cfg->nshards > 1 ? cfg->nshards : 1;
  g->map = g->nshards > 1 ? cfg->shardmap : NULL;
  if (g->nshards > 1 && cfg->shard_conninfo) { /* connected at first use (pl_pg_link) */
    g->links = pl_calloc(g->nshards, sizeof *g->links);
    for (unsigned j = 0; j < g->nshards; j++) {
      if (j == g->shard)
        continue;
      pl__pg *l = g->links[j] = pl_calloc(1, sizeof *l);
      l->conninfo = pl_strdup(cfg->shard_conninfo[j]);
      l->is_link = 1;
      l->shard = j;
      l->nshards = g->nshards;
      l->ttl_ms = g->ttl_ms;
      l->map = cfg->shardmap;
      atomic_init(&l->down, 1);
    }
  }
  if (pl__connect(g) != PL_OK || pl_pg_schema_migrate(g) != PL_OK)
    goto out;
  unsigned base = g->map ? pl_shardmap_base(g->map) : 0; /* shard 0, opened first, gives it */
  if ((e = pl_pg_schema_shard(g, g->shard, g->nshards, &base)) != PL_OK || (e = pl__prepare(g)) != PL_OK)
    goto out;
  if (g->map && !g->shard)
    pl_shardmap_set_base(g->map, base);
  if (g->map && (e = pl_pg_map_load(g)) != PL_OK) /* buckets moved before this server started */
    goto out;
  e = PL_ERR_STORE;
  pl_info("store: postgresql backend on %s:%s, database %s", PQhost(g->conn), PQport(g->conn), PQdb(g->conn));
  *out = g;
  g = NULL;
  e = PL_OK;
out:
  pl__pg_close(g);
  return e;
}

pl__pg *pl_pg_session(const char *conninfo, unsigned shard, unsigned nshards, unsigned *base) {
  pl__pg *g = pl_calloc(1, sizeof *g);
  g->conninfo = pl_strdup(conninfo);
  g->shard = shard;
  g->nshards = nshards;
  if (pl__connect(g) != PL_OK || pl_pg_schema_migrate(g) != PL_OK ||
      pl_pg_schema_shard(g, shard, nshards, base) != PL_OK || pl__prepare(g) != PL_OK) {
    pl__pg_close(g);
    return NULL;
  }
  return g;
}

void pl_pg_session_free(pl__pg *g) { pl__pg_close(g); }

const pl_store_backend pl_store_pg = {
    .name = "postgresql",
    .queue_exact = 1, /* devices.next_qid: gap-free per device, several writers */
    /* the database is the operator's PostgreSQL: its own tools copy it
     * consistently, with the WAL for point-in-time recovery */
    .backup_instead = "the store is PostgreSQL: back it up with pg_dump (a logical copy) or pg_basebackup"
                      " with WAL archiving (point-in-time recovery); docs/operations.md, Backups",
    .open = pl__pg_open,
    .close = pl__pg_close,
    .begin = pl__pg_begin,
    .exec = pl__pg_exec,
    .exec_batch = pl__pg_exec_batch,
    .commit = pl__pg_commit,
    .rollback = pl__pg_rollback,
    .expire = pl__pg_expire,
    .relay = pl_pg_relay_sweep,
    .down = pl__pg_down,
    .round_trips = pl__pg_round_trips,
    .fenced = pl__pg_fenced,
    .relayed = pl__pg_relayed,
};

const pl_store_backend *pl_store_backend_for(const char *store) {
  if (store &&
      (!strncmp(store, "postgresql://", 13) || !strncmp(store, "postgres://", 11) || strchr(store, '=')))
    return &pl_store_pg;
  return &pl_store_sqlite;
}
