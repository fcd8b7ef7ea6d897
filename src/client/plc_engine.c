/* plc_engine: libparley's protocol engine. See plc_internal.h for the phases.
 *
 * One pass (plc_pass) runs the timers, polls the socket once, reads what is
 * there (parsing every whole frame of each read), then writes the output
 * buffer in one go. Frames are only ever appended to the output buffer, never
 * written directly, so a pass that dispatches a thousand messages still ends
 * with a single Ack and a single write. */
#include <poll.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include "common/pl_mem.h"
#include "common/pl_time.h"
#include "plc_internal.h"
#include "proto/pl_frame.h"

#define PLC_READ_CHUNK 65536
/* Bounds one pass's input (256 KB, a few thousand messages), so the
 * application gets control back, and its acks go out, at a steady pace. */
#define PLC_READS_PER_PASS 4
#define PLC_DEFAULT_HB 30000u
#define PLC_LINGER_MS 250 /* parley_free's bound on a graceful close */

static const char *plc__s(const char *s) { return s ? s : ""; }

parley_state plc_state(const parley *c) {
  switch (c->phase) {
  case PLC_OPEN:
  case PLC_AUTHING: return PARLEY_STATE_CONNECTED;
  case PLC_READY:
  case PLC_LOGOUT: return PARLEY_STATE_AUTHENTICATED;
  default: return PARLEY_STATE_DISCONNECTED;
  }
}

/* Calls on_state if the public state is no longer `before`. */
static void plc__notify(parley *c, parley_state before, int err) {
  parley_state now = plc_state(c);
  if (now == before || !c->cb.on_state)
    return;
  c->depth++;
  c->cb.on_state(c, now, err, c->ud);
  c->depth--;
}

static void plc__set_phase(parley *c, plc_phase p, int err) {
  parley_state before = plc_state(c);
  c->phase = p;
  plc__notify(c, before, err);
}

static void plc__op_finish(parley *c, plc_op op, int err) {
  if (c->op != op)
    return;
  c->op = PLC_OP_NONE;
  c->op_err = err;
}

/* Full jitter: uniform in [0, min(max, min * 2^(n-1))]. */
static uint64_t plc__backoff(const parley *c, uint32_t n) {
  uint64_t cap = (uint64_t)c->reconnect_min_ms << (n > 1 ? (n - 1 < 20 ? n - 1 : 20) : 0);
  if (cap > (uint64_t)c->reconnect_max_ms)
    cap = (uint64_t)c->reconnect_max_ms;
  return randombytes_uniform((uint32_t)cap + 1);
}

void plc_write(parley *c, uint8_t type, const ProtobufCMessage *msg) { pl_frame_append(&c->wbuf, type, msg); }

void plc_write_msg(parley *c, plc_msg *m) {
  pl_bytes_append(&c->wbuf, m->frame, m->frame_len);
  m->state = PLC_MSG_SENT;
  c->inflight++;
}

void plc_pump(parley *c) {
  while (c->phase == PLC_READY && c->ob.unsent && c->inflight < PLC_WINDOW) {
    plc_msg *m = c->ob.unsent;
    c->ob.unsent = m->next;
    plc_write_msg(c, m);
  }
}

int plc_down_code(const parley *c) {
  if (c->phase != PLC_IDLE || c->reconnect_at)
    return PARLEY_OK;
  return c->dead ? c->dead : PARLEY_E_CLOSED;
}

/* ---- connection lifetime ------------------------------------------------ */

static void plc__reset_conn(parley *c) {
  c->gen++;
  c->rbuf.len = 0;
  c->wbuf.len = 0;
  c->wpos = 0;
  c->conn_max_qid = 0;
  c->ack_sent = 0;
  for (size_t i = 0; i < c->ngm; i++)
    c->gm[i].conn_max = c->gm[i].ack_sent = 0;
  c->close_hint = 0;
  c->inflight = 0;
  plc_outbox_rewind(&c->ob);
}

void plc_drop(parley *c, int err, int reconnect) {
  /* Only a session that was up (or the engine's own resume) comes back by
   * itself; a failed connect or login the application asked for is its to retry. */
  int again = reconnect && c->auto_reconnect && c->token && (c->phase == PLC_READY || c->resuming) &&
              err != PARLEY_E_BAD_TOKEN && err != PARLEY_E_UNSUPPORTED_VERSION;
  plc_sock_close(&c->sock);
  plc__reset_conn(c);
  c->resuming = 0;
  c->phase_deadline = 0;
  c->retry_scan_at = 0;
  if (c->op != PLC_OP_NONE)
    plc__op_finish(c, c->op, err ? err : PARLEY_E_CLOSED);
  if (again) {
    c->attempts++;
    uint64_t wait = plc__backoff(c, c->attempts);
    if (err == PARLEY_E_RATE_LIMITED && wait < c->retry_after_ms) /* a throttled resume: as asked */
      wait = c->retry_after_ms;
    c->reconnect_at = pl_mono_ms() + wait;
    c->dead = 0;
  } else {
    c->reconnect_at = 0;
    c->dead = err ? err : PARLEY_E_CLOSED;
  }
  plc__set_phase(c, PLC_IDLE, err);
}

static void plc__send_hello(parley *c) {
  uint64_t now = pl_mono_ms();
  c->last_read = c->last_write = c->last_ping = now;
  Parley__Hello h = PARLEY__HELLO__INIT;
  h.version = c->proto;
  h.kind = (Parley__ClientKind)c->kind;
  h.client_name = c->client_name;
  c->hello_wall = pl_now_ms();
  plc_write(c, PARLEY__FRAME_TYPE__FRAME_HELLO, &h.base);
  c->phase = PLC_HELLO;
}

int plc_start(parley *c) {
  plc__reset_conn(c);
  c->reconnect_at = 0;
  c->phase_deadline = pl_mono_ms() + (uint64_t)c->request_timeout_ms;
  if (c->tls_name && !c->tls_ctx) { /* no CA certificates to verify with */
    plc_drop(c, PARLEY_E_TLS, 1);
    return PARLEY_E_TLS;
  }
  if (c->tls_name)
    plc_sock_use_tls(&c->sock, c->tls_ctx, c->tls_name);
  if (plc_sock_open(&c->sock, c->host, c->port) != 0) {
    plc_drop(c, PARLEY_E_CONNECT, 1);
    return PARLEY_E_CONNECT;
  }
  c->phase = PLC_CONNECTING;
  if (!c->sock.connecting)
    plc__send_hello(c);
  return PARLEY_OK;
}

static void plc__on_connectable(parley *c) {
  int r = plc_sock_finish(&c->sock);
  if (r > 0)
    plc__send_hello(c);
  else if (r < 0)
    plc_drop(c, c->sock.tls_failed ? PARLEY_E_TLS : PARLEY_E_CONNECT, 1);
}

/* ---- frames from the server --------------------------------------------- */

static void plc__on_welcome(parley *c, const Parley__Welcome *w) {
  if (c->phase != PLC_HELLO) {
    plc_drop(c, PARLEY_E_PROTOCOL, 1);
    return;
  }
  c->heartbeat_ms = w->heartbeat_ms ? w->heartbeat_ms : PLC_DEFAULT_HB;
  c->max_frame = w->max_frame;
  c->max_message = w->max_message;
  /* The server stamped Welcome somewhere between our Hello and now. */
  uint64_t now = pl_now_ms();
  c->clock_offset = (int64_t)w->server_ts - (int64_t)((c->hello_wall + now) / 2);
  c->phase_deadline = 0;
  uint32_t gen = c->gen;
  plc__set_phase(c, PLC_OPEN, 0);
  plc__op_finish(c, PLC_OP_CONNECT, PARLEY_OK);
  if (gen != c->gen || !c->resuming)
    return;
  Parley__Resume r = PARLEY__RESUME__INIT;
  r.token = c->token;
  plc_write(c, PARLEY__FRAME_TYPE__FRAME_RESUME, &r.base);
  c->phase = PLC_AUTHING;
  c->phase_deadline = pl_mono_ms() + (uint64_t)c->request_timeout_ms;
}

static void plc__replace(char **dst, const char *src) {
  pl_free(*dst);
  *dst = pl_strdup(plc__s(src));
}

static void plc__fail_outbox(parley *c, int err, const char *why) {
  while (c->ob.head)
    plc_msg_done(c, c->ob.head, NULL, err, why);
}

static void plc__on_auth_ok(parley *c, const Parley__AuthOk *a) {
  if (c->phase != PLC_AUTHING) {
    plc_drop(c, PARLEY_E_PROTOCOL, 1);
    return;
  }
  /* The outbox belongs to the session's user; another user must not send it. */
  if (c->user && strcmp(c->user, plc__s(a->user)) != 0)
    plc__fail_outbox(c, PARLEY_E_STATE, "logged in as another user");
  if (a->device_id != c->device_id) {
    c->last_qid = c->ack_upto = 0; /* positions are per device */
    c->ngm = 0;
  }
  plc__replace(&c->user, a->user);
  plc__replace(&c->device, a->device);
  if (a->token && *a->token)
    plc__replace(&c->token, a->token);
  c->device_id = a->device_id;
  c->attempts = 0;
  c->reconnect_at = 0;
  c->dead = 0;
  c->resuming = 0;
  c->phase_deadline = 0;
  parley_state before = plc_state(c);
  c->phase = PLC_READY;
  plc_pump(c); /* the outbox, in order, same ids; later sends queue behind it */
  plc__op_finish(c, PLC_OP_AUTH, PARLEY_OK);
  plc__notify(c, before, 0);
}

/* The codes after which the server closes the connection (docs/protocol.md,
 * "Error codes"): 1..7, and 9 (reserved for it). SHUTTING_DOWN is not one. */
static int plc__closing(int code) {
  return code <= PARLEY_E_BAD_FRAME && code >= PARLEY_E_SLOW_CONSUMER && code != PARLEY_E_SHUTTING_DOWN;
}

static void plc__on_send_error(parley *c, const Parley__Error *e, int code) {
  plc_msg *m = plc_outbox_find(&c->ob, e->ref);
  if (!m || m->state != PLC_MSG_SENT || plc__closing(code))
    return; /* closing: the drop requeues it for the next connection */
  int later = code == PARLEY_E_RATE_LIMITED || code == PARLEY_E_STORAGE_FULL; /* after retry_after_ms */
  if (code != PARLEY_E_INTERNAL && code != PARLEY_E_SHUTTING_DOWN && !later) {
    plc_msg_done(c, m, NULL, code, e->message && *e->message ? e->message : NULL);
    return;
  }
  /* Nothing was committed: try again later, on this connection or the next;
   * over the send rate or while its disk is full, when the server said
   * (protocol.md 9, 10.7). */
  c->inflight--;
  m->state = PLC_MSG_RETRY;
  m->retries++;
  uint64_t backoff = plc__backoff(c, m->retries);
  m->retry_at = pl_mono_ms() + (later && e->retry_after_ms ? (uint64_t)e->retry_after_ms
                                                           : (uint64_t)c->reconnect_min_ms + backoff);
  if (!c->retry_scan_at || m->retry_at < c->retry_scan_at)
    c->retry_scan_at = m->retry_at;
}

/* Is ref the request a blocking call waits for? */
static int plc__req_is(const parley *c, const char *ref) {
  return c->req_ref[0] && ref && strcmp(ref, c->req_ref) == 0;
}

static void plc__req_finish(parley *c, int err, ProtobufCMessage *answer) {
  c->req_done = 1;
  c->req_err = err;
  c->req_answer = answer;
  c->req_ref[0] = 0;
}

static void plc__on_error(parley *c, const Parley__Error *e) {
  int code = e->code ? -(int)e->code : PARLEY_E_PROTOCOL;
  c->retry_after_ms = e->retry_after_ms;
  int fatal = plc__closing(code);
  if (plc__req_is(c, e->ref))
    plc__req_finish(c, code, NULL);
  if (e->ref && *e->ref && c->phase >= PLC_READY) {
    plc__on_send_error(c, e, code);
    if (!fatal)
      return;
  }
  if (fatal || c->phase == PLC_HELLO) {
    plc_drop(c, code, 1);
    return;
  }
  if (c->phase == PLC_AUTHING) {
    if (c->resuming) {
      if (code == PARLEY_E_BAD_TOKEN) {
        pl_free(c->token);
        c->token = NULL;
      }
      plc_drop(c, code, 1);
      return;
    }
    c->phase = PLC_OPEN;
    c->phase_deadline = 0;
    plc__op_finish(c, PLC_OP_AUTH, code);
  } else if (c->phase == PLC_LOGOUT) {
    c->phase = PLC_READY;
    c->phase_deadline = 0;
    plc__op_finish(c, PLC_OP_LOGOUT, code);
  } else {
    /* Answers nothing we asked (an Ack the store could not take, say), but
     * if the server closes next, it is the reason. */
    c->close_hint = code;
  }
}

static void plc__on_logout_ok(parley *c) {
  if (c->phase != PLC_LOGOUT)
    return;
  pl_free(c->token);
  c->token = NULL;
  plc__op_finish(c, PLC_OP_LOGOUT, PARLEY_OK);
  plc_drop(c, 0, 0);
}

static void plc__on_send_ack(parley *c, const Parley__SendAck *a) {
  plc_msg *m = plc_outbox_find(&c->ob, plc__s(a->id));
  if (!m)
    return; /* already reported (an ack for a resent copy) */
  parley_send_ack ack = {
      .id = plc__s(a->id),
      .conv = plc__s(a->conv),
      .seq = a->seq,
      .server_ts = a->server_ts,
      .duplicate = a->duplicate ? 1 : 0,
  };
  plc_msg_done(c, m, &ack, PARLEY_OK, NULL);
}

plc_gmark *plc_gmark_get(parley *c, uint64_t gid, int create) {
  size_t lo = 0, hi = c->ngm;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    if (c->gm[mid].gid < gid)
      lo = mid + 1;
    else
      hi = mid;
  }
  if (lo < c->ngm && c->gm[lo].gid == gid)
    return &c->gm[lo];
  if (!create)
    return NULL;
  if (c->ngm == c->gmcap) {
    c->gmcap = c->gmcap ? c->gmcap * 2 : 8;
    c->gm = pl_realloc(c->gm, c->gmcap * sizeof *c->gm);
  }
  memmove(&c->gm[lo + 1], &c->gm[lo], (c->ngm - lo) * sizeof *c->gm);
  c->ngm++;
  c->gm[lo] = (plc_gmark){.gid = gid};
  return &c->gm[lo];
}

/* Is this Message new to the application? Raises its stream's marks
 * (protocol 2: a group entry's stream is its group, by seq). */
static int plc__fresh(parley *c, const Parley__Message *pm) {
  uint64_t gid = c->proto >= 2 && pm->group && *pm->group ? pl_frame_gid(pm->group) : 0;
  if (gid) {
    plc_gmark *g = plc_gmark_get(c, gid, 1);
    if (pm->seq > g->conn_max)
      g->conn_max = pm->seq;
    if (pm->seq <= g->last)
      return 0;
    g->last = pm->seq;
    return 1;
  }
  if (pm->qid > c->conn_max_qid)
    c->conn_max_qid = pm->qid;
  if (pm->qid <= c->last_qid)
    return 0;
  c->last_qid = pm->qid;
  return 1;
}

static void plc__on_message(parley *c, const Parley__Message *pm) {
  if (c->phase < PLC_READY)
    return;
  if (!plc__fresh(c, pm))
    return; /* redelivered after a reconnect: the application has it */
  if (c->cb.on_message) {
    parley_message m = {
        .qid = pm->qid,
        .conv = plc__s(pm->conv),
        .seq = pm->seq,
        .from = plc__s(pm->from),
        .from_device = plc__s(pm->from_device),
        .id = plc__s(pm->id),
        .body = pm->body.data,
        .body_len = pm->body.len,
        .client_ts = pm->client_ts,
        .server_ts = pm->server_ts,
        .group = plc__s(pm->group),
    };
    parley_media media;
    if (pm->media) {
      media = (parley_media){.id = plc__s(pm->media->id),
                             .type = plc__s(pm->media->type),
                             .size = pm->media->size,
                             .width = pm->media->width,
                             .height = pm->media->height,
                             .thumb_width = pm->media->thumb_width,
                             .thumb_height = pm->media->thumb_height,
                             .thumb_size = pm->media->thumb_size,
                             .name = plc__s(pm->media->name)};
      m.media = &media;
    }
    parley_act act;
    if (pm->act) {
      act = (parley_act){.kind = (int)pm->act->kind,
                         .target = pm->act->target,
                         .reply_to = pm->act->reply_to,
                         .forwarded = pm->act->forwarded,
                         .timer_s = pm->act->timer_s,
                         .target_conv = plc__s(pm->act->target_conv),
                         .vanish_at = pm->act->vanish_at};
      m.act = &act;
    }
    parley_group_event ev;
    if (pm->event) {
      ev = (parley_group_event){.type = (int)pm->event->type,
                                .actor = plc__s(pm->event->actor),
                                .user = plc__s(pm->event->user),
                                .name = plc__s(pm->event->name),
                                .role = (int)pm->event->role};
      m.event = &ev;
    }
    c->depth++;
    c->cb.on_message(c, &m, c->ud);
    c->depth--;
  }
  if (!c->auto_ack)
    return;
  plc_gmark *g =
      c->proto >= 2 && pm->group && *pm->group ? plc_gmark_get(c, pl_frame_gid(pm->group), 0) : NULL;
  if (g && pm->seq > g->ack_upto)
    g->ack_upto = pm->seq;
  else if (!g && pm->qid > c->ack_upto)
    c->ack_upto = pm->qid;
}

/* Hands an event to the application; queued ones (qid > 0) are filtered
 * and acknowledged like messages. */
static void plc__event(parley *c, parley_event *e) {
  if (c->phase < PLC_READY)
    return;
  if (e->qid) {
    if (e->qid > c->conn_max_qid)
      c->conn_max_qid = e->qid;
    if (e->qid <= c->last_qid)
      return;
    c->last_qid = e->qid;
  }
  if (c->cb.on_event) {
    c->depth++;
    c->cb.on_event(c, e, c->ud);
    c->depth--;
  }
  if (e->qid && c->auto_ack && e->qid > c->ack_upto)
    c->ack_upto = e->qid;
}

static void plc__on_receipt(parley *c, const Parley__Receipt *r) {
  parley_event e = {.type = PARLEY_EV_RECEIPT,
                    .qid = r->qid,
                    .conv = plc__s(r->conv),
                    .user = plc__s(r->by),
                    .status = (int)r->status,
                    .seq = r->seq,
                    .server_ts = r->server_ts};
  plc__event(c, &e);
}

static void plc__on_read_sync(parley *c, const Parley__ReadSync *r) {
  parley_event e = {.type = PARLEY_EV_READ_SYNC,
                    .qid = r->qid,
                    .conv = plc__s(r->conv),
                    .seq = r->seq,
                    .unread = r->unread,
                    .server_ts = r->server_ts};
  plc__event(c, &e);
}

static void plc__on_typing(parley *c, const Parley__TypingEvent *t) {
  parley_event e = {.type = PARLEY_EV_TYPING,
                    .conv = plc__s(t->conv),
                    .user = plc__s(t->from),
                    .typing = t->typing,
                    .expires_ms = t->expires_ms};
  plc__event(c, &e);
}

/* A Presence answering our request is kept for it; others are events.
 * Returns 1 if msg was kept (the caller must not free it). */
static int plc__on_presence(parley *c, Parley__Presence *p) {
  if (plc__req_is(c, p->ref)) {
    plc__req_finish(c, PARLEY_OK, &p->base);
    return 1;
  }
  parley_event e = {.type = PARLEY_EV_PRESENCE,
                    .user = plc__s(p->user),
                    .visible = p->visible,
                    .online = p->online,
                    .last_seen = p->last_seen};
  plc__event(c, &e);
  return 0;
}

static void plc__on_pong(parley *c, const Parley__Pong *p) {
  uint64_t now = pl_now_ms();
  if (!p->client_ts || p->client_ts > now)
    return;
  c->clock_offset = (int64_t)p->server_ts - (int64_t)((p->client_ts + now) / 2);
}

static void plc__dispatch(parley *c, const pl_frame *f) {
  if (!pl_frame_descriptor(f->type))
    return; /* a newer server's frame type: not ours to understand */
  ProtobufCMessage *msg = pl_frame_unpack(f);
  if (!msg) {
    plc_drop(c, PARLEY_E_PROTOCOL, 1);
    return;
  }
  switch (f->type) {
  case PARLEY__FRAME_TYPE__FRAME_WELCOME: plc__on_welcome(c, (Parley__Welcome *)msg); break;
  case PARLEY__FRAME_TYPE__FRAME_ERROR: plc__on_error(c, (Parley__Error *)msg); break;
  case PARLEY__FRAME_TYPE__FRAME_AUTH_OK: plc__on_auth_ok(c, (Parley__AuthOk *)msg); break;
  case PARLEY__FRAME_TYPE__FRAME_LOGOUT_OK: plc__on_logout_ok(c); break;
  case PARLEY__FRAME_TYPE__FRAME_SEND_ACK: plc__on_send_ack(c, (Parley__SendAck *)msg); break;
  case PARLEY__FRAME_TYPE__FRAME_MESSAGE: plc__on_message(c, (Parley__Message *)msg); break;
  case PARLEY__FRAME_TYPE__FRAME_PONG: plc__on_pong(c, (Parley__Pong *)msg); break;
  case PARLEY__FRAME_TYPE__FRAME_RECEIPT: plc__on_receipt(c, (Parley__Receipt *)msg); break;
  case PARLEY__FRAME_TYPE__FRAME_READ_SYNC: plc__on_read_sync(c, (Parley__ReadSync *)msg); break;
  case PARLEY__FRAME_TYPE__FRAME_TYPING_EVENT: plc__on_typing(c, (Parley__TypingEvent *)msg); break;
  case PARLEY__FRAME_TYPE__FRAME_PRESENCE:
    if (plc__on_presence(c, (Parley__Presence *)msg))
      return;
    break;
  case PARLEY__FRAME_TYPE__FRAME_DONE:
    if (plc__req_is(c, ((Parley__Done *)msg)->ref))
      plc__req_finish(c, PARLEY_OK, NULL);
    break;
  case PARLEY__FRAME_TYPE__FRAME_CONTACT_LIST:
    if (plc__req_is(c, ((Parley__ContactList *)msg)->ref)) {
      plc__req_finish(c, PARLEY_OK, msg);
      return;
    }
    break;
  case PARLEY__FRAME_TYPE__FRAME_GROUP_INFO:
    if (plc__req_is(c, ((Parley__GroupInfo *)msg)->ref)) {
      plc__req_finish(c, PARLEY_OK, msg);
      return;
    }
    break;
  case PARLEY__FRAME_TYPE__FRAME_GROUP_RECEIPTS:
    if (plc__req_is(c, ((Parley__GroupReceipts *)msg)->ref)) {
      plc__req_finish(c, PARLEY_OK, msg);
      return;
    }
    break;
  case PARLEY__FRAME_TYPE__FRAME_GROUP_LIST:
    if (plc__req_is(c, ((Parley__GroupList *)msg)->ref)) {
      plc__req_finish(c, PARLEY_OK, msg);
      return;
    }
    break;
  case PARLEY__FRAME_TYPE__FRAME_SETTINGS_STATE:
    if (plc__req_is(c, ((Parley__SettingsState *)msg)->ref)) {
      plc__req_finish(c, PARLEY_OK, msg);
      return;
    }
    break;
  case PARLEY__FRAME_TYPE__FRAME_DEVICE_LIST:
    if (plc__req_is(c, ((Parley__DeviceList *)msg)->ref)) {
      plc__req_finish(c, PARLEY_OK, msg);
      return;
    }
    break;
  default: break; /* client-to-server types, and answers nobody waits for */
  }
  protobuf_c_message_free_unpacked(msg, NULL);
}

void plc_msg_done(parley *c, plc_msg *m, const parley_send_ack *a, int err, const char *message) {
  if (m == c->wait_msg) {
    if (m->state == PLC_MSG_SENT)
      c->inflight--;
    c->wait_msg = NULL;
    c->wait_done = 1;
    c->wait_err = err;
    if (a) {
      snprintf(c->wait_id, sizeof c->wait_id, "%s", a->id);
      plc__replace(&c->wait_conv, a->conv);
      c->wait_ack = *a;
      c->wait_ack.id = c->wait_id;
      c->wait_ack.conv = c->wait_conv;
    }
    plc_outbox_remove(&c->ob, m);
    return;
  }
  char id[PLC_ID_MAX + 1];
  memcpy(id, m->id, sizeof id);
  if (m->state == PLC_MSG_SENT)
    c->inflight--;
  plc_outbox_remove(&c->ob, m);
  c->depth++;
  if (a && c->cb.on_ack)
    c->cb.on_ack(c, a, c->ud);
  else if (!a && c->cb.on_send_error)
    c->cb.on_send_error(c, id, err, message ? message : parley_strerror(err), c->ud);
  c->depth--;
}

/* ---- reading and writing ------------------------------------------------ */

/* Dispatches every whole frame in the read buffer. */
static void plc__parse(parley *c) {
  uint32_t gen = c->gen;
  size_t off = 0;
  while (gen == c->gen) {
    pl_frame f;
    size_t used;
    pl_err e = pl_frame_parse(c->rbuf.p + off, c->rbuf.len - off, PLC_MAX_IN_FRAME, &f, &used);
    if (e == PL_ERR_AGAIN)
      break;
    if (e != PL_OK) {
      plc_drop(c, PARLEY_E_PROTOCOL, 1);
      return;
    }
    off += used;
    plc__dispatch(c, &f);
  }
  if (gen == c->gen)
    pl_bytes_consume(&c->rbuf, off);
}

static void plc__read(parley *c) {
  uint32_t gen = c->gen;
  for (int i = 0; i < PLC_READS_PER_PASS; i++) {
    pl_bytes_reserve(&c->rbuf, PLC_READ_CHUNK);
    ssize_t n = plc_sock_read(&c->sock, c->rbuf.p + c->rbuf.len, PLC_READ_CHUNK);
    if (n == 0)
      return;
    if (n < 0) {
      plc_drop(c, c->close_hint ? c->close_hint : PARLEY_E_CLOSED, 1);
      return;
    }
    c->rbuf.len += (size_t)n;
    c->last_read = pl_mono_ms();
    plc__parse(c);
    if (gen != c->gen)
      return;
  }
}

static void plc__flush(parley *c) {
  if (c->sock.fd < 0 || c->phase == PLC_CONNECTING)
    return;
  while (c->wpos < c->wbuf.len) {
    ssize_t n = plc_sock_write(&c->sock, c->wbuf.p + c->wpos, c->wbuf.len - c->wpos);
    if (n < 0) {
      /* The server may have said why before closing: read that first. */
      uint32_t gen = c->gen;
      plc__read(c);
      if (gen == c->gen)
        plc_drop(c, PARLEY_E_CLOSED, 1);
      return;
    }
    if (n == 0)
      break;
    c->wpos += (size_t)n;
    c->last_write = pl_mono_ms();
  }
  if (c->wpos == c->wbuf.len) {
    c->wbuf.len = c->wpos = 0;
  } else if (c->wpos >= PLC_READ_CHUNK && c->wpos * 2 >= c->wbuf.len) {
    pl_bytes_consume(&c->wbuf, c->wpos);
    c->wpos = 0;
  }
}

/* Output that is decided once per pass rather than per frame. */
static void plc__prepare_output(parley *c) {
  if (c->phase != PLC_READY)
    return;
  plc_pump(c);
  /* Only ack what this connection delivered: the server ignores the rest. */
  uint64_t upto = c->ack_upto < c->conn_max_qid ? c->ack_upto : c->conn_max_qid;
  size_t ng = 0;
  for (size_t i = 0; i < c->ngm; i++) {
    plc_gmark *g = &c->gm[i];
    ng += (g->ack_upto < g->conn_max ? g->ack_upto : g->conn_max) > g->ack_sent;
  }
  if (upto <= c->ack_sent && !ng)
    return;
  Parley__Ack a = PARLEY__ACK__INIT;
  Parley__GroupAck *ga = ng ? pl_calloc(ng, sizeof *ga) : NULL, **gp = ng ? pl_calloc(ng, sizeof *gp) : NULL;
  char(*names)[24] = ng ? pl_calloc(ng, sizeof *names) : NULL;
  for (size_t i = 0; i < c->ngm && a.n_groups < ng; i++) {
    plc_gmark *g = &c->gm[i];
    uint64_t s = g->ack_upto < g->conn_max ? g->ack_upto : g->conn_max;
    if (s <= g->ack_sent)
      continue;
    parley__group_ack__init(&ga[a.n_groups]);
    snprintf(names[a.n_groups], sizeof names[0], "%llu", (unsigned long long)g->gid);
    ga[a.n_groups].group = names[a.n_groups];
    ga[a.n_groups].upto_seq = s;
    gp[a.n_groups] = &ga[a.n_groups];
    a.n_groups++;
    g->ack_sent = s;
  }
  a.groups = gp;
  a.upto = upto > c->ack_sent ? upto : c->ack_sent;
  plc_write(c, PARLEY__FRAME_TYPE__FRAME_ACK, &a.base);
  c->ack_sent = a.upto;
  pl_free(ga);
  pl_free(gp);
  pl_free(names);
}

/* ---- timers ------------------------------------------------------------- */

static void plc__next(int64_t *next, uint64_t at, uint64_t now) {
  int64_t in = at > now ? (int64_t)(at - now) : 0;
  if (*next < 0 || in < *next)
    *next = in;
}

static void plc__retry_due(parley *c, uint64_t now) {
  uint64_t soonest = 0;
  for (plc_msg *m = c->ob.head; m; m = m->next) {
    if (m->state != PLC_MSG_RETRY)
      continue;
    if (now >= m->retry_at)
      plc_write_msg(c, m);
    else if (!soonest || m->retry_at < soonest)
      soonest = m->retry_at;
  }
  c->retry_scan_at = soonest;
}

static void plc__heartbeat(parley *c, uint64_t now, int64_t *next) {
  uint64_t hb = c->heartbeat_ms ? c->heartbeat_ms : PLC_DEFAULT_HB;
  uint64_t half = hb / 2;
  /* Pings go out at least every half interval, so a server that stays quiet
   * for one and a half intervals has missed two of them: it is gone. */
  if (now >= c->last_read + hb + half) {
    plc_drop(c, PARLEY_E_TIMEOUT, 1);
    *next = 0;
    return;
  }
  if (now >= c->last_ping + half && (now >= c->last_write + half || now >= c->last_read + half)) {
    Parley__Ping p = PARLEY__PING__INIT;
    p.client_ts = pl_now_ms();
    plc_write(c, PARLEY__FRAME_TYPE__FRAME_PING, &p.base);
    c->last_ping = now;
  }
  uint64_t idle_since = c->last_write < c->last_read ? c->last_write : c->last_read;
  plc__next(next, (c->last_ping > idle_since ? c->last_ping : idle_since) + half, now);
  plc__next(next, c->last_read + hb + half, now);
}

/* Runs what is due; returns ms until the next timer, or -1 if none. */
static int64_t plc__timers(parley *c, uint64_t now) {
  int64_t next = -1;
  if (c->phase == PLC_IDLE) {
    if (!c->reconnect_at)
      return -1;
    if (now < c->reconnect_at) {
      plc__next(&next, c->reconnect_at, now);
      return next;
    }
    c->resuming = 1;
    plc_start(c);
    if (c->phase == PLC_IDLE)
      return c->reconnect_at ? 0 : -1;
  }
  if (c->phase_deadline) {
    if (now >= c->phase_deadline) {
      plc_drop(c, PARLEY_E_TIMEOUT, 1);
      return 0;
    }
    plc__next(&next, c->phase_deadline, now);
  }
  if (c->phase >= PLC_OPEN) {
    plc__heartbeat(c, now, &next);
    if (c->phase == PLC_IDLE)
      return 0;
  }
  if (c->phase == PLC_READY && c->retry_scan_at) {
    if (now >= c->retry_scan_at)
      plc__retry_due(c, now);
    if (c->retry_scan_at)
      plc__next(&next, c->retry_scan_at, now);
  }
  return next;
}

/* ---- one pass ----------------------------------------------------------- */

int plc_pass(parley *c, int timeout_ms) {
  int64_t next = plc__timers(c, pl_mono_ms());
  plc__prepare_output(c);
  plc__flush(c);
  int down = plc_down_code(c);
  if (down)
    return down;
  int64_t wait = timeout_ms > 0 ? timeout_ms : 0;
  if (next >= 0 && next < wait)
    wait = next;
  if (c->sock.fd < 0) {
    if (wait > 0)
      poll(NULL, 0, (int)wait);
    return PARLEY_OK;
  }
  struct pollfd p = {.fd = c->sock.fd, .events = plc_sock_events(&c->sock)};
  if (c->phase != PLC_CONNECTING && c->wpos < c->wbuf.len)
    p.events |= POLLOUT;
  if (c->phase != PLC_CONNECTING && plc_sock_pending(&c->sock))
    wait = 0; /* decrypted bytes wait inside TLS: poll would not see them */
  int woke = poll(&p, 1, (int)wait) > 0 && p.revents;
  if (c->phase == PLC_CONNECTING) {
    if (woke)
      plc__on_connectable(c);
  } else if ((woke && (p.revents & (POLLIN | POLLHUP | POLLERR))) || plc_sock_pending(&c->sock)) {
    plc__read(c);
  }
  plc__prepare_output(c);
  plc__flush(c);
  return plc_down_code(c);
}

/* A graceful close for parley_free: write what is pending (a final Ack),
 * send FIN, and wait briefly for the server's, so the server reads every
 * byte before it sees the close (an abortive close could lose them). */
void plc_linger(parley *c) {
  if (c->sock.fd < 0 || c->phase < PLC_HELLO)
    return;
  plc__prepare_output(c);
  uint64_t end = pl_mono_ms() + PLC_LINGER_MS;
  while (c->sock.fd >= 0 && c->wpos < c->wbuf.len && pl_mono_ms() < end) {
    struct pollfd p = {.fd = c->sock.fd, .events = POLLOUT};
    if (poll(&p, 1, (int)(end - pl_mono_ms())) <= 0)
      break;
    ssize_t n = plc_sock_write(&c->sock, c->wbuf.p + c->wpos, c->wbuf.len - c->wpos);
    if (n < 0)
      return;
    c->wpos += (size_t)n;
  }
  plc_sock_shutdown(&c->sock);
  char scratch[4096];
  for (uint64_t now = pl_mono_ms(); now < end; now = pl_mono_ms()) {
    struct pollfd p = {.fd = c->sock.fd, .events = POLLIN};
    if (poll(&p, 1, (int)(end - now)) <= 0)
      break;
    if (plc_sock_read(&c->sock, scratch, sizeof scratch) < 0)
      break; /* the server's FIN (or an error): done */
  }
}
