/* pg_relay: 1:1 messages between users of two shards (docs/scaling.md 2).
 *
 * A plain send between users homed on two shards runs on the shard of the
 * pair's lower bucket (pl_store_shard.c), the conversation's. There the
 * batch (pg_batch.c) commits it as on one shard (dedup, seq, the message
 * queued for the devices of that shard), plus an outbox row: the message
 * as the other shard stores it (T1). That commit is the send: the SendAck
 * follows it. The copy (T2) is a transaction on the other shard, made by
 * the same store right after its commit (pl_pg_relay_after), or later by
 * any node's sweep (pl_pg_relay_sweep, once a second, rows older than
 * PL__GRACE_MS) when the node died or the other shard was away between T1
 * and T2.
 *
 * Exactly once, in order: T2 queues a copy only if its seq is past its
 * conversation's relay.upto on the receiving shard, which it moves (under
 * that row's lock: a second copier finds it moved and adds nothing). A
 * copier reads the outbox rows of whole conversations FOR UPDATE, in seq
 * order, and deletes them after T2 committed: an earlier seq of the
 * conversation committed before a later one (the conversation's row lock
 * orders T1s), so a copier that sees seq n sees every seq before it that
 * is not copied yet, and copies them first. A copier that waits on
 * another's rows finds them gone once that one committed. */
#include <stdio.h>

#include "pg_internal.h"

#define PL__GRACE_MS 2000u  /* the sweep leaves younger rows to their own node */
#define PL__SWEEP_CONVS 256 /* conversations per sweep transaction */

/* A send of the open transaction whose copy is owed to shard target. */
typedef struct pl__owed {
  pl_store_req *r;
  unsigned target;
} pl__owed;

struct pl_pg_relay {
  pl__owed *v;
  size_t n, cap;
};

/* The outbox's columns as a copier reads them, in this order. */
enum {
  PL__C_CONV,
  PL__C_SEQ,
  PL__C_UID,
  PL__C_SENDER,
  PL__C_FROM,
  PL__C_FROM_DEVICE,
  PL__C_FROM_DID,
  PL__C_ID,
  PL__C_BODY,
  PL__C_CLIENT_TS,
  PL__C_SERVER_TS,
  PL__C_EXPIRES,
  PL__C_ACT,
  PL__NCOLS
};
#define PL__COLS                                                                                         \
  "conv, seq, uid, sender_uid, from_name, from_device, from_did, client_id, body, client_ts, server_ts," \
  " expires, act"

/* T2's copy of one row ($1..$13: the columns above): the guard moves, or
 * nothing happens; the receiving user's read watermarks as on one shard
 * (the sender's: read up to it; the peer's: a row if none); the message
 * and its queue rows for the user's signed-in devices but the sending
 * one, read now (a device signed in since T1 gets it too). Returns
 * (device_id, qid, mid) rows. */
#define PL__COPY_SQL                                                                                        \
  "WITH g AS (INSERT INTO relay(conv, upto) VALUES($1, $2::bigint) ON CONFLICT(conv) DO UPDATE"             \
  " SET upto = EXCLUDED.upto WHERE relay.upto < EXCLUDED.upto RETURNING 1),"                                \
  " tg AS (SELECT id FROM devices WHERE user_id = $3::bigint AND token_hash IS NOT NULL AND id <> "         \
  "$7::bigint"                                                                                              \
  " AND EXISTS(SELECT 1 FROM g)),"                                                                          \
  " rm AS (" PL_PG_READS_MINE_IF(                                                                           \
      "$3::bigint", "$1", "$2::bigint",                                                                     \
      "$3::bigint = $4::bigint") "),"                                                                       \
                                 " rp AS (" PL_PG_READS_PEER(                                               \
                                     "$4::bigint", "$3::bigint",                                            \
                                     "$1") "),"                                                             \
                                           " m AS (INSERT INTO messages(conv, seq, sender_uid, from_name, " \
                                           "from_device, client_id, body, client_ts,"                       \
                                           " server_ts, expires, refs, act) SELECT $1, $2::bigint, "        \
                                           "$4::bigint, $5, $6, $8, $9::bytea, $10::bigint,"                \
                                           " $11::bigint, $12::bigint, (SELECT count(*) FROM tg), "         \
                                           "$13::bytea WHERE EXISTS(SELECT 1 FROM tg) RETURNING mid),"      \
                                           " t AS (UPDATE devices SET next_qid = next_qid + 1 WHERE id IN " \
                                           "(SELECT id FROM tg) AND EXISTS(SELECT 1 FROM m)"                \
                                           " RETURNING id, next_qid) INSERT INTO queue(device_id, qid, "    \
                                           "mid) SELECT id, next_qid, (SELECT mid FROM m)"                  \
                                           " FROM t RETURNING device_id, qid, mid"

enum { PL__OUTBOX, PL__DEVLOCK, PL__COPY, PL__OWED, PL__OLD, PL__DONE, PL__NSTMTS };
static const pl_pg_stmt pl__st[PL__NSTMTS] = {
    [PL__OUTBOX] = {"pl_r_outbox",
                    "INSERT INTO outbox(target, conv, seq, created, uid, sender_uid, from_name, from_device,"
                    " from_did, client_id, body, client_ts, server_ts, expires, act)"
                    " VALUES($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)"},
    /* the devices T2 queues for, locked first and in id order, as the
     * batch's T1 locks them: no deadlock with the receiving shard's sends */
    [PL__DEVLOCK] = {"pl_r_devlock",
                     "SELECT 1 FROM devices WHERE user_id = ANY($1::bigint[]) ORDER BY id FOR NO KEY UPDATE"},
    [PL__COPY] = {"pl_r_copy", PL__COPY_SQL},
    /* after a commit: every row owed to target of its conversations */
    [PL__OWED] = {"pl_r_owed", "SELECT " PL__COLS " FROM outbox WHERE target = $1 AND conv = ANY($2::text[])"
                               " ORDER BY conv, seq FOR UPDATE"},
    /* the sweep: the rows of conversations with a row older than $2 */
    [PL__OLD] = {"pl_r_old",
                 "SELECT " PL__COLS " FROM outbox WHERE target = $1 AND conv IN (SELECT conv FROM outbox"
                 " WHERE target = $1 AND created <= $2 LIMIT 256) ORDER BY conv, seq LIMIT 4096"
                 " FOR UPDATE"},
    [PL__DONE] = {"pl_r_done", "DELETE FROM outbox WHERE target = $1 AND conv = $2 AND seq <= $3"},
};

const pl_pg_stmt *pl_pg_relay_stmts(size_t *n) {
  *n = PL__NSTMTS;
  return pl__st;
}

void pl_pg_relay_add(pl__pg *g, pl_pg_pipe *p, pl_store_req *r, unsigned target, uint64_t uid,
                     uint64_t expires) {
  const pl_msg *m = &r->u.send.out.msg;
  pl_pg_pipe_addp(p, &pl__st[PL__OUTBOX], "isuuuussusbuuub", (int)target, m->conv, m->seq, pl_now_ms(), uid,
                  r->user_id, m->from, m->from_device, r->device_id, m->id, (const void *)m->body,
                  m->body_len, m->client_ts, m->server_ts, pl_pg_clamp(expires), (const void *)m->act,
                  m->act_len);
  if (!g->relay)
    g->relay = pl_calloc(1, sizeof *g->relay);
  struct pl_pg_relay *o = g->relay;
  o->v = pl_pg_reserve(o->v, o->n, &o->cap, sizeof *o->v);
  o->v[o->n++] = (pl__owed){r, target};
}

void pl_pg_relay_drop(pl__pg *g) {
  if (g->relay)
    g->relay->n = 0;
}

void pl_pg_relay_free(pl__pg *g) {
  if (g->relay)
    pl_free(g->relay->v);
  pl_free(g->relay);
  g->relay = NULL;
}

/* ---- a copier ------------------------------------------------------------------ */

/* What a copier copied: rows (the outbox's) and, per row, its queue rows
 * on the other shard (NULL: a copy already there, none queued). */
typedef struct pl__copied {
  PGresult *rows;
  PGresult **queued;
  int n;
} pl__copied;

static void pl__copied_clear(pl__copied *c) {
  for (int i = 0; c->queued && i < c->n; i++)
    PQclear(c->queued[i]);
  pl_free(c->queued);
  PQclear(c->rows);
  memset(c, 0, sizeof *c);
}

static const char *pl__val(const PGresult *res, int row, int col) {
  return PQgetisnull(res, row, col) ? NULL : PQgetvalue(res, row, col);
}

/* The users whose devices the rows queue for, as a bigint[] literal. */
static char *pl__uids(const PGresult *rows) {
  int n = PQntuples(rows);
  uint64_t *v = pl_malloc(((size_t)n + 1) * sizeof *v);
  size_t k = 0;
  for (int i = 0; i < n; i++) {
    uint64_t u = pl_pg_col_u64(rows, i, PL__C_UID);
    size_t j = 0;
    while (j < k && v[j] != u)
      j++;
    if (j == k)
      v[k++] = u;
  }
  char *arr = pl_pg_array(v, k);
  pl_free(v);
  return arr;
}

/* T2 on the link l: one transaction, one round trip (the values go as
 * the outbox's text, bytea as its hex form). */
static pl_err pl__t2(pl__pg *l, pl__copied *c) {
  pl_pg_pipe p;
  char *uids = pl__uids(c->rows);
  l->begin_pending = 1;
  pl_pg_pipe_begin(&p, l);
  pl_pg_pipe_addp(&p, &pl__st[PL__DEVLOCK], "s", uids);
  pl_free(uids);
  for (int i = 0; i < c->n; i++) {
    const PGresult *r = c->rows;
    pl_pg_pipe_addp(&p, &pl__st[PL__COPY], "sssssssssssss", pl__val(r, i, PL__C_CONV),
                    pl__val(r, i, PL__C_SEQ), pl__val(r, i, PL__C_UID), pl__val(r, i, PL__C_SENDER),
                    pl__val(r, i, PL__C_FROM), pl__val(r, i, PL__C_FROM_DEVICE),
                    pl__val(r, i, PL__C_FROM_DID), pl__val(r, i, PL__C_ID), pl__val(r, i, PL__C_BODY),
                    pl__val(r, i, PL__C_CLIENT_TS), pl__val(r, i, PL__C_SERVER_TS),
                    pl__val(r, i, PL__C_EXPIRES), pl__val(r, i, PL__C_ACT));
  }
  int ci = pl_pg_pipe_add(&p, "COMMIT", NULL);
  pl_err e = pl_pg_pipe_end(&p);
  /* COMMIT of an aborted transaction answers ROLLBACK, not an error */
  if (e == PL_OK && strcmp(PQcmdStatus(p.res[ci]), "COMMIT") != 0)
    e = PL_ERR_STORE;
  if (e == PL_OK) {
    c->queued = pl_calloc((size_t)c->n + 1, sizeof *c->queued);
    for (int i = 0; i < c->n; i++) {
      c->queued[i] = p.res[1 + i];
      p.res[1 + i] = NULL;
    }
  }
  pl_pg_pipe_clear(&p);
  if (e != PL_OK && !atomic_load(&l->down) && PQtransactionStatus(l->conn) != PQTRANS_IDLE)
    pl_pg_q(l, NULL, "ROLLBACK", NULL);
  return e;
}

/* The rows copied are deleted from the outbox (each conversation's up to
 * its last seq copied), and the source's transaction commits. */
static pl_err pl__done(pl__pg *g, unsigned target, const PGresult *rows) {
  pl_pg_pipe p;
  int n = PQntuples(rows);
  pl_pg_pipe_begin(&p, g);
  for (int i = 0; i < n; i++)
    if (i + 1 == n || strcmp(PQgetvalue(rows, i, PL__C_CONV), PQgetvalue(rows, i + 1, PL__C_CONV)) != 0)
      pl_pg_pipe_addp(&p, &pl__st[PL__DONE], "iss", (int)target, PQgetvalue(rows, i, PL__C_CONV),
                      PQgetvalue(rows, i, PL__C_SEQ));
  int ci = pl_pg_pipe_add(&p, "COMMIT", NULL);
  pl_err e = pl_pg_pipe_end(&p);
  if (e == PL_OK && strcmp(PQcmdStatus(p.res[ci]), "COMMIT") != 0)
    e = PL_ERR_STORE;
  pl_pg_pipe_clear(&p);
  return e;
}

/* Copies to shard target the outbox rows the statement sel selects (with
 * its second parameter arg; FOR UPDATE, in a transaction of g's that ends
 * here). *c: what was copied (its rows' copies committed on target), even
 * if the outbox rows could not be deleted (a later copier skips them). */
static pl_err pl__copy(pl__pg *g, unsigned target, int sel, const char *arg, pl__copied *c) {
  pl_pg_pipe p;
  memset(c, 0, sizeof *c);
  pl__pg *l = pl_pg_link(g, target);
  if (!l)
    return PL_ERR_STORE;
  g->begin_pending = 1;
  pl_pg_pipe_begin(&p, g);
  pl_pg_pipe_addp(&p, &pl__st[sel], "is", (int)target, arg);
  pl_err e = pl_pg_pipe_end(&p);
  if (e == PL_OK) {
    c->rows = p.res[0];
    p.res[0] = NULL;
    c->n = PQntuples(c->rows);
  }
  pl_pg_pipe_clear(&p);
  for (int tries = 0; e == PL_OK && c->n && tries < 3; tries++)
    if ((e = pl__t2(l, c)) != PL_ERR_AGAIN) /* AGAIN: a deadlock there; it rolled back */
      break;
  if (e == PL_OK && c->n) {
    if (pl__done(g, target, c->rows) != PL_OK) {
      pl_warn("store: shard %u: copies to shard %u made, but their outbox rows stay (copied again, skipped)",
              g->shard, target);
      if (!atomic_load(&g->down) && PQtransactionStatus(g->conn) != PQTRANS_IDLE)
        pl_pg_q(g, NULL, "ROLLBACK", NULL);
    }
  } else if (e == PL_OK) {
    e = pl_pg_q(g, NULL, "COMMIT", NULL);
  }
  if (e != PL_OK) {
    if (!atomic_load(&g->down) && PQtransactionStatus(g->conn) != PQTRANS_IDLE)
      pl_pg_q(g, NULL, "ROLLBACK", NULL);
    pl__copied_clear(c);
  }
  g->begin_pending = 0;
  return e;
}

/* A copy's message, as the device fetches it. */
static void pl__msg(const PGresult *r, int i, pl_msg *m) {
  memset(m, 0, sizeof *m);
  m->conv = pl_pg_col_str(r, i, PL__C_CONV);
  m->seq = pl_pg_col_u64(r, i, PL__C_SEQ);
  m->from = pl_pg_col_str(r, i, PL__C_FROM);
  m->from_device = pl_pg_col_str(r, i, PL__C_FROM_DEVICE);
  m->id = pl_pg_col_str(r, i, PL__C_ID);
  m->body = pl_pg_col_bytes(r, i, PL__C_BODY, &m->body_len);
  m->client_ts = pl_pg_col_u64(r, i, PL__C_CLIENT_TS);
  m->server_ts = pl_pg_col_u64(r, i, PL__C_SERVER_TS);
  m->act = pl_pg_col_bytes(r, i, PL__C_ACT, &m->act_len);
}

/* A copy's queue rows as (devices, qids) arrays (pl_free both). */
static size_t pl__queued(const PGresult *q, uint64_t **t, uint64_t **qids) {
  size_t n = (size_t)PQntuples(q);
  *t = pl_malloc((n + 1) * sizeof **t);
  *qids = pl_malloc((n + 1) * sizeof **qids);
  for (size_t i = 0; i < n; i++) {
    (*t)[i] = pl_pg_col_u64(q, (int)i, 0);
    (*qids)[i] = pl_pg_col_u64(q, (int)i, 1);
  }
  return n;
}

/* ---- after a commit ---------------------------------------------------------- */

/* A text[] literal of the conversations of the sends owed to target. */
static char *pl__convs(const struct pl_pg_relay *o, unsigned target) {
  size_t len = 3;
  for (size_t i = 0; i < o->n; i++)
    if (o->v[i].target == target)
      len += 2 * strlen(o->v[i].r->u.send.out.conv) + 3;
  char *s = pl_malloc(len), *p = s;
  *p++ = '{';
  for (size_t i = 0; i < o->n; i++) {
    if (o->v[i].target != target)
      continue;
    if (p > s + 1)
      *p++ = ',';
    *p++ = '"';
    for (const char *c = o->v[i].r->u.send.out.conv; *c; c++) {
      if (*c == '"' || *c == '\\')
        *p++ = '\\';
      *p++ = *c;
    }
    *p++ = '"';
  }
  *p++ = '}';
  *p = 0;
  return s;
}

/* A copy's devices join its send's targets (delivered as the send's);
 * another node's send copied along goes as an event of the first one's. */
static void pl__give(struct pl_pg_relay *o, unsigned target, const pl__copied *c, int i) {
  const PGresult *q = c->queued[i];
  if (!PQntuples(q))
    return;
  const char *conv = PQgetvalue(c->rows, i, PL__C_CONV);
  uint64_t seq = pl_pg_col_u64(c->rows, i, PL__C_SEQ);
  pl_store_req *first = NULL;
  for (size_t k = 0; k < o->n; k++) {
    pl_store_send_req *s = &o->v[k].r->u.send;
    if (o->v[k].target != target)
      continue;
    first = first ? first : o->v[k].r;
    if (s->out.seq != seq || strcmp(s->out.conv, conv) != 0)
      continue;
    uint64_t *t, *qids;
    size_t n = pl__queued(q, &t, &qids), had = s->out.ntargets;
    s->out.targets = pl_realloc(s->out.targets, (had + n + 1) * sizeof *t);
    s->out.qids = pl_realloc(s->out.qids, (had + n + 1) * sizeof *qids);
    memcpy(s->out.targets + had, t, n * sizeof *t);
    memcpy(s->out.qids + had, qids, n * sizeof *qids);
    s->out.ntargets = had + n;
    if (!had)
      s->out.msg.qid = qids[0];
    pl_free(t);
    pl_free(qids);
    return;
  }
  if (!first)
    return;
  uint64_t *t, *qids;
  size_t n = pl__queued(q, &t, &qids);
  pl_store_event *ev = pl_store_event_add(first, qids[0], 0, "", 0, "", 0, 0, t, n);
  pl_msg_clear(&ev->msg);
  pl__msg(c->rows, i, &ev->msg);
  ev->msg.qid = qids[0];
  ev->qids = qids;
}

void pl_pg_relay_after(pl__pg *g) {
  struct pl_pg_relay *o = g->relay;
  for (size_t i = 0; o && i < o->n; i++) {
    unsigned target = o->v[i].target;
    size_t k = 0;
    while (k < i && o->v[k].target != target)
      k++;
    if (k < i) /* that target was done with the first of its sends */
      continue;
    char *convs = pl__convs(o, target);
    pl__copied c;
    pl_err e = pl__copy(g, target, PL__OWED, convs, &c);
    pl_free(convs);
    if (e != PL_OK) {
      pl_warn("store: shard %u: copying to shard %u failed (%s): the sweep copies them", g->shard, target,
              pl_err_name(e));
      continue;
    }
    for (int r = 0; r < c.n; r++)
      pl__give(o, target, &c, r);
    pl__copied_clear(&c);
  }
  pl_pg_relay_drop(g);
}

/* ---- the sweep --------------------------------------------------------------- */

void pl_pg_relay_sweep(void *be,
                       void (*deliver)(void *ud, const pl_msg *m, const uint64_t *t, const uint64_t *qids,
                                       size_t n),
                       void *ud) {
  pl__pg *g = be;
  if (!g->links || atomic_load(&g->down))
    return;
  char cut[24];
  snprintf(cut, sizeof cut, "%llu", (unsigned long long)(pl_now_ms() - PL__GRACE_MS));
  for (unsigned target = 0; target < g->nshards; target++) {
    if (target == g->shard)
      continue;
    for (int rounds = 0; rounds < 8; rounds++) { /* a bounded share of the store thread's time */
      pl__copied c;
      if (pl__copy(g, target, PL__OLD, cut, &c) != PL_OK || !c.n) {
        pl__copied_clear(&c);
        break;
      }
      pl_info("store: shard %u: the sweep copied %d messages to shard %u", g->shard, c.n, target);
      for (int i = 0; i < c.n; i++) {
        if (!PQntuples(c.queued[i]))
          continue;
        pl_msg m;
        uint64_t *t, *qids;
        size_t n = pl__queued(c.queued[i], &t, &qids);
        pl__msg(c.rows, i, &m);
        m.qid = qids[0];
        deliver(ud, &m, t, qids, n);
        pl_msg_clear(&m);
        pl_free(t);
        pl_free(qids);
      }
      pl__copied_clear(&c);
    }
  }
}
