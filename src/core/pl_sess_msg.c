/* pl_sess_msg: messages. The delivery cursor (pl_session.h) that takes a
 * device's queue to its connection, Send and its SendAck after the commit,
 * the cumulative Ack, and Typing (never stored). */
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
  s->npend = 0;
  s->pend_overflow = 0;
}

/* ---- delivery cursor ---------------------------------------------------- */

static void pl__send_msg(pl_session *s, uint64_t qid, pl_buf *frame) {
  pl_conn_write(s->conn, frame);
  s->last_sent = qid;
  atomic_fetch_add_explicit(&s->core->messages_out, 1, memory_order_relaxed);
}

/* The client reads too slowly: stop taking pushes, refetch once drained. */
static void pl__lag(pl_session *s) {
  s->sync = PL_SYNC_LAGGING;
  pl_sess__pend_clear(s);
  s->conn->want_drain = 1;
}

static void pl__fetch_done(pl_store_req *req) {
  pl_sess__req *sr = PL_SESS__REQ(req);
  pl_session *s = sr->s;
  if (!s->conn || s->state != PL_SESS_READY)
    goto out;
  if (req->status != PL_OK) {
    pl_sess__fatal(s, PL_ERR_INTERNAL);
    goto out;
  }
  for (size_t i = 0; i < req->out.nmsgs; i++) {
    if (req->out.msgs[i].qid <= s->last_sent)
      continue;
    if (s->conn->out_bytes > s->core->cfg.out_high) {
      /* A page of big messages would pile up: the rest stays in the queue
       * for the fetch after the drain, so a slow reader costs one mark. */
      pl__lag(s);
      goto out;
    }
    pl_buf *b = pl_router_encode(&req->out.msgs[i]);
    pl__send_msg(s, req->out.msgs[i].qid, b);
    pl_buf_unref(b);
  }
  if (req->out.more || s->pend_overflow) {
    /* Pushes held meanwhile are in the queue too: the next page has them. */
    pl_sess__pend_clear(s);
    if (s->conn->out_bytes < s->core->cfg.out_high)
      pl_sess__start_sync(s);
    else
      pl__lag(s);
    goto out;
  }
  for (pl_sess__pend *p = s->pend; p; p = p->next)
    if (p->qid > s->last_sent)
      pl__send_msg(s, p->qid, p->frame);
  pl_sess__pend_clear(s);
  s->sync = PL_SYNC_LIVE;
out:
  pl_sess__req_free(sr);
}

void pl_sess__start_sync(pl_session *s) {
  s->sync = PL_SYNC_FETCHING;
  pl_sess__pend_clear(s);
  pl_sess__req *sr = pl_sess__req_new(s, PL_STORE_FETCH, NULL, pl__fetch_done);
  sr->req.in.device_id = s->device_id;
  sr->req.in.user_id = s->user_id; /* its groups' histories */
  sr->req.in.after = s->last_sent;
  sr->req.in.limit = s->core->cfg.fetch_batch;
  pl_sess__submit(sr);
}

/* Router sink: a committed message for this session's device. */
void pl_sess__push(void *ep, uint64_t qid, pl_buf *frame) {
  pl_session *s = ep;
  if (!s->conn || s->state != PL_SESS_READY)
    return;
  if (qid == 0) { /* ephemeral (presence, typing): dropped for a slow reader */
    if (s->conn->out_bytes <= s->core->cfg.out_high)
      pl_conn_write(s->conn, frame);
    return;
  }
  switch (s->sync) {
  case PL_SYNC_FETCHING:
    if (s->npend >= PL_SESS_MAX_PEND) {
      s->pend_overflow = 1;
      return;
    }
    pl_sess__pend *p = pl_malloc(sizeof *p);
    p->next = NULL;
    p->qid = qid;
    p->frame = pl_buf_ref(frame);
    if (s->pend_tail)
      s->pend_tail->next = p;
    else
      s->pend = p;
    s->pend_tail = p;
    s->npend++;
    return;
  case PL_SYNC_LIVE:
    if (qid <= s->last_sent)
      return;
    if (s->conn->out_bytes > s->core->cfg.out_high) {
      pl__lag(s);
      return;
    }
    pl__send_msg(s, qid, frame);
    return;
  default: return; /* lagging: the next fetch reads it from the queue */
  }
}

/* The device's presence goes with this connection (pl_sess__gone) here, not at
 * its close: the close sees state AUTH and skips it, and the newer
 * connection counted itself online already (audit finding 9: without this
 * the user stayed online for good). */
void pl_sess__kick(void *ep) {
  pl_session *s = ep;
  if (!s->conn)
    return;
  pl_info("conn %llu %s: %s@%s closed: a newer connection took the device, or it was revoked",
          (unsigned long long)s->conn->id, s->conn->peer, s->user, s->device);
  s->core->router->ops->detach(s->core->router, s->device_id, s->loop, s);
  pl_sess__gone(s);
  s->state = PL_SESS_AUTH;
  s->sync = PL_SYNC_OFF;
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
    a.conv = req->out.conv;
    a.seq = req->out.seq;
    a.server_ts = req->out.server_ts;
    a.duplicate = req->out.duplicate;
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

uint64_t pl_sess__gid(const char *g) {
  uint64_t v = 0;
  size_t n = strlen(g);
  if (n == 0 || n > 18 || g[0] == '0')
    return 0;
  for (size_t i = 0; i < n; i++) {
    if (g[i] < '0' || g[i] > '9')
      return 0;
    v = v * 10 + (uint64_t)(g[i] - '0');
  }
  return v;
}

int pl_sess__on_send(pl_session *s, const pl_sess_cmd *cmd, pl_conn_msg *in) {
  (void)cmd;
  Parley__Send *m = (Parley__Send *)in->msg;
  size_t idlen = strlen(m->id);
  pl_err e = PL_OK;
  uint64_t gid = *m->group ? pl_sess__gid(m->group) : 0;
  int to_ok = *m->group ? gid && !*m->to : pl_auth_valid_user(m->to, strlen(m->to));
  if (m->media && (!*m->media->id || strlen(m->media->id) > 64))
    to_ok = 0;
  if (idlen == 0 || idlen > PL_SESS_MAX_ID || !to_ok)
    e = PL_ERR_INVALID_ARGUMENT;
  else if (m->body.len > s->core->cfg.max_message)
    e = PL_ERR_MESSAGE_TOO_LARGE;
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
  sr->req.in.user_id = s->user_id;
  sr->req.in.user = s->user;
  sr->req.in.device_id = s->device_id;
  sr->req.in.device_name = s->device;
  sr->req.in.peer = gid ? NULL : m->to;
  sr->req.in.group = gid;
  sr->req.in.client_id = m->id;
  sr->req.in.body = masked ? masked : m->body.data;
  sr->req.in.body_len = masked ? masked_len : m->body.len;
  sr->req.in.client_ts = m->client_ts;
  sr->req.in.media_id = m->media ? m->media->id : NULL;
  atomic_fetch_add_explicit(&s->core->sends, 1, memory_order_relaxed);
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
  if (req->status == PL_OK && req->in.upto > s->ack_done)
    s->ack_done = req->in.upto;
  if (req->status == PL_OK)
    pl__submit_ack(s); /* after a failure, the client's next Ack retries */
  pl_sess__req_free(sr);
}

/* One ack request in flight per session: acks that arrive meanwhile
 * coalesce into the next (they are cumulative). */
static void pl__submit_ack(pl_session *s) {
  if (s->ack_busy || s->ack_want <= s->ack_done || s->state != PL_SESS_READY)
    return;
  pl_sess__req *sr = pl_sess__req_new(s, PL_STORE_ACK, NULL, pl__ack_done);
  sr->req.in.device_id = s->device_id;
  sr->req.in.user_id = s->user_id; /* delivered receipts */
  sr->req.in.upto = s->ack_want;
  s->ack_busy = 1;
  pl_sess__submit(sr);
}

int pl_sess__on_ack(pl_session *s, const pl_sess_cmd *cmd, pl_conn_msg *in) {
  (void)cmd;
  const Parley__Ack *m = (const Parley__Ack *)in->msg;
  /* A client cannot ack what it was not sent. */
  uint64_t upto = m->upto < s->last_sent ? m->upto : s->last_sent;
  if (upto > s->ack_want)
    s->ack_want = upto;
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
  size_t n = req->out.ntargets;
  uint64_t *skip = pl_malloc((n + 1) * sizeof *skip);
  if (n)
    memcpy(skip, req->out.targets, n * sizeof *skip);
  skip[n] = s->device_id;
  pl_buf *b = pl__typing_event(s, req->out.conv, typing);
  s->core->router->ops->push_group_frame(s->core->router, req->out.group, skip, n + 1, b);
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
  } else if (req->out.group) {
    pl__typing_group(s, req, m->typing);
  } else if (req->out.ntargets) {
    pl_buf *b = pl__typing_event(s, req->out.conv, m->typing);
    s->core->router->ops->push_frame(s->core->router, req->out.targets, req->out.ntargets, b);
    pl_buf_unref(b);
  }
  pl_sess__req_free(sr);
}

int pl_sess__on_typing(pl_session *s, const pl_sess_cmd *cmd, pl_conn_msg *in) {
  (void)cmd;
  Parley__Typing *m = (Parley__Typing *)in->msg;
  uint64_t now = pl_mono_ms();
  uint64_t gid = *m->group ? pl_sess__gid(m->group) : 0;
  if (*m->group ? !gid || *m->to : pl_sess__bad_name(m->to)) {
    pl_sess__error(s, PL_ERR_INVALID_ARGUMENT, NULL);
    return 0;
  }
  if (m->typing && s->typing_at && now - s->typing_at < s->core->cfg.typing_interval_ms)
    return 0; /* too soon: the last one still holds */
  s->typing_at = m->typing ? now : 0;
  pl_sess__req *sr = pl_sess__req_new(s, PL_STORE_TYPING, in, pl__typing_done);
  sr->req.in.user_id = s->user_id;
  sr->req.in.peer = gid ? NULL : m->to;
  sr->req.in.group = gid;
  pl_sess__submit(sr);
  return 0;
}
