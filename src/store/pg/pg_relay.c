/* pg_relay: 1:1 messages and receipts between users of two shards
 * (docs/scaling.md 2).
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
 * and T2. A receipt (delivered on an ack, read on a mark-read) to a device
 * of the other shard that is not connected takes the same way from the
 * shard that committed it (pl_pg_relay_add_event).
 *
 * Exactly once, in order: T2 queues a copy only if its seq is past its
 * stream's relay.upto on the receiving shard, which it moves (under that
 * row's lock: a second copier finds it moved and adds nothing). A stream
 * is a conversation's messages, or one kind of its receipts. A copier
 * reads the outbox rows of whole streams FOR UPDATE, in seq order, and
 * deletes them after T2 committed: an earlier seq of a conversation
 * committed before a later one (the conversation's row lock orders T1s),
 * so a copier that sees seq n sees every seq before it that is not copied
 * yet, and copies them first. A copier that waits on another's rows finds
 * them gone once that one committed. (Receipts are watermarks: one past
 * the guard says all that an earlier one would.) */
#include <stdio.h>

#include "../../rules/pl_acts.h"
#include "pg_internal.h"

#define PL__GRACE_MS 2000u /* the sweep leaves younger rows to their own node */

/* A row the open transaction owes to shard target: r wrote it (a SEND's
 * own message: send; its copies join r's targets), stream and seq. */
typedef struct pl__owed {
  pl_store_req *r;
  unsigned target;
  char *stream;
  uint64_t seq;
  int send;
} pl__owed;

struct pl_pg_relay {
  pl__owed *v;
  size_t n, cap;
};

/* The outbox's columns as a copier reads them, in this order. */
enum {
  PL__C_STREAM,
  PL__C_SEQ,
  PL__C_CONV,
  PL__C_KIND,
  PL__C_AUX,
  PL__C_DEVS,
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
  PL__C_MEDIA_ID,
  PL__C_MEDIA,
  PL__NCOLS
};
#define PL__COLS                                                                                            \
  "stream, seq, conv, kind, aux, devs, uid, sender_uid, from_name, from_device, from_did, client_id, body," \
  " client_ts, server_ts, expires, act, media_id, media"

/* T2, per row: the guard moves (or nothing else happens), then what the
 * copy stores. Returns (device_id, qid, mid) rows. */
#define PL__GUARD                                                                                   \
  "WITH g AS (INSERT INTO relay(stream, upto) VALUES($1, $2::bigint) ON CONFLICT(stream) DO UPDATE" \
  " SET upto = EXCLUDED.upto WHERE relay.upto < EXCLUDED.upto RETURNING 1),"
#define PL__PUT                                                                             \
  " t AS (UPDATE devices SET next_qid = next_qid + 1 WHERE id IN (SELECT id FROM tg)"       \
  " AND EXISTS(SELECT 1 FROM m) RETURNING id, next_qid)"                                    \
  " INSERT INTO queue(device_id, qid, mid) SELECT id, next_qid, (SELECT mid FROM m) FROM t" \
  " RETURNING device_id, qid, mid"

/* A message ($1 stream, $2 seq, $3 conv, $4 uid, $5 sender, $6 from,
 * $7 from_device, $8 from_did, $9 client_id, $10 body, $11 client_ts,
 * $12 server_ts, $13 expires, $14 act, $15 the seq a delete for everyone
 * takes out, else 0, $16 its attachment's upload id, $17 the attachment
 * (the upload stays on its owner's shard, pg_media.c)): the receiving user's read watermarks as on one
 * shard (the sender's: read up to it; the peer's: a row if none); the
 * deleted message's copy out of every queue here, as pl__delete
 * (pg_acts.c) does on the conversation's shard; the message queued for the
 * user's signed-in devices but the sending one, read now (a device signed
 * in since T1 gets it too). */
#define PL__MINE PL_PG_READS_MINE_IF("$4::bigint", "$3", "$2::bigint", "$4::bigint = $5::bigint")
#define PL__PEER PL_PG_READS_PEER("$5::bigint", "$4::bigint", "$3")
#define PL__UNQUEUE                                                                                  \
  " dd AS (SELECT mid FROM messages WHERE $15::bigint > 0 AND EXISTS(SELECT 1 FROM g) AND conv = $3" \
  " AND seq = $15::bigint AND kind = 0),"                                                            \
  " dq AS (DELETE FROM queue WHERE mid IN (SELECT mid FROM dd) RETURNING device_id),"                \
  " du AS (INSERT INTO dequeued(device_id, n) SELECT device_id, count(*) FROM dq GROUP BY 1"         \
  " ON CONFLICT(device_id) DO UPDATE SET n = dequeued.n + EXCLUDED.n),"                              \
  " dm AS (DELETE FROM messages WHERE mid IN (SELECT mid FROM dd)),"
#define PL__COPY_SQL                                                                                         \
  PL__GUARD " tg AS (SELECT id FROM devices WHERE user_id = $4::bigint AND token_hash IS NOT NULL"           \
            " AND id <> $8::bigint AND EXISTS(SELECT 1 FROM g)),"                                            \
            " rm AS (" PL__MINE "), rp AS (" PL__PEER ")," PL__UNQUEUE                                       \
            " m AS (INSERT INTO messages(conv, seq, sender_uid, from_name, from_device, client_id, body,"    \
            " client_ts, server_ts, expires, refs, act, media_id, media) SELECT $3, $2::bigint, $5::bigint," \
            " $6, $7, $9, $10::bytea, $11::bigint, $12::bigint, $13::bigint, (SELECT count(*) FROM tg),"     \
            " $14::bytea, $16, $17::bytea WHERE EXISTS(SELECT 1 FROM tg) RETURNING mid)," PL__PUT

/* A receipt ($1 stream, $2 seq, $3 conv, $4 kind, $5 aux, $6 devices,
 * $7 by, $8 by's name, $9 server_ts, $10 expires) for the devices that
 * were not connected when it was made: the pending one of its kind
 * replaced, as on one shard (PL__EVENT_SQL, pg_queue.c); and the by
 * user's watermark mirrored here, which UNREAD reports as the peer's (a
 * receipt's only: a group's read sync to the reader's devices mirrors
 * nothing, its watermark is greads', on the group's shard). */
#define PL__MIRROR                                                                                      \
  " w AS (INSERT INTO reads(uid, conv, read_seq, delivered_seq) SELECT $7::bigint, $3,"                 \
  " CASE WHEN $4::int = 2 THEN $2::bigint ELSE 0 END, CASE WHEN $4::int = 1 THEN $2::bigint ELSE 0 END" \
  " WHERE $4::int IN (1, 2) AND EXISTS(SELECT 1 FROM g) ON CONFLICT(uid, conv) DO UPDATE"               \
  " SET read_seq = greatest(reads.read_seq, EXCLUDED.read_seq),"                                        \
  " delivered_seq = greatest(reads.delivered_seq, EXCLUDED.delivered_seq)),"
#define PL__COPY_EV_SQL                                                                             \
  PL__GUARD                                                                                         \
  " tg AS (SELECT id FROM devices WHERE id = ANY($6::bigint[]) AND token_hash IS NOT NULL"          \
  " AND EXISTS(SELECT 1 FROM g))," PL__MIRROR                                                       \
  " o AS (SELECT mid FROM messages WHERE EXISTS(SELECT 1 FROM tg) AND conv = $3 AND kind = $4::int" \
  " AND sender_uid = $7::bigint AND kind <> 0),"                                                    \
  " d AS (DELETE FROM queue WHERE mid IN (SELECT mid FROM o) RETURNING device_id),"                 \
  " u AS (" PL_PG_QUEUE_UNCOUNT "), x AS (DELETE FROM messages WHERE mid IN (SELECT mid FROM o)),"  \
  " m AS (INSERT INTO messages(conv, seq, sender_uid, from_name, from_device, client_id, body,"     \
  " client_ts, server_ts, expires, refs, kind, aux) SELECT $3, $2::bigint, $7::bigint, $8, '', ''," \
  " '', 0, $9::bigint, $10::bigint, (SELECT count(*) FROM tg), $4::int, $5::bigint"                 \
  " WHERE EXISTS(SELECT 1 FROM tg) RETURNING mid)," PL__PUT
_Static_assert(PL_MSG_DELIVERED == 1 && PL_MSG_READ == 2, "PL__MIRROR's kinds");

enum { PL__OUTBOX, PL__DEVLOCK, PL__COPY, PL__COPY_EV, PL__OWED, PL__OLD, PL__DONE, PL__NSTMTS };
static const pl_pg_stmt pl__st[PL__NSTMTS] = {
    [PL__OUTBOX] = {"pl_r_outbox",
                    "INSERT INTO outbox(target, stream, seq, created, conv, kind, aux, devs, uid, sender_uid,"
                    " from_name, from_device, from_did, client_id, body, client_ts, server_ts, expires, act,"
                    " media_id, media) VALUES($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14,"
                    " $15, $16, $17, $18, $19, $20, $21)"},
    /* the devices T2 queues for, locked first and in id order, as the
     * batch's T1 locks them: no deadlock with the receiving shard's sends */
    [PL__DEVLOCK] = {"pl_r_devlock", "SELECT 1 FROM devices WHERE user_id = ANY($1::bigint[])"
                                     " OR id = ANY($2::bigint[]) ORDER BY id FOR NO KEY UPDATE"},
    [PL__COPY] = {"pl_r_copy", PL__COPY_SQL},
    [PL__COPY_EV] = {"pl_r_copy_ev", PL__COPY_EV_SQL},
    /* after a commit: every row owed to target of its streams */
    [PL__OWED] = {"pl_r_owed",
                  "SELECT " PL__COLS " FROM outbox WHERE target = $1 AND stream = ANY($2::text[])"
                  " ORDER BY stream, seq FOR UPDATE"},
    /* the sweep: the rows of streams with a row older than $2 */
    [PL__OLD] = {"pl_r_old",
                 "SELECT " PL__COLS " FROM outbox WHERE target = $1 AND stream IN (SELECT stream"
                 " FROM outbox WHERE target = $1 AND created <= $2 LIMIT 256) ORDER BY stream, seq"
                 " LIMIT 4096 FOR UPDATE"},
    [PL__DONE] = {"pl_r_done", "DELETE FROM outbox WHERE target = $1 AND stream = $2 AND seq <= $3"},
};

const pl_pg_stmt *pl_pg_relay_stmts(size_t *n) {
  *n = PL__NSTMTS;
  return pl__st;
}

static void pl__owe(pl__pg *g, pl_store_req *r, unsigned target, const char *stream, uint64_t seq, int send) {
  if (!g->relay)
    g->relay = pl_calloc(1, sizeof *g->relay);
  struct pl_pg_relay *o = g->relay;
  o->v = pl_pg_reserve(o->v, o->n, &o->cap, sizeof *o->v);
  o->v[o->n++] = (pl__owed){r, target, pl_strdup(stream), seq, send};
}

void pl_pg_relay_add(pl__pg *g, pl_pg_pipe *p, pl_store_req *r, unsigned target, uint64_t uid,
                     uint64_t expires) {
  const pl_msg *m = &r->u.send.out.msg;
  const pl_act *a = r->u.send.in.act; /* a delete for everyone: its target leaves the queues there too */
  uint64_t unqueue = a && pl_acts_delete_unqueues(a->kind) ? a->target : 0;
  const char *media_id =
      m->media && r->u.send.in.media_id && *r->u.send.in.media_id ? r->u.send.in.media_id : NULL;
  pl_pg_pipe_addp(p, &pl__st[PL__OUTBOX], "isuusiusuussusbuuubsb", (int)target, m->conv, m->seq, pl_now_ms(),
                  m->conv, 0, unqueue, NULL, uid, r->user_id, m->from, m->from_device, r->device_id, m->id,
                  (const void *)m->body, m->body_len, m->client_ts, m->server_ts, pl_pg_clamp(expires),
                  (const void *)m->act, m->act_len, media_id, (const void *)m->media, m->media_len);
  pl__owe(g, r, target, m->conv, m->seq, 1);
}

void pl_pg_relay_add_event(pl__pg *g, pl_pg_pipe *p, pl_store_req *r, unsigned target, int kind,
                           const char *conv, uint64_t seq, const pl_pg_user *by, uint64_t aux, uint64_t now,
                           const uint64_t *t, size_t n) {
  char *stream = pl_pg_relay_stream(conv, kind);
  char *devs = pl_pg_array(t, n);
  pl_pg_pipe_addp(p, &pl__st[PL__OUTBOX], "isuusiusuussusbuuubsb", (int)target, stream, seq, now, conv, kind,
                  aux, devs, (uint64_t)0, by->id, by->name, "", (uint64_t)0, "", (const void *)"", (size_t)0,
                  (uint64_t)0, now, pl_retention_expires(g->ttl_ms, now), (const void *)NULL, (size_t)0,
                  (const char *)NULL, (const void *)NULL, (size_t)0);
  pl_free(devs);
  pl__owe(g, r, target, stream, seq, 0);
  pl_free(stream);
}

char *pl_pg_relay_stream(const char *conv, int kind) {
  size_t len = strlen(conv) + 16;
  char *s = pl_malloc(len);
  if (kind)
    snprintf(s, len, "%s#%d", conv, kind);
  else
    snprintf(s, len, "%s", conv);
  return s;
}

void pl_pg_relay_drop(pl__pg *g) {
  for (size_t i = 0; g->relay && i < g->relay->n; i++)
    pl_free(g->relay->v[i].stream);
  if (g->relay)
    g->relay->n = 0;
}

void pl_pg_relay_free(pl__pg *g) {
  pl_pg_relay_drop(g);
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

/* What T2 locks first: the users whose devices the messages queue for,
 * and the devices the receipts name, as two bigint[] literals. */
static void pl__locks(const PGresult *rows, char **uids, char **devs) {
  int n = PQntuples(rows);
  uint64_t *v = pl_malloc(((size_t)n + 1) * sizeof *v);
  size_t k = 0, len = 3;
  for (int i = 0; i < n; i++) {
    uint64_t u = pl_pg_col_u64(rows, i, PL__C_UID);
    size_t j = 0;
    while (j < k && v[j] != u)
      j++;
    if (u && j == k)
      v[k++] = u;
    len += (size_t)PQgetlength(rows, i, PL__C_DEVS) + 1;
  }
  *uids = pl_pg_array(v, k);
  pl_free(v);
  char *d = *devs = pl_malloc(len);
  *d++ = '{';
  for (int i = 0; i < n; i++) { /* each "{1,2}" without its braces */
    const char *a = PQgetvalue(rows, i, PL__C_DEVS);
    size_t l = strlen(a);
    if (l <= 2)
      continue;
    if (d > *devs + 1)
      *d++ = ',';
    memcpy(d, a + 1, l - 2);
    d += l - 2;
  }
  *d++ = '}';
  *d = 0;
}

/* The copies of the outbox rows c->rows into the pipe p. */
static void pl__t2_add(pl_pg_pipe *p, const pl__copied *c) {
  for (int i = 0; i < c->n; i++) {
    const PGresult *r = c->rows;
#define V(col) pl__val(r, i, PL__C_##col)
    if (pl_pg_col_int(r, i, PL__C_KIND))
      pl_pg_pipe_addp(p, &pl__st[PL__COPY_EV], "ssssssssss", V(STREAM), V(SEQ), V(CONV), V(KIND), V(AUX),
                      V(DEVS), V(SENDER), V(FROM), V(SERVER_TS), V(EXPIRES));
    else
      pl_pg_pipe_addp(p, &pl__st[PL__COPY], "sssssssssssssssss", V(STREAM), V(SEQ), V(CONV), V(UID),
                      V(SENDER), V(FROM), V(FROM_DEVICE), V(FROM_DID), V(ID), V(BODY), V(CLIENT_TS),
                      V(SERVER_TS), V(EXPIRES), V(ACT), V(AUX), V(MEDIA_ID), V(MEDIA));
#undef V
  }
}

/* T2 on the link l: one transaction, one round trip (the values go as
 * the outbox's text, bytea as its hex form). */
static pl_err pl__t2(pl__pg *l, pl__copied *c) {
  pl_pg_pipe p;
  char *uids, *devs;
  pl__locks(c->rows, &uids, &devs);
  l->begin_pending = 1;
  pl_pg_pipe_begin(&p, l);
  pl_pg_pipe_addp(&p, &pl__st[PL__DEVLOCK], "ss", uids, devs);
  pl_free(uids);
  pl_free(devs);
  pl__t2_add(&p, c);
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
    if (i + 1 == n || strcmp(PQgetvalue(rows, i, PL__C_STREAM), PQgetvalue(rows, i + 1, PL__C_STREAM)) != 0)
      pl_pg_pipe_addp(&p, &pl__st[PL__DONE], "iss", (int)target, PQgetvalue(rows, i, PL__C_STREAM),
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
  m->media = pl_pg_col_bytes(r, i, PL__C_MEDIA, &m->media_len);
  m->kind = pl_pg_col_int(r, i, PL__C_KIND);
  m->aux = pl_pg_col_u64(r, i, PL__C_AUX);
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

/* A text[] literal of the streams of the rows owed to target. */
static char *pl__streams(const struct pl_pg_relay *o, unsigned target) {
  size_t len = 3;
  for (size_t i = 0; i < o->n; i++)
    if (o->v[i].target == target)
      len += 2 * strlen(o->v[i].stream) + 3;
  char *s = pl_malloc(len), *p = s;
  *p++ = '{';
  for (size_t i = 0; i < o->n; i++) {
    if (o->v[i].target != target)
      continue;
    if (p > s + 1)
      *p++ = ',';
    *p++ = '"';
    for (const char *c = o->v[i].stream; *c; c++) {
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

/* A copy of a send's own message: its devices join the send's targets. */
static void pl__give_send(pl_store_req *r, const PGresult *q) {
  pl_store_send_req *s = &r->u.send;
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
}

/* Row i's copy, delivered after the commit: a send's own message as part
 * of the send; anything else (a receipt, another node's message copied
 * along) as an event of the request that owes it, or of the first one
 * owing to that shard. */
static void pl__give(struct pl_pg_relay *o, unsigned target, const pl__copied *c, int i) {
  const PGresult *q = c->queued[i];
  if (!PQntuples(q))
    return;
  const char *stream = PQgetvalue(c->rows, i, PL__C_STREAM);
  uint64_t seq = pl_pg_col_u64(c->rows, i, PL__C_SEQ);
  pl_store_req *to = NULL;
  for (size_t k = 0; k < o->n; k++) {
    const pl__owed *w = &o->v[k];
    if (w->target != target)
      continue;
    to = to ? to : w->r;
    if (w->seq == seq && !strcmp(w->stream, stream)) {
      if (w->send) {
        pl__give_send(w->r, q);
        return;
      }
      to = w->r;
      break;
    }
  }
  if (!to)
    return;
  uint64_t *t, *qids;
  size_t n = pl__queued(q, &t, &qids);
  pl_store_event *ev = pl_store_event_add(to, qids[0], 0, "", 0, "", 0, 0, t, n);
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
    char *streams = pl__streams(o, target);
    pl__copied c;
    pl_err e = pl__copy(g, target, PL__OWED, streams, &c);
    pl_free(streams);
    if (e != PL_OK) {
      pl_warn("store: shard %u: copying to shard %u failed (%s): the sweep copies them", g->shard, target,
              pl_err_name(e));
      continue;
    }
    atomic_fetch_add(&g->copies, (uint64_t)c.n);
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
  pl_pg_map_poll(g); /* every store thread hears of a move within a second */
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
      atomic_fetch_add(&g->copies, (uint64_t)c.n);
      atomic_fetch_add(&g->swept, (uint64_t)c.n);
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

/* ---- the mover's ------------------------------------------------------------- */

pl_err pl_pg_relay_local(pl__pg *g, unsigned from, uint32_t lo, uint32_t hi, int *n) {
  pl__copied c;
  pl_pg_pipe p;
  memset(&c, 0, sizeof c);
  *n = 0;
  pl_err e = pl_pg_q(g, &c.rows,
                     "SELECT " PL__COLS " FROM outbox WHERE target = $1 OR (target = $2 AND (uid >> 48)"
                     " BETWEEN $3 AND $4) ORDER BY stream, seq",
                     "iiii", (int)g->shard, (int)from, (int)lo, (int)hi);
  if (e != PL_OK || !(c.n = PQntuples(c.rows))) {
    PQclear(c.rows);
    return e;
  }
  pl_pg_pipe_begin(&p, g);
  pl__t2_add(&p, &c);
  e = pl_pg_pipe_end(&p);
  pl_pg_pipe_clear(&p);
  if (e == PL_OK)
    e = pl_pg_q(g, NULL,
                "DELETE FROM outbox WHERE target = $1 OR (target = $2 AND (uid >> 48) BETWEEN $3 AND $4)",
                "iiii", (int)g->shard, (int)from, (int)lo, (int)hi);
  *n = c.n;
  PQclear(c.rows);
  return e;
}
