/* pg_queue: messages and device queues on PostgreSQL: queueing with
 * per-device gap-free positions, the queue limits, events (receipts, read
 * syncs) with their coalescing, fetch and ack. */
#include "../../rules/pl_receipts.h"
#include "pg_internal.h"

uint64_t *pl_pg_queue_devs_except(const pl_pg_user *u, uint64_t skip, size_t *n) {
  uint64_t *t = pl_malloc((u->ndevs + 1) * sizeof *t);
  *n = 0;
  for (size_t i = 0; i < u->ndevs; i++)
    if (u->devs[i] != skip)
      t[(*n)++] = u->devs[i];
  return t;
}

/* Each target's position from a PL_PG_QUEUE_PUT result, parallel to t. */
uint64_t *pl_pg_queue_qids(const PGresult *res, const uint64_t *t, size_t n) {
  uint64_t *qids = pl_calloc(n + 1, sizeof *qids);
  for (int row = 0; row < PQntuples(res); row++) {
    uint64_t dev = pl_pg_col_u64(res, row, 0), qid = pl_pg_col_u64(res, row, 1);
    for (size_t i = 0; i < n; i++)
      if (t[i] == dev)
        qids[i] = qid;
  }
  return qids;
}

pl_err pl_pg_queue_put(pl__pg *g, const uint64_t *t, size_t n, uint64_t mid, uint64_t **qids) {
  PGresult *res;
  char *arr = pl_pg_array(t, n);
  pl_err e = pl_pg_q(g, &res, "WITH " PL_PG_QUEUE_PUT("$1", "$2::bigint"), "su", arr, mid);
  pl_free(arr);
  *qids = e == PL_OK ? pl_pg_queue_qids(res, t, n) : NULL;
  PQclear(res);
  return e;
}

/* ---- the queue limits (pl_store_rules.queue_admit) ---------------------------- */

typedef struct pl__share_arg {
  pl__pg *g;
  uint64_t dev, sender, pending; /* pending: rows the open batch queues there, not yet written */
} pl__share_arg;

static pl_err pl__share_count(void *arg, uint64_t *n) {
  pl__share_arg *a = arg;
  pl_err e = pl_pg_u64(a->g, n,
                       "SELECT count(*) FROM queue q JOIN messages m ON m.mid = q.mid"
                       " WHERE q.device_id = $1 AND m.sender_uid = $2 AND m.kind = 0",
                       "uu", a->dev, a->sender);
  *n += a->pending;
  return e;
}

pl_err pl_pg_queue_admit(pl__pg *g, const pl_pg_user *me, const uint64_t *t, const uint64_t *lens,
                         const uint64_t *mine, size_t n, int *full) {
  pl_err e = PL_OK;
  *full = 0;
  for (size_t i = 0; i < n && !*full; i++) {
    uint64_t len = lens[i];
    if (!g->rules.queue_admit) {
      *full = len >= g->max_queue;
      continue;
    }
    pl__share_arg a = {g, t[i], me->id, mine ? mine[i] : 0};
    e = g->rules.queue_admit(g->rules.ud, len, pl_pg_user_has_dev(me, t[i]), pl__share_count, &a);
    *full = e == PL_ERR_QUEUE_FULL;
    if (e != PL_OK && !*full)
      break;
    e = PL_OK;
  }
  return e;
}

pl_err pl_pg_queue_full(pl__pg *g, const pl_pg_user *me, const uint64_t *t, size_t n, int *full) {
  PGresult *res;
  *full = 0;
  if (!pl_pg_queue_limited(g) || !n)
    return PL_OK;
  /* every target's length in one statement */
  char *arr = pl_pg_array(t, n);
  pl_err e = pl_pg_q(
      g, &res, "SELECT d.id, " PL_PG_QUEUED("d") " FROM devices d WHERE d.id = ANY($1::bigint[])", "s", arr);
  pl_free(arr);
  if (e != PL_OK)
    return e;
  uint64_t *lens = pl_pg_queue_qids(res, t, n); /* (device, length) rows, like (device, qid) */
  PQclear(res);
  e = pl_pg_queue_admit(g, me, t, lens, NULL, n, full);
  pl_free(lens);
  return e;
}

/* ---- events: receipts and read syncs (docs/protocol.md 11.4) --------------- */

/* Records an event for the deliver hook (qid 0 and no qids: pushed to
 * connected devices, not stored). Takes t and qids over. */
static void pl__event_out(pl_store_req *r, int kind, const char *conv, uint64_t seq, const pl_pg_user *by,
                          uint64_t aux, uint64_t now, uint64_t *t, uint64_t *qids, size_t n) {
  pl_store_event_add(r, qids && n ? qids[0] : 0, kind, conv, seq, by->name, aux, now, t, n)->qids = qids;
}

/* A newer event of (conv, kind, by) replaces the pending one everywhere. */
static pl_err pl__event_coalesce(pl__pg *g, int kind, const char *conv, uint64_t by) {
  pl_err e = pl_pg_q(
      g, NULL,
      "WITH d AS (DELETE FROM queue WHERE mid IN (SELECT mid FROM messages WHERE conv = $1 AND kind = $2"
      " AND sender_uid = $3 AND kind <> 0) RETURNING device_id)" PL_PG_QUEUE_UNCOUNT,
      "siu", conv, kind, by);
  if (e == PL_OK)
    e = pl_pg_q(g, NULL,
                "DELETE FROM messages WHERE conv = $1 AND kind = $2 AND sender_uid = $3 AND kind <> 0", "siu",
                conv, kind, by);
  return e;
}

/* An event for targets (taken over): pushed at once to the connected
 * ones, queued durably for the others, replacing the pending one. */
pl_err pl_pg_queue_event(pl__pg *g, pl_store_req *r, int kind, const char *conv, uint64_t seq,
                         const pl_pg_user *by, uint64_t aux, uint64_t *t, size_t n) {
  uint64_t now = pl_now_ms(), mid = 0, *qids = NULL;
  uint64_t *live = pl_malloc((n + 1) * sizeof *live);
  size_t nlive = pl_receipts_split_live(t, &n, live, g->online, g->online_ud);
  if (nlive)
    pl__event_out(r, kind, conv, seq, by, aux, now, live, NULL, nlive);
  else
    pl_free(live);
  pl_err e = n && pl_receipts_replaces_pending(kind) ? pl__event_coalesce(g, kind, conv, by->id) : PL_OK;
  if (e == PL_OK && n)
    e = pl_pg_u64(
        g, &mid,
        "INSERT INTO messages(conv, seq, sender_uid, from_name, from_device, client_id, body, client_ts,"
        " server_ts, expires, refs, kind, aux) VALUES($1, $2, $3, $4, '', '', '', 0, $5, $6, $7, $8, $9)"
        " RETURNING mid",
        "suusuuuiu", conv, seq, by->id, by->name, now, pl_retention_expires(g->ttl_ms, now),
        pl_retention_msg_refs(n), kind, aux);
  if (e == PL_OK && n)
    e = pl_pg_queue_put(g, t, n, mid, &qids);
  if (e != PL_OK || !n) {
    pl_free(t);
    pl_free(qids);
    return e;
  }
  pl__event_out(r, kind, conv, seq, by, aux, now, t, qids, n);
  return PL_OK;
}

/* ---- fetch ---------------------------------------------------------------------- */

void pl_pg_queue_msg_row(const PGresult *res, int row, pl_msg *m) {
  memset(m, 0, sizeof *m);
  m->qid = pl_pg_col_u64(res, row, 0);
  m->conv = pl_pg_col_str(res, row, 1);
  m->seq = pl_pg_col_u64(res, row, 2);
  m->from = pl_pg_col_str(res, row, 3);
  m->from_device = pl_pg_col_str(res, row, 4);
  m->id = pl_pg_col_str(res, row, 5);
  m->body = pl_pg_col_bytes(res, row, 6, &m->body_len);
  m->client_ts = pl_pg_col_u64(res, row, 7);
  m->server_ts = pl_pg_col_u64(res, row, 8);
  m->kind = pl_pg_col_int(res, row, 9);
  m->aux = pl_pg_col_u64(res, row, 10);
  m->media = pl_pg_col_bytes(res, row, 11, &m->media_len);
  m->act = pl_pg_col_bytes(res, row, 12, &m->act_len);
}

/* A page bounded in entries and bytes, as on SQLite. */
pl_err pl_pg_queue_fetch(pl__pg *g, pl_store_req *r) {
  pl_store_fetch_req *x = &r->u.fetch;
  uint32_t limit = x->in.limit ? x->in.limit : PL_PG_FETCH_DEFAULT;
  size_t max_bytes = x->in.max_bytes ? x->in.max_bytes : PL_PG_FETCH_BYTES, bytes = 0;
  pl_pg_pipe p;
  /* signed in still? (in the same round trip: pl_store.h, FETCH) */
  pl_pg_pipe_begin(&p, g);
  pl_pg_pipe_add(&p, "SELECT 1 FROM devices WHERE id = $1 AND token_hash IS NOT NULL", "u", r->device_id);
  pl_pg_pipe_add(&p,
                 "SELECT q.qid, m.conv, m.seq, m.from_name, m.from_device, m.client_id, m.body, m.client_ts,"
                 " m.server_ts, m.kind, m.aux, m.media, m.act FROM queue q JOIN messages m ON m.mid = q.mid"
                 " WHERE q.device_id = $1 AND q.qid > $2 AND m.expires > $3 ORDER BY q.qid LIMIT $4",
                 "uuuu", r->device_id, x->in.after, pl_now_ms(), (uint64_t)limit + 1);
  pl_err e = pl_pg_pipe_end(&p);
  if (e == PL_OK && PQntuples(p.res[0]) == 0)
    r->status = PL_ERR_BAD_TOKEN;
  if (e != PL_OK || r->status != PL_OK) {
    pl_pg_pipe_clear(&p);
    return e;
  }
  PGresult *res = p.res[1];
  p.res[1] = NULL;
  pl_pg_pipe_clear(&p);
  int rows = PQntuples(res);
  x->out.msgs = pl_calloc((size_t)rows + 1, sizeof *x->out.msgs);
  for (int i = 0; i < rows; i++) {
    if (x->out.nmsgs == limit || bytes > max_bytes) {
      x->out.more = 1;
      break;
    }
    pl_msg *m = &x->out.msgs[x->out.nmsgs++];
    pl_pg_queue_msg_row(res, i, m);
    bytes += m->body_len + m->media_len + 64;
  }
  PQclear(res);
  return pl_pg_group_fetch(g, r, limit, max_bytes);
}

/* ---- ack -------------------------------------------------------------------------- */

/* Delivered receipts for an ack: once per conversation whose delivered
 * watermark of the acking user moves, to every device of the sender. */
static pl_err pl__delivered(pl__pg *g, pl_store_req *r) {
  PGresult *res;
  pl_pg_user *me = NULL, *sender = NULL;
  size_t nt;
  pl_err e = pl_pg_q(g, &res,
                     "SELECT m.conv, max(m.seq), m.sender_uid FROM queue q JOIN messages m ON m.mid = q.mid"
                     " WHERE q.device_id = $1 AND q.qid <= $2 AND m.kind = 0 AND m.sender_uid <> $3"
                     " GROUP BY m.conv, m.sender_uid",
                     "uuu", r->device_id, r->u.ack.in.upto, r->user_id);
  if (e != PL_OK)
    return e;
  if (PQntuples(res) > 0)
    e = pl_pg_user_get(g, r->user_id, &me);
  for (int i = 0; i < PQntuples(res) && e == PL_OK && me; i++) {
    const char *conv = PQgetvalue(res, i, 0);
    uint64_t seq = pl_pg_col_u64(res, i, 1);
    int moved = 0;
    e = pl_pg_conv_read_move(g, me->id, conv, 0, seq, &moved);
    if (e != PL_OK || !moved)
      continue;
    e = pl_pg_user_get(g, pl_pg_col_u64(res, i, 2), &sender);
    if (e == PL_OK && sender && pl_receipts_delivered_to_sender(pl_pg_user_blocks(me, sender->id))) {
      uint64_t *t = pl_pg_queue_devs_except(sender, 0, &nt);
      e = pl_pg_queue_event(g, r, PL_MSG_DELIVERED, conv, seq, me, 0, t, nt);
    }
    pl_pg_user_free(sender);
    sender = NULL;
  }
  PQclear(res);
  pl_pg_user_free(me);
  return e;
}

/* The queue rows go, each message loses a reference per row, and a
 * message with none left goes: two statements, whatever the number of
 * entries. Two devices acking one message on two nodes meet on the
 * message's row lock; whichever is second sees refs reach 0. */
pl_err pl_pg_queue_ack(pl__pg *g, pl_store_req *r) {
  PGresult *res;
  pl_err e = r->user_id ? pl__delivered(g, r) : PL_OK;
  if (e == PL_OK)
    e = pl_pg_group_ack(g, r);
  if (e == PL_OK)
    e = pl_pg_q(
        g, &res,
        "WITH d AS (DELETE FROM queue WHERE device_id = $1 AND qid <= $2 RETURNING mid),"
        " c AS (SELECT mid, count(*) AS n FROM d GROUP BY mid)"
        " UPDATE messages m SET refs = m.refs - c.n FROM c WHERE m.mid = c.mid RETURNING m.mid, m.refs, c.n",
        "uu", r->device_id, r->u.ack.in.upto);
  if (e != PL_OK)
    return e;
  int rows = PQntuples(res);
  uint64_t *gone = pl_malloc(((size_t)rows + 1) * sizeof *gone);
  size_t ngone = 0;
  for (int i = 0; i < rows; i++) {
    r->u.ack.out.removed += pl_pg_col_u64(res, i, 2);
    if (PQgetisnull(res, i, 1) || atoll(PQgetvalue(res, i, 1)) <= 0)
      gone[ngone++] = pl_pg_col_u64(res, i, 0);
  }
  PQclear(res);
  if (r->u.ack.out.removed)
    e = pl_pg_q(g, NULL, PL_PG_DEQUEUED("$1::bigint", "$2::bigint"), "uu", r->device_id,
                r->u.ack.out.removed);
  if (e == PL_OK && ngone) {
    char *arr = pl_pg_array(gone, ngone);
    e = pl_pg_q(g, NULL, "DELETE FROM messages WHERE mid = ANY($1::bigint[]) AND refs <= 0", "s", arr);
    pl_free(arr);
  }
  pl_free(gone);
  return e;
}
