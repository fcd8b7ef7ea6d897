/* sq_queue: messages and device queue rows: insert, fetch and ack, a
 * sender's share of a queue, and events (receipts, read syncs) queued like
 * messages, with their coalescing; the queue-length cache. */
#include "../../rules/pl_receipts.h"
#include "sq_internal.h"

static void pl__shares_drop_dev(pl__sq *q, uint64_t dev) {
  pl_map *m = pl_map_del(&q->shares, dev);
  if (m)
    pl_map_free(m);
  pl_free(m);
}

static void pl__shares_drop_all(pl__sq *q) {
  uint64_t k;
  void *v;
  for (size_t it = 0; pl_map_next(&q->shares, &it, &k, &v);) {
    pl_map_free(v);
    pl_free(v);
  }
  pl_map_free(&q->shares);
}

void pl_sq_queue_qlen_drop(pl__sq *q) {
  uint64_t k;
  void *v;
  for (size_t it = 0; pl_map_next(&q->shares, &it, &k, &v);) {
    pl_map_free(v);
    pl_free(v);
  }
  pl_map_free(&q->shares);
  pl_map_free(&q->qlen);
}

/* Queue length of a device (cached; counted on a miss). */
static pl_err pl__qlen(pl__sq *q, uint64_t dev, uint64_t *n) {
  sqlite3_stmt *st = q->st[ST_QUEUE_COUNT];
  void *v = pl_map_get(&q->qlen, dev);
  int found;
  if (v) {
    *n = (uint64_t)((uintptr_t)v - 1);
    return PL_OK;
  }
  pl_sq_bind_u64(st, 1, dev);
  pl_err e = pl_sq_row(q, st, &found);
  *n = e == PL_OK && found ? pl_sq_col_u64(st, 0) : 0;
  sqlite3_reset(st);
  if (e == PL_OK)
    pl_map_put(&q->qlen, dev, (void *)(uintptr_t)(*n + 1));
  return e;
}

static void pl__qlen_add(pl__sq *q, uint64_t dev, int64_t delta) {
  void *v = pl_map_get(&q->qlen, dev);
  if (!v)
    return;
  int64_t n = (int64_t)((uintptr_t)v - 1) + delta;
  if (n < 0)
    pl_map_del(&q->qlen, dev); /* out of step: recount next time */
  else
    pl_map_put(&q->qlen, dev, (void *)(uintptr_t)(n + 1));
}

/* ---- a sender's share of a device queue (pl_store_rules.queue_admit) ---- */

typedef struct pl__share_arg {
  pl__sq *q;
  uint64_t dev, sender;
} pl__share_arg;

/* How many of dev's queued messages sender sent (cached; counted on a miss). */
static pl_err pl__share_count(void *arg, uint64_t *n) {
  pl__share_arg *a = arg;
  pl_map *m = pl_map_get(&a->q->shares, a->dev);
  void *v = m ? pl_map_get(m, a->sender) : NULL;
  if (v) {
    *n = (uint64_t)((uintptr_t)v - 1);
    return PL_OK;
  }
  pl_err e = pl_sq_u64_query(a->q, ST_QUEUE_FROM, a->dev, a->sender, 0, n);
  if (e != PL_OK)
    return e;
  if (!m) {
    m = pl_calloc(1, sizeof *m);
    pl_map_put(&a->q->shares, a->dev, m);
  }
  pl_map_put(m, a->sender, (void *)(uintptr_t)(*n + 1));
  return PL_OK;
}

/* Counts the messages just queued from sender (those counted already). */
void pl_sq_queue_shares_add(pl__sq *q, const uint64_t *t, size_t n, uint64_t sender) {
  for (size_t i = 0; i < n; i++) {
    pl_map *m = pl_map_get(&q->shares, t[i]);
    void *v = m ? pl_map_get(m, sender) : NULL;
    if (v)
      pl_map_put(m, sender, (char *)v + 1);
  }
}

/* *full if a target queue has no room for a message from me: past
 * max_queue, or past my share of it (the core's rule, when given). */
pl_err pl_sq_queue_full(pl__sq *q, const pl__user *me, const uint64_t *t, size_t n, int *full) {
  uint64_t len;
  *full = 0;
  for (size_t i = 0; (q->max_queue || q->rules.queue_admit) && i < n && !*full; i++) {
    pl_err e = pl__qlen(q, t[i], &len);
    if (e != PL_OK)
      return e;
    if (!q->rules.queue_admit) {
      *full = len >= q->max_queue;
      continue;
    }
    pl__share_arg a = {q, t[i], me->id};
    e = q->rules.queue_admit(q->rules.ud, len, pl_sq_acct_has_dev(me, t[i]), pl__share_count, &a);
    *full = e == PL_ERR_QUEUE_FULL;
    if (e != PL_OK && !*full)
      return e;
  }
  return PL_OK;
}

/* out.msg is filled (but for qid) before this runs. */
pl_err pl_sq_queue_msg_insert(pl__sq *q, pl_store_req *r, uint64_t expires) {
  sqlite3_stmt *st = q->st[ST_MSG_INSERT];
  const pl_msg *m = &r->u.send.out.msg;
  pl_sq_bind_text(st, 1, m->conv);
  pl_sq_bind_u64(st, 2, m->seq);
  pl_sq_bind_u64(st, 3, r->user_id);
  pl_sq_bind_text(st, 4, m->from);
  pl_sq_bind_text(st, 5, m->from_device);
  pl_sq_bind_text(st, 6, m->id);
  pl_sq_seal_bind(q, st, 7, 'b', m->conv, m->seq, m->server_ts, m->body, m->body_len);
  pl_sq_bind_u64(st, 8, m->client_ts);
  pl_sq_bind_u64(st, 9, m->server_ts);
  pl_sq_bind_u64(st, 10, expires);
  pl_sq_bind_u64(st, 11, pl_retention_msg_refs(r->u.send.out.ntargets));
  pl_sq_bind_u64(st, 12, PL_MSG_MESSAGE);
  pl_sq_bind_u64(st, 13, 0);
  pl_sq_bind_u64(st, 14, pl_sq_seal_sk(q));
  pl_err e = pl_sq_run(q, st);
  r->u.send.out.msg.qid = e == PL_OK ? (uint64_t)sqlite3_last_insert_rowid(q->db) : 0;
  return e;
}

pl_err pl_sq_queue_insert(pl__sq *q, const uint64_t *t, size_t n, uint64_t qid) {
  sqlite3_stmt *st = q->st[ST_QUEUE_INSERT];
  pl_err e = PL_OK;
  for (size_t i = 0; i < n && e == PL_OK; i++) {
    pl_sq_bind_u64(st, 1, t[i]);
    pl_sq_bind_u64(st, 2, qid);
    e = pl_sq_run(q, st);
    if (e == PL_OK)
      pl__qlen_add(q, t[i], 1);
  }
  return e;
}

/* ---- fetch and ack ------------------------------------------------------------ */

/* Column 13 is the row's key id (sq_seal.c). On an error (a row that does
 * not open) *m is still whole, with the body and media empty. */
pl_err pl_sq_queue_msg_row(pl__sq *q, sqlite3_stmt *st, pl_msg *m) {
  m->qid = pl_sq_col_u64(st, 0);
  m->gid = 0; /* a group's entry: its fetch sets it */
  m->conv = pl_sq_col_str(st, 1);
  m->seq = pl_sq_col_u64(st, 2);
  m->from = pl_sq_col_str(st, 3);
  m->from_device = pl_sq_col_str(st, 4);
  m->id = pl_sq_col_str(st, 5);
  m->client_ts = pl_sq_col_u64(st, 7);
  m->server_ts = pl_sq_col_u64(st, 8);
  m->kind = (int)sqlite3_column_int(st, 9);
  m->aux = pl_sq_col_u64(st, 10);
  m->act = NULL;
  m->act_len = 0;
  if (sqlite3_column_type(st, 12) == SQLITE_BLOB) {
    m->act_len = (size_t)sqlite3_column_bytes(st, 12);
    m->act = pl_memdup(sqlite3_column_blob(st, 12), m->act_len);
  }
  uint8_t sk = (uint8_t)sqlite3_column_int(st, 13);
  m->media = NULL;
  m->media_len = 0;
  pl_err e = pl_sq_seal_col(q, st, 6, sk, 'b', m->conv, m->seq, m->server_ts, &m->body, &m->body_len);
  if (e == PL_OK && sqlite3_column_type(st, 11) == SQLITE_BLOB)
    e = pl_sq_seal_col(q, st, 11, sk, 'm', m->conv, m->seq, m->server_ts, &m->media, &m->media_len);
  if (!m->body)
    m->body = pl_memdup("", 0);
  return e;
}

/* A page is bounded in entries and in bytes: a device back after a week
 * with 512 queued 64 KiB messages would otherwise cost 32 MiB of memory
 * per fetch, and the connection can take only about 256 KiB before the
 * cursor waits for its drain anyway. */
pl_err pl_sq_queue_fetch(pl__sq *q, pl_store_req *r) {
  sqlite3_stmt *st = q->st[ST_FETCH];
  uint32_t limit = r->u.fetch.in.limit ? r->u.fetch.in.limit : PL__FETCH_DEFAULT;
  size_t max_bytes = r->u.fetch.in.max_bytes ? r->u.fetch.in.max_bytes : PL__FETCH_BYTES, bytes = 0;
  size_t cap = 0;
  int rc, sealed_bad = 0;
  pl_sq_bind_u64(st, 1, r->device_id);
  pl_sq_bind_u64(st, 2, pl_sq_clamp(r->u.fetch.in.after));
  pl_sq_bind_u64(st, 3, pl_sq_clamp(pl_now_ms()));
  pl_sq_bind_u64(st, 4, (uint64_t)limit + 1); /* one more tells whether there is more */
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    if (r->u.fetch.out.nmsgs == limit) {
      r->u.fetch.out.more = 1;
      break;
    }
    if (bytes > max_bytes) { /* read as far as a page can go: more remain */
      r->u.fetch.out.more = 1;
      break;
    }
    if (r->u.fetch.out.nmsgs == cap) {
      cap = cap ? cap * 2 : 16;
      cap = cap < limit ? cap : limit;
      r->u.fetch.out.msgs = pl_realloc(r->u.fetch.out.msgs, cap * sizeof *r->u.fetch.out.msgs);
    }
    pl_msg *m = &r->u.fetch.out.msgs[r->u.fetch.out.nmsgs++];
    sealed_bad |= pl_sq_queue_msg_row(q, st, m) != PL_OK;
    bytes += pl_sq_msg_weight(m);
  }
  pl_err e = rc == SQLITE_ROW || rc == SQLITE_DONE ? PL_OK : pl_sq_sql_err(q, st, rc);
  sqlite3_reset(st);
  if (e == PL_OK && !sealed_bad)
    e = pl_sq_ghist_fetch_groups(q, r, limit, max_bytes);
  if (e == PL_OK && (sealed_bad || r->status == PL_ERR_INTERNAL)) {
    /* a row that does not open is never served as something else */
    pl_store_req_clear(r);
    r->status = PL_ERR_INTERNAL;
  }
  return e;
}

/* ---- events: receipts and read syncs (docs/protocol.md 11.4) --------------- */

/* The signed-in devices of u but skip (0: none skipped). */
uint64_t *pl_sq_queue_devs_except(const pl__user *u, uint64_t skip, size_t *n) {
  uint64_t *t = pl_malloc((u->ndevs + 1) * sizeof *t);
  *n = 0;
  for (size_t i = 0; i < u->ndevs; i++)
    if (u->devs[i] != skip)
      t[(*n)++] = u->devs[i];
  return t;
}

/* Deletes the queue rows of event qid (one statement whatever the number
 * of devices), counting them off each device's queue length. */
static pl_err pl__event_unqueue(pl__sq *q, uint64_t qid) {
  sqlite3_stmt *st = q->st[ST_EVENT_UNQUEUE_ALL];
  int rc;
  pl_sq_bind_u64(st, 1, qid);
  while ((rc = sqlite3_step(st)) == SQLITE_ROW)
    pl__qlen_add(q, pl_sq_col_u64(st, 0), -1);
  pl_err e = rc == SQLITE_DONE ? PL_OK : pl_sq_sql_err(q, st, rc);
  sqlite3_reset(st);
  return e;
}

/* A message deleted for everyone leaves every queue (sq_acts.c): the
 * senders' shares are recounted when next needed. */
pl_err pl_sq_queue_drop_msg(pl__sq *q, uint64_t qid) {
  pl_err e = pl__event_unqueue(q, qid);
  if (e == PL_OK)
    e = pl_sq_run1(q, ST_EVENT_DROP, qid);
  if (e == PL_OK)
    pl__shares_drop_all(q);
  return e;
}

/* Deletes the pending events a new one of the same (conv, kind, by)
 * replaces, from every queue that holds them. */
static pl_err pl__event_coalesce(pl__sq *q, int kind, const char *conv, uint64_t by) {
  sqlite3_stmt *st = q->st[ST_EVENT_OLD];
  uint64_t old[8];
  size_t nold = 0;
  int rc;
  pl_sq_bind_text(st, 1, conv);
  pl_sq_bind_u64(st, 2, (uint64_t)kind);
  pl_sq_bind_u64(st, 3, by);
  /* Coalescing keeps at most one pending; a few more only after a crash. */
  while ((rc = sqlite3_step(st)) == SQLITE_ROW && nold < sizeof old / sizeof old[0])
    old[nold++] = pl_sq_col_u64(st, 0);
  pl_err e = rc == SQLITE_ROW || rc == SQLITE_DONE ? PL_OK : pl_sq_sql_err(q, st, rc);
  sqlite3_reset(st);
  for (size_t k = 0; k < nold && e == PL_OK; k++) {
    e = pl__event_unqueue(q, old[k]);
    if (e == PL_OK)
      e = pl_sq_run1(q, ST_EVENT_DROP, old[k]);
  }
  return e;
}

/* Records an event in r->events for the deliver hook (qid 0: pushed to
 * connected devices, not stored). Takes t over. */
void pl_sq_queue_event_out(pl_store_req *r, uint64_t qid, int kind, const char *conv, uint64_t seq,
                           const pl__user *by, uint64_t aux, uint64_t now, uint64_t *t, size_t n) {
  pl_store_event_add(r, qid, kind, conv, seq, by->name, aux, now, t, n);
}

/* Moves the connected devices of t[0..*n) to a new array (returned, with
 * its length in *nlive); the rest stay in t (pl_receipts_split_live). */
uint64_t *pl_sq_queue_split_online(pl__sq *q, uint64_t *t, size_t *n, size_t *nlive) {
  uint64_t *live = pl_malloc((*n + 1) * sizeof *live);
  *nlive = pl_receipts_split_live(t, n, live, q->online, q->online_ud);
  return live;
}

/* An event (receipt or read sync) for targets (taken over): pushed at once
 * to the connected ones, queued durably for the others, replacing the
 * pending one of the same (conv, kind, by). */
pl_err pl_sq_queue_event(pl__sq *q, pl_store_req *r, int kind, const char *conv, uint64_t seq,
                         const pl__user *by, uint64_t aux, uint64_t *t, size_t n) {
  sqlite3_stmt *st = q->st[ST_MSG_INSERT];
  uint64_t now = pl_now_ms();
  size_t nlive;
  uint64_t *live = pl_sq_queue_split_online(q, t, &n, &nlive);
  if (nlive)
    pl_sq_queue_event_out(r, 0, kind, conv, seq, by, aux, now, live, nlive);
  else
    pl_free(live);
  pl_err e = n && pl_receipts_replaces_pending(kind) ? pl__event_coalesce(q, kind, conv, by->id) : PL_OK;
  if (e != PL_OK || !n) {
    pl_free(t);
    return e;
  }
  pl_sq_bind_text(st, 1, conv);
  pl_sq_bind_u64(st, 2, seq);
  pl_sq_bind_u64(st, 3, by->id);
  pl_sq_bind_text(st, 4, by->name);
  pl_sq_bind_text(st, 5, "");
  pl_sq_bind_text(st, 6, "");
  sqlite3_bind_zeroblob(st, 7, 0);
  pl_sq_bind_u64(st, 8, 0);
  pl_sq_bind_u64(st, 9, now);
  pl_sq_bind_u64(st, 10, pl_sq_expires(q, now));
  pl_sq_bind_u64(st, 11, pl_retention_msg_refs(n));
  pl_sq_bind_u64(st, 12, (uint64_t)kind);
  pl_sq_bind_u64(st, 13, aux);
  pl_sq_bind_u64(st, 14, pl_sq_seal_sk(q));
  e = pl_sq_run(q, st);
  uint64_t qid = e == PL_OK ? (uint64_t)sqlite3_last_insert_rowid(q->db) : 0;
  if (e == PL_OK)
    e = pl_sq_queue_insert(q, t, n, qid);
  if (e != PL_OK) {
    pl_free(t);
    return e;
  }
  pl_sq_queue_event_out(r, qid, kind, conv, seq, by, aux, now, t, n);
  return PL_OK;
}

typedef struct pl__acked {
  char *conv;
  uint64_t seq, sender;
} pl__acked;

/* The conversations an ack of dev up to qid covers, with the highest seq
 * acked in each and who sent it (messages from others only). */
static pl_err pl__acked_convs(pl__sq *q, pl_store_req *r, pl__acked **out, size_t *n) {
  sqlite3_stmt *st = q->st[ST_ACK_CONVS];
  size_t cap = 0;
  int rc;
  *out = NULL;
  *n = 0;
  pl_sq_bind_u64(st, 1, r->device_id);
  pl_sq_bind_u64(st, 2, pl_sq_clamp(r->u.ack.in.upto));
  pl_sq_bind_u64(st, 3, r->user_id);
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    *out = pl_sq_reserve(*out, *n, &cap, sizeof **out);
    (*out)[*n].conv = pl_sq_col_str(st, 0);
    (*out)[*n].seq = pl_sq_col_u64(st, 1);
    (*out)[(*n)++].sender = pl_sq_col_u64(st, 2);
  }
  pl_err e = rc == SQLITE_DONE ? PL_OK : pl_sq_sql_err(q, st, rc);
  sqlite3_reset(st);
  return e;
}

/* Delivered receipts for an ack: once per conversation whose delivered
 * watermark of the acking user moves, to every device of the sender. */
static pl_err pl__delivered(pl__sq *q, pl_store_req *r) {
  pl__acked *a;
  pl__user *me = NULL, *sender;
  pl__read *rd;
  size_t n, nt;
  pl_err e = pl__acked_convs(q, r, &a, &n);
  if (e == PL_OK && n)
    e = pl_sq_acct_user_get(q, r->user_id, &me);
  for (size_t i = 0; i < n && e == PL_OK && me; i++) {
    e = pl_sq_conv_read_load(q, me->id, a[i].conv, &rd);
    if (e != PL_OK || !pl_receipts_advance(&rd->delivered_seq, a[i].seq))
      continue;
    pl_sq_conv_read_touch(q, rd);
    e = pl_sq_acct_user_get(q, a[i].sender, &sender);
    if (e == PL_OK && sender && pl_receipts_delivered_to_sender(pl_sq_acct_blocks(me, sender->id))) {
      uint64_t *t = pl_sq_queue_devs_except(sender, 0, &nt);
      e = pl_sq_queue_event(q, r, PL_MSG_DELIVERED, a[i].conv, a[i].seq, me, 0, t, nt);
    }
  }
  for (size_t i = 0; i < n; i++)
    pl_free(a[i].conv);
  pl_free(a);
  return e;
}

/* Set-based: delete the acked messages this was the last reference to,
 * drop one reference from the others, then the queue rows themselves;
 * delivered receipts first (they read the rows about to go). Deleting
 * first spares the common case (one target) an UPDATE that rewrites every
 * row just before it goes; and when the DELETE took as many messages as the
 * ack covers queue rows (every 1:1 ack), no message is left to decrement,
 * so the UPDATE (a temporary table of the qids and a probe per row) is
 * skipped for a count over the queue's index. */
pl_err pl_sq_queue_ack(pl__sq *q, pl_store_req *r) {
  uint64_t queued, covered = 0;
  pl_err e = pl__qlen(q, r->device_id, &queued);
  if (e == PL_OK && !queued) /* group history only: no SQL at all */
    return pl_sq_ghist_ack_cursor(q, r);
  if (e == PL_OK && r->user_id)
    e = pl__delivered(q, r);
  if (e == PL_OK)
    e = pl_sq_ghist_ack_cursor(q, r);
  uint64_t upto = pl_sq_clamp(r->u.ack.in.upto);
  if (e == PL_OK)
    e = pl_sq_u64_query(q, ST_ACK_COUNT, r->device_id, upto, 0, &covered);
  if (e == PL_OK)
    e = pl_sq_run2(q, ST_ACK_MSGS, r->device_id, upto);
  if (e == PL_OK && (uint64_t)sqlite3_changes64(q->db) < covered)
    e = pl_sq_run2(q, ST_ACK_REFS, r->device_id, upto);
  if (e == PL_OK)
    e = pl_sq_run2(q, ST_ACK_QUEUE, r->device_id, upto);
  if (e != PL_OK)
    return e;
  r->u.ack.out.removed = (uint64_t)sqlite3_changes64(q->db);
  pl__qlen_add(q, r->device_id, -(int64_t)r->u.ack.out.removed);
  if (r->u.ack.out.removed)
    pl__shares_drop_dev(q, r->device_id); /* recounted when needed */
  return PL_OK;
}
