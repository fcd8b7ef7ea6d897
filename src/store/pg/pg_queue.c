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

/* ---- the queue limits (pl_store_rules.queue_admit) ---------------------------- */

typedef struct pl__share_arg {
  pl__pg *g;
  uint64_t dev, sender, pending; /* pending: rows the open batch queues there, not yet written */
} pl__share_arg;

/* Counted where the device lives (its id names its shard). Another shard
 * that cannot be read counts none: a limit is a guard against a flood, and
 * the send goes on as it would with the lengths read a moment before. */
static pl_err pl__share_count(void *arg, uint64_t *n) {
  pl__share_arg *a = arg;
  pl__pg *h = pl_pg_home(a->g, a->dev);
  pl_err e = PL_OK;
  *n = 0;
  if (h)
    e = pl_pg_u64(h, n,
                  "SELECT count(*) FROM queue q JOIN messages m ON m.mid = q.mid"
                  " WHERE q.device_id = $1 AND m.sender_uid = $2 AND m.kind = 0",
                  "uu", a->dev, a->sender);
  *n += a->pending;
  return h == a->g ? e : PL_OK;
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
  *full = 0;
  if (!pl_pg_queue_limited(g) || !n)
    return PL_OK;
  /* every target's length on its shard (a user of another one: the
   * per-request path's sends across shards), one statement per shard, all
   * sent before any is waited for. Another shard that cannot be read leaves
   * its devices' lengths at 0 (pl__share_count says why). */
  unsigned k = g->nshards > 1 ? g->nshards : 1;
  long *at = pl_malloc(k * sizeof *at);
  uint64_t *lens = pl_calloc(n + 1, sizeof *lens);
  pl_pg_pipe p;
  pl_pg_xpipe x;
  pl_pg_pipe_begin(&p, g);
  pl_pg_xpipe_begin(&x, g, &p);
  pl_pg_xpipe_each(&x, "SELECT d.id, " PL_PG_QUEUED("d") " FROM devices d WHERE d.id = ANY($1::bigint[])", t,
                   n, at);
  pl_err e = pl_pg_xpipe_end(&x), xe;
  for (unsigned j = 0; e == PL_OK && j < k; j++) {
    PGresult *res = at[j] == -2 ? NULL : pl_pg_xpipe_take(&x, at[j], &xe);
    uint64_t *l = res ? pl_pg_queue_qids(res, t, n) : NULL; /* (device, length) rows, like (device, qid) */
    for (size_t i = 0; l && i < n; i++)
      lens[i] = l[i] ? l[i] : lens[i];
    pl_free(l);
    PQclear(res);
  }
  pl_pg_xpipe_clear(&x);
  pl_pg_pipe_clear(&p);
  if (e == PL_OK)
    e = pl_pg_queue_admit(g, me, t, lens, NULL, n, full);
  pl_free(lens);
  pl_free(at);
  return e;
}

/* ---- events: receipts and read syncs (docs/protocol.md 11.4) --------------- */

/* One event stored in one statement: the pending one of (conv, kind, by)
 * replaced when the kind coalesces (its queue rows, with the lengths they
 * leave, and its message go), the message, its queue rows with each
 * target's next qid. $1 conv, $2 seq, $3 by, $4 by's name, $5 now,
 * $6 expires, $7 refs, $8 kind, $9 aux, $10 coalesce (1/0), $11 targets. */
#define PL__EVENT_SQL                                                                                      \
  "WITH o AS (SELECT mid FROM messages WHERE $10::int = 1 AND conv = $1 AND kind = $8 AND sender_uid = $3" \
  " AND kind <> 0), d AS (DELETE FROM queue WHERE mid IN (SELECT mid FROM o) RETURNING device_id),"        \
  " u AS (" PL_PG_QUEUE_UNCOUNT "), x AS (DELETE FROM messages WHERE mid IN (SELECT mid FROM o)),"         \
  " m AS (INSERT INTO messages(conv, seq, sender_uid, from_name, from_device, client_id, body, client_ts," \
  " server_ts, expires, refs, kind, aux) VALUES($1, $2, $3, $4, '', '', '', 0, $5, $6, $7, $8, $9)"        \
  " RETURNING mid), " PL_PG_QUEUE_PUT("$11", "(SELECT mid FROM m)")

/* An Ack's queue rows go, and each message loses a reference per row (two
 * devices acking one message on two nodes meet on the message's row lock;
 * whichever is second sees refs reach 0); the lengths follow. Each
 * message comes back (mid, refs left, rows, conv, seq, kind, sender) for
 * the delivered receipts and the deletion of those left with none. */
#define PL__ACK_SQL                                                                                  \
  "WITH d AS (DELETE FROM queue WHERE device_id = $1 AND qid <= $2 RETURNING mid),"                  \
  " c AS (SELECT mid, count(*) AS n FROM d GROUP BY mid),"                                           \
  " u AS (UPDATE messages m SET refs = m.refs - c.n FROM c WHERE m.mid = c.mid"                      \
  " RETURNING m.mid, m.refs, c.n, m.conv, m.seq, m.kind, m.sender_uid),"                             \
  " q AS (INSERT INTO dequeued(device_id, n) SELECT $1::bigint, count(*) FROM d HAVING count(*) > 0" \
  " ON CONFLICT(device_id) DO UPDATE SET n = dequeued.n + EXCLUDED.n)"                               \
  " SELECT mid, refs, n, conv, seq, kind, sender_uid FROM u ORDER BY conv, sender_uid, seq"

/* The acking user's delivered watermark of a conversation, moved forward
 * only: a row back when it moved. $1 user, $2 conv, $3 seq. */
#define PL__DELIVERED_SQL                                                                                    \
  "INSERT INTO reads(uid, conv, read_seq, delivered_seq) VALUES($1, $2, 0, $3) ON CONFLICT(uid, conv)"       \
  " DO UPDATE SET delivered_seq = EXCLUDED.delivered_seq WHERE reads.delivered_seq < EXCLUDED.delivered_seq" \
  " RETURNING 1"

/* Prepared on each connection with the batch's (pl_pg_queue_stmts). */
enum { PL__Q_EVENT, PL__Q_ACK, PL__Q_DELIVERED, PL__Q_USER, PL__Q_NSTMTS };
static const pl_pg_stmt pl__qst[PL__Q_NSTMTS] = {
    [PL__Q_EVENT] = {"pl_q_event", PL__EVENT_SQL},
    [PL__Q_ACK] = {"pl_q_ack", PL__ACK_SQL},
    [PL__Q_DELIVERED] = {"pl_q_delivered", PL__DELIVERED_SQL},
    [PL__Q_USER] = {"pl_q_user", PL_PG_USER_SQL("u.id = $1")},
};

const pl_pg_stmt *pl_pg_queue_stmts(size_t *n) {
  *n = PL__Q_NSTMTS;
  return pl__qst;
}

/* Records an event for the deliver hook (qid 0 and no qids: pushed to
 * connected devices, not stored); its index in r->events. Takes t over. */
static size_t pl__event_out(pl_store_req *r, int kind, const char *conv, uint64_t seq, const pl_pg_user *by,
                            uint64_t aux, uint64_t now, uint64_t *t, size_t n) {
  pl_store_event_add(r, 0, kind, conv, seq, by->name, aux, now, t, n);
  return r->nevents - 1;
}

void pl_pg_queue_event_add(pl__pg *g, pl_pg_pipe *p, pl_pg_evs *q, pl_store_req *r, int kind,
                           const char *conv, uint64_t seq, const pl_pg_user *by, uint64_t aux, uint64_t *t,
                           size_t n) {
  uint64_t now = pl_now_ms();
  uint64_t *live = pl_malloc((n + 1) * sizeof *live);
  size_t nlive = pl_receipts_split_live(t, &n, live, g->online, g->online_ud);
  if (nlive)
    pl__event_out(r, kind, conv, seq, by, aux, now, live, nlive);
  else
    pl_free(live);
  if (!n) {
    pl_free(t);
    return;
  }
  if (g->nshards > 1 && pl_pg_shard_of_id(g, t[0]) != g->shard) { /* one user's devices: one shard */
    pl_pg_relay_add_event(g, p, r, pl_pg_shard_of_id(g, t[0]), kind, conv, seq, by, aux, now, t, n);
    pl_free(t);
    return;
  }
  char *arr = pl_pg_array(t, n);
  q->v = pl_pg_reserve(q->v, q->n, &q->cap, sizeof *q->v);
  q->v[q->n].at = pl_pg_pipe_addp(p, &pl__qst[PL__Q_EVENT], "suusuuuiuis", conv, seq, by->id, by->name, now,
                                  pl_retention_expires(g->ttl_ms, now), pl_retention_msg_refs(n), kind, aux,
                                  pl_receipts_replaces_pending(kind), arr);
  q->v[q->n++].ev = pl__event_out(r, kind, conv, seq, by, aux, now, t, n);
  pl_free(arr);
}

void pl_pg_queue_event_done(pl_pg_evs *q, pl_pg_pipe *p, pl_store_req *r) {
  for (size_t i = 0; i < q->n; i++) {
    pl_store_event *ev = &r->events[q->v[i].ev];
    ev->qids = pl_pg_queue_qids(p->res[q->v[i].at], ev->targets, ev->ntargets);
    ev->msg.qid = ev->ntargets ? ev->qids[0] : 0;
  }
  pl_free(q->v);
  memset(q, 0, sizeof *q);
}

/* An event for targets (taken over): pushed at once to the connected
 * ones, queued durably for the others (one round trip), replacing the
 * pending one. */
pl_err pl_pg_queue_event(pl__pg *g, pl_store_req *r, int kind, const char *conv, uint64_t seq,
                         const pl_pg_user *by, uint64_t aux, uint64_t *t, size_t n) {
  pl_pg_pipe p;
  pl_pg_evs q = {0};
  pl_pg_pipe_begin(&p, g);
  pl_pg_queue_event_add(g, &p, &q, r, kind, conv, seq, by, aux, t, n);
  pl_err e = pl_pg_pipe_end(&p);
  if (e == PL_OK)
    pl_pg_queue_event_done(&q, &p, r);
  pl_free(q.v);
  pl_pg_pipe_clear(&p);
  return e;
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
  pl_pg_xpipe xp;
  long *ms_at = pl_malloc(pl_pg_shards(g) * sizeof *ms_at);
  /* signed in still? (in the same round trip: pl_store.h, FETCH), and the
   * memberships for the groups' part (on every shard) */
  pl_pg_pipe_begin(&p, g);
  pl_pg_xpipe_begin(&xp, g, &p);
  pl_pg_pipe_add(&p, "SELECT 1 FROM devices WHERE id = $1 AND token_hash IS NOT NULL", "u", r->device_id);
  pl_pg_pipe_add(&p,
                 "SELECT q.qid, m.conv, m.seq, m.from_name, m.from_device, m.client_id, m.body, m.client_ts,"
                 " m.server_ts, m.kind, m.aux, m.media, m.act FROM queue q JOIN messages m ON m.mid = q.mid"
                 " WHERE q.device_id = $1 AND q.qid > $2 AND m.expires > $3 ORDER BY q.qid LIMIT $4",
                 "uuuu", r->device_id, x->in.after, pl_now_ms(), (uint64_t)limit + 1);
  pl_pg_group_fetch_add(&xp, r, ms_at);
  pl_err e = pl_pg_xpipe_end(&xp);
  if (e == PL_OK && PQntuples(p.res[0]) == 0)
    r->status = PL_ERR_BAD_TOKEN;
  if (e == PL_OK && r->status == PL_OK) {
    PGresult *res = p.res[1];
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
    e = pl_pg_group_fetch(g, r, &xp, ms_at, limit, max_bytes);
  }
  pl_pg_xpipe_clear(&xp);
  pl_pg_pipe_clear(&p);
  pl_free(ms_at);
  return e;
}

/* ---- ack -------------------------------------------------------------------------- */

/* What an Ack's deletion found: per conversation of plain messages from
 * others, the highest seq acked and its sender; the messages left with no
 * reference. */
typedef struct pl__acked {
  struct {
    const char *conv;
    uint64_t seq, sender;
    int at;         /* the watermark's statement */
    long sender_at; /* the sender's read (on its shard: pl_pg_xpipe) */
  } * c;
  size_t nc;
  uint64_t *gone;
  size_t ngone;
} pl__acked;

static void pl__acked_read(pl_store_req *r, const PGresult *res, pl__acked *k) {
  int rows = PQntuples(res);
  k->c = pl_calloc((size_t)rows + 1, sizeof *k->c);
  k->gone = pl_malloc(((size_t)rows + 1) * sizeof *k->gone);
  for (int i = 0; i < rows; i++) { /* ordered by conv, sender, seq */
    r->u.ack.out.removed += pl_pg_col_u64(res, i, 2);
    if (PQgetisnull(res, i, 1) || atoll(PQgetvalue(res, i, 1)) <= 0)
      k->gone[k->ngone++] = pl_pg_col_u64(res, i, 0);
    uint64_t sender = pl_pg_col_u64(res, i, 6);
    if (!r->user_id || pl_pg_col_int(res, i, 5) != 0 || sender == r->user_id)
      continue;
    const char *conv = PQgetvalue(res, i, 3);
    if (!k->nc || strcmp(k->c[k->nc - 1].conv, conv) || k->c[k->nc - 1].sender != sender)
      k->nc++;
    k->c[k->nc - 1].conv = conv;
    k->c[k->nc - 1].seq = pl_pg_col_u64(res, i, 4);
    k->c[k->nc - 1].sender = sender;
  }
}

/* Delivered receipts: once per conversation whose delivered watermark of
 * the acking user moves, to every device of the sender, blocks allowing.
 * The watermarks move in conv order (one lock order on every node). */
static pl_err pl__delivered(pl__pg *g, pl_store_req *r, pl_pg_pipe *p, pl__acked *k) {
  pl_pg_user *me = NULL;
  pl_pg_xpipe x;
  pl_pg_pipe ev;
  pl_pg_evs q = {0};
  size_t nt;
  int me_at = pl_pg_pipe_addp(p, &pl__qst[PL__Q_USER], "u", r->user_id);
  pl_pg_xpipe_begin(&x, g, p);
  for (size_t i = 0; i < k->nc; i++) {
    k->c[i].at = pl_pg_pipe_addp(p, &pl__qst[PL__Q_DELIVERED], "usu", r->user_id, k->c[i].conv, k->c[i].seq);
    k->c[i].sender_at = pl_pg_xpipe_user(&x, k->c[i].sender);
  }
  pl_err e = pl_pg_xpipe_end(&x), xe;
  if (e != PL_OK) {
    pl_pg_xpipe_clear(&x);
    return e;
  }
  pl_pg_user_load(p->res[me_at], PL_OK, &me);
  p->res[me_at] = NULL;
  pl_pg_pipe_begin(&ev, g);
  for (size_t i = 0; i < k->nc && me; i++) {
    pl_pg_user *sender = NULL;
    if (PQntuples(p->res[k->c[i].at]) == 0)
      continue;
    /* (a sender on a shard that cannot be reached now gets no receipt) */
    pl_pg_user_load(pl_pg_xpipe_take(&x, k->c[i].sender_at, &xe), PL_OK, &sender);
    if (sender && pl_receipts_delivered_to_sender(pl_pg_user_blocks(me, sender->id))) {
      uint64_t *t = pl_pg_queue_devs_except(sender, 0, &nt);
      pl_pg_queue_event_add(g, &ev, &q, r, PL_MSG_DELIVERED, k->c[i].conv, k->c[i].seq, me, 0, t, nt);
    }
    pl_pg_user_free(sender);
  }
  e = pl_pg_pipe_end(&ev);
  if (e == PL_OK)
    pl_pg_queue_event_done(&q, &ev, r);
  pl_free(q.v);
  pl_pg_pipe_clear(&ev);
  pl_pg_xpipe_clear(&x);
  pl_pg_user_free(me);
  return e;
}

/* Groups first (their own path), then the queue: one round trip deletes
 * the rows, a second deletes the messages left unreferenced and moves the
 * delivered watermarks, a third (only for devices not connected) stores
 * the receipts. */
pl_err pl_pg_queue_ack(pl__pg *g, pl_store_req *r) {
  PGresult *res = NULL;
  pl__acked k = {0};
  pl_pg_pipe p;
  pl_err e = pl_pg_group_ack(g, r);
  if (e != PL_OK)
    return e;
  pl_pg_pipe_begin(&p, g);
  pl_pg_pipe_addp(&p, &pl__qst[PL__Q_ACK], "uu", r->device_id, r->u.ack.in.upto);
  e = pl_pg_pipe_end(&p);
  if (e != PL_OK)
    return e;
  res = p.res[0];
  p.res[0] = NULL;
  pl_pg_pipe_clear(&p);
  pl__acked_read(r, res, &k);
  pl_pg_pipe_begin(&p, g);
  if (k.ngone) {
    char *arr = pl_pg_array(k.gone, k.ngone);
    pl_pg_pipe_add(&p, "DELETE FROM messages WHERE mid = ANY($1::bigint[]) AND refs <= 0", "s", arr);
    pl_free(arr);
  }
  e = k.nc ? pl__delivered(g, r, &p, &k) : pl_pg_pipe_end(&p);
  pl_pg_pipe_clear(&p);
  pl_free(k.c);
  pl_free(k.gone);
  PQclear(res);
  return e;
}
