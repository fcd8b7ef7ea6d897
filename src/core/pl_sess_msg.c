/* pl_sess_msg: messages. The delivery cursor (pl_session.h) that takes a
 * device's queue to its connection, Send and its SendAck after the commit,
 * the cumulative Ack, and Typing (never stored). */
#include <stdio.h>
#include <string.h>

#include "../common/pl_log.h"
#include "../common/pl_mem.h"
#include "../common/pl_time.h"
#include "pl_sess_int.h"

void pl_sess__pend_clear(pl_session *s) {
  while (s->pend) {
    pl_sess__pend *p = s->pend;
    s->pend = p->next;
    pl_buf_unref(p->frame);
    pl_free(p);
  }
  s->pend_tail = NULL;
}

/* ---- delivery cursor ---------------------------------------------------- */
/* pl_cursor decides; this part writes, holds and fetches as it is told. */

static void pl__send_msg(pl_session *s, pl_buf *frame) {
  pl_conn_write(s->conn, frame);
  atomic_fetch_add_explicit(&s->core->messages_out, 1, memory_order_relaxed);
}

static int pl__over(pl_session *s) { return s->conn->out_bytes > s->core->cfg.out_high; }

/* The client reads too slowly (the cursor is LAGGING): refetch once drained. */
static void pl__lag(pl_session *s) {
  pl_sess__pend_clear(s);
  s->conn->want_drain = 1;
}

/* An entry's stream and position: protocol 1 has one stream, by qid; in
 * protocol 2 a group's entries are positioned by their seq in the group. */
static uint64_t pl__stream(const pl_session *s, uint64_t gid) { return s->proto >= 2 ? gid : 0; }
static uint64_t pl__pos(const pl_session *s, uint64_t qid, uint64_t gid, uint64_t seq) {
  return s->proto >= 2 && gid ? seq : qid;
}

static void pl__hold(pl_session *s, uint64_t gid, uint64_t pos, pl_buf *frame) {
  pl_sess__pend *p = pl_malloc(sizeof *p);
  p->next = NULL;
  p->gid = gid;
  p->pos = pos;
  p->frame = pl_buf_ref(frame);
  if (s->pend_tail)
    s->pend_tail->next = p;
  else
    s->pend = p;
  s->pend_tail = p;
}

/* Carries out what the cursor answered to a push or a page's end. */
static void pl__act(pl_session *s, pl_cursor_act a) {
  if (a == PL_CURSOR_FETCH)
    pl_sess__start_sync(s);
  else if (a == PL_CURSOR_LAG)
    pl__lag(s);
}

static void pl__fetch_done(pl_store_req *req) {
  pl_sess__req *sr = PL_SESS__REQ(req);
  pl_session *s = sr->s;
  /* A fetch that a later one replaced (a logout that failed, say) is stale:
   * the later one, submitted after it, reads all it would. */
  if (!s->conn || s->state != PL_SESS_READY || s->cur.state != PL_CURSOR_FETCHING || sr->gen != s->fetch_gen)
    goto out;
  if (req->status == PL_ERR_BAD_TOKEN) { /* signed out meanwhile, its kick missed (pl_store.h, FETCH) */
    pl_sess__kick(s);
    goto out;
  }
  if (req->status != PL_OK) {
    pl_sess__fatal(s, PL_ERR_INTERNAL);
    goto out;
  }
  s->partial = req->u.fetch.out.partial != 0;
  for (size_t i = 0; i < req->u.fetch.out.nmsgs; i++) {
    /* A page of big messages would pile up: on LAG the rest stays in the
     * queue for the fetch after the drain, so a slow reader costs one mark. */
    const pl_msg *m = &req->u.fetch.out.msgs[i];
    pl_cursor_act a =
        pl_cursor_entry(&s->cur, pl__stream(s, m->gid), pl__pos(s, m->qid, m->gid, m->seq), pl__over(s));
    if (a == PL_CURSOR_LAG) {
      pl__lag(s);
      goto out;
    }
    if (a != PL_CURSOR_WRITE)
      continue;
    pl_buf *b = pl_router_encode(&req->u.fetch.out.msgs[i]);
    pl__send_msg(s, b);
    pl_buf_unref(b);
  }
  pl_cursor_act a =
      pl_cursor_page_end(&s->cur, req->u.fetch.out.more, s->conn->out_bytes >= s->core->cfg.out_high);
  if (a != PL_CURSOR_FLUSH) {
    pl__act(s, a);
    goto out;
  }
  for (pl_sess__pend *p = s->pend; p; p = p->next) {
    a = pl_cursor_flush(&s->cur, p->gid, p->pos);
    if (a == PL_CURSOR_FETCH) { /* a gap before it: the fetch reads the rest held */
      pl_sess__start_sync(s);
      goto out;
    }
    if (a == PL_CURSOR_WRITE)
      pl__send_msg(s, p->frame);
  }
  pl_sess__pend_clear(s);
out:
  pl_sess__req_free(sr);
}

void pl_sess__start_sync(pl_session *s) {
  pl_cursor_fetch(&s->cur);
  pl_sess__pend_clear(s);
  pl_sess__req *sr = pl_sess__req_new(s, PL_STORE_FETCH, NULL, pl__fetch_done);
  sr->req.device_id = s->device_id;
  sr->req.user_id = s->user_id; /* its groups' histories */
  sr->req.u.fetch.in.after = s->cur.last_sent;
  sr->req.u.fetch.in.limit = s->core->cfg.fetch_batch;
  /* what the connection takes before the cursor waits for a drain (§5) */
  sr->req.u.fetch.in.max_bytes =
      s->core->cfg.out_high < UINT32_MAX ? (uint32_t)s->core->cfg.out_high : UINT32_MAX;
  if (s->proto >= 2) { /* each group from what this connection wrote of it (else: the stored cursor) */
    sr->req.u.fetch.in.streams = 1;
    sr->gpos = pl_malloc((s->cur.ngs + 1) * sizeof *sr->gpos);
    for (uint32_t i = 0; i < s->cur.ngs; i++)
      if (s->cur.gs[i].last_sent)
        sr->gpos[sr->req.u.fetch.in.ngafter++] = (pl_store_gpos){s->cur.gs[i].gid, s->cur.gs[i].last_sent};
    sr->req.u.fetch.in.gafter = sr->gpos;
  }
  sr->gen = ++s->fetch_gen;
  pl_sess__submit(sr);
}

void pl_sess__attach(pl_session *s) {
  pl_cursor_attach(&s->cur); /* before attach: the router numbers from 1 */
  s->core->router->ops->attach(s->core->router, s->device_id, s->loop, s);
}

void pl_sess__off(pl_session *s) {
  pl_cursor_off(&s->cur);
  pl_sess__pend_clear(s);
}

/* At most once per heartbeat interval, whatever the client's pace: one
 * router look-up, and a fetch only when a numbered push never arrived, or
 * when the last page left groups unread (their shard away, a sharded
 * store): no hint may come for what was committed before, so the device
 * would otherwise wait for the group's next message. */
void pl_sess__check(pl_session *s) {
  if (s->state != PL_SESS_READY || s->cur.state != PL_CURSOR_LIVE)
    return;
  uint64_t now = pl_mono_ms();
  if (s->checked_at && now - s->checked_at < s->core->cfg.heartbeat_ms[s->kind])
    return;
  s->checked_at = now;
  if (s->partial) {
    pl_sess__start_sync(s);
    return;
  }
  uint64_t sent = s->core->router->ops->pushed(s->core->router, s->device_id, s->loop, s);
  pl__act(s, pl_cursor_check(&s->cur, sent));
}

/* Router sink: a committed message for this session's device, the hint-th
 * push the router sent to this attachment. */
void pl_sess__push(void *ep, uint64_t qid, uint64_t gid, uint64_t seq, uint64_t hint, pl_buf *frame) {
  pl_session *s = ep;
  if (!s->conn || s->state != PL_SESS_READY)
    return;
  /* Ephemeral (presence, typing, a live receipt): dropped for a slow
   * reader. A group history entry (gid) is none of them even with qid 0, as
   * PostgreSQL commits them: in protocol 2 its stream places it, and written
   * here it would overtake the entries before it (cluster_fault_group saw
   * seq N+1 before N). Protocol 1 has no place for it (no queue position):
   * it gets it live, as it comes, or not at all (protocol.md 10.3). */
  if (qid == 0 && (!gid || s->proto < 2)) {
    if (s->conn->out_bytes <= s->core->cfg.out_high)
      pl_conn_write(s->conn, frame);
    return;
  }
  uint64_t g = pl__stream(s, gid), pos = pl__pos(s, qid, gid, seq);
  pl_cursor_act a = pl_cursor_push(&s->cur, hint, g, pos, pl__over(s));
  if (a == PL_CURSOR_WRITE)
    pl__send_msg(s, frame);
  else if (a == PL_CURSOR_HOLD)
    pl__hold(s, g, pos, frame);
  else
    pl__act(s, a);
}

/* Router sink: the store has something for this device that no push
 * carried (a commit on another node). */
void pl_sess__fetch(void *ep) {
  pl_session *s = ep;
  if (s->conn && s->state == PL_SESS_READY)
    pl__act(s, pl_cursor_hint(&s->cur));
}

/* The device's presence goes with this connection (pl_sess__gone) here, not at
 * its close: the close sees state AUTH and skips it, and the newer
 * connection counted itself online already (audit finding 9: without this
 * the user stayed online for good). */
void pl_sess__kick(void *ep) {
  pl_session *s = ep;
  if (!s->conn)
    return;
  char peer[PL_ADDR_STR];
  pl_info("conn %llu %s: %s@%s closed: a newer connection took the device, or it was revoked",
          (unsigned long long)s->conn->id, pl_addr_str(&s->conn->peer, peer), s->user, s->device);
  s->core->router->ops->detach(s->core->router, s->device_id, s->loop, s);
  pl_sess__gone(s);
  s->state = PL_SESS_AUTH;
  pl_sess__off(s);
  pl_conn_close(s->conn);
}

/* ---- messaging ---------------------------------------------------------- */

static void pl__send_done(pl_store_req *req) {
  pl_sess__req *sr = PL_SESS__REQ(req);
  pl_session *s = sr->s;
  Parley__Send *m = (Parley__Send *)sr->msg;
  if (req->status == PL_OK) {
    Parley__SendAck a = PARLEY__SEND_ACK__INIT;
    a.id = m->id;
    a.conv = req->u.send.out.conv;
    a.seq = req->u.send.out.seq;
    a.server_ts = req->u.send.out.server_ts;
    a.duplicate = req->u.send.out.duplicate;
    a.vanish_at = req->u.send.out.vanish_at;
    pl_sess__write(s, PARLEY__FRAME_TYPE__FRAME_SEND_ACK, &a.base);
  } else if (s->conn) {
    pl_sess__error_retry(s, req->status, m->id,
                         req->status == PL_ERR_STORAGE_FULL ? PL_STORE_FULL_RETRY_MS : 0);
  }
  s->inflight--;
  if (s->inflight <= s->core->cfg.max_inflight / 2)
    pl_sess__resume_reading(s);
  pl_sess__req_free(sr);
}

/* The word filter, on the loop thread (in parallel, not on the store's). */
static pl_filter_result pl__filter(pl_session *s, const Parley__Send *m, uint8_t **masked, size_t *len) {
  pthread_mutex_lock(&s->core->filter_mu);
  pl_filter *f = pl_filter_ref(s->core->filter);
  pthread_mutex_unlock(&s->core->filter_mu);
  if (!f)
    return PL_FILTER_PASS;
  pl_filter_result r = pl_filter_check(f, m->body.data, m->body.len, masked, len);
  pl_filter_unref(f);
  return r;
}

/* Send.act as the rules read it; INVALID_ARGUMENT for what no stored state
 * can make right (pl_acts_check). */
static pl_err pl__send_act(const pl_session *s, const Parley__Send *m, pl_act *a) {
  const Parley__Act *p = m->act;
  memset(a, 0, sizeof *a);
  if (!p)
    return PL_OK;
  a->kind = (int)p->kind;
  a->target = p->target;
  a->reply_to = p->reply_to;
  a->forwarded = p->forwarded;
  a->timer_s = p->timer_s;
  a->target_conv = p->target_conv;
  if (p->vanish_at || strlen(p->target_conv) > 64) /* the server's to set; a conv name is short */
    return PL_ERR_INVALID_ARGUMENT;
  int self = !*m->group && strcmp(m->to, s->user) == 0;
  return pl_acts_check(a, m->body.data, m->body.len, m->media != NULL, self);
}

/* ---- the moderation webhook (pl_hook) -------------------------------------- */

typedef struct pl__mod {
  pl_job job;
  pl_sess__req *sr;
  const pl_hook_config *cfg;
  pl_hook_msg msg;
  char conv[96];
  pl_hook_verdict v;
  char *mask;
  size_t mask_len;
} pl__mod;

static void pl__mod_work(pl_job *j) {
  pl__mod *md = (pl__mod *)j;
  md->v = pl_hook_call(md->cfg, &md->msg, &md->mask, &md->mask_len);
}

/* Back on the loop: the hook's verdict, and the fail policy if it gave none. */
static void pl__mod_done(pl_job *j) {
  pl__mod *md = (pl__mod *)j;
  pl_sess__req *sr = md->sr;
  pl_session *s = sr->s;
  pl_core *core = s->core;
  pl_hook_verdict v = md->v;
  atomic_fetch_add_explicit(&core->hook_calls, 1, memory_order_relaxed);
  if (v == PL_HOOK_ERROR) {
    atomic_fetch_add_explicit(&core->hook_errors, 1, memory_order_relaxed);
    pl_warn("moderation: no verdict for %s@%s's message %s: %s", s->user ? s->user : "?",
            s->device ? s->device : "?", md->msg.id,
            core->hook.fail_closed ? "refused (fail-closed)" : "stored (fail-open)");
    v = core->hook.fail_closed ? PL_HOOK_REJECT : PL_HOOK_ALLOW;
  }
  s->moderating = 0;
  if (!s->conn || v == PL_HOOK_REJECT) {
    if (s->conn) {
      atomic_fetch_add_explicit(&core->hook_rejects, 1, memory_order_relaxed);
      pl_sess__error(s, PL_ERR_FILTERED, md->msg.id);
    }
    s->inflight--;
    pl_sess__req_free(sr);
  } else {
    if (v == PL_HOOK_MASK) {
      atomic_fetch_add_explicit(&core->hook_masks, 1, memory_order_relaxed);
      pl_free(sr->masked);
      sr->masked = (uint8_t *)md->mask;
      md->mask = NULL;
      sr->req.u.send.in.body = sr->masked;
      sr->req.u.send.in.body_len = md->mask_len;
    }
    pl_sess__submit(sr);
  }
  if (s->conn && s->inflight < core->cfg.max_inflight)
    pl_sess__resume_reading(s); /* else the commits' answers resume it */
}

static void pl__mod_free(pl_job *j) {
  pl__mod *md = (pl__mod *)j;
  pl_free(md->mask);
  pl_free(md);
}

/* Sends sr through the hook before the store; 0 if the hook cannot take it
 * now (it goes on as if there were none: the queue is full, a overload the
 * fail policy does not cover). The strings stay in sr->msg meanwhile. */
static int pl__moderate(pl_session *s, pl_sess__req *sr, const Parley__Send *m, uint64_t gid) {
  pl__mod *md = pl_calloc(1, sizeof *md);
  md->sr = sr;
  md->cfg = &s->core->hook;
  if (gid)
    snprintf(md->conv, sizeof md->conv, "g:%llu", (unsigned long long)gid);
  else
    snprintf(md->conv, sizeof md->conv, "dm:%s:%s", strcmp(s->user, m->to) < 0 ? s->user : m->to,
             strcmp(s->user, m->to) < 0 ? m->to : s->user);
  md->msg = (pl_hook_msg){.sender = s->user,
                          .device = s->device,
                          .conv = md->conv,
                          .id = m->id,
                          .text = sr->req.u.send.in.body,
                          .len = sr->req.u.send.in.body_len};
  md->job.work = pl__mod_work;
  md->job.done = pl__mod_done;
  md->job.release = pl__mod_free;
  if (pl_workers_submit(s->core->moderators, pl_loop_uv(s->loop), &md->job) != PL_OK) {
    pl_free(md);
    return 0;
  }
  return 1;
}

int pl_sess__on_send(pl_session *s, const pl_sess_cmd *cmd, pl_conn_msg *in) {
  (void)cmd;
  Parley__Send *m = (Parley__Send *)in->msg;
  size_t idlen = strlen(m->id);
  pl_err e = PL_OK;
  uint64_t gid = *m->group ? pl_frame_gid(m->group) : 0;
  int to_ok = *m->group ? gid && !*m->to : pl_auth_valid_user(m->to, strlen(m->to));
  if (m->media && (!*m->media->id || strlen(m->media->id) > 64))
    to_ok = 0;
  if (idlen == 0 || idlen > PL_SESS_MAX_ID || !to_ok)
    e = PL_ERR_INVALID_ARGUMENT;
  else if (m->body.len > s->core->cfg.max_message)
    e = PL_ERR_MESSAGE_TOO_LARGE;
  pl_act act;
  if (e == PL_OK)
    e = pl__send_act(s, m, &act);
  if (e != PL_OK) {
    pl_sess__error(s, e, idlen <= PL_SESS_MAX_ID ? m->id : NULL);
    return 0;
  }
  uint32_t wait = pl_rules_limiter_take(s->core->send_limit, s->user_id, pl_mono_ms());
  if (wait) {
    /* over the user's rate (protocol.md 10.7): nothing stored; the client
     * sends it again, same id, after retry_after_ms */
    pl_sess__error_retry(s, PL_ERR_RATE_LIMITED, m->id, wait);
    return 0;
  }
  uint8_t *masked = NULL;
  size_t masked_len = 0;
  if (pl__filter(s, m, &masked, &masked_len) == PL_FILTER_REJECT) {
    pl_sess__error(s, PL_ERR_FILTERED, m->id);
    return 0;
  }
  pl_sess__req *sr = pl_sess__req_new(s, PL_STORE_SEND, in, pl__send_done);
  sr->masked = masked;
  sr->req.user_id = s->user_id;
  sr->req.device_id = s->device_id;
  sr->req.u.send.in.device_name = s->device;
  sr->req.u.send.in.peer = gid ? NULL : m->to;
  sr->req.u.send.in.group = gid;
  sr->req.u.send.in.client_id = m->id;
  sr->req.u.send.in.body = masked ? masked : m->body.data;
  sr->req.u.send.in.body_len = masked ? masked_len : m->body.len;
  sr->req.u.send.in.client_ts = m->client_ts;
  sr->req.u.send.in.media_id = m->media ? m->media->id : NULL;
  if (m->act) { /* the strings stay in sr->msg until the request is freed */
    sr->act = act;
    sr->req.u.send.in.act = &sr->act;
  }
  atomic_fetch_add_explicit(&s->core->sends, 1, memory_order_relaxed);
  if (s->core->moderators && m->body.len && pl__moderate(s, sr, m, gid)) {
    ++s->inflight;
    s->paused = s->moderating = 1; /* one Send at a time in the hook: the connection's order stays */
    return 1;
  }
  pl_sess__submit(sr);
  if (++s->inflight >= s->core->cfg.max_inflight) {
    s->paused = 1; /* back-pressure: read no more until commits catch up */
    return 1;
  }
  return 0;
}

static void pl__submit_ack(pl_session *s);

static void pl__ack_done(pl_store_req *req) {
  pl_sess__req *sr = PL_SESS__REQ(req);
  pl_session *s = sr->s;
  s->ack_busy = 0;
  if (req->status == PL_OK && req->u.ack.in.upto > s->ack_done)
    s->ack_done = req->u.ack.in.upto;
  if (req->status != PL_OK) /* the groups' acks go again with the client's next Ack */
    for (uint32_t i = 0; i < s->cur.ngs; i++)
      s->cur.gs[i].ack_sent = 0;
  if (req->status == PL_OK)
    pl__submit_ack(s); /* after a failure, the client's next Ack retries */
  pl_sess__req_free(sr);
}

/* One ack request in flight per session: acks that arrive meanwhile
 * coalesce into the next (they are cumulative). */
static void pl__submit_ack(pl_session *s) {
  size_t ng = 0;
  for (uint32_t i = 0; i < s->cur.ngs; i++)
    ng += s->cur.gs[i].ack_want > s->cur.gs[i].ack_sent;
  if (s->ack_busy || (s->ack_want <= s->ack_done && !ng) || s->state != PL_SESS_READY)
    return;
  pl_sess__req *sr = pl_sess__req_new(s, PL_STORE_ACK, NULL, pl__ack_done);
  sr->req.device_id = s->device_id;
  sr->req.user_id = s->user_id; /* delivered receipts */
  sr->req.u.ack.in.upto = s->ack_want;
  if (s->proto >= 2) {
    sr->req.u.ack.in.streams = 1;
    sr->gpos = pl_malloc((ng + 1) * sizeof *sr->gpos);
    for (uint32_t i = 0; i < s->cur.ngs; i++) {
      pl_cursor_stream *g = &s->cur.gs[i];
      if (g->ack_want > g->ack_sent) {
        sr->gpos[sr->req.u.ack.in.ngacks++] = (pl_store_gpos){g->gid, g->ack_want};
        g->ack_sent = g->ack_want;
      }
    }
    sr->req.u.ack.in.gacks = sr->gpos;
  }
  s->ack_busy = 1;
  pl_sess__submit(sr);
}

int pl_sess__on_ack(pl_session *s, const pl_sess_cmd *cmd, pl_conn_msg *in) {
  (void)cmd;
  const Parley__Ack *m = (const Parley__Ack *)in->msg;
  /* A client cannot ack what it was not sent (in each stream). */
  uint64_t upto = m->upto < s->cur.last_sent ? m->upto : s->cur.last_sent;
  if (upto > s->ack_want)
    s->ack_want = upto;
  for (size_t i = 0; s->proto >= 2 && i < m->n_groups; i++) {
    uint64_t gid = m->groups[i] && m->groups[i]->group ? pl_frame_gid(m->groups[i]->group) : 0;
    pl_cursor_stream *g = gid ? pl_cursor_stream_get(&s->cur, gid, 0) : NULL;
    if (!g) /* nothing of that group was sent on this connection */
      continue;
    uint64_t seq = m->groups[i]->upto_seq < g->last_sent ? m->groups[i]->upto_seq : g->last_sent;
    if (seq > g->ack_want)
      g->ack_want = seq;
  }
  pl__submit_ack(s);
  return 0;
}

/* ---- typing ------------------------------------------------------------- */

static pl_buf *pl__typing_event(pl_session *s, const char *conv, int typing) {
  Parley__TypingEvent ev = PARLEY__TYPING_EVENT__INIT;
  ev.from = s->user;
  ev.conv = (char *)conv;
  ev.typing = typing;
  ev.expires_ms = s->core->cfg.typing_interval_ms * 6; /* several missed renewals */
  return pl_frame_encode(PARLEY__FRAME_TYPE__FRAME_TYPING_EVENT, &ev.base);
}

static void pl__typing_group(pl_session *s, const pl_store_req *req, int typing) {
  size_t n = req->u.typing.out.ntargets;
  uint64_t *skip = pl_malloc((n + 1) * sizeof *skip);
  if (n)
    memcpy(skip, req->u.typing.out.targets, n * sizeof *skip);
  skip[n] = s->device_id;
  pl_buf *b = pl__typing_event(s, req->u.typing.out.conv, typing);
  s->core->router->ops->push_group_frame(s->core->router, req->u.typing.out.group, skip, n + 1, b);
  pl_buf_unref(b);
  pl_free(skip);
}

/* Typing: rate-limited here, routed to the peer's online devices unless
 * the peer blocked this user (in a group: to the members' connected
 * devices but this one and those of members who blocked this user, which
 * the store lists in targets); never stored. */
static void pl__typing_done(pl_store_req *req) {
  pl_sess__req *sr = PL_SESS__REQ(req);
  pl_session *s = sr->s;
  Parley__Typing *m = (Parley__Typing *)sr->msg;
  if (req->status != PL_OK) {
    pl_sess__error(s, req->status, m->to);
  } else if (req->u.typing.out.group) {
    pl__typing_group(s, req, m->typing);
  } else if (req->u.typing.out.ntargets) {
    pl_buf *b = pl__typing_event(s, req->u.typing.out.conv, m->typing);
    s->core->router->ops->push_frame(s->core->router, req->u.typing.out.targets, req->u.typing.out.ntargets,
                                     b);
    pl_buf_unref(b);
  }
  pl_sess__req_free(sr);
}

int pl_sess__on_typing(pl_session *s, const pl_sess_cmd *cmd, pl_conn_msg *in) {
  (void)cmd;
  Parley__Typing *m = (Parley__Typing *)in->msg;
  uint64_t now = pl_mono_ms();
  uint64_t gid = *m->group ? pl_frame_gid(m->group) : 0;
  if (*m->group ? !gid || *m->to : pl_sess__bad_name(m->to)) {
    pl_sess__error(s, PL_ERR_INVALID_ARGUMENT, NULL);
    return 0;
  }
  if (m->typing && s->typing_at && now - s->typing_at < s->core->cfg.typing_interval_ms)
    return 0; /* too soon: the last one still holds */
  s->typing_at = m->typing ? now : 0;
  pl_sess__req *sr = pl_sess__req_new(s, PL_STORE_TYPING, in, pl__typing_done);
  sr->req.user_id = s->user_id;
  sr->req.u.typing.in.peer = gid ? NULL : m->to;
  sr->req.u.typing.in.group = gid;
  pl_sess__submit(sr);
  return 0;
}
