/* pg_ghist: group history on PostgreSQL: send, fetch, device cursors
 * (acks), watermarks and receipts, typing, unread. The rules are
 * pl_roles' (the window a device is owed, the history cap, detail), as in
 * sq_ghist.c.
 *
 * A group's history is stored once: message rows with gid set, no queue
 * rows, each positioned by its seq (gap-free per group: the convs row
 * "g:N" is taken under its lock like a 1:1 conversation's). Each device
 * has a cursor per group (gcursor). Entries carry qid 0: with several
 * writers no global qid orders them against the queues, so only protocol
 * 2 positions them (by seq, its own stream per group); a protocol 1
 * connection, whose one stream is the qid, skips them (docs/protocol.md
 * 10.3: a server with several writers needs protocol 2 for groups).
 *
 * Sharded, all of a group's rows live on its shard (pg_groups.c), where
 * its requests run; only a device's fetch and ack run on the device's
 * shard: they read the memberships of every shard and each group's part
 * on its own, and move cursors and watermarks there through the link (a
 * cursor never moves back, so an ack's write there that is lost is made
 * good by the next). */
#include "../../rules/pl_receipts.h"
#include "../../rules/pl_roles.h"
#include "pg_internal.h"

/* A row of the group's history (pl__insert: *mid gets its id). expires
 * 0: the TTL's. */
typedef struct pl__gentry {
  uint64_t gid, seq, ts, client_ts, aux, expires;
  int kind;
  const char *conv, *device, *id;
  const uint8_t *body, *act;
  size_t body_len, act_len;
} pl__gentry;

/* Makes room for one more entry within rules.group_history: the oldest
 * go (pl_roles_hist_excess), so no offline member makes a history grow
 * without end (protocol.md 11.8). */
static pl_err pl__room(pl__pg *g, uint64_t gid) {
  uint64_t cap = g->rules.group_history, n = 0;
  if (!cap)
    return PL_OK;
  pl_err e = pl_pg_u64(g, &n, "SELECT count(*) FROM messages WHERE gid = $1", "u", gid);
  uint64_t excess = e == PL_OK ? pl_roles_hist_excess(n, cap) : 0;
  if (excess)
    e = pl_pg_q(
        g, NULL,
        "DELETE FROM messages WHERE mid IN (SELECT mid FROM messages WHERE gid = $1 ORDER BY seq LIMIT $2)",
        "uu", gid, excess);
  return e;
}

static pl_err pl__insert(pl__pg *g, const pl_pg_user *from, const pl__gentry *x, uint64_t *mid) {
  pl_err e = pl__room(g, x->gid);
  if (e != PL_OK)
    return e;
  return pl_pg_u64(
      g, mid,
      "INSERT INTO messages(conv, seq, sender_uid, from_name, from_device, client_id, body, client_ts,"
      " server_ts, expires, refs, kind, aux, gid, act)"
      " VALUES($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 0, $11, $12, $13, $14) RETURNING mid",
      "suusssbuuuiuub", x->conv, x->seq, from->id, from->name, x->device, x->id,
      (const void *)(x->body ? x->body : (const uint8_t *)""), x->body_len, x->client_ts, x->ts,
      pl_pg_clamp(x->expires ? x->expires : pl_retention_expires(g->ttl_ms, x->ts)), x->kind, x->aux, x->gid,
      (const void *)x->act, x->act_len);
}

static void pl__fill(pl_msg *m, const pl_pg_user *from, const pl__gentry *x) {
  memset(m, 0, sizeof *m);
  m->gid = x->gid;
  m->kind = x->kind;
  m->aux = x->aux;
  m->conv = pl_strdup(x->conv);
  m->seq = x->seq;
  m->from = pl_strdup(from->name);
  m->from_device = pl_strdup(x->device);
  m->id = pl_strdup(x->id);
  m->body = pl_memdup(x->body_len ? (const void *)x->body : "", x->body_len);
  m->body_len = x->body_len;
  m->client_ts = x->client_ts;
  m->server_ts = x->ts;
}

pl_err pl_pg_ghist_put(pl__pg *g, uint64_t gid, const pl_pg_user *from, const char *device, const char *id,
                       const uint8_t *body, size_t body_len, uint64_t client_ts, int kind, uint64_t aux,
                       const uint8_t *act, size_t act_len, pl_msg *m) {
  char conv[32];
  pl_pg_group_gconv(gid, conv, sizeof conv);
  pl__gentry x = {.gid = gid,
                  .client_ts = client_ts,
                  .aux = aux,
                  .kind = kind,
                  .conv = conv,
                  .device = device,
                  .id = id,
                  .body = body,
                  .body_len = body_len,
                  .act = act,
                  .act_len = act_len};
  uint64_t mid;
  pl_err e = pl_pg_conv_next(g, conv, pl_now_ms(), &x.seq, &x.ts);
  if (e == PL_OK)
    e = pl__insert(g, from, &x, &mid);
  if (e == PL_OK)
    pl__fill(m, from, &x);
  return e;
}

/* The asking user (*me) if a member of gid (its role in *role); otherwise
 * r->status = NOT_MEMBER and *me = NULL (also for no such group). */
static pl_err pl__member_me(pl__pg *g, pl_store_req *r, uint64_t gid, pl_pg_user **me, int *role) {
  int rl = PL_ROLE_NONE;
  pl_pg_pipe p;
  pl_pg_xpipe x;
  pl_err xe = PL_OK;
  pl_pg_pipe_begin(&p, g);
  pl_pg_xpipe_begin(&x, g, &p); /* the user on its shard, the role here */
  long at = pl_pg_xpipe_user(&x, r->user_id);
  int ri = pl_pg_pipe_add(&p, "SELECT role FROM members WHERE gid = $1 AND uid = $2", "uu", gid, r->user_id);
  pl_err e = pl_pg_xpipe_end(&x);
  *me = NULL;
  if (e == PL_OK) {
    pl_pg_user_load(pl_pg_xpipe_take(&x, at, &xe), PL_OK, me);
    rl = PQntuples(p.res[ri]) > 0 ? pl_pg_col_int(p.res[ri], 0, 0) : PL_ROLE_NONE;
  }
  pl_pg_xpipe_clear(&x);
  pl_pg_pipe_clear(&p);
  if (role)
    *role = rl;
  if (e == PL_OK && xe != PL_OK) { /* the user's shard away: retryable */
    r->status = xe;
    pl_pg_user_free(*me);
    *me = NULL;
  } else if (e == PL_OK && (!*me || !pl_roles_member(rl))) {
    r->status = PL_ERR_NOT_MEMBER;
    pl_pg_user_free(*me);
    *me = NULL;
  }
  return e;
}

/* After the reads, in one round trip: the seq and server time with the
 * dedup record, then (under the convs row lock the seq took) the
 * conversation's timer and the history's length for pl__room. */
static pl_err pl__send_seq(pl__pg *g, pl_store_req *r, const char *conv, pl__gentry *x, uint32_t *timer_s,
                           uint64_t *len) {
  pl_pg_pipe p;
  pl_pg_pipe_begin(&p, g);
  pl_pg_conv_next_dedup_add(g, &p, r, conv, pl_now_ms());
  pl_pg_pipe_add(&p, PL_PG_ACTS_TIMER_SQL("$1"), "s", conv);
  if (g->rules.group_history)
    pl_pg_pipe_add(&p, "SELECT count(*) FROM messages WHERE gid = $1", "u", x->gid);
  pl_err e = pl_pg_pipe_end(&p);
  if (e == PL_OK)
    e = pl_pg_conv_next_dedup_read(p.res[0], &x->seq, &x->ts);
  if (e == PL_OK) {
    *timer_s = (uint32_t)pl_pg_col_u64(p.res[1], 0, 0);
    *len = g->rules.group_history ? pl_pg_col_u64(p.res[2], 0, 0) : 0;
  }
  pl_pg_pipe_clear(&p);
  return e;
}

/* The writes of a group message, in one round trip: the oldest entries
 * past the history cap (pl_roles_hist_excess), the dedup record's vanish
 * time, the entry with its attachment and its row in the action targets'
 * index, the attachment's grant, and the sender's watermarks (sending
 * reads the conversation, as in 1:1). *mid gets the entry's. */
static pl_err pl__send_write(pl__pg *g, pl_store_req *r, const pl_pg_user *me, const pl__gentry *x,
                             uint64_t len, const uint8_t *att, size_t att_len, uint64_t *mid) {
  pl_pg_pipe p;
  uint64_t excess = g->rules.group_history ? pl_roles_hist_excess(len, g->rules.group_history) : 0;
  const char *media_id = att ? r->u.send.in.media_id : NULL;
  pl_pg_pipe_begin(&p, g);
  if (excess)
    pl_pg_pipe_add(
        &p,
        "DELETE FROM messages WHERE mid IN (SELECT mid FROM messages WHERE gid = $1 ORDER BY seq LIMIT $2)",
        "uu", x->gid, excess);
  pl_pg_acts_dedup_vanish_add(&p, r);
  int at = pl_pg_pipe_add(
      &p,
      "WITH m AS (INSERT INTO messages(conv, seq, sender_uid, from_name, from_device, client_id, body,"
      " client_ts, server_ts, expires, refs, kind, aux, gid, act, media_id, media)"
      " VALUES($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 0, $11, $12, $13, $14, $15, $16) RETURNING mid),"
      " x AS (" PL_PG_ACTS_INDEX("$1", "$2::bigint", "mid", "$3::bigint", "$9::bigint",
                                 "$10::bigint") " FROM m WHERE $17::int = 1" PL_PG_ACTS_INDEX_CONFLICT
                                                ") SELECT mid FROM m",
      "suusssbuuuiuubsbi", x->conv, x->seq, me->id, me->name, x->device, x->id,
      (const void *)(x->body ? x->body : (const uint8_t *)""), x->body_len, x->client_ts, x->ts,
      pl_pg_clamp(x->expires), x->kind, x->aux, x->gid, (const void *)x->act, x->act_len, media_id,
      (const void *)att, att_len, pl_pg_acts_indexed(r));
  if (att)
    pl_pg_media_grant_add(g, &p, media_id, x->conv);
  pl_pg_pipe_add(
      &p,
      "UPDATE greads SET read_seq = greatest(read_seq, $3), delivered_seq = greatest(delivered_seq, $3)"
      " WHERE gid = $1 AND uid = $2",
      "uuu", x->gid, me->id, x->seq);
  pl_err e = pl_pg_pipe_end(&p);
  if (e == PL_OK)
    *mid = pl_pg_col_u64(p.res[at], 0, 0);
  pl_pg_pipe_clear(&p);
  return e;
}

/* A group message: the same contract as 1:1 (dedup, seq, both clocks),
 * stored once in the group's history. Only members may send (me and role:
 * pl__send_reads'). Three round trips for a plain message: the reads, the
 * seq, the writes. */
pl_err pl_pg_group_send(pl__pg *g, pl_store_req *r, const pl_pg_user *me, int role, const uint8_t *att,
                        size_t att_len) {
  uint64_t gid = r->u.send.in.group, len = 0, mid = 0;
  uint32_t timer_s = 0;
  char conv[32];
  pl_pg_group_gconv(gid, conv, sizeof conv);
  if (!me || !pl_roles_member(role)) {
    r->status = PL_ERR_NOT_MEMBER;
    return PL_OK;
  }
  /* an action's target, a reply's quote, a timer (refused: nothing written) */
  pl_err e = pl_pg_acts_check(g, r, conv, me->id, gid, role, pl_now_ms());
  if (e != PL_OK || r->status != PL_OK)
    return e;
  if (att && (r->status = pl_pg_media_grant_away(g, r->u.send.in.media_id, conv)) != PL_OK)
    return PL_OK; /* the upload's shard away: this send fails (retryable), nothing written */
  pl__gentry x = {.gid = gid,
                  .client_ts = r->u.send.in.client_ts,
                  .kind = PL_MSG_MESSAGE,
                  .conv = conv,
                  .device = r->u.send.in.device_name ? r->u.send.in.device_name : "",
                  .id = r->u.send.in.client_id,
                  .body = r->u.send.in.body,
                  .body_len = r->u.send.in.body_len};
  e = pl__send_seq(g, r, conv, &x, &timer_s, &len);
  if (e != PL_OK)
    return e;
  pl_msg *m = &r->u.send.out.msg;
  pl__fill(m, me, &x);
  pl_pg_acts_stamp(g, r, timer_s, &x.expires);
  x.act = m->act;
  x.act_len = m->act_len;
  e = pl__send_write(g, r, me, &x, len, att, att_len, &mid);
  if (e == PL_OK && att) {
    m->media = pl_memdup(att, att_len);
    m->media_len = att_len;
  }
  if (e == PL_OK)
    e = pl_pg_acts_apply(g, r, mid, gid, x.expires, pl_pg_acts_indexed(r));
  if (e == PL_OK) {
    r->u.send.out.conv = pl_strdup(conv);
    r->u.send.out.seq = x.seq;
    r->u.send.out.server_ts = x.ts;
    r->u.send.out.group = gid;
  }
  return e;
}

/* ---- fetch ---------------------------------------------------------------------- */

/* The seq listed for gid in a (sorted by gid), moving *at; 0 if not listed. */
static uint64_t pl__gpos_find(const pl_store_gpos *a, size_t n, size_t *at, uint64_t gid, int *listed) {
  while (*at < n && a[*at].gid < gid)
    (*at)++;
  *listed = *at < n && a[*at].gid == gid;
  return *listed ? a[*at].seq : 0;
}

/* The user's memberships with the device's cursor in each, by gid:
 * gid, since_seq, left_seq, role, cursor (0: none). $1 user, $2 device. */
#define PL__MSHIPS_SQL                                                               \
  "SELECT m.gid, m.since_seq, m.left_seq, m.role, COALESCE(c.seq, 0) FROM members m" \
  " LEFT JOIN gcursor c ON c.device_id = $2 AND c.gid = m.gid WHERE m.uid = $1 ORDER BY m.gid"

void pl_pg_group_fetch_add(pl_pg_xpipe *x, const pl_store_req *r, long *at) {
  if (r->user_id)
    pl_pg_xpipe_every(x, at, PL__MSHIPS_SQL, "uu", r->user_id, r->device_id);
  for (unsigned j = 0; !r->user_id && j < pl_pg_shards(x->g); j++)
    at[j] = -2;
}

/* A membership as PL__MSHIPS_SQL reads it. */
typedef struct pl__mship {
  uint64_t gid, since, left, cursor;
  int role;
} pl__mship;

/* The memberships read on every shard (at[j]; a shard that could not be
 * read adds none), by gid: each shard's are, and the shards hold
 * contiguous gid ranges in their order (a gid's top bits are its bucket). */
static pl__mship *pl__mships(pl_pg_xpipe *x, const long *at, size_t *n, int *partial) {
  pl__mship *v = NULL;
  size_t cap = 0;
  *n = 0;
  for (unsigned j = 0; j < pl_pg_shards(x->g); j++) {
    pl_err xe = PL_OK;
    PGresult *res = at[j] < 0 ? NULL : pl_pg_xpipe_take(x, at[j], &xe);
    if (at[j] < 0 || xe != PL_OK) /* that shard away: its groups are not known this time */
      *partial = 1;
    for (int i = 0; i < PQntuples(res); i++) {
      v = pl_pg_reserve(v, *n, &cap, sizeof *v);
      v[(*n)++] = (pl__mship){pl_pg_col_u64(res, i, 0), pl_pg_col_u64(res, i, 1), pl_pg_col_u64(res, i, 2),
                              pl_pg_col_u64(res, i, 4), pl_pg_col_int(res, i, 3)};
    }
    PQclear(res);
  }
  return v;
}

/* One group's part of a page: up to limit + 1 entries of its window. */
static int pl__gpart_add(pl_pg_pipe *p, uint64_t gid, uint64_t lo, uint64_t hi, uint32_t limit) {
  return pl_pg_pipe_add(
      p,
      "SELECT 0, conv, seq, from_name, from_device, client_id, body, client_ts, server_ts, kind,"
      " aux, media, act FROM messages WHERE gid = $1 AND seq > $2 AND seq <= $3 AND expires > $4"
      " ORDER BY seq LIMIT $5",
      "uuuuu", gid, pl_pg_clamp(lo), pl_pg_clamp(hi), pl_now_ms(), (uint64_t)limit + 1);
}

static void pl__gpart_read(pl_store_fetch_req *f, const PGresult *res, uint64_t gid, size_t max_bytes,
                           size_t *cap) {
  size_t bytes = 0;
  for (int i = 0; i < PQntuples(res); i++) {
    if (bytes > max_bytes) {
      f->out.more = 1;
      break;
    }
    f->out.msgs = pl_pg_reserve(f->out.msgs, f->out.nmsgs, cap, sizeof *f->out.msgs);
    pl_msg *m = &f->out.msgs[f->out.nmsgs++];
    pl_pg_queue_msg_row(res, i, m);
    m->gid = gid;
    bytes += m->body_len + m->media_len + 64;
  }
}

/* After the queue's part of a page (out.msgs): protocol 2's group streams,
 * each from max(cursor, since_seq, the connection's position) up to
 * left_seq for a member who left (pl_roles_owed). The queue's part comes
 * first, then each group's in gid order, and the page is cut at limit
 * entries: each stream's part of it is a prefix of that stream, so the
 * next fetch goes on from each one's last. Every group's part is read in
 * one round trip. Protocol 1 gets no entries (the file comment says why),
 * but its groups, like protocol 2's: out.gids makes the device one of
 * each group's live audience, so it gets what is committed while it is
 * connected (without them, only a device connected when it joined did). */
pl_err pl_pg_group_fetch(pl__pg *g, pl_store_req *r, pl_pg_xpipe *x, const long *ms_at, uint32_t limit,
                         size_t max_bytes) {
  pl_store_fetch_req *f = &r->u.fetch;
  pl_pg_pipe p;
  pl_pg_xpipe y;
  size_t n, cap = f->out.nmsgs + 1, at = 0;
  if (!r->user_id)
    return PL_OK;
  pl__mship *ms = pl__mships(x, ms_at, &n, &f->out.partial);
  long *part = pl_malloc((n + 1) * sizeof *part);
  f->out.msgs = pl_realloc(f->out.msgs, cap * sizeof *f->out.msgs);
  pl_pg_pipe_begin(&p, g);
  pl_pg_xpipe_begin(&y, g, &p); /* each part on its group's shard */
  for (size_t i = 0; i < n; i++) {
    uint64_t lo, hi;
    int listed;
    uint64_t from = pl__gpos_find(f->in.gafter, f->in.ngafter, &at, ms[i].gid, &listed);
    part[i] = -2;
    if (f->in.streams && pl_roles_owed(ms[i].since, ms[i].left, ms[i].cursor, from, &lo, &hi)) {
      pl_pg_pipe *to = pl_pg_xpipe_at(&y, pl_pg_shard_of_id(g, ms[i].gid));
      part[i] = to ? pl_pg_xpipe_handle(&y, to, pl__gpart_add(to, ms[i].gid, lo, hi, limit)) : -1;
    }
  }
  pl_err e = pl_pg_xpipe_end(&y), xe;
  for (size_t i = 0; e == PL_OK && i < n && f->out.nmsgs <= limit; i++) {
    PGresult *res = part[i] == -2 ? NULL : pl_pg_xpipe_take(&y, part[i], &xe);
    if (res) /* (none: its shard away, this group's part is left for a later fetch) */
      pl__gpart_read(f, res, ms[i].gid, max_bytes, &cap);
    else if (part[i] != -2)
      f->out.partial = 1;
    PQclear(res);
  }
  pl_pg_xpipe_clear(&y);
  pl_pg_pipe_clear(&p);
  pl_free(part);
  if (f->out.nmsgs > limit) {
    for (size_t i = limit; i < f->out.nmsgs; i++)
      pl_msg_clear(&f->out.msgs[i]);
    f->out.nmsgs = limit;
    f->out.more = 1;
  }
  f->out.gids = pl_malloc((n + 1) * sizeof *f->out.gids);
  for (size_t i = 0; e == PL_OK && i < n; i++)
    if (pl_roles_member(ms[i].role)) /* the live audience: members only */
      f->out.gids[f->out.ngids++] = ms[i].gid;
  pl_free(ms);
  return e;
}

/* ---- receipts and watermarks ---------------------------------------------------- */

/* Live receipts (never stored: GroupReceiptsGet recovers a missed one) to
 * the connected devices of the senders of gid's messages in (lo, hi].
 * Only for groups up to group_detail members. The group is read on h (its
 * shard's connection), each sender on its own shard (a sender whose shard
 * is away gets none: GroupReceiptsGet). */
static pl_err pl__receipts_live(pl__pg *g, pl__pg *h, pl_store_req *r, uint64_t gid, uint64_t lo, uint64_t hi,
                                int kind, const pl_pg_user *by) {
  pl_pg_pipe p, u;
  pl_pg_xpipe x;
  char conv[32];
  pl_pg_group_gconv(gid, conv, sizeof conv);
  pl_pg_pipe_begin(&p, h);
  pl_pg_pipe_add(&p, "SELECT members FROM groups WHERE gid = $1", "u", gid);
  pl_pg_pipe_add(
      &p,
      "SELECT DISTINCT sender_uid FROM messages WHERE gid = $1 AND seq > $2 AND seq <= $3 AND kind = 0"
      " AND sender_uid <> $4 LIMIT 64",
      "uuuu", gid, lo, hi, by->id);
  pl_err e = pl_pg_pipe_end(&p);
  if (e != PL_OK)
    return e;
  int n = pl_roles_detailed(pl_pg_col_u64(p.res[0], 0, 0), g->group_detail) ? PQntuples(p.res[1]) : 0;
  long *at = pl_malloc(((size_t)n + 1) * sizeof *at);
  pl_pg_pipe_begin(&u, g); /* the senders, in one round trip */
  pl_pg_xpipe_begin(&x, g, &u);
  for (int i = 0; i < n; i++)
    at[i] = pl_pg_xpipe_user(&x, pl_pg_col_u64(p.res[1], i, 0));
  e = pl_pg_xpipe_end(&x);
  for (int i = 0; e == PL_OK && i < n; i++) {
    pl_pg_user *to = NULL;
    pl_err xe;
    size_t nt;
    pl_pg_user_load(pl_pg_xpipe_take(&x, at[i], &xe), PL_OK, &to);
    if (to && !pl_pg_user_blocks(by, to->id)) { /* none to a user the reader blocked */
      uint64_t *t = pl_pg_queue_devs_except(to, 0, &nt);
      uint64_t *live = pl_malloc((nt + 1) * sizeof *live);
      size_t nlive = pl_receipts_split_live(t, &nt, live, g->online, g->online_ud);
      if (nlive)
        pl_store_event_add(r, 0, kind, conv, hi, by->name, 0, pl_now_ms(), live, nlive);
      else
        pl_free(live);
      pl_free(t);
    }
    pl_pg_user_free(to);
  }
  pl_pg_xpipe_clear(&x);
  pl_pg_pipe_clear(&u);
  pl_pg_pipe_clear(&p);
  pl_free(at);
  return e;
}

/* Moves uid's watermark in gid (delivered, or read and delivered) up to
 * seq, as a statement of a pipe; pl__greads_moved reads its result: 1 and
 * *was (where it was) if it moved. */
static int pl__greads_add(pl_pg_pipe *p, uint64_t gid, uint64_t uid, uint64_t seq, int read) {
  return pl_pg_pipe_add(
      p,
      read ? "UPDATE greads n SET read_seq = $3, delivered_seq = greatest(n.delivered_seq, $3)"
             " FROM greads o WHERE n.gid = $1 AND n.uid = $2 AND o.gid = n.gid AND o.uid = n.uid"
             " AND n.read_seq < $3 RETURNING o.read_seq"
           : "UPDATE greads n SET delivered_seq = $3 FROM greads o WHERE n.gid = $1 AND n.uid = $2"
             " AND o.gid = n.gid AND o.uid = n.uid AND n.delivered_seq < $3 RETURNING o.delivered_seq",
      "uuu", gid, uid, seq);
}

static int pl__greads_moved(const PGresult *res, uint64_t *was) {
  int moved = PQntuples(res) > 0;
  *was = moved ? pl_pg_col_u64(res, 0, 0) : 0;
  return moved;
}

static pl_err pl__greads_move(pl__pg *g, uint64_t gid, uint64_t uid, uint64_t seq, int read, uint64_t *was,
                              int *moved) {
  pl_pg_pipe p;
  pl_pg_pipe_begin(&p, g);
  pl__greads_add(&p, gid, uid, seq, read);
  pl_err e = pl_pg_pipe_end(&p);
  *moved = e == PL_OK && pl__greads_moved(p.res[0], was);
  pl_pg_pipe_clear(&p);
  return e;
}

/* The part of an Ack for the groups of one shard (h, its connection;
 * acks[n], by gid): moves the device's cursor in each group it names (by
 * seq, never back, clamped to the group's last seq and to left_seq for a
 * member who left), and with it the member's delivered watermark, then
 * the live receipts where that moved. me: the user (NULL: gone). */
static pl_err pl__ack_at(pl__pg *g, pl__pg *h, pl_store_req *r, const pl_pg_user *me,
                         const pl_store_gpos *acks, size_t nacks) {
  pl_pg_pipe p, w;
  size_t at = 0, nmv = 0;
  /* 1: the memberships, the groups' last seqs */
  uint64_t *gids = pl_malloc(nacks * sizeof *gids);
  for (size_t i = 0; i < nacks; i++)
    gids[i] = acks[i].gid;
  char *arr = pl_pg_array(gids, nacks);
  pl_free(gids);
  pl_pg_pipe_begin(&p, h);
  pl_pg_pipe_add(&p, PL__MSHIPS_SQL, "uu", r->user_id, r->device_id);
  pl_pg_pipe_add(&p,
                 "SELECT x.gid, COALESCE(c.last_seq, 0) FROM unnest($1::bigint[]) AS x(gid)"
                 " LEFT JOIN convs c ON c.conv = 'g:' || x.gid ORDER BY x.gid",
                 "s", arr);
  pl_free(arr);
  pl_err e = pl_pg_pipe_end(&p);
  if (e != PL_OK)
    return e;
  /* 2: each cursor that moves, with the member's delivered watermark */
  PGresult *ms = p.res[0], *lasts = p.res[1];
  int n = PQntuples(ms), nl = PQntuples(lasts), j = 0;
  struct {
    uint64_t gid, seq;
    int at; /* the watermark's statement; -1: none */
  } *mv = pl_malloc(((size_t)n + 1) * sizeof *mv);
  pl_pg_pipe_begin(&w, h);
  for (int i = 0; i < n; i++) {
    uint64_t gid = pl_pg_col_u64(ms, i, 0), left = pl_pg_col_u64(ms, i, 2), last = 0;
    int listed;
    uint64_t seq = pl__gpos_find(acks, nacks, &at, gid, &listed);
    if (!listed || seq <= pl_pg_col_u64(ms, i, 4) || (left && seq > left))
      continue;
    while (j < nl && pl_pg_col_u64(lasts, j, 0) < gid) /* both by gid: one walk */
      j++;
    if (j < nl && pl_pg_col_u64(lasts, j, 0) == gid)
      last = pl_pg_col_u64(lasts, j, 1);
    seq = seq < last ? seq : last;
    if (!seq)
      continue;
    pl_pg_pipe_add(&w,
                   "INSERT INTO gcursor(device_id, gid, seq) VALUES($1, $2, $3) ON CONFLICT(device_id, gid)"
                   " DO UPDATE SET seq = greatest(gcursor.seq, EXCLUDED.seq)",
                   "uuu", r->device_id, gid, seq);
    mv[nmv].gid = gid;
    mv[nmv].seq = seq;
    mv[nmv].at = pl_roles_member(pl_pg_col_int(ms, i, 3)) ? pl__greads_add(&w, gid, r->user_id, seq, 0) : -1;
    nmv++;
  }
  e = pl_pg_pipe_end(&w);
  /* 3: live receipts where a watermark moved */
  for (size_t i = 0; e == PL_OK && i < nmv && me; i++) {
    uint64_t was;
    if (mv[i].at >= 0 && pl__greads_moved(w.res[mv[i].at], &was))
      e = pl__receipts_live(g, h, r, mv[i].gid, was, mv[i].seq, PL_MSG_DELIVERED, me);
  }
  pl_pg_pipe_clear(&w);
  pl_pg_pipe_clear(&p);
  pl_free(mv);
  return e;
}

/* A protocol 2 Ack's groups, on each group's shard (the Ack runs on the
 * device's). A protocol 1 Ack covers no group entry (it was sent none).
 * A write on another shard is outside this transaction and its failure
 * is not the Ack's: a cursor only moves forward, so the next Ack makes it
 * good (until then the device may be sent those entries again, and drops
 * them by their seq). */
pl_err pl_pg_group_ack(pl__pg *g, pl_store_req *r) {
  const pl_store_ack_req *a = &r->u.ack;
  pl_pg_user *me = NULL;
  if (!r->user_id || !a->in.streams || !a->in.ngacks)
    return PL_OK;
  pl_err e = pl_pg_user_get(g, r->user_id, &me); /* (an Ack runs on its user's shard) */
  for (size_t i = 0, k; e == PL_OK && i < a->in.ngacks; i = k) {
    unsigned j = pl_pg_shard_of_id(g, a->in.gacks[i].gid);
    for (k = i + 1; k < a->in.ngacks && pl_pg_shard_of_id(g, a->in.gacks[k].gid) == j;)
      k++;
    pl__pg *h = pl_pg_at(g, j);
    pl_err he = h ? pl__ack_at(g, h, r, me, a->in.gacks + i, k - i) : PL_ERR_STORE;
    if (h == g)
      e = he;
    else if (he != PL_OK)
      pl_warn("store: shard %u: an ack's group cursors not moved (the next ack moves them)", j);
  }
  pl_pg_user_free(me);
  return e;
}

/* MarkRead in a group: the member's read watermark, a read sync to its
 * other devices (stored for offline ones), live read receipts to the
 * senders in small groups (always on in groups: the setting covers 1:1). */
pl_err pl_pg_group_mark_read(pl__pg *g, pl_store_req *r) {
  pl_pg_user *me = NULL;
  uint64_t gid = r->u.mark_read.in.group, last = 0, was = 0;
  int moved = 0;
  size_t nt;
  char conv[32];
  pl_pg_group_gconv(gid, conv, sizeof conv);
  pl_err e = pl__member_me(g, r, gid, &me, NULL);
  if (e == PL_OK && me)
    e = pl_pg_u64(g, &last, "SELECT last_seq FROM convs WHERE conv = $1", "s", conv);
  uint64_t seq = r->u.mark_read.in.upto < last ? r->u.mark_read.in.upto : last;
  if (e == PL_OK && me && seq)
    e = pl__greads_move(g, gid, me->id, seq, 1, &was, &moved);
  if (e == PL_OK && moved) {
    uint64_t *t = pl_pg_queue_devs_except(me, r->device_id, &nt);
    e = pl_pg_queue_event(g, r, PL_MSG_READ_SYNC, conv, seq, me, last - seq, t, nt);
  }
  if (e == PL_OK && moved)
    e = pl__receipts_live(g, g, r, gid, was, seq, PL_MSG_READ, me);
  pl_pg_user_free(me);
  return e;
}

/* Counts of the other members with seq delivered / read, and their names
 * in groups up to group_detail members. */
pl_err pl_pg_group_receipts(pl__pg *g, pl_store_req *r) {
  pl_store_group_receipts_req *x = &r->u.group_receipts;
  pl_pg_user *me = NULL;
  PGresult *res;
  pl_err e = pl__member_me(g, r, x->in.group, &me, NULL);
  if (e != PL_OK || !me)
    return e;
  e = pl_pg_q(g, &res,
              "SELECT m.name, (r.delivered_seq >= $2)::int, (r.read_seq >= $2)::int FROM greads r"
              " JOIN members m ON m.gid = r.gid AND m.uid = r.uid WHERE r.gid = $1 AND r.uid <> $3"
              " ORDER BY m.name COLLATE \"C\"",
              "uuu", x->in.group, pl_pg_clamp(x->in.upto), me->id);
  pl_pg_user_free(me);
  if (e != PL_OK)
    return e;
  size_t n = (size_t)PQntuples(res);
  x->out.members = n;
  x->out.detailed = pl_roles_detailed(n + 1, g->group_detail);
  x->out.names = pl_calloc(n + 1, sizeof *x->out.names);
  x->out.read_by = pl_calloc(n + 1, sizeof *x->out.read_by);
  for (size_t i = 0; i < n; i++) {
    int d = pl_pg_col_int(res, (int)i, 1), rd = pl_pg_col_int(res, (int)i, 2);
    x->out.delivered += (uint64_t)d;
    x->out.read += (uint64_t)rd;
    if (x->out.detailed && d)
      x->out.names[x->out.nnames++] = pl_pg_col_str(res, (int)i, 0);
    if (x->out.detailed && rd)
      x->out.read_by[x->out.nread_by++] = pl_pg_col_str(res, (int)i, 0);
  }
  PQclear(res);
  return PL_OK;
}

/* UNREAD's groups, after its 1:1 conversations: read on every shard, in
 * shard order, which is gid order (a gid's top bits are its bucket). A
 * shard away fails the request (retryable): a group left out would read
 * as all read. */
pl_err pl_pg_group_unread(pl__pg *g, pl_store_req *r) {
  unsigned k = pl_pg_shards(g);
  long *at = pl_malloc(k * sizeof *at);
  pl_pg_pipe p;
  pl_pg_xpipe x;
  pl_err xe = PL_OK;
  pl_pg_pipe_begin(&p, g);
  pl_pg_xpipe_begin(&x, g, &p);
  pl_pg_xpipe_every(&x, at,
                    "SELECT 'g:' || r.gid, COALESCE(c.last_seq, 0), r.read_seq FROM greads r"
                    " LEFT JOIN convs c ON c.conv = 'g:' || r.gid WHERE r.uid = $1 ORDER BY r.gid",
                    "u", r->user_id);
  pl_err e = pl_pg_xpipe_end(&x);
  for (unsigned j = 0; e == PL_OK && j < k; j++) {
    PGresult *res = pl_pg_xpipe_take(&x, at[j], &xe);
    if (xe != PL_OK)
      r->status = xe;
    size_t n = (size_t)PQntuples(res), have = r->u.unread.out.nconvs;
    r->u.unread.out.convs = pl_realloc(r->u.unread.out.convs, (have + n + 1) * sizeof *r->u.unread.out.convs);
    for (size_t i = 0; i < n; i++) {
      pl_conv_state *cs = &r->u.unread.out.convs[r->u.unread.out.nconvs++];
      memset(cs, 0, sizeof *cs);
      cs->conv = pl_pg_col_str(res, (int)i, 0);
      cs->last_seq = pl_pg_col_u64(res, (int)i, 1);
      cs->read_seq = pl_pg_col_u64(res, (int)i, 2);
    }
    PQclear(res);
  }
  pl_pg_xpipe_clear(&x);
  pl_pg_pipe_clear(&p);
  pl_free(at);
  return e;
}

/* Typing in a group: members only; none above group_detail members (the
 * router then sends it to the group's live audience, but the devices of
 * members who blocked the typist: out.targets). */
pl_err pl_pg_group_typing(pl__pg *g, pl_store_req *r) {
  pl_store_typing_req *x = &r->u.typing;
  pl_pg_user *me = NULL;
  uint64_t size = 0;
  char conv[32];
  pl_err e = pl__member_me(g, r, x->in.group, &me, NULL);
  if (e == PL_OK && me)
    e = pl_pg_u64(g, &size, "SELECT members FROM groups WHERE gid = $1", "u", x->in.group);
  if (e == PL_OK && me) {
    pl_pg_group_gconv(x->in.group, conv, sizeof conv);
    x->out.conv = pl_strdup(conv);
  }
  if (e == PL_OK && me && pl_roles_detailed(size, g->group_detail)) {
    char cond[128]; /* a member's blocks are on its shard */
    unsigned away;
    snprintf(cond, sizeof cond,
             " AND EXISTS(SELECT 1 FROM blocks b WHERE b.uid = d.user_id AND b.blocked_uid = %llu)",
             (unsigned long long)me->id);
    x->out.group = x->in.group;
    e = pl_pg_group_member_devices(g, x->in.group, cond, &x->out.targets, &x->out.ntargets, &away);
    if (e == PL_OK && away) /* who blocked the typist is not known: none see it */
      r->status = PL_ERR_STORE;
  }
  pl_pg_user_free(me);
  return e;
}
