/* sq_acts: message actions in the SQLite backend (docs/protocol.md 11.9):
 * replies, forwards, reactions, edits, deletes for everyone, and the
 * disappearing-message timer. The rules are pl_acts'; this file loads what
 * they need and stores what they allow.
 *
 *   msgidx      (conv, seq) -> qid, sender_uid, server_ts, expires,
 *               deleted: every plain message, kept until it expires, so
 *               that an action can find its target after the message row
 *               itself went with the last device's Ack
 *   conv_timers conv -> timer_s (no row: off)
 *   messages.act  the packed parley.Act a Message carries (NULL: none)
 *
 * What a backend with several writers (PostgreSQL) does the same: one index
 * row per message, a timer row per conversation, the act column; it reads
 * the timer in the send's transaction instead of from pl__conv's cache. */
#include "../../rules/pl_roles.h"
#include "sq_internal.h"

/* Schema 11, by what is missing rather than by number (another step may
 * take the number first when branches merge), in one transaction. */
pl_err pl_sq_acts_upgrade(sqlite3 *db) {
  static const char tables[] =
      "CREATE TABLE IF NOT EXISTS msgidx(conv TEXT NOT NULL, seq INTEGER NOT NULL, qid INTEGER NOT NULL,"
      " sender_uid INTEGER NOT NULL, server_ts INTEGER NOT NULL, expires INTEGER NOT NULL,"
      " deleted INTEGER NOT NULL, PRIMARY KEY(conv, seq)) WITHOUT ROWID;"
      "CREATE INDEX IF NOT EXISTS msgidx_expires ON msgidx(expires);"
      "CREATE TABLE IF NOT EXISTS conv_timers(conv TEXT PRIMARY KEY, timer_s INTEGER NOT NULL) WITHOUT "
      "ROWID;";
  sqlite3_stmt *st = NULL;
  int has = 0;
  pl_err e = PL_ERR_STORE;
  if (sqlite3_prepare_v2(db, "SELECT count(*) FROM pragma_table_info('messages') WHERE name = 'act'", -1, &st,
                         NULL) != SQLITE_OK)
    goto out;
  if (sqlite3_step(st) == SQLITE_ROW)
    has = sqlite3_column_int(st, 0);
  if (sqlite3_exec(db, "BEGIN", NULL, NULL, NULL) != SQLITE_OK)
    goto out;
  if ((!has && sqlite3_exec(db, "ALTER TABLE messages ADD COLUMN act BLOB", NULL, NULL, NULL) != SQLITE_OK) ||
      sqlite3_exec(db, tables, NULL, NULL, NULL) != SQLITE_OK ||
      sqlite3_exec(db, "PRAGMA user_version = 11; COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
    pl_error("store: schema 11 (message actions): %s", sqlite3_errmsg(db));
    sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    goto out;
  }
  e = PL_OK;
out:
  sqlite3_finalize(st);
  return e;
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

/* The target of an action as pl_acts wants it (and its qid). */
static pl_err pl__target(pl__sq *q, const char *conv, uint64_t seq, uint64_t now, pl_act_target *t,
                         uint64_t *qid) {
  sqlite3_stmt *st = q->st[ST_ACT_IDX_GET];
  memset(t, 0, sizeof *t);
  *qid = 0;
  pl_sq_bind_text(st, 1, conv);
  pl_sq_bind_u64(st, 2, seq);
  pl_sq_bind_u64(st, 3, pl_sq_clamp(now));
  pl_err e = pl_sq_row(q, st, &t->found);
  if (e != PL_OK)
    return e;
  if (t->found) {
    *qid = pl_sq_col_u64(st, 0);
    t->sender = pl_sq_col_u64(st, 1);
    t->server_ts = pl_sq_col_u64(st, 2);
    t->deleted = sqlite3_column_int(st, 3);
  }
  sqlite3_reset(st);
  return PL_OK;
}

static pl_err pl__is_admin(pl__sq *q, pl__user *me, uint64_t gid, int *admin) {
  int role = PL_ROLE_NONE;
  pl_err e = gid ? pl_sq_group_role(q, me, gid, &role) : PL_OK;
  *admin = role >= PL_ROLE_ADMIN;
  return e;
}

pl_err pl_sq_acts_check(pl__sq *q, pl_store_req *r, const char *conv, pl__conv *c, pl__user *me, uint64_t gid,
                        uint64_t now) {
  const pl_act *a = r->u.send.in.act;
  pl_act_target t;
  uint64_t qid;
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
    e = pl__target(q, conv, a->target, now, &t, &qid);
    if (e == PL_OK && a->kind == PL_ACT_DELETE && t.found && t.sender != me->id)
      e = pl__is_admin(q, me, gid, &admin);
    if (e == PL_OK)
      st = pl_acts_may(&q->acts, a, &t, me->id, admin, now);
  }
  if (e == PL_OK && st != PL_OK) { /* refused: nothing is written */
    pl_store_req_clear(r);
    r->status = st;
  }
  return e;
}

/* A delete for everyone: the target is no target any more; in 1:1 it
 * leaves every queue that still holds it (nobody receives it now); in a
 * group's history it becomes a tombstone (the history is positioned by
 * seq, and members reading it later learn that something was there). */
static pl_err pl__delete(pl__sq *q, const char *conv, uint64_t seq, uint64_t gid) {
  pl_act_target t;
  uint64_t qid;
  pl_err e = pl__target(q, conv, seq, 0, &t, &qid);
  if (e == PL_OK) {
    sqlite3_stmt *st = q->st[ST_ACT_IDX_DEL];
    pl_sq_bind_text(st, 1, conv);
    pl_sq_bind_u64(st, 2, seq);
    e = pl_sq_run(q, st);
  }
  if (e != PL_OK || !qid)
    return e;
  if (!gid)
    return pl_sq_queue_drop_msg(q, qid);
  pl_act self = {PL_ACT_DELETE, seq, 0, 0, 0, NULL};
  size_t len;
  uint8_t *b = pl_store_act_pack(&self, 0, &len);
  sqlite3_stmt *st = q->st[ST_ACT_TOMBSTONE];
  pl_sq_bind_u64(st, 1, qid);
  sqlite3_bind_blob(st, 2, b, (int)len, SQLITE_STATIC);
  e = pl_sq_run(q, st);
  pl_free(b);
  return e;
}

static pl_err pl__index(pl__sq *q, const pl_msg *m, uint64_t sender, uint64_t expires) {
  sqlite3_stmt *st = q->st[ST_ACT_IDX_PUT];
  pl_sq_bind_text(st, 1, m->conv);
  pl_sq_bind_u64(st, 2, m->seq);
  pl_sq_bind_u64(st, 3, m->qid);
  pl_sq_bind_u64(st, 4, sender);
  pl_sq_bind_u64(st, 5, m->server_ts);
  pl_sq_bind_u64(st, 6, pl_sq_clamp(expires));
  return pl_sq_run(q, st);
}

pl_err pl_sq_acts_apply(pl__sq *q, pl_store_req *r, pl__conv *c, uint64_t gid) {
  const pl_act *a = r->u.send.in.act;
  pl_msg *m = &r->u.send.out.msg;
  int kind = a ? a->kind : PL_ACT_NONE;
  uint32_t timer_s = 0;
  pl_err e = kind == PL_ACT_TIMER ? PL_OK : pl__timer(q, c, &timer_s);
  if (e != PL_OK)
    return e;
  /* the announcement of a timer stays; everything else obeys the timer */
  uint64_t vanish = pl_acts_vanish_at(pl_acts_timer_ms(&q->acts, timer_s), m->server_ts);
  uint64_t expires = pl_acts_expires(pl_sq_expires(q, m->server_ts), vanish);
  m->act = pl_store_act_pack(a, vanish, &m->act_len);
  r->u.send.out.vanish_at = vanish;
  if (m->act && m->qid) {
    sqlite3_stmt *st = q->st[ST_ACT_ATTACH];
    pl_sq_bind_u64(st, 1, m->qid);
    sqlite3_bind_blob(st, 2, m->act, (int)m->act_len, SQLITE_STATIC);
    pl_sq_bind_u64(st, 3, pl_sq_clamp(expires));
    e = pl_sq_run(q, st);
  }
  if (e == PL_OK && kind == PL_ACT_NONE)
    e = pl__index(q, m, r->user_id, expires);
  if (e == PL_OK && pl_acts_delete_unqueues(kind))
    e = pl__delete(q, m->conv, a->target, gid);
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
