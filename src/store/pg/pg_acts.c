/* pg_acts: message actions on PostgreSQL (docs/protocol.md 11.9):
 * replies, forwards, reactions, edits, deletes for everyone, and the
 * disappearing-message timer. The rules are pl_acts'; this file loads what
 * they need and stores what they allow, as sq_acts.c does on SQLite:
 *
 *   msgidx       (conv, seq) -> mid, sender_uid, server_ts, expires,
 *                deleted: every plain message, kept until it expires, so
 *                that an action finds its target after the message row
 *                went with the last device's Ack
 *   conv_timers  conv -> timer_s (no row: off)
 *   messages.act the packed parley.Act a Message carries (NULL: none)
 *
 * Nothing is cached between transactions (several nodes write): the timer
 * is read in the send's transaction after its seq was taken, so under the
 * conversation row's lock, which a timer change holds too until it
 * commits; a send that follows a timer change on another node sees it. */
#include "../../rules/pl_roles.h"
#include "pg_internal.h"

/* The target of an action as pl_acts wants it (and its message's mid, 0
 * when no queue holds it any more). now 0: whether or not it expired. */
static pl_err pl__target(pl__pg *g, const char *conv, uint64_t seq, uint64_t now, pl_act_target *t,
                         uint64_t *mid) {
  PGresult *res;
  memset(t, 0, sizeof *t);
  *mid = 0;
  pl_err e = pl_pg_q(g, &res,
                     "SELECT mid, sender_uid, server_ts, deleted FROM msgidx"
                     " WHERE conv = $1 AND seq = $2 AND expires > $3",
                     "suu", conv, seq, pl_pg_clamp(now));
  if (e != PL_OK)
    return e;
  t->found = PQntuples(res) > 0;
  if (t->found) {
    *mid = pl_pg_col_u64(res, 0, 0);
    t->sender = pl_pg_col_u64(res, 0, 1);
    t->server_ts = pl_pg_col_u64(res, 0, 2);
    t->deleted = pl_pg_col_int(res, 0, 3);
  }
  PQclear(res);
  return PL_OK;
}

pl_err pl_pg_acts_check(pl__pg *g, pl_store_req *r, const char *conv, uint64_t me, uint64_t gid, int role,
                        uint64_t now) {
  const pl_act *a = r->u.send.in.act;
  pl_act_target t;
  uint64_t mid, last = 0;
  pl_err e = PL_OK, st = PL_OK;
  if (!a)
    return PL_OK;
  if (a->kind == PL_ACT_NONE) {
    if (a->reply_to)
      e = pl_pg_u64(g, &last, "SELECT last_seq FROM convs WHERE conv = $1", "s", conv);
    st = pl_acts_may_reply(a->reply_to, last);
  } else if (a->kind == PL_ACT_TIMER) {
    st = pl_acts_may_set_timer(gid != 0, role >= PL_ROLE_ADMIN);
  } else if (pl_acts_needs_target(a->kind)) {
    e = pl__target(g, conv, a->target, now, &t, &mid);
    if (e == PL_OK)
      st = pl_acts_may(&g->acts, a, &t, me, role >= PL_ROLE_ADMIN, now);
  }
  if (e == PL_OK && st != PL_OK) { /* refused: nothing is written */
    pl_store_req_clear(r);
    r->status = st;
  }
  return e;
}

void pl_pg_acts_stamp(pl__pg *g, pl_store_req *r, uint32_t timer_s, uint64_t *expires) {
  const pl_act *a = r->u.send.in.act;
  pl_msg *m = &r->u.send.out.msg;
  /* the announcement of a timer stays; everything else obeys the timer */
  if (a && a->kind == PL_ACT_TIMER)
    timer_s = 0;
  uint64_t vanish = pl_acts_vanish_at(pl_acts_timer_ms(&g->acts, timer_s), m->server_ts);
  *expires = pl_acts_expires(pl_retention_expires(g->ttl_ms, m->server_ts), vanish);
  pl_free(m->act);
  m->act = pl_store_act_pack(a, vanish, &m->act_len);
  r->u.send.out.vanish_at = vanish;
}

void pl_pg_acts_dedup_vanish_add(pl_pg_pipe *p, const pl_store_req *r) {
  if (!r->u.send.out.vanish_at) /* (the common case: no timer, nothing to write) */
    return;
  pl_pg_pipe_add(p, "UPDATE dedup SET vanish = $3 WHERE device_id = $1 AND client_id = $2", "usu",
                 r->device_id, r->u.send.in.client_id, pl_pg_clamp(r->u.send.out.vanish_at));
}

/* A delete for everyone: the target is no target any more; in 1:1 it
 * leaves every queue that still holds it (nobody receives it now); in a
 * group's history it becomes a tombstone (the history is positioned by
 * seq, and members reading it later learn that something was there). */
static pl_err pl__delete(pl__pg *g, const char *conv, uint64_t seq, uint64_t gid) {
  uint64_t mid = 0;
  pl_err e = pl_pg_u64(g, &mid, "UPDATE msgidx SET deleted = 1 WHERE conv = $1 AND seq = $2 RETURNING mid",
                       "su", conv, seq);
  if (e != PL_OK || !mid)
    return e;
  if (!gid) {
    e = pl_pg_q(g, NULL,
                "WITH d AS (DELETE FROM queue WHERE mid = $1 RETURNING device_id)" PL_PG_QUEUE_UNCOUNT, "u",
                mid);
    return e == PL_OK ? pl_pg_q(g, NULL, "DELETE FROM messages WHERE mid = $1", "u", mid) : e;
  }
  pl_act self = {PL_ACT_DELETE, seq, 0, 0, 0, NULL};
  size_t len;
  uint8_t *b = pl_store_act_pack(&self, 0, &len);
  e = pl_pg_q(g, NULL,
              "UPDATE messages SET body = ''::bytea, media = NULL, media_id = NULL, act = $2 WHERE mid = $1",
              "ub", mid, (const void *)b, len);
  pl_free(b);
  return e;
}

pl_err pl_pg_acts_apply(pl__pg *g, pl_store_req *r, uint64_t mid, uint64_t gid, uint64_t expires,
                        int indexed) {
  const pl_act *a = r->u.send.in.act;
  const pl_msg *m = &r->u.send.out.msg;
  int kind = a ? a->kind : PL_ACT_NONE;
  pl_err e = PL_OK;
  if (kind == PL_ACT_NONE && !indexed)
    e = pl_pg_q(g, NULL, PL_PG_ACTS_INDEX("$1", "$2", "$3", "$4", "$5", "$6") PL_PG_ACTS_INDEX_CONFLICT,
                "suuuuu", m->conv, m->seq, mid, r->user_id, m->server_ts, pl_pg_clamp(expires));
  if (e == PL_OK && pl_acts_delete_unqueues(kind))
    e = pl__delete(g, m->conv, a->target, gid);
  if (e == PL_OK && kind == PL_ACT_TIMER)
    e = pl_pg_q(g, NULL,
                "INSERT INTO conv_timers(conv, timer_s) VALUES($1, $2)"
                " ON CONFLICT(conv) DO UPDATE SET timer_s = $2",
                "su", m->conv, (uint64_t)a->timer_s);
  return e;
}

pl_err pl_pg_acts_expire(pl__pg *g, uint64_t now) {
  return pl_pg_q(g, NULL, "DELETE FROM msgidx WHERE expires <= $1", "u", pl_pg_clamp(now));
}
