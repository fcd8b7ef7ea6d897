/* sq_convs: conversation counters (seq/ts cache), read watermarks, unread
 * counts, mark_read (1:1) and the 1:1 send path. */
#include "../../rules/pl_conv.h"
#include "../../rules/pl_privacy.h"
#include "../../rules/pl_receipts.h"
#include "sq_internal.h"

void pl_sq_conv_cache_drop(pl__sq *q) {
  uint64_t k;
  void *v;
  for (size_t it = 0; pl_map_next(&q->convs, &it, &k, &v);) {
    pl__conv *c = v;
    pl_free(c->name);
    pl_free(c);
  }
  pl_map_free(&q->convs);
  q->dirty = NULL;
}

void pl_sq_conv_reads_drop(pl__sq *q) {
  uint64_t k;
  void *v;
  for (size_t it = 0; pl_map_next(&q->reads, &it, &k, &v);) {
    pl__read *rd = v;
    pl_free(rd->conv);
    pl_free(rd);
  }
  pl_map_free(&q->reads);
  q->dirty_reads = NULL;
}

pl_err pl_sq_conv_get(pl__sq *q, const char *name, pl__conv **out) {
  sqlite3_stmt *st = q->st[ST_CONV_GET];
  uint64_t h = pl_sq_hash(name);
  pl__conv *c = pl_map_get(&q->convs, h);
  int found;
  *out = c;
  if (c && strcmp(c->name, name) == 0)
    return PL_OK;
  pl_sq_bind_text(st, 1, name);
  pl_err e = pl_sq_row(q, st, &found);
  if (e != PL_OK)
    return e;
  if (!c) {
    c = pl_calloc(1, sizeof *c);
    pl_map_put(&q->convs, h, c);
  }
  pl_free(c->name); /* a hash collision: the entry now caches this conv */
  c->name = pl_strdup(name);
  c->seq = found ? pl_sq_col_u64(st, 0) : 0;
  c->ts = found ? pl_sq_col_u64(st, 1) : 0;
  c->timer_known = 0;
  sqlite3_reset(st);
  *out = c;
  return PL_OK;
}

void pl_sq_conv_read_touch(pl__sq *q, pl__read *rd) {
  if (!rd->dirty) {
    rd->dirty = 1;
    rd->next_dirty = q->dirty_reads;
    q->dirty_reads = rd;
  }
}

/* The watermarks of uid in conv, from the cache or loaded into it (a row
 * that does not exist yet starts at 0 and is written at commit). */
static pl_err pl__read_get(pl__sq *q, uint64_t uid, const char *conv, pl__read **out) {
  sqlite3_stmt *st = q->st[ST_READS_GET];
  uint64_t h = pl_sq_hash(conv) ^ (uid * 0x9E3779B97F4A7C15ULL);
  pl__read *rd = pl_map_get(&q->reads, h);
  int found;
  *out = rd;
  if (rd && rd->uid == uid && strcmp(rd->conv, conv) == 0)
    return PL_OK;
  if (rd && rd->dirty)
    return PL_ERR_AGAIN; /* a colliding entry still to be written: the caller flushes */
  pl_sq_bind_u64(st, 1, uid);
  pl_sq_bind_text(st, 2, conv);
  pl_err e = pl_sq_row(q, st, &found);
  if (e != PL_OK)
    return e;
  if (!rd) {
    rd = pl_calloc(1, sizeof *rd);
    pl_map_put(&q->reads, h, rd);
  }
  pl_free(rd->conv);
  rd->uid = uid;
  rd->conv = pl_strdup(conv);
  rd->read_seq = found ? pl_sq_col_u64(st, 0) : 0;
  rd->delivered_seq = found ? pl_sq_col_u64(st, 1) : 0;
  sqlite3_reset(st);
  rd->dirty = 0;
  if (!found)
    pl_sq_conv_read_touch(q, rd); /* the row must exist for UNREAD */
  *out = rd;
  return PL_OK;
}

pl_err pl_sq_conv_reads_flush(pl__sq *q) {
  sqlite3_stmt *st = q->st[ST_READS_PUT];
  pl_err e = PL_OK;
  for (pl__read *rd = q->dirty_reads; rd && e == PL_OK; rd = rd->next_dirty) {
    pl_sq_bind_u64(st, 1, rd->uid);
    pl_sq_bind_text(st, 2, rd->conv);
    pl_sq_bind_u64(st, 3, rd->read_seq);
    pl_sq_bind_u64(st, 4, rd->delivered_seq);
    e = pl_sq_run(q, st);
  }
  if (e != PL_OK)
    return e;
  for (pl__read *rd = q->dirty_reads; rd; rd = rd->next_dirty)
    rd->dirty = 0;
  q->dirty_reads = NULL;
  return PL_OK;
}

/* pl__read_get that makes room when a hash collision holds unwritten data. */
pl_err pl_sq_conv_read_load(pl__sq *q, uint64_t uid, const char *conv, pl__read **out) {
  pl_err e = pl__read_get(q, uid, conv, out);
  if (e == PL_ERR_AGAIN) {
    e = pl_sq_conv_reads_flush(q);
    if (e == PL_OK)
      e = pl__read_get(q, uid, conv, out);
  }
  return e;
}

/* Where a 1:1 message goes (pl_conv_dm_targets). */
static uint64_t *pl__targets(const pl__user *peer, const pl__user *me, uint64_t from_dev, size_t *n) {
  uint64_t *t = pl_malloc((peer->ndevs + me->ndevs + 1) * sizeof *t);
  *n = pl_conv_dm_targets(peer->devs, peer->ndevs, me->devs, me->ndevs, peer == me, from_dev, t);
  return t;
}

/* The next seq of c and its server time, which never goes back within a
 * conv. Nothing is taken until pl_sq_conv_take. */
void pl_sq_conv_peek(const pl__conv *c, uint64_t now, uint64_t *seq, uint64_t *ts) {
  *seq = c->seq + 1;
  *ts = now > c->ts ? now : c->ts;
}

void pl_sq_conv_take(pl__sq *q, pl__conv *c, uint64_t seq, uint64_t ts) {
  c->seq = seq;
  c->ts = ts;
  if (!c->dirty) {
    c->dirty = 1;
    c->next_dirty = q->dirty;
    q->dirty = c;
  }
}

/* Writes the counters that moved, inside the transaction about to commit. */
pl_err pl_sq_conv_flush(pl__sq *q) {
  sqlite3_stmt *st = q->st[ST_CONV_PUT];
  pl_err e = PL_OK;
  for (pl__conv *c = q->dirty; c && e == PL_OK; c = c->next_dirty) {
    pl_sq_bind_text(st, 1, c->name);
    pl_sq_bind_u64(st, 2, c->seq);
    pl_sq_bind_u64(st, 3, pl_sq_clamp(c->ts));
    e = pl_sq_run(q, st);
  }
  if (e != PL_OK)
    return e; /* the caller rolls back, which drops the cache */
  for (pl__conv *c = q->dirty; c; c = c->next_dirty)
    c->dirty = 0;
  q->dirty = NULL;
  return PL_OK;
}

/* Writes an accepted message: dedup row, seq, message row, queue rows. A
 * message with no target (a note to self, no other device) gets a seq and
 * a dedup row but no message row; its qid is 0. */
static pl_err pl__send_write(pl__sq *q, pl_store_req *r, const pl__user *peer, pl__user *me, uint64_t now) {
  char *conv = pl_conv_dm(me->name, peer->name);
  uint64_t seq, ts;
  pl__conv *c;
  pl_err e = pl_sq_conv_get(q, conv, &c);
  if (e == PL_OK) /* an action's target, a reply's quote, a timer (refused: nothing written) */
    e = pl_sq_acts_check(q, r, conv, c, me, peer->id, 0, now);
  if (e == PL_OK && r->status == PL_OK) {
    pl_sq_conv_peek(c, now, &seq, &ts);
    e = pl_sq_acts_vanish(q, r, c, ts);
    if (e == PL_OK)
      e = pl_sq_dedup_put(q, r, PL_SQ_DEDUP_DM(peer->id), seq, ts);
  }
  if (e != PL_OK || r->status != PL_OK) {
    pl_free(conv);
    return e;
  }
  pl__read *mine, *theirs;
  if (peer != me)
    e = pl_sq_conv_read_load(q, peer->id, conv, &theirs); /* its row must exist for UNREAD */
  if (e == PL_OK)
    e = pl_sq_conv_read_load(q, me->id, conv, &mine); /* last: the pointer stays valid */
  if (e != PL_OK) {
    pl_free(conv);
    return e;
  }
  if (pl_receipts_advance(&mine->read_seq, seq)) /* sending reads the conversation (11.4) */
    pl_sq_conv_read_touch(q, mine);
  pl_sq_conv_take(q, c, seq, ts);
  r->u.send.out.conv = conv;
  r->u.send.out.seq = seq;
  r->u.send.out.server_ts = ts;
  pl_store_send_fill_msg(r, me->name);
  if (r->u.send.out.ntargets) {
    e = pl_sq_queue_msg_insert(q, r, pl_sq_expires(q, ts));
    if (e == PL_OK)
      e = pl_sq_queue_insert(q, r->u.send.out.targets, r->u.send.out.ntargets, r->u.send.out.msg.qid);
    if (e == PL_OK)
      pl_sq_queue_shares_add(q, r->u.send.out.targets, r->u.send.out.ntargets, me->id);
  }
  return e == PL_OK ? pl_sq_acts_apply(q, r, c, peer->id, 0) : e;
}

static pl_err pl__send_dm(pl__sq *q, pl_store_req *r, uint64_t now) {
  pl__user *peer = NULL, *me = NULL;
  int full;
  pl_err e = pl_sq_acct_user_by_name(q, r->u.send.in.peer, &peer);
  if (e == PL_OK && peer)
    e = pl_sq_acct_user_get(q, r->user_id, &me);
  if (e != PL_OK)
    return e;
  r->status = pl_privacy_peer(peer != NULL, me != NULL, peer == me, 1);
  if (r->status == PL_OK)
    r->status = pl_privacy_may_send(pl_sq_acct_blocks(peer, me->id)); /* refused: nothing stored */
  if (r->status != PL_OK)
    return PL_OK;
  r->u.send.out.targets = pl__targets(peer, me, r->device_id, &r->u.send.out.ntargets);
  e = pl_sq_queue_full(q, me, r->u.send.out.targets, r->u.send.out.ntargets, &full);
  if (e == PL_OK && full) {
    pl_store_req_clear(r);
    r->status = PL_ERR_QUEUE_FULL;
    return PL_OK;
  }
  return e == PL_OK ? pl__send_write(q, r, peer, me, now) : e;
}

pl_err pl_sq_conv_send(pl__sq *q, pl_store_req *r) {
  uint64_t now = pl_now_ms();
  int hit;
  uint8_t *att = NULL;
  size_t att_len = 0;
  pl_err e = pl_sq_dedup_get(q, r, now, &hit);
  if (e != PL_OK || hit)
    return e;
  if (r->u.send.in.body_len > PL__MAX_BODY) {
    r->status = PL_ERR_MESSAGE_TOO_LARGE;
    return PL_OK;
  }
  /* checked before anything is written: a refused send leaves no trace */
  if (r->u.send.in.media_id && *r->u.send.in.media_id) {
    e = pl_sq_media_for_send(q, r, &att, &att_len);
    if (e != PL_OK || r->status != PL_OK)
      return e;
  }
  e = r->u.send.in.group ? pl_sq_ghist_send_group(q, r) : pl__send_dm(q, r, now);
  if (e == PL_OK && r->status == PL_OK && att)
    e = pl_sq_media_attach(q, r, &att, att_len);
  pl_free(att);
  return e;
}

pl_err pl_sq_conv_mark_read(pl__sq *q, pl_store_req *r) {
  if (r->u.mark_read.in.group)
    return pl_sq_ghist_mark_read_group(q, r);
  pl__user *peer = NULL, *me = NULL;
  pl__conv *c;
  pl__read *rd;
  size_t nt;
  pl_err e = pl_sq_acct_user_by_name(q, r->u.mark_read.in.peer, &peer);
  if (e == PL_OK && peer)
    e = pl_sq_acct_user_get(q, r->user_id, &me);
  if (e != PL_OK)
    return e;
  r->status = pl_privacy_peer(peer != NULL, me != NULL, peer == me, 1);
  if (r->status != PL_OK)
    return PL_OK;
  char *conv = pl_conv_dm(me->name, peer->name);
  e = pl_sq_conv_get(q, conv, &c);
  uint64_t last = e == PL_OK ? c->seq : 0;
  uint64_t seq = pl_receipts_read_upto(r->u.mark_read.in.upto, last);
  if (e == PL_OK)
    e = pl_sq_conv_read_load(q, me->id, conv, &rd);
  if (e == PL_OK && pl_receipts_advance(&rd->read_seq, seq)) {
    pl_sq_conv_read_touch(q, rd);
    /* the ReadSync to my other devices, whatever the receipts settings */
    uint64_t *t = pl_sq_queue_devs_except(me, r->device_id, &nt);
    e = pl_sq_queue_event(q, r, PL_MSG_READ_SYNC, conv, seq, me, pl_receipts_unread(last, seq), t, nt);
    if (e == PL_OK && pl_receipts_read_to_peer(peer == me, me->read_receipts, peer->read_receipts,
                                               pl_sq_acct_blocks(me, peer->id))) {
      t = pl_sq_queue_devs_except(peer, 0, &nt);
      e = pl_sq_queue_event(q, r, PL_MSG_READ, conv, seq, me, 0, t, nt);
    }
  }
  pl_free(conv);
  return e;
}

pl_err pl_sq_conv_unread(pl__sq *q, pl_store_req *r) {
  sqlite3_stmt *st = q->st[ST_UNREAD];
  size_t cap = 0;
  int rc;
  /* Counters and watermarks of this transaction are still in memory. */
  pl_err e = pl_sq_conv_flush(q);
  if (e == PL_OK)
    e = pl_sq_conv_reads_flush(q);
  if (e != PL_OK)
    return e;
  pl_sq_bind_u64(st, 1, r->user_id);
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    r->u.unread.out.convs =
        pl_sq_reserve(r->u.unread.out.convs, r->u.unread.out.nconvs, &cap, sizeof *r->u.unread.out.convs);
    pl_conv_state *cs = &r->u.unread.out.convs[r->u.unread.out.nconvs++];
    cs->conv = pl_sq_col_str(st, 0);
    cs->last_seq = pl_sq_col_u64(st, 1);
    cs->read_seq = pl_sq_col_u64(st, 2);
    /* what I may see of the peer's watermarks (pl_receipts, pl_privacy) */
    pl_receipts_peer_marks(pl_sq_col_u64(st, 3), pl_sq_col_u64(st, 4), sqlite3_column_int(st, 5),
                           sqlite3_column_int(st, 6), sqlite3_column_int(st, 7), &cs->peer_delivered,
                           &cs->peer_read);
  }
  e = rc == SQLITE_DONE ? PL_OK : pl_sq_sql_err(q, st, rc);
  sqlite3_reset(st);
  if (e != PL_OK)
    return e;
  /* then the groups (their receipts are counts: GroupReceiptsGet) */
  if ((e = pl_sq_ghist_gcache_flush(q)) != PL_OK)
    return e;
  st = q->st[ST_UNREAD_GROUPS];
  pl_sq_bind_u64(st, 1, r->user_id);
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    r->u.unread.out.convs =
        pl_sq_reserve(r->u.unread.out.convs, r->u.unread.out.nconvs, &cap, sizeof *r->u.unread.out.convs);
    pl_conv_state *cs = &r->u.unread.out.convs[r->u.unread.out.nconvs++];
    memset(cs, 0, sizeof *cs);
    cs->conv = pl_sq_col_str(st, 0);
    cs->last_seq = pl_sq_col_u64(st, 1);
    cs->read_seq = pl_sq_col_u64(st, 2);
  }
  e = rc == SQLITE_DONE ? PL_OK : pl_sq_sql_err(q, st, rc);
  sqlite3_reset(st);
  return e;
}
