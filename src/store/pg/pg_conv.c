/* pg_conv: conversation counters, read watermarks, the 1:1 send path with
 * its dedup record, mark_read, unread and the store's counts, on
 * PostgreSQL. The rules are pl_conv's, pl_privacy's and pl_receipts'. */
#include "../../rules/pl_conv.h"
#include "../../rules/pl_privacy.h"
#include "../../rules/pl_receipts.h"
#include "../../rules/pl_roles.h"
#include "pg_internal.h"

/* Takes the conversation's next seq and a server time that never goes
 * back in it: one upsert, whose row lock makes a second sender to the same
 * conversation (on any node) wait for this commit and take the next one. */
pl_err pl_pg_conv_next(pl__pg *g, const char *conv, uint64_t now, uint64_t *seq, uint64_t *ts) {
  PGresult *res;
  pl_err e =
      pl_pg_q(g, &res,
              "INSERT INTO convs(conv, last_seq, last_ts) VALUES($1, 1, $2) ON CONFLICT(conv) DO UPDATE"
              " SET last_seq = convs.last_seq + 1, last_ts = greatest(convs.last_ts, $2)"
              " RETURNING last_seq, last_ts",
              "su", conv, now);
  if (e == PL_OK) {
    *seq = pl_pg_col_u64(res, 0, 0);
    *ts = pl_pg_col_u64(res, 0, 1);
  }
  PQclear(res);
  return e;
}

/* Moves uid's watermarks in conv forward to read / delivered (0: that one
 * stays) and makes the row if there is none (UNREAD lists the rows);
 * *moved if the one given moved (pl_receipts_advance). */
pl_err pl_pg_conv_read_move(pl__pg *g, uint64_t uid, const char *conv, uint64_t read, uint64_t delivered,
                            int *moved) {
  PGresult *res;
  pl_err e = pl_pg_q(g, &res,
                     "INSERT INTO reads(uid, conv, read_seq, delivered_seq) VALUES($1, $2, $3, $4)"
                     " ON CONFLICT(uid, conv) DO UPDATE SET read_seq = greatest(reads.read_seq, $3),"
                     " delivered_seq = greatest(reads.delivered_seq, $4)"
                     " WHERE reads.read_seq < $3 OR reads.delivered_seq < $4 RETURNING 1",
                     "usuu", uid, conv, read, delivered);
  *moved = e == PL_OK && PQntuples(res) > 0 && (read || delivered);
  PQclear(res);
  return e;
}

/* ---- send ------------------------------------------------------------------------ */

/* The record of an accepted id. A live record already there is the same
 * id committed meanwhile by another node: the batch runs again and finds
 * it (an expired one the sweep has not reached is replaced). */
#define PL__DEDUP_PUT                                                                            \
  "INSERT INTO dedup(device_id, client_id, conv, seq, server_ts) SELECT $1, $2, $3, s, t FROM n" \
  " ON CONFLICT(device_id, client_id) DO UPDATE SET conv = $3, seq = EXCLUDED.seq, server_ts = " \
  "EXCLUDED.server_ts"                                                                           \
  " WHERE dedup.server_ts <= $5 RETURNING 1"

/* pl_pg_conv_next and the dedup record in one statement (a send: one
 * round trip fewer per message); pl_pg_conv_next_dedup_read reads it. */
int pl_pg_conv_next_dedup_add(pl__pg *g, pl_pg_pipe *p, pl_store_req *r, const char *conv, uint64_t now) {
  return pl_pg_pipe_add(
      p,
      "WITH n AS (INSERT INTO convs(conv, last_seq, last_ts) VALUES($3, 1, $4) ON CONFLICT(conv)"
      " DO UPDATE SET last_seq = convs.last_seq + 1, last_ts = greatest(convs.last_ts, $4)"
      " RETURNING last_seq AS s, last_ts AS t),"
      " d AS (" PL__DEDUP_PUT ") SELECT s, t, (SELECT count(*) FROM d) FROM n",
      "ussuu", r->device_id, r->u.send.in.client_id, conv, now, pl_retention_dedup_cut(g->ttl_ms, now));
}

pl_err pl_pg_conv_next_dedup_read(const PGresult *res, uint64_t *seq, uint64_t *ts) {
  *seq = pl_pg_col_u64(res, 0, 0);
  *ts = pl_pg_col_u64(res, 0, 1);
  return pl_pg_col_u64(res, 0, 2) ? PL_OK : PL_ERR_AGAIN;
}

static pl_err pl__next_and_dedup(pl__pg *g, pl_store_req *r, const char *conv, uint64_t now, uint64_t *seq,
                                 uint64_t *ts) {
  pl_pg_pipe p;
  pl_pg_pipe_begin(&p, g);
  pl_pg_conv_next_dedup_add(g, &p, r, conv, now);
  pl_err e = pl_pg_pipe_end(&p);
  if (e == PL_OK)
    e = pl_pg_conv_next_dedup_read(p.res[0], seq, ts);
  pl_pg_pipe_clear(&p);
  return e;
}

/* The message row (refs: one per target), its queue rows and, for a plain
 * message, its row in the action targets' index, as one statement of p
 * (PL_PG_QUEUE_PUT says how the positions are taken); its index in p.
 * pl__msg_inserted reads the qids and the message's id from its result. */
static int pl__msg_insert_add(pl_pg_pipe *p, pl_store_req *r, const uint8_t *att, size_t att_len,
                              uint64_t expires) {
  const pl_msg *m = &r->u.send.out.msg;
  const char *media_id = r->u.send.in.media_id && *r->u.send.in.media_id ? r->u.send.in.media_id : NULL;
  char *arr = pl_pg_array(r->u.send.out.targets, r->u.send.out.ntargets);
  int at = pl_pg_pipe_add(
      p,
      "WITH m AS (INSERT INTO messages(conv, seq, sender_uid, from_name, from_device, client_id, body,"
      " client_ts, server_ts, expires, refs, media_id, media, act)"
      " VALUES($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $15) RETURNING mid),"
      " x AS (" PL_PG_ACTS_INDEX("$1", "$2::bigint", "mid", "$3::bigint", "$9::bigint",
                                 "$10::bigint") " FROM m WHERE $16::int = 1" PL_PG_ACTS_INDEX_CONFLICT "),"
                                                " " PL_PG_QUEUE_PUT("$14", "(SELECT mid FROM m)"),
      "suusssbuuuusbsbi", m->conv, m->seq, r->user_id, m->from, m->from_device, m->id, (const void *)m->body,
      m->body_len, m->client_ts, m->server_ts, pl_pg_clamp(expires),
      pl_retention_msg_refs(r->u.send.out.ntargets), media_id, (const void *)att, att_len, arr,
      (const void *)m->act, m->act_len, pl_pg_acts_indexed(r));
  pl_free(arr);
  return at;
}

static void pl__msg_inserted(pl_store_req *r, const PGresult *res, uint64_t *mid) {
  r->u.send.out.qids = pl_pg_queue_qids(res, r->u.send.out.targets, r->u.send.out.ntargets);
  *mid = PQntuples(res) > 0 ? pl_pg_col_u64(res, 0, 2) : 0;
  r->u.send.out.msg.qid = r->u.send.out.qids[0];
}

/* After the seq, in one round trip: both read watermarks (sending reads
 * the conversation, 11.4; the peer's row must exist for UNREAD) and the
 * conversation's timer (read under the convs row lock the seq took). */
/* there: across shards, the user of the other shard (its read marks are
 * made there, by the copy: pg_relay.c), else NULL. */
static pl_err pl__after_seq(pl__pg *g, const pl_pg_user *me, const pl_pg_user *peer, const pl_pg_user *there,
                            const char *conv, uint64_t seq, uint32_t *timer_s) {
  pl_pg_pipe p;
  pl_pg_pipe_begin(&p, g);
  pl_pg_pipe_add(&p,
                 "WITH p AS (" PL_PG_READS_PEER("$1::bigint", "$2::bigint", "$3") ") " PL_PG_READS_MINE_IF(
                     "$1::bigint", "$3", "$4::bigint", "$5::int = 1"),
                 "uusui", me->id, there == peer ? me->id : peer->id, conv, seq, there != me);
  pl_pg_pipe_add(&p, PL_PG_ACTS_TIMER_SQL("$1"), "s", conv);
  pl_err e = pl_pg_pipe_end(&p);
  if (e == PL_OK)
    *timer_s = (uint32_t)pl_pg_col_u64(p.res[1], 0, 0);
  pl_pg_pipe_clear(&p);
  return e;
}

static pl_err pl__send_write(pl__pg *g, pl_store_req *r, const pl_pg_user *peer, const pl_pg_user *me,
                             const pl_pg_user *there, char *conv, const uint8_t *att, size_t att_len) {
  uint64_t seq = 0, ts = 0, expires = 0, mid = 0;
  uint32_t timer_s = 0;
  r->u.send.out.conv = conv;
  pl_err e = pl__next_and_dedup(g, r, conv, pl_now_ms(), &seq, &ts);
  if (e == PL_OK)
    e = pl__after_seq(g, me, peer, there, conv, seq, &timer_s);
  if (e != PL_OK)
    return e;
  r->u.send.out.seq = seq;
  r->u.send.out.server_ts = ts;
  pl_store_send_fill_msg(r, me->name);
  if (att) { /* the live copy carries the attachment as the stored row does */
    r->u.send.out.msg.media = pl_memdup(att, att_len);
    r->u.send.out.msg.media_len = att_len;
  }
  pl_pg_acts_stamp(g, r, timer_s, &expires);
  /* the writes that need nothing of each other's, in one round trip: the
   * dedup record's vanish time, the message with its queue rows, the
   * attachment's grant */
  pl_pg_pipe p;
  pl_pg_pipe_begin(&p, g);
  pl_pg_acts_dedup_vanish_add(&p, r);
  int at = r->u.send.out.ntargets ? pl__msg_insert_add(&p, r, att, att_len, expires) : -1;
  if (att)
    pl_pg_media_grant_add(g, &p, r->u.send.in.media_id, conv);
  if (there) /* T1's outbox row, in the same transaction (docs/scaling.md 2) */
    pl_pg_relay_add(g, &p, r, pl_pg_shard_of_id(g, there->id), there->id, expires);
  e = pl_pg_pipe_end(&p);
  if (e == PL_OK && at >= 0)
    pl__msg_inserted(r, p.res[at], &mid);
  pl_pg_pipe_clear(&p);
  if (e == PL_OK)
    e = pl_pg_acts_apply(g, r, mid, 0, expires, r->u.send.out.ntargets > 0);
  return e;
}

/* A 1:1 send between two loaded users (either NULL: unknown). */
static pl_err pl__send_dm(pl__pg *g, pl_store_req *r, const pl_pg_user *peer, const pl_pg_user *me,
                          const uint8_t *att, size_t att_len) {
  int full = 0;
  r->status = pl_privacy_peer(peer != NULL, me != NULL, peer && me && peer->id == me->id, 1);
  if (r->status == PL_OK)
    r->status = pl_privacy_may_send(pl_pg_user_blocks(peer, me->id)); /* refused: nothing stored */
  if (r->status != PL_OK)
    return PL_OK;
  char *conv = pl_conv_dm(me->name, peer->name);
  /* an action's target, a reply's quote, a timer (refused: nothing written) */
  pl_err e = pl_pg_acts_check(g, r, conv, me->id, 0, PL_ROLE_NONE, pl_now_ms());
  if (e != PL_OK || r->status != PL_OK) {
    pl_free(conv);
    return e;
  }
  uint64_t *t = pl_malloc((peer->ndevs + me->ndevs + 1) * sizeof *t);
  r->u.send.out.targets = t;
  r->u.send.out.ntargets =
      pl_conv_dm_targets(peer->devs, peer->ndevs, me->devs, me->ndevs, peer->id == me->id, r->device_id, t);
  e = pl_pg_queue_full(g, me, t, r->u.send.out.ntargets, &full);
  if (e != PL_OK || full) {
    pl_free(conv);
    if (e == PL_OK) {
      pl_store_req_clear(r);
      r->status = PL_ERR_QUEUE_FULL;
    }
    return e;
  }
  /* across shards: the user of the other shard gets the copy (T2), its
   * devices are not queued here */
  const pl_pg_user *there = NULL;
  if (g->nshards > 1 && pl_pg_shard_of_id(g, peer->id) != g->shard)
    there = peer;
  else if (g->nshards > 1 && pl_pg_shard_of_id(g, me->id) != g->shard)
    there = me;
  if (there) {
    size_t k = 0;
    for (size_t i = 0; i < r->u.send.out.ntargets; i++)
      if (pl_pg_shard_of_id(g, t[i]) == g->shard)
        t[k++] = t[i];
    r->u.send.out.ntargets = k;
  }
  if (att && (r->status = pl_pg_media_grant_away(g, r->u.send.in.media_id, conv)) != PL_OK) {
    pl_free(conv); /* the upload's shard away: this send fails (retryable), nothing written */
    return PL_OK;
  }
  return pl__send_write(g, r, peer, me, there, conv, att, att_len);
}

/* What a send reads first, in one round trip (pipeline mode): its dedup
 * record, the sender, and the peer (1:1) or the sender's role (a group). */
static pl_err pl__send_reads(pl__pg *g, pl_store_req *r, int *hit, pl_pg_user **peer, pl_pg_user **me,
                             int *role) {
  pl_pg_pipe p;
  pl_pg_xpipe x;
  pl_err xe = PL_OK;
  long me_at, peer_at = -1;
  *peer = *me = NULL;
  *role = PL_ROLE_NONE;
  pl_pg_pipe_begin(&p, g);
  pl_pg_xpipe_begin(&x, g, &p); /* a 1:1 send's users: each on its shard */
  pl_pg_pipe_add(&p,
                 "SELECT conv, seq, server_ts, vanish FROM dedup WHERE device_id = $1 AND client_id = $2 AND "
                 "server_ts > $3",
                 "usu", r->device_id, r->u.send.in.client_id, pl_retention_dedup_cut(g->ttl_ms, pl_now_ms()));
  int role_at = -1;
  if (r->u.send.in.group)
    role_at = pl_pg_pipe_add(&p, "SELECT role FROM members WHERE gid = $1 AND uid = $2", "uu",
                             r->u.send.in.group, r->user_id);
  else
    peer_at = pl_pg_xpipe_user_by_name(&x, r->u.send.in.peer);
  me_at = pl_pg_xpipe_user(&x, r->user_id);
  pl_err e = pl_pg_xpipe_end(&x);
  if (e != PL_OK) {
    pl_pg_xpipe_clear(&x);
    pl_pg_pipe_clear(&p);
    return e;
  }
  PGresult *d = p.res[0];
  *hit = PQntuples(d) > 0;
  if (*hit) {
    r->u.send.out.conv = pl_pg_col_str(d, 0, 0);
    r->u.send.out.seq = pl_pg_col_u64(d, 0, 1);
    r->u.send.out.server_ts = pl_pg_col_u64(d, 0, 2);
    r->u.send.out.vanish_at = pl_pg_col_u64(d, 0, 3);
    r->u.send.out.duplicate = 1;
  } else {
    pl_pg_user_load(pl_pg_xpipe_take(&x, me_at, &xe), PL_OK, me);
    e = xe;
    if (!r->u.send.in.group) {
      pl_pg_user_load(pl_pg_xpipe_take(&x, peer_at, &xe), PL_OK, peer);
      e = e == PL_OK ? xe : e;
    } else if (PQntuples(p.res[role_at]) > 0) {
      *role = pl_pg_col_int(p.res[role_at], 0, 0);
    }
  }
  pl_pg_xpipe_clear(&x);
  pl_pg_pipe_clear(&p);
  if (e != PL_OK) { /* a shard away: this send fails (retryable), not the batch */
    r->status = e;
    e = PL_OK;
  }
  return e;
}

pl_err pl_pg_conv_send(pl__pg *g, pl_store_req *r) {
  int hit = 0;
  uint8_t *att = NULL;
  size_t att_len = 0;
  pl_pg_user *peer = NULL, *me = NULL;
  int role;
  pl_err e = pl__send_reads(g, r, &hit, &peer, &me, &role);
  if (e != PL_OK || hit || r->status != PL_OK)
    goto out;
  if (r->u.send.in.body_len > PL_PG_MAX_BODY) {
    r->status = PL_ERR_MESSAGE_TOO_LARGE;
    goto out;
  }
  /* checked before anything is written: a refused send leaves no trace */
  if (r->u.send.in.media_id && *r->u.send.in.media_id) {
    e = pl_pg_media_for_send(g, r, me, &att, &att_len);
    if (e != PL_OK || r->status != PL_OK)
      goto out;
  }
  e = r->u.send.in.group ? pl_pg_group_send(g, r, me, role, att, att_len)
                         : pl__send_dm(g, r, peer, me, att, att_len);
out:
  pl_free(att);
  pl_pg_user_free(peer);
  pl_pg_user_free(me);
  return e;
}

/* ---- mark read and unread -------------------------------------------------------- */

pl_err pl_pg_conv_mark_read(pl__pg *g, pl_store_req *r) {
  if (r->u.mark_read.in.group)
    return pl_pg_group_mark_read(g, r);
  pl_pg_user *peer = NULL, *me = NULL;
  uint64_t last = 0;
  char *conv = NULL;
  int moved = 0;
  size_t nt;
  pl_pg_pipe p;
  pl_pg_xpipe x;
  pl_pg_evs q = {0};
  pl_pg_pipe_begin(&p, g);
  pl_pg_xpipe_begin(&x, g, &p); /* the peer: on its shard */
  long peer_at = pl_pg_xpipe_user_by_name(&x, r->u.mark_read.in.peer),
       me_at = pl_pg_xpipe_user(&x, r->user_id);
  pl_err e = pl_pg_xpipe_end(&x), pe = PL_OK, me_e = PL_OK;
  if (e == PL_OK) {
    pl_pg_user_load(pl_pg_xpipe_take(&x, peer_at, &pe), PL_OK, &peer);
    pl_pg_user_load(pl_pg_xpipe_take(&x, me_at, &me_e), PL_OK, &me);
    r->status = pe != PL_OK ? pe : me_e; /* a shard away: this request fails (retryable), not the batch */
  }
  pl_pg_xpipe_clear(&x);
  pl_pg_pipe_clear(&p);
  if (e != PL_OK || r->status != PL_OK)
    goto out;
  r->status = pl_privacy_peer(peer != NULL, me != NULL, peer && me && peer->id == me->id, 1);
  if (r->status != PL_OK)
    goto out;
  conv = pl_conv_dm(me->name, peer->name);
  /* the conversation's last seq: its counter if it lives here, else the
   * last copied in from its shard (every plain message is) */
  e = pl_pg_u64(g, &last,
                "SELECT greatest((SELECT last_seq FROM convs WHERE conv = $1),"
                " (SELECT upto FROM relay WHERE stream = $1), 0)",
                "s", conv);
  uint64_t seq = pl_receipts_read_upto(r->u.mark_read.in.upto, last);
  if (e == PL_OK && seq)
    e = pl_pg_conv_read_move(g, me->id, conv, seq, 0, &moved);
  if (e != PL_OK || !moved)
    goto out;
  /* the ReadSync to my other devices, whatever the receipts settings, and
   * the receipt to the peer: one round trip */
  pl_pg_pipe_begin(&p, g);
  uint64_t *t = pl_pg_queue_devs_except(me, r->device_id, &nt);
  pl_pg_queue_event_add(g, &p, &q, r, PL_MSG_READ_SYNC, conv, seq, me, pl_receipts_unread(last, seq), t, nt);
  if (pl_receipts_read_to_peer(peer->id == me->id, me->read_receipts, peer->read_receipts,
                               pl_pg_user_blocks(me, peer->id))) {
    t = pl_pg_queue_devs_except(peer, 0, &nt);
    pl_pg_queue_event_add(g, &p, &q, r, PL_MSG_READ, conv, seq, me, 0, t, nt);
  }
  e = pl_pg_pipe_end(&p);
  if (e == PL_OK)
    pl_pg_queue_event_done(&q, &p, r);
  pl_free(q.v);
  pl_pg_pipe_clear(&p);
out:
  pl_free(conv);
  pl_pg_user_free(peer);
  pl_pg_user_free(me);
  return e;
}

/* A conversation with a user of another shard (docs/scaling.md 2): its
 * last seq is the last copied in here if it lives there (relay), and the
 * peer's marks are the receipts copied in (pg_relay.c mirrors them into
 * the peer's reads row here; the peer's own user row is not here, and the
 * receipts came only if its settings let them). */
pl_err pl_pg_conv_unread(pl__pg *g, pl_store_req *r) {
  PGresult *res;
  pl_err e =
      pl_pg_q(g, &res,
              "SELECT r.conv, greatest(c.last_seq, rl.upto, 0), r.read_seq, COALESCE(p.delivered_seq, 0),"
              " COALESCE(p.read_seq, 0), u.read_receipts,"
              " COALESCE(pu.read_receipts, CASE WHEN p.uid IS NULL THEN 0 ELSE 1 END),"
              " (b.uid IS NOT NULL)::int"
              " FROM reads r LEFT JOIN convs c ON c.conv = r.conv LEFT JOIN relay rl ON rl.stream = r.conv"
              " LEFT JOIN reads p ON p.conv = r.conv AND p.uid <> r.uid LEFT JOIN users pu ON pu.id = p.uid"
              " LEFT JOIN blocks b ON b.uid = p.uid AND b.blocked_uid = r.uid"
              " JOIN users u ON u.id = r.uid WHERE r.uid = $1 ORDER BY r.conv COLLATE \"C\"",
              "u", r->user_id);
  if (e != PL_OK)
    return e;
  size_t n = (size_t)PQntuples(res);
  r->u.unread.out.convs = pl_calloc(n + 1, sizeof *r->u.unread.out.convs);
  for (size_t i = 0; i < n; i++) {
    pl_conv_state *cs = &r->u.unread.out.convs[r->u.unread.out.nconvs++];
    int row = (int)i;
    cs->conv = pl_pg_col_str(res, row, 0);
    cs->last_seq = pl_pg_col_u64(res, row, 1);
    cs->read_seq = pl_pg_col_u64(res, row, 2);
    pl_receipts_peer_marks(pl_pg_col_u64(res, row, 3), pl_pg_col_u64(res, row, 4), pl_pg_col_int(res, row, 5),
                           pl_pg_col_int(res, row, 6), pl_pg_col_int(res, row, 7), &cs->peer_delivered,
                           &cs->peer_read);
  }
  PQclear(res);
  return pl_pg_group_unread(g, r);
}

pl_err pl_pg_conv_stats(pl__pg *g, pl_store_req *r) { return pl_pg_conv_counts(g, &r->u.stats.out.counts); }

/* STATS: one statement of counts (for a scrape interval, not per request). */
pl_err pl_pg_conv_counts(pl__pg *g, pl_store_counts *c) {
  PGresult *res;
  pl_err e = pl_pg_q(
      g, &res,
      "SELECT (SELECT count(*) FROM users), (SELECT count(*) FROM devices WHERE token_hash IS NOT NULL),"
      " (SELECT count(*) FROM messages WHERE kind = 0 AND gid = 0),"
      " (SELECT count(*) FROM queue q JOIN messages m ON m.mid = q.mid WHERE m.kind = 0),"
      " (SELECT count(*) FROM messages WHERE kind <> 0 AND gid = 0), (SELECT count(*) FROM queue),"
      " (SELECT count(*) FROM messages WHERE gid <> 0), (SELECT count(*) FROM dedup)",
      NULL);
  if (e != PL_OK)
    return e;
  c->users = pl_pg_col_u64(res, 0, 0);
  c->devices = pl_pg_col_u64(res, 0, 1);
  c->messages = pl_pg_col_u64(res, 0, 2);
  c->message_queue = pl_pg_col_u64(res, 0, 3);
  c->events = pl_pg_col_u64(res, 0, 4);
  c->queue = pl_pg_col_u64(res, 0, 5);
  c->group_history = pl_pg_col_u64(res, 0, 6);
  c->dedup = pl_pg_col_u64(res, 0, 7);
  PQclear(res);
  return pl_pg_group_stats(g, c);
}
