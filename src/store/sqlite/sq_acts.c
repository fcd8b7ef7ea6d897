/* sq_acts: message actions in the SQLite backend (docs/protocol.md 11.9):
 * replies, forwards, reactions, edits, deletes for everyone, and the
 * disappearing-message timer. The rules are pl_acts'; this file loads what
 * they need and stores what they allow.
 *
 * An action's target is found through the dedup record its message wrote
 * anyway (sender's device, cref, seq, server_ts, kept for the TTL): schema
 * 13 gave it a vanish column (negative for an action, which is no target)
 * and the partial index dedup_target(cref, seq) WHERE vanish >= 0, so a
 * plain message pays one small index entry and nothing else. Schema 11 wrote a msgidx row per
 * message instead, two more b-tree inserts that cost ~28 % of plain-send
 * throughput (docs/benchmarks.md); msgidx now holds only:
 *   msgidx      (conv, seq) -> qid, sender_uid, server_ts, expires,
 *               deleted: the deletes for everyone (and the rows schemas
 *               11-12 wrote, read until they expire)
 *   conv_timers conv -> timer_s (no row: off)
 *   messages.act  the packed parley.Act a Message carries (NULL: none)
 * A deleted target's message row is found when needed (rarely): in the
 * group's history, or through the queues of the two users' devices.
 *
 * What a backend with several writers (PostgreSQL) does the same: a target
 * findable per message, a timer row per conversation, the act column; it
 * reads the timer in the send's transaction instead of from pl__conv's cache. */
#include "../../rules/pl_roles.h"
#include "sq_internal.h"

/* Schema 11, by what is missing rather than by number (another step may
 * take the number first when branches merge), in one transaction. */
pl_err pl_sq_acts_upgrade(sqlite3 *db) {
  return pl_sq_upgrade_column(
      db, "messages", "act", "BLOB",
      "CREATE TABLE IF NOT EXISTS msgidx(conv TEXT NOT NULL, seq INTEGER NOT NULL, qid INTEGER NOT NULL,"
      " sender_uid INTEGER NOT NULL, server_ts INTEGER NOT NULL, expires INTEGER NOT NULL,"
      " deleted INTEGER NOT NULL, PRIMARY KEY(conv, seq)) WITHOUT ROWID;"
      "CREATE INDEX IF NOT EXISTS msgidx_expires ON msgidx(expires);"
      "CREATE TABLE IF NOT EXISTS conv_timers(conv TEXT PRIMARY KEY, timer_s INTEGER NOT NULL) WITHOUT ROWID;"
      "PRAGMA user_version = 11",
      "schema 11 (message actions)");
}

/* Schema 13: dedup.vanish and its partial index. Records written before
 * keep vanish NULL (not indexed): their targets are in msgidx, as schema 11
 * wrote them. */
pl_err pl_sq_acts_upgrade13(sqlite3 *db) {
  return pl_sq_upgrade_column(db, "dedup", "vanish", "INTEGER",
                              "CREATE INDEX IF NOT EXISTS dedup_target ON dedup(cref, seq) WHERE vanish >= 0;"
                              "PRAGMA user_version = 13",
                              "schema 13 (message targets by dedup record)");
}

/* The conversation's timer (cached in c). */
static pl_err pl__timer(pl__sq *q, pl__conv *c, uint32_t *timer_s) {
  if (!c->timer_known) {
    sqlite3_stmt *st = q->st[ST_ACT_TIMER_GET];
    int found;
    pl_sq_bind_text(st, 1, c->name);
    pl_err e = pl_sq_row(q, st, &found);
    if (e != PL_OK)
      return e;
    c->timer_s = found ? (uint32_t)sqlite3_column_int64(st, 0) : 0;
    sqlite3_reset(st);
    c->timer_known = 1;
  }
  *timer_s = c->timer_s;
  return PL_OK;
}

/* The conversation an action is sent in: 1:1 between me and peer (the
 * same for a note to self), or the group gid. */
typedef struct pl__where {
  const char *conv;
  uint64_t me, peer, gid;
} pl__where;

/* What pl_acts needs of a target, and what a delete writes of it. */
typedef struct pl__tgt {
  pl_act_target t;
  uint64_t qid; /* its message row (msgidx only; else found by pl__qid) */
  uint64_t expires;
} pl__tgt;

/* A target found in msgidx: a delete for everyone, or a schema 11-12 row.
 * now 0: whatever its expiry. */
static pl_err pl__target_idx(pl__sq *q, const char *conv, uint64_t seq, uint64_t now, pl__tgt *t) {
  sqlite3_stmt *st = q->st[ST_ACT_IDX_GET];
  pl_sq_bind_text(st, 1, conv);
  pl_sq_bind_u64(st, 2, seq);
  pl_sq_bind_u64(st, 3, pl_sq_clamp(now));
  pl_err e = pl_sq_row(q, st, &t->t.found);
  if (e == PL_OK && t->t.found) {
    t->qid = pl_sq_col_u64(st, 0);
    t->t.sender = pl_sq_col_u64(st, 1);
    t->t.server_ts = pl_sq_col_u64(st, 2);
    t->t.deleted = sqlite3_column_int(st, 3);
    t->expires = UINT64_MAX; /* a delete mark carries its target's: see pl__delete */
  }
  sqlite3_reset(st);
  return e;
}

/* A target found by its dedup record under cref, sent by sender (0: any
 * member of the group), not expired at now (0: whatever its expiry). */
static pl_err pl__target_dedup(pl__sq *q, uint64_t cref, uint64_t sender, uint64_t seq, uint64_t now,
                               pl__tgt *t) {
  sqlite3_stmt *st = q->st[ST_ACT_DEDUP_GET];
  uint64_t oldest = now && now > q->ttl_ms ? now - q->ttl_ms : 0;
  int rc = SQLITE_DONE;
  pl_sq_bind_u64(st, 1, cref);
  pl_sq_bind_u64(st, 2, seq);
  pl_sq_bind_u64(st, 3, pl_sq_clamp(oldest));
  while (!t->t.found && (rc = sqlite3_step(st)) == SQLITE_ROW) {
    uint64_t ts = pl_sq_col_u64(st, 0), uid = pl_sq_col_u64(st, 2);
    uint64_t expires = pl_acts_expires(pl_sq_expires(q, ts), pl_sq_col_u64(st, 1));
    if ((sender && uid != sender) || (now && expires <= now))
      continue; /* another conversation with the same peer at this seq, or gone */
    t->t.found = 1;
    t->t.sender = uid;
    t->t.server_ts = ts;
    t->expires = expires;
  }
  pl_err e = rc == SQLITE_ROW || rc == SQLITE_DONE ? PL_OK : pl_sq_sql_err(q, st, rc);
  sqlite3_reset(st);
  return e;
}

/* The target (w->conv, seq) as pl_acts wants it. In 1:1 the record is the
 * sender's: cref names the other user. */
static pl_err pl__target(pl__sq *q, const pl__where *w, uint64_t seq, uint64_t now, pl__tgt *t) {
  memset(t, 0, sizeof *t);
  pl_err e = pl__target_idx(q, w->conv, seq, now, t);
  if (e != PL_OK || t->t.found)
    return e;
  if (w->gid)
    return pl__target_dedup(q, PL_SQ_DEDUP_GROUP(w->gid), 0, seq, now, t);
  e = pl__target_dedup(q, PL_SQ_DEDUP_DM(w->peer), w->me, seq, now, t);
  if (e == PL_OK && !t->t.found && w->peer != w->me)
    e = pl__target_dedup(q, PL_SQ_DEDUP_DM(w->me), w->peer, seq, now, t);
  return e;
}

static pl_err pl__is_admin(pl__sq *q, pl__user *me, uint64_t gid, int *admin) {
  int role = PL_ROLE_NONE;
  pl_err e = gid ? pl_sq_group_role(q, me, gid, &role) : PL_OK;
  *admin = role >= PL_ROLE_ADMIN;
  return e;
}

pl_err pl_sq_acts_check(pl__sq *q, pl_store_req *r, const char *conv, pl__conv *c, pl__user *me, uint64_t peer,
                        uint64_t gid, uint64_t now) {
  const pl_act *a = r->u.send.in.act;
  pl__where w = {conv, me->id, peer, gid};
  pl__tgt t;
  int admin = 0;
  pl_err e = PL_OK, st = PL_OK;
  if (!a)
    return PL_OK;
  if (a->kind == PL_ACT_NONE) {
    st = pl_acts_may_reply(a->reply_to, c->seq);
  } else if (a->kind == PL_ACT_TIMER) {
    e = pl__is_admin(q, me, gid, &admin);
    st = pl_acts_may_set_timer(gid != 0, admin);
  } else if (pl_acts_needs_target(a->kind)) {
    e = pl__target(q, &w, a->target, now, &t);
    if (e == PL_OK && a->kind == PL_ACT_DELETE && t.t.found && t.t.sender != me->id)
      e = pl__is_admin(q, me, gid, &admin);
    if (e == PL_OK)
      st = pl_acts_may(&q->acts, a, &t.t, me->id, admin, now);
  }
  if (e == PL_OK && st != PL_OK) { /* refused: nothing is written */
    pl_store_req_clear(r);
    r->status = st;
  }
  return e;
}

/* The message row of a target that only its dedup record found: in the
 * group's history, or in a queue of either user's devices (0: every
 * device has it, nothing to take back). */
static pl_err pl__qid(pl__sq *q, const pl__where *w, uint64_t seq, uint64_t *qid) {
  if (w->gid)
    return pl_sq_u64_query(q, ST_ACT_QID_GROUP, w->gid, seq, 0, qid);
  sqlite3_stmt *st = q->st[ST_ACT_QID_DM];
  int found;
  pl_sq_bind_u64(st, 1, w->me);
  pl_sq_bind_u64(st, 2, w->peer);
  pl_sq_bind_text(st, 3, w->conv);
  pl_sq_bind_u64(st, 4, seq);
  pl_err e = pl_sq_row(q, st, &found);
  *qid = e == PL_OK && found ? pl_sq_col_u64(st, 0) : 0;
  sqlite3_reset(st);
  return e;
}

/* A delete for everyone: the target is no target any more (a msgidx mark
 * until it would have expired); in 1:1 it leaves every queue that still
 * holds it (nobody receives it now); in a group's history it becomes a
 * tombstone (the history is positioned by seq, and members reading it
 * later learn that something was there). */
static pl_err pl__delete(pl__sq *q, const pl__where *w, uint64_t seq) {
  pl__tgt t;
  pl_err e = pl__target(q, w, seq, 0, &t);
  if (e != PL_OK || !t.t.found)
    return e;
  if (!t.qid)
    e = pl__qid(q, w, seq, &t.qid);
  if (e == PL_OK) {
    sqlite3_stmt *st = q->st[ST_ACT_IDX_PUT];
    pl_sq_bind_text(st, 1, w->conv);
    pl_sq_bind_u64(st, 2, seq);
    pl_sq_bind_u64(st, 3, t.qid);
    pl_sq_bind_u64(st, 4, t.t.sender);
    pl_sq_bind_u64(st, 5, t.t.server_ts);
    pl_sq_bind_u64(st, 6, pl_sq_clamp(t.expires));
    e = pl_sq_run(q, st);
  }
  if (e != PL_OK || !t.qid)
    return e;
  if (!w->gid)
    return pl_sq_queue_drop_msg(q, t.qid);
  pl_act self = {PL_ACT_DELETE, seq, 0, 0, 0, NULL};
  size_t len;
  uint8_t *b = pl_store_act_pack(&self, 0, &len);
  sqlite3_stmt *st = q->st[ST_ACT_TOMBSTONE];
  pl_sq_bind_u64(st, 1, t.qid);
  sqlite3_bind_blob(st, 2, b, (int)len, SQLITE_STATIC);
  e = pl_sq_run(q, st);
  pl_free(b);
  return e;
}

/* When the message about to be stored vanishes (0: never), before its
 * dedup record, which keeps it: r->u.send.out.vanish_at. The announcement
 * of a timer stays; everything else obeys the conversation's timer. */
pl_err pl_sq_acts_vanish(pl__sq *q, pl_store_req *r, pl__conv *c, uint64_t ts) {
  const pl_act *a = r->u.send.in.act;
  uint32_t timer_s = 0;
  pl_err e = a && a->kind == PL_ACT_TIMER ? PL_OK : pl__timer(q, c, &timer_s);
  r->u.send.out.vanish_at = e == PL_OK ? pl_acts_vanish_at(pl_acts_timer_ms(&q->acts, timer_s), ts) : 0;
  return e;
}

pl_err pl_sq_acts_apply(pl__sq *q, pl_store_req *r, pl__conv *c, uint64_t peer, uint64_t gid) {
  const pl_act *a = r->u.send.in.act;
  pl_msg *m = &r->u.send.out.msg;
  int kind = a ? a->kind : PL_ACT_NONE;
  uint64_t vanish = r->u.send.out.vanish_at;
  uint64_t expires = pl_acts_expires(pl_sq_expires(q, m->server_ts), vanish);
  pl_err e = PL_OK;
  m->act = pl_store_act_pack(a, vanish, &m->act_len);
  if (m->act && m->qid) {
    sqlite3_stmt *st = q->st[ST_ACT_ATTACH];
    pl_sq_bind_u64(st, 1, m->qid);
    sqlite3_bind_blob(st, 2, m->act, (int)m->act_len, SQLITE_STATIC);
    pl_sq_bind_u64(st, 3, pl_sq_clamp(expires));
    e = pl_sq_run(q, st);
  }
  if (e == PL_OK && pl_acts_delete_unqueues(kind)) {
    pl__where w = {m->conv, r->user_id, peer, gid};
    e = pl__delete(q, &w, a->target);
  }
  if (e == PL_OK && kind == PL_ACT_TIMER) {
    sqlite3_stmt *st = q->st[ST_ACT_TIMER_PUT];
    pl_sq_bind_text(st, 1, m->conv);
    pl_sq_bind_u64(st, 2, a->timer_s);
    e = pl_sq_run(q, st);
    c->timer_s = a->timer_s;
    c->timer_known = 1;
  }
  return e;
}

pl_err pl_sq_acts_expire(pl__sq *q, uint64_t now) {
  return pl_sq_run1(q, ST_ACT_IDX_EXPIRE, pl_sq_clamp(now));
}
