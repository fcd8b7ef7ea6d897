/* sq_ghist: group history: send, fetch, device cursors (acks), receipts and
 * read watermarks, trimming, typing; the group caches (gcurs, greads, gmeta).
 *
 * A group's history is stored once: message rows with gid set, no queue
 * rows, each positioned by its seq (gap-free per group). Each device has a
 * cursor per group (gcursor: it has every entry up to that seq), so a
 * member costs no row per message, and no group position depends on the
 * global qid, whose order is commit order only while one writer commits
 * (docs/architecture.md 5). Protocol 2 fetches and acks each group apart by
 * seq (in.streams); protocol 1 keeps one stream merged by qid and one
 * cumulative Ack in qid, which this backend turns into each group's seq:
 * within a group qid order is seq order here, because one thread commits. */
#include "sq_internal.h"

#include "../../rules/pl_roles.h"

static uint64_t pl__gread_key(uint64_t gid, uint64_t uid) { return (gid * 0x9E3779B97F4A7C15ULL) ^ uid ^ 1; }

/* (key 0 is pl_map's own; a collision is told apart by the entry's fields) */
static uint64_t pl__gcur_key(uint64_t dev, uint64_t gid) {
  uint64_t k = (dev * 0xC2B2AE3D27D4EB4FULL) ^ gid;
  return k ? k : 1;
}

void pl_sq_ghist_gcur_drop(pl__sq *q) {
  uint64_t k;
  void *v;
  for (size_t it = 0; pl_map_next(&q->gcurs, &it, &k, &v);)
    pl_free(v);
  pl_map_free(&q->gcurs);
}

/* The cache entry of (dev, gid), taking over a colliding one (cursors are
 * written through: nothing is lost with it); *hit: it held this pair. */
static pl__gcur *pl__gcur_slot(pl__sq *q, uint64_t dev, uint64_t gid, int *hit) {
  uint64_t key = pl__gcur_key(dev, gid);
  pl__gcur *c = pl_map_get(&q->gcurs, key);
  *hit = c && c->dev == dev && c->gid == gid;
  if (!c) {
    c = pl_calloc(1, sizeof *c);
    pl_map_put(&q->gcurs, key, c);
  }
  return c;
}

/* dev's cursor in gid; 0 for no row (read as the member's since_seq). */
static pl_err pl__gcur_get(pl__sq *q, uint64_t dev, uint64_t gid, uint64_t *seq) {
  int hit;
  pl__gcur *c = pl__gcur_slot(q, dev, gid, &hit);
  if (hit) {
    *seq = c->seq;
    return PL_OK;
  }
  pl_err e = pl_sq_u64_query(q, ST_GCUR_GET, dev, gid, 0, seq);
  *c = e == PL_OK ? (pl__gcur){dev, gid, *seq} : (pl__gcur){0, 0, 0}; /* on error: read again */
  return e;
}

/* Moves dev's cursor in gid up to seq, never back, in the open transaction:
 * the Ack that moves it writes it, so a crash sends a device again only what
 * it had not acknowledged (an Ack not yet committed), however soon after
 * the last sweep it comes. One upsert per group an Ack moves (clients ack
 * once per read burst): a 10,000-member group's acks of one message cost
 * 10,000 row writes, spread over the few commits they arrive in
 * (docs/benchmarks.md has the cost). */
pl_err pl_sq_ghist_gcur_put(pl__sq *q, uint64_t dev, uint64_t gid, uint64_t seq) {
  int hit;
  pl__gcur *c = pl__gcur_slot(q, dev, gid, &hit);
  if (hit && seq <= c->seq)
    return PL_OK;
  uint64_t now = 0; /* what the row holds after the upsert (it may have been higher) */
  pl_err e = pl_sq_u64_query(q, ST_GCUR_PUT, dev, gid, seq, &now);
  *c = e == PL_OK ? (pl__gcur){dev, gid, now} : (pl__gcur){0, 0, 0}; /* on error: read again */
  return e;
}

/* A device that starts (new, or signed in again after a logout) gets its
 * user's groups from now on: a cursor at each group's last seq (it gets
 * nothing older, as in 1:1; a group it left owes it nothing then). */
pl_err pl_sq_ghist_gcur_start(pl__sq *q, uint64_t uid, uint64_t dev) {
  pl__user *u = NULL;
  pl_err e = pl_sq_acct_user_get(q, uid, &u);
  if (e == PL_OK && u)
    e = pl_sq_group_mships(q, u);
  for (size_t i = 0; e == PL_OK && u && i < u->nms; i++) {
    char conv[32];
    pl__conv *c;
    pl_sq_group_gconv(u->ms[i].gid, conv, sizeof conv);
    e = pl_sq_conv_get(q, conv, &c);
    if (e == PL_OK)
      e = pl_sq_ghist_gcur_put(q, dev, u->ms[i].gid, c->seq);
  }
  return e;
}

/* The cached watermarks of uid in gid (NULL: not a member). */
static pl_err pl__gread_get(pl__sq *q, uint64_t gid, uint64_t uid, pl__gread **out);

static void pl__gread_mark(pl__sq *q, pl__gread *g) {
  q->gdirty += !g->dirty;
  g->dirty = 1;
}

static pl_err pl__gread_write(pl__sq *q, pl__gread *g) {
  sqlite3_stmt *st = q->st[ST_GREADS_SET];
  pl_sq_bind_u64(st, 1, g->gid);
  pl_sq_bind_u64(st, 2, g->uid);
  pl_sq_bind_u64(st, 3, g->delivered);
  pl_sq_bind_u64(st, 4, g->read);
  pl_err e = pl_sq_run(q, st);
  if (e == PL_OK && g->dirty) {
    g->dirty = 0;
    q->gdirty -= q->gdirty > 0;
  }
  return e;
}

static pl_err pl__gread_get(pl__sq *q, uint64_t gid, uint64_t uid, pl__gread **out) {
  uint64_t key = pl__gread_key(gid, uid);
  pl__gread *g = pl_map_get(&q->greads, key);
  int found;
  *out = NULL;
  if (g && g->gid == gid && g->uid == uid) {
    *out = g;
    return PL_OK;
  }
  if (g && g->dirty) { /* a colliding key: keep its news before it goes */
    pl_err e = pl__gread_write(q, g);
    if (e != PL_OK)
      return e;
  }
  sqlite3_stmt *st = q->st[ST_GREADS_GET];
  pl_sq_bind_u64(st, 1, gid);
  pl_sq_bind_u64(st, 2, uid);
  pl_err e = pl_sq_row(q, st, &found);
  if (e == PL_OK && found) {
    if (!g) {
      g = pl_calloc(1, sizeof *g);
      pl_map_put(&q->greads, key, g);
    }
    *g = (pl__gread){gid, uid, pl_sq_col_u64(st, 0), pl_sq_col_u64(st, 1), 0};
    *out = g;
  }
  sqlite3_reset(st);
  return e;
}

void pl_sq_ghist_gread_forget(pl__sq *q, uint64_t gid, uint64_t uid) {
  uint64_t key = pl__gread_key(gid, uid);
  pl__gread *g = pl_map_get(&q->greads, key);
  if (g && g->gid == gid && g->uid == uid) {
    q->gdirty -= g->dirty && q->gdirty > 0;
    pl_map_del(&q->greads, key);
    pl_free(g);
  }
}

/* Writes up to max watermarks that moved (inside a transaction); when it
 * gets through them all, none is left unwritten. (The cursors are written
 * with their Acks: pl_sq_ghist_gcur_put.) */
pl_err pl_sq_ghist_gcache_flush_some(pl__sq *q, size_t max) {
  uint64_t k;
  void *v;
  pl_err e = PL_OK;
  size_t n = 0;
  for (size_t it = 0; e == PL_OK && n < max && pl_map_next(&q->greads, &it, &k, &v);)
    if (((pl__gread *)v)->dirty) {
      e = pl__gread_write(q, v);
      n++;
    }
  if (e == PL_OK && n < max)
    q->gdirty = 0; /* the count may drift up (entries dropped with their map) */
  return e;
}

/* Writes every watermark that moved (inside a transaction). */
pl_err pl_sq_ghist_gcache_flush(pl__sq *q) { return pl_sq_ghist_gcache_flush_some(q, SIZE_MAX); }

void pl_sq_ghist_gmeta_drop(pl__sq *q) {
  uint64_t k;
  void *v;
  for (size_t it = 0; pl_map_next(&q->gmeta, &it, &k, &v);)
    pl_free(v);
  pl_map_free(&q->gmeta);
}

/* Flushes, then frees the caches of cursors and watermarks. */
pl_err pl_sq_ghist_gcache_drop(pl__sq *q) {
  uint64_t k;
  void *v;
  pl_err e = pl_sq_ghist_gcache_flush(q);
  if (e != PL_OK)
    return e;
  pl_sq_ghist_gcur_drop(q);
  for (size_t it = 0; pl_map_next(&q->greads, &it, &k, &v);)
    pl_free(v);
  pl_map_free(&q->greads);
  return PL_OK;
}

static pl_err pl__gmeta_get(pl__sq *q, uint64_t gid, pl__gmeta **out) {
  pl__gmeta *m = pl_map_get(&q->gmeta, gid);
  int found;
  if (m) {
    *out = m;
    return PL_OK;
  }
  m = pl_calloc(1, sizeof *m);
  sqlite3_stmt *st = q->st[ST_GLAST];
  pl_sq_bind_u64(st, 1, gid);
  pl_err e = pl_sq_row(q, st, &found);
  if (e == PL_OK && found) {
    m->last_qid = pl_sq_col_u64(st, 0);
    m->last_seq = pl_sq_col_u64(st, 1);
  }
  sqlite3_reset(st);
  if (e == PL_OK)
    e = pl_sq_u64_query(q, ST_GROUP_SIZE, gid, 0, 0, &m->size);
  if (e != PL_OK) {
    pl_free(m);
    return e;
  }
  pl_map_put(&q->gmeta, gid, m);
  *out = m;
  return PL_OK;
}

/* Makes room for one more entry of a group's history within
 * rules.group_history: its oldest entries go (pl_roles_hist_excess), so a
 * member device that far behind misses them (protocol.md 11.8) and no
 * offline member makes a group's history grow without end. */
static pl_err pl__ghist_room(pl__sq *q, uint64_t gid) {
  uint64_t cap = q->rules.group_history;
  pl__gmeta *gm;
  if (!cap)
    return PL_OK;
  pl_err e = pl__gmeta_get(q, gid, &gm);
  if (e == PL_OK && !gm->entries)
    e = pl_sq_u64_query(q, ST_GHIST_COUNT, gid, 0, 0, &gm->entries);
  for (uint64_t n = e == PL_OK ? pl_roles_hist_excess(gm->entries, cap) : 0; n && e == PL_OK; n--) {
    e = pl_sq_run1(q, ST_GHIST_DROP, gid);
    if (e == PL_OK && sqlite3_changes(q->db) != 1)
      break; /* out of step with the table: it is recounted next time */
    gm->entries--;
  }
  if (e == PL_OK && pl_roles_hist_excess(gm->entries, cap))
    gm->entries = 0;
  return e;
}

/* Appends a row to gid's history; out.msg-like data goes to *m (qid set). */
pl_err pl_sq_ghist_glog_put(pl__sq *q, uint64_t gid, const pl__user *from, const char *device, const char *id,
                            const uint8_t *body, size_t body_len, uint64_t client_ts, int kind, uint64_t aux,
                            pl_msg *m) {
  char conv[32];
  pl__conv *c;
  uint64_t seq, ts;
  pl_sq_group_gconv(gid, conv, sizeof conv);
  pl_err e = pl_sq_conv_get(q, conv, &c);
  if (e != PL_OK)
    return e;
  pl_sq_conv_peek(c, pl_now_ms(), &seq, &ts);
  e = pl__ghist_room(q, gid);
  if (e != PL_OK)
    return e;
  sqlite3_stmt *st = q->st[ST_GMSG_INSERT];
  pl_sq_bind_text(st, 1, conv);
  pl_sq_bind_u64(st, 2, seq);
  pl_sq_bind_u64(st, 3, from->id);
  pl_sq_bind_text(st, 4, from->name);
  pl_sq_bind_text(st, 5, device);
  pl_sq_bind_text(st, 6, id);
  pl_sq_seal_bind(q, st, 7, 'b', conv, seq, ts, body, body_len);
  pl_sq_bind_u64(st, 8, client_ts);
  pl_sq_bind_u64(st, 9, ts);
  pl_sq_bind_u64(st, 10, pl_sq_expires(q, ts));
  pl_sq_bind_u64(st, 11, (uint64_t)kind);
  pl_sq_bind_u64(st, 12, aux);
  pl_sq_bind_u64(st, 13, gid);
  pl_sq_bind_u64(st, 14, pl_sq_seal_sk(q));
  e = pl_sq_run(q, st);
  if (e != PL_OK)
    return e;
  pl_sq_conv_take(q, c, seq, ts);
  memset(m, 0, sizeof *m);
  m->qid = (uint64_t)sqlite3_last_insert_rowid(q->db);
  m->gid = gid;
  pl__gmeta *gm = pl_map_get(&q->gmeta, gid);
  if (gm) {
    gm->last_qid = m->qid;
    gm->last_seq = seq;
    gm->entries += gm->entries != 0;
  }
  m->kind = kind;
  m->aux = aux;
  m->conv = pl_strdup(conv);
  m->seq = seq;
  m->from = pl_strdup(from->name);
  m->from_device = pl_strdup(device);
  m->id = pl_strdup(id);
  m->body = pl_memdup(body_len ? (const void *)body : "", body_len);
  m->body_len = body_len;
  m->client_ts = client_ts;
  m->server_ts = ts;
  return PL_OK;
}

/* The asking user (*me) if they are a member of group gid; otherwise
 * r->status = NOT_MEMBER and *me = NULL (also for a group that does not
 * exist). The error only if loading failed. */
static pl_err pl__member_me(pl__sq *q, pl_store_req *r, uint64_t gid, pl__user **me) {
  int role = PL_ROLE_NONE;
  pl_err e = pl_sq_acct_user_get(q, r->user_id, me);
  if (e == PL_OK && *me)
    e = pl_sq_group_role(q, *me, gid, &role);
  if (e == PL_OK && (!*me || !pl_roles_member(role))) {
    r->status = PL_ERR_NOT_MEMBER;
    *me = NULL;
  }
  return e;
}

/* A group message: the same contract as 1:1 (dedup, seq, both clocks),
 * stored once in the group's history. Only members may send. */
pl_err pl_sq_ghist_send_group(pl__sq *q, pl_store_req *r) {
  pl__user *me = NULL;
  pl_err e = pl__member_me(q, r, r->u.send.in.group, &me);
  if (e != PL_OK || !me)
    return e;
  char conv[32];
  pl__conv *c;
  pl_sq_group_gconv(r->u.send.in.group, conv, sizeof conv);
  e = pl_sq_conv_get(q, conv, &c);
  if (e == PL_OK) /* an action's target, a reply's quote, a timer (refused: nothing written) */
    e = pl_sq_acts_check(q, r, conv, c, me, 0, r->u.send.in.group, pl_now_ms());
  if (e != PL_OK || r->status != PL_OK)
    return e;
  /* the entry first: its seq and server_ts are what the dedup record and
   * the vanish time are made of (a second clock reading could differ) */
  e = pl_sq_ghist_glog_put(q, r->u.send.in.group, me, r->u.send.in.device_name ? r->u.send.in.device_name : "",
                           r->u.send.in.client_id, r->u.send.in.body, r->u.send.in.body_len,
                           r->u.send.in.client_ts, PL_MSG_MESSAGE, 0, &r->u.send.out.msg);
  if (e == PL_OK)
    e = pl_sq_acts_vanish(q, r, c, r->u.send.out.msg.server_ts);
  if (e == PL_OK)
    e = pl_sq_dedup_put(q, r, PL_SQ_DEDUP_GROUP(r->u.send.in.group), r->u.send.out.msg.seq,
                        r->u.send.out.msg.server_ts);
  if (e == PL_OK)
    e = pl_sq_acts_apply(q, r, c, 0, r->u.send.in.group);
  pl__gread *g = NULL;
  if (e == PL_OK) /* sending reads the conversation, as in 1:1 */
    e = pl__gread_get(q, r->u.send.in.group, me->id, &g);
  if (e != PL_OK)
    return e;
  if (g && r->u.send.out.msg.seq > g->read) {
    g->read = r->u.send.out.msg.seq;
    g->delivered = g->delivered > g->read ? g->delivered : g->read;
    pl__gread_mark(q, g);
  }
  r->u.send.out.conv = pl_strdup(conv);
  r->u.send.out.seq = r->u.send.out.msg.seq;
  r->u.send.out.server_ts = r->u.send.out.msg.server_ts;
  r->u.send.out.group = r->u.send.in.group;
  return PL_OK;
}

/* The seq listed for gid in a (sorted by gid) from *at on, moving *at past
 * the smaller gids; 0 if gid is not listed. Memberships come by gid too, so
 * one pass over both finds every group's. */
static uint64_t pl__gpos_find(const pl_store_gpos *a, size_t n, size_t *at, uint64_t gid, int *listed) {
  while (*at < n && a[*at].gid < gid)
    (*at)++;
  *listed = *at < n && a[*at].gid == gid;
  return *listed ? a[*at].seq : 0;
}

/* After the queue rows of a fetch (out.msgs, qid order, at most limit
 * plus one read ahead): merges in the history of each group of the device's
 * user in the device's window of it, keeping qid order and the limit. The
 * window is after max(its cursor, since_seq) and, protocol 2, the seq the
 * connection asks to resume after (gafter); up to left_seq for a member who
 * left. Protocol 1 also takes only entries after the qid `after` (one
 * merged stream); protocol 2's `after` is the queue's. Each group's rows
 * come in seq order, which is their qid order, so the first limit of the
 * merge hold a prefix of every stream (the queue's and each group's): the
 * next fetch goes on from each one's last. */
static int pl__qid_cmp(const void *a, const void *b) {
  const pl_msg *x = a, *y = b;
  return x->qid < y->qid ? -1 : x->qid > y->qid;
}

pl_err pl_sq_ghist_fetch_groups(pl__sq *q, pl_store_req *r, uint32_t limit, size_t max_bytes) {
  pl_store_fetch_req *f = &r->u.fetch;
  pl__user tmp, *me = NULL;
  if (!r->user_id)
    return PL_OK;
  pl_err e = pl_sq_group_mships_of(q, r->user_id, &tmp, &me);
  if (e != PL_OK || !me->nms)
    goto out;
  size_t cap = f->out.nmsgs, at = 0;
  uint64_t after = f->in.streams ? 0 : pl_sq_clamp(f->in.after), now = pl_sq_clamp(pl_now_ms());
  for (size_t g = 0; e == PL_OK && g < me->nms; g++) {
    const pl__mship *m = &me->ms[g];
    uint64_t cur = 0, from = 0, lo, hi;
    int listed;
    e = pl__gcur_get(q, r->device_id, m->gid, &cur);
    if (f->in.streams)
      from = pl__gpos_find(f->in.gafter, f->in.ngafter, &at, m->gid, &listed);
    if (e != PL_OK || !pl_roles_owed(m->since_seq, m->left_seq, cur, from, &lo, &hi))
      continue;
    sqlite3_stmt *st = q->st[ST_GFETCH];
    int rc;
    pl_sq_bind_u64(st, 1, m->gid);
    pl_sq_bind_u64(st, 2, pl_sq_clamp(lo));
    pl_sq_bind_u64(st, 3, pl_sq_clamp(hi));
    pl_sq_bind_u64(st, 4, after);
    pl_sq_bind_u64(st, 5, now);
    pl_sq_bind_u64(st, 6, (uint64_t)limit + 1);
    size_t bytes = 0;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
      if (bytes > max_bytes) { /* read as far as a page can go: more remain */
        f->out.more = 1;
        break;
      }
      f->out.msgs = pl_sq_reserve(f->out.msgs, f->out.nmsgs, &cap, sizeof *f->out.msgs);
      pl_msg *msg = &f->out.msgs[f->out.nmsgs++];
      if (pl_sq_queue_msg_row(q, st, msg) != PL_OK)
        r->status = PL_ERR_INTERNAL;
      msg->gid = m->gid;
      bytes += pl_sq_msg_weight(msg);
    }
    e = rc == SQLITE_ROW || rc == SQLITE_DONE ? PL_OK : pl_sq_sql_err(q, st, rc);
    sqlite3_reset(st);
  }
  if (f->out.nmsgs > 1) /* (qsort of NULL, 0 is undefined) */
    qsort(f->out.msgs, f->out.nmsgs, sizeof *f->out.msgs, pl__qid_cmp);
  /* The page is a prefix of the merge: at most limit entries, and entries
   * while their weight is within max_bytes (the one that passes it too).
   * Each part was read up to limit + 1 entries or past max_bytes, so the
   * page never needs an entry a part did not read: before it would come,
   * that part's entries alone would have passed the limit or the bytes. So
   * each stream's entries in the page are its next ones, and in protocol 1
   * the page is exactly the next entries in qid order. */
  size_t keep = 0, bytes = 0;
  while (keep < f->out.nmsgs && keep < limit && (!keep || bytes <= max_bytes))
    bytes += pl_sq_msg_weight(&f->out.msgs[keep++]);
  if (keep < f->out.nmsgs) {
    for (size_t i = keep; i < f->out.nmsgs; i++)
      pl_msg_clear(&f->out.msgs[i]);
    f->out.nmsgs = keep;
    f->out.more = 1;
  }
  f->out.gids = pl_malloc((me->nms + 1) * sizeof *f->out.gids);
  for (size_t g = 0; g < me->nms; g++)
    if (pl_roles_member(me->ms[g].role)) /* the live audience: members only */
      f->out.gids[f->out.ngids++] = me->ms[g].gid;
out:
  pl_sq_group_mships_done(&tmp);
  return e;
}

/* Live receipts (never stored: GroupReceiptsGet recovers a missed one) to
 * the connected devices of the senders of gid's messages that stmt finds
 * between lo and hi. Only for groups up to group_detail members. */
static pl_err pl__group_receipts_live(pl__sq *q, pl_store_req *r, uint64_t gid, int stmt, uint64_t lo,
                                      uint64_t hi, int kind, uint64_t seq, const pl__user *by) {
  pl__gmeta *gm;
  pl_err e = pl__gmeta_get(q, gid, &gm);
  if (e != PL_OK || !pl_roles_detailed(gm->size, q->group_detail))
    return e;
  sqlite3_stmt *st = q->st[stmt];
  uint64_t senders[64];
  size_t n = 0;
  int rc;
  pl_sq_bind_u64(st, 1, gid);
  pl_sq_bind_u64(st, 2, lo);
  pl_sq_bind_u64(st, 3, hi);
  pl_sq_bind_u64(st, 4, by->id);
  while ((rc = sqlite3_step(st)) == SQLITE_ROW && n < sizeof senders / sizeof senders[0])
    senders[n++] = pl_sq_col_u64(st, 0);
  e = rc == SQLITE_ROW || rc == SQLITE_DONE ? PL_OK : pl_sq_sql_err(q, st, rc);
  sqlite3_reset(st);
  char conv[32];
  pl_sq_group_gconv(gid, conv, sizeof conv);
  for (size_t i = 0; i < n && e == PL_OK; i++) {
    pl__user *to;
    size_t nt, nlive;
    e = pl_sq_acct_user_get(q, senders[i], &to);
    if (e != PL_OK || !to || pl_sq_acct_blocks(by, to->id))
      continue; /* none to a user the reader blocked (protocol.md 11.5) */
    uint64_t *t = pl_sq_queue_devs_except(to, 0, &nt);
    uint64_t *live = pl_sq_queue_split_online(q, t, &nt, &nlive);
    pl_free(t);
    if (nlive)
      pl_sq_queue_event_out(r, 0, kind, conv, seq, by, 0, pl_now_ms(), live, nlive);
    else
      pl_free(live);
  }
  return e;
}

/* A protocol 1 Ack up to the qid upto, in gid: *seq = the newest seq
 * among the group's entries it covers, if above the cursor cur (else cur).
 * The group's last entry when the Ack covers it (the common case: no SQL),
 * else one probe down from the newest entry. */
static pl_err pl__acked_seq(pl__sq *q, uint64_t gid, uint64_t cur, uint64_t upto, uint64_t *seq) {
  pl__gmeta *gm;
  uint64_t v = 0;
  *seq = cur;
  pl_err e = pl__gmeta_get(q, gid, &gm);
  if (e != PL_OK || !gm->last_qid || gm->last_seq <= cur)
    return e; /* nothing past the cursor */
  if (gm->last_qid <= upto) {
    *seq = gm->last_seq;
    return PL_OK;
  }
  e = pl_sq_u64_query(q, ST_GACK_SEQ, gid, cur, upto, &v);
  *seq = v > cur ? v : cur;
  return e;
}

/* A protocol 2 Ack of gid up to seq, for a device whose user holds the
 * membership m: *to = the seq the cursor may move to (0: ignore it). Not
 * past the group's last seq; nothing for a member who left before seq (the
 * server never sent it that far). */
static pl_err pl__gack_seq(pl__sq *q, const pl__mship *m, uint64_t seq, uint64_t *to) {
  char conv[32];
  pl__conv *c;
  *to = 0;
  if (m->left_seq && seq > m->left_seq)
    return PL_OK;
  pl_sq_group_gconv(m->gid, conv, sizeof conv);
  pl_err e = pl_sq_conv_get(q, conv, &c);
  if (e == PL_OK)
    *to = seq < c->seq ? seq : c->seq;
  return e;
}

/* The member me has gid delivered up to seq: its watermark moves (once per
 * user: a second device's Ack of the same entries moves nothing), with live
 * receipts to the senders of what it passes. */
static pl_err pl__group_delivered(pl__sq *q, pl_store_req *r, const pl__user *me, uint64_t gid,
                                  uint64_t seq) {
  pl__gread *g = NULL;
  pl_err e = pl__gread_get(q, gid, me->id, &g);
  if (e != PL_OK || !g || seq <= g->delivered)
    return e;
  uint64_t was = g->delivered;
  g->delivered = seq;
  pl__gread_mark(q, g);
  return pl__group_receipts_live(q, r, gid, ST_GSENDERS_SEQ, was, seq, PL_MSG_DELIVERED, seq, me);
}

/* An Ack moves the device's cursor in each group it covers (protocol 1:
 * every group, by the qid upto; protocol 2: the groups in gacks, by seq;
 * never back), and with it the member's delivered watermark. A group of a
 * membership the user left still moves the cursor (up to what it is owed)
 * so that the sweep can forget the membership; a group the user is not in
 * (no members row) is ignored. */
pl_err pl_sq_ghist_ack_cursor(pl__sq *q, pl_store_req *r) {
  const pl_store_ack_req *a = &r->u.ack;
  pl__user *me = NULL;
  uint64_t upto = pl_sq_clamp(a->in.upto);
  size_t at = 0;
  pl_err e = r->user_id ? pl_sq_acct_user_get(q, r->user_id, &me) : PL_OK;
  if (e == PL_OK && me)
    e = pl_sq_group_mships(q, me);
  if (e != PL_OK || !me || !me->nms || (a->in.streams && !a->in.ngacks))
    return e;
  for (size_t i = 0; i < me->nms && e == PL_OK; i++) {
    const pl__mship *m = &me->ms[i];
    uint64_t cur = 0, seq = 0, asked = 0;
    int listed = 1;
    if (a->in.streams) {
      asked = pl__gpos_find(a->in.gacks, a->in.ngacks, &at, m->gid, &listed);
      if (!listed)
        continue;
    }
    e = pl__gcur_get(q, r->device_id, m->gid, &cur);
    if (e == PL_OK)
      e = a->in.streams ? pl__gack_seq(q, m, asked, &seq) : pl__acked_seq(q, m->gid, cur, upto, &seq);
    if (e != PL_OK || seq <= cur)
      continue;
    e = pl_sq_ghist_gcur_put(q, r->device_id, m->gid, seq);
    if (e == PL_OK && pl_roles_member(m->role))
      e = pl__group_delivered(q, r, me, m->gid, seq);
  }
  return e;
}

/* MarkRead in a group: the member's read watermark, a read sync to its
 * other devices (stored for offline ones, as in 1:1), live read receipts to
 * the senders in small groups. Read receipts are always on in groups (as in
 * WhatsApp): the privacy setting covers 1:1 conversations. */
pl_err pl_sq_ghist_mark_read_group(pl__sq *q, pl_store_req *r) {
  pl__user *me = NULL;
  pl__conv *c;
  char conv[32];
  uint64_t was = 0;
  size_t nt;
  pl_err e = pl__member_me(q, r, r->u.mark_read.in.group, &me);
  if (e != PL_OK || !me)
    return e;
  pl_sq_group_gconv(r->u.mark_read.in.group, conv, sizeof conv);
  e = pl_sq_conv_get(q, conv, &c);
  uint64_t last = e == PL_OK ? c->seq : 0;
  uint64_t seq = r->u.mark_read.in.upto < last ? r->u.mark_read.in.upto : last;
  pl__gread *g = NULL;
  if (e == PL_OK)
    e = pl__gread_get(q, r->u.mark_read.in.group, me->id, &g);
  was = g ? g->read : 0;
  if (e != PL_OK || !g || seq <= was)
    return e;
  g->read = seq;
  g->delivered = g->delivered > seq ? g->delivered : seq;
  pl__gread_mark(q, g);
  if (e == PL_OK) {
    uint64_t *t = pl_sq_queue_devs_except(me, r->device_id, &nt);
    e = pl_sq_queue_event(q, r, PL_MSG_READ_SYNC, conv, seq, me, last - seq, t, nt);
  }
  if (e == PL_OK)
    e = pl__group_receipts_live(q, r, r->u.mark_read.in.group, ST_GSENDERS_SEQ, was, seq, PL_MSG_READ, seq,
                                me);
  return e;
}

/* Counts of the other members with seq delivered / read, and their names in
 * groups up to group_detail members. */
pl_err pl_sq_ghist_group_receipts(pl__sq *q, pl_store_req *r) {
  pl__user *me = NULL;
  int found, rc;
  pl_err e = pl__member_me(q, r, r->u.group_receipts.in.group, &me);
  if (e != PL_OK || !me)
    return e;
  e = pl_sq_ghist_gcache_flush(q); /* the counts come from the table */
  if (e != PL_OK)
    return e;
  sqlite3_stmt *st = q->st[ST_GREADS_COUNT];
  pl_sq_bind_u64(st, 1, r->u.group_receipts.in.group);
  pl_sq_bind_u64(st, 2, pl_sq_clamp(r->u.group_receipts.in.upto));
  pl_sq_bind_u64(st, 3, me->id);
  e = pl_sq_row(q, st, &found);
  if (e == PL_OK && found) {
    r->u.group_receipts.out.members = pl_sq_col_u64(st, 0);
    r->u.group_receipts.out.delivered = pl_sq_col_u64(st, 1);
    r->u.group_receipts.out.read = pl_sq_col_u64(st, 2);
  }
  sqlite3_reset(st);
  if (e != PL_OK || !pl_roles_detailed(r->u.group_receipts.out.members + 1, q->group_detail))
    return e;
  r->u.group_receipts.out.detailed = 1;
  st = q->st[ST_GREADS_NAMES];
  pl_sq_bind_u64(st, 1, r->u.group_receipts.in.group);
  pl_sq_bind_u64(st, 2, pl_sq_clamp(r->u.group_receipts.in.upto));
  pl_sq_bind_u64(st, 3, me->id);
  r->u.group_receipts.out.names =
      pl_calloc(r->u.group_receipts.out.members + 1, sizeof *r->u.group_receipts.out.names);
  r->u.group_receipts.out.read_by =
      pl_calloc(r->u.group_receipts.out.members + 1, sizeof *r->u.group_receipts.out.read_by);
  while ((rc = sqlite3_step(st)) == SQLITE_ROW &&
         r->u.group_receipts.out.nnames < r->u.group_receipts.out.members &&
         r->u.group_receipts.out.nread_by < r->u.group_receipts.out.members) {
    if (sqlite3_column_int(st, 1))
      r->u.group_receipts.out.names[r->u.group_receipts.out.nnames++] = pl_sq_col_str(st, 0);
    if (sqlite3_column_int(st, 2))
      r->u.group_receipts.out.read_by[r->u.group_receipts.out.nread_by++] = pl_sq_col_str(st, 0);
  }
  e = rc == SQLITE_ROW || rc == SQLITE_DONE ? PL_OK : pl_sq_sql_err(q, st, rc);
  sqlite3_reset(st);
  return e;
}

/* Forgets gid's members who left and are owed nothing more (their devices
 * all have up to left_seq, or it expired), with their devices' cursors. */
static pl_err pl__group_forget(pl__sq *q, uint64_t gid) {
  sqlite3_stmt *st = q->st[ST_GROUP_FORGET];
  uint64_t *uids = NULL;
  size_t n = 0, cap = 0;
  int rc;
  pl_sq_bind_u64(st, 1, gid);
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    uids = pl_sq_reserve(uids, n, &cap, sizeof *uids);
    uids[n++] = pl_sq_col_u64(st, 0);
  }
  pl_err e = rc == SQLITE_DONE ? PL_OK : pl_sq_sql_err(q, st, rc);
  sqlite3_reset(st);
  for (size_t i = 0; i < n && e == PL_OK; i++) {
    sqlite3_stmt *c = q->st[ST_GCUR_FORGET];
    pl_sq_bind_u64(c, 1, gid);
    pl_sq_bind_u64(c, 2, uids[i]);
    while ((rc = sqlite3_step(c)) == SQLITE_ROW) {
      uint64_t dev = pl_sq_col_u64(c, 0);
      pl__gcur *g = pl_map_get(&q->gcurs, pl__gcur_key(dev, gid));
      if (g && g->dev == dev && g->gid == gid)
        *g = (pl__gcur){0, 0, 0}; /* no row now: read again */
    }
    e = rc == SQLITE_DONE ? PL_OK : pl_sq_sql_err(q, c, rc);
    sqlite3_reset(c);
  }
  pl_free(uids);
  return e;
}

/* The sweep: members who left are forgotten once nothing is owed to them,
 * then a group's history is deleted up to where every signed-in device of
 * every member row has it: min of max(cursor, since_seq) (a member who
 * left holds it at most up to left_seq, or it would have been forgotten). */
pl_err pl_sq_ghist_groups_trim(pl__sq *q, uint64_t *deleted) {
  sqlite3_stmt *all = q->st[ST_GROUPS_ALL];
  pl_err fe = pl_sq_ghist_gcache_flush(q); /* nothing waits when the sweep flushed first */
  if (fe != PL_OK)
    return fe;
  uint64_t *gids = NULL;
  size_t n = 0, cap = 0;
  int rc;
  while ((rc = sqlite3_step(all)) == SQLITE_ROW) {
    gids = pl_sq_reserve(gids, n, &cap, sizeof *gids);
    gids[n++] = pl_sq_col_u64(all, 0);
  }
  pl_err e = rc == SQLITE_DONE ? PL_OK : pl_sq_sql_err(q, all, rc);
  sqlite3_reset(all);
  for (size_t i = 0; i < n && e == PL_OK; i++) {
    sqlite3_stmt *cur = q->st[ST_GROUP_CURSOR];
    int found;
    e = pl__group_forget(q, gids[i]); /* first: what they held goes in this sweep */
    if (e != PL_OK)
      break;
    pl_sq_bind_u64(cur, 1, gids[i]);
    e = pl_sq_row(q, cur, &found);
    int none = !found || sqlite3_column_type(cur, 0) == SQLITE_NULL;
    uint64_t upto = none ? 0 : pl_sq_col_u64(cur, 0);
    sqlite3_reset(cur);
    if (e == PL_OK && none) /* no member device left: the history is owed to no one */
      upto = INT64_MAX;
    if (e == PL_OK && upto) {
      e = pl_sq_run2(q, ST_GROUP_TRIM, gids[i], upto);
      *deleted += e == PL_OK ? (uint64_t)sqlite3_changes64(q->db) : 0;
    }
  }
  pl_free(gids);
  if (e == PL_OK)
    pl_sq_acct_users_drop(q); /* members who were forgotten */
  uint64_t k;
  void *v;
  for (size_t it = 0; pl_map_next(&q->gmeta, &it, &k, &v);)
    ((pl__gmeta *)v)->entries = 0; /* histories shrank (and expired): recount */
  return e;
}

/* Typing in a group: members only; none above group_detail members (the
 * router then sends it to the group's live audience). */
/* out.targets: the devices of the group's members who blocked uid. */
static pl_err pl__group_blockers(pl__sq *q, pl_store_typing_req *x, uint64_t uid) {
  return pl_sq_group_targets(q, ST_GROUP_BLOCKERS, x->in.group, uid, &x->out.targets, &x->out.ntargets);
}

pl_err pl_sq_ghist_typing_group(pl__sq *q, pl_store_req *r) {
  pl__user *me = NULL;
  uint64_t size = 0;
  pl__gmeta *gm;
  pl_err e = pl__member_me(q, r, r->u.typing.in.group, &me);
  pl_store_typing_req *x = &r->u.typing;
  if (e == PL_OK && me && (e = pl__gmeta_get(q, x->in.group, &gm)) == PL_OK)
    size = gm->size;
  if (e != PL_OK || !me)
    return e;
  char conv[32];
  pl_sq_group_gconv(x->in.group, conv, sizeof conv);
  x->out.conv = pl_strdup(conv);
  if (!pl_roles_detailed(size, q->group_detail))
    return PL_OK;
  x->out.group = x->in.group;
  return pl__group_blockers(q, x, me->id);
}
