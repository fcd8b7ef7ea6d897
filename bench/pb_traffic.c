#include "pb_traffic.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/pl_mem.h"
#include "common/pl_time.h"

#define PB__PACE_MIN_GAP_US 100 /* at most one pacing wake-up per 100 us */
#define PB__ERRORS_LOGGED 5

/* ---- message bodies and ids --------------------------------------------- */

static size_t pb__body(const pb_peer *p, uint64_t seq, uint64_t ts, char *out, size_t cap) {
  int n = snprintf(out, cap, "%016" PRIx64 " %u %" PRIu64 " %" PRIu64 " ", p->t->run_id, p->c.uidx, seq, ts);
  size_t len = (size_t)n;
  while (len < p->t->body_size && len < cap)
    out[len++] = '.';
  return len;
}

typedef struct pb__stamp {
  uint64_t run, seq, ts;
  uint32_t from;
} pb__stamp;

static int pb__parse_body(const ProtobufCBinaryData *b, pb__stamp *s) {
  char buf[96];
  size_t n = b->len < sizeof buf - 1 ? b->len : sizeof buf - 1;
  memcpy(buf, b->data, n);
  buf[n] = '\0';
  return sscanf(buf, "%16" SCNx64 " %u %" SCNu64 " %" SCNu64, &s->run, &s->from, &s->seq, &s->ts) == 4 ? 0
                                                                                                       : -1;
}

/* The seq of an id "<run>.<seq>" of this run, or 0. */
static uint64_t pb__id_seq(const pb_traffic *t, const char *id) {
  char *end;
  if (!id || strlen(id) < 18 || id[16] != '.' || strtoull(id, NULL, 16) != t->run_id)
    return 0;
  uint64_t seq = strtoull(id + 17, &end, 10);
  return *end ? 0 : seq;
}

/* ---- sending -------------------------------------------------------------- */

/* Writes the Send of seq (the same id and bytes every time it is written). */
static void pb__write_send(pb_peer *p, uint64_t seq, uint64_t ts_us) {
  char body[4096], id[48], to[32];
  Parley__Send s = PARLEY__SEND__INIT;
  snprintf(id, sizeof id, "%016" PRIx64 ".%" PRIu64, p->t->run_id, seq);
  pb_users_name(p->to, to, sizeof to);
  s.id = id;
  s.to = to;
  s.body.data = (uint8_t *)body;
  s.body.len = pb__body(p, seq, ts_us, body, sizeof body);
  s.client_ts = pl_now_ms();
  pb_conn_send(&p->c, PARLEY__FRAME_TYPE__FRAME_SEND, &s.base);
}

int pb_traffic_send(pb_peer *p, uint64_t ts_us) {
  if (p->c.state != PB_C_READY || p->to == PB_NOBODY)
    return -1;
  uint64_t seq = p->next_seq;
  pb__write_send(p, seq, ts_us);
  pb_track_mark(&p->tr, seq, PB_T_SENT);
  pb_track_set_time(&p->tr, seq, ts_us);
  p->next_seq++;
  if (p->t->filling && p->quota != PB_NO_QUOTA && p->next_seq == p->quota + 1)
    p->t->quota_open--;
  p->inflight++;
  p->t->inflight++;
  p->t->res->sent++;
  return 0;
}

static int pb__may_send(const pb_peer *p) { return p->next_seq <= p->quota; }

static void pb__refill(pb_peer *p) {
  pb_traffic *t = p->t;
  if (t->stopping || !t->filling)
    return;
  uint64_t now = pb_now_us();
  while (p->inflight < t->window && pb__may_send(p))
    if (pb_traffic_send(p, now) != 0)
      return;
}

void pb_traffic_fill(pb_traffic *t) {
  t->interval_us = 0;
  t->filling = 1;
  for (uint32_t i = 0; i < t->npeers; i++) {
    const pb_peer *p = &t->peers[i];
    if (p->to == PB_NOBODY || p->quota == PB_NO_QUOTA)
      continue;
    t->has_quota = 1;
    t->quota_open += pb__may_send(p);
  }
  for (uint32_t i = 0; i < t->npeers; i++)
    pb__refill(&t->peers[i]);
}

/* Sends every message that is due, then sleeps until the next one. */
static void pb__pace_tick(pb_timer *tm) {
  pb_traffic *t = tm->ud;
  uint64_t now = pb_now_us();
  while (!t->stopping && !(t->pace_limit && t->pace_n >= t->pace_limit)) {
    uint64_t due = t->pace_t0 + (uint64_t)((double)t->pace_n * t->interval_us);
    if (due > now) {
      uint64_t next = now + PB__PACE_MIN_GAP_US;
      pb_timer_start(t->net->loop, tm, due > next ? due : next);
      return;
    }
    if (pb_traffic_send(t->senders[t->pace_n % t->nsenders], due) == 0 && t->recording)
      pb_hist_add(&t->res->lag, now - due);
    t->pace_n++;
  }
}

void pb_traffic_pace(pb_traffic *t, double rate, uint64_t limit) {
  t->nsenders = 0;
  for (uint32_t i = 0; i < t->npeers; i++)
    if (t->peers[i].to != PB_NOBODY)
      t->senders[t->nsenders++] = &t->peers[i];
  if (!t->nsenders || rate <= 0)
    return;
  t->interval_us = 1e6 / rate;
  t->pace_t0 = pb_now_us();
  t->pace_n = 0;
  t->pace_limit = limit;
  pb_timer_start(t->net->loop, &t->pace, t->pace_t0);
}

void pb_traffic_stop(pb_traffic *t) {
  t->stopping = 1;
  pb_timer_stop(t->net->loop, &t->pace);
}

int pb_traffic_quota_done(void *arg) {
  const pb_traffic *t = arg;
  if (t->stopping)
    return 1;
  if (t->interval_us > 0)
    return t->pace_limit && t->pace_n >= t->pace_limit;
  return t->has_quota && t->quota_open == 0;
}

/* ---- frames ---------------------------------------------------------------- */

static void pb__answered(pb_peer *p, uint64_t seq, uint8_t flag) {
  pb_track_mark(&p->tr, seq, flag);
  while (p->low < p->next_seq && pb_track_has(&p->tr, p->low, PB_T_ACKED | PB_T_REFUSED))
    p->low++;
  p->inflight--;
  p->t->inflight--;
  pb__refill(p);
}

static void pb__on_send_ack(pb_peer *p, const Parley__SendAck *a) {
  pb_result *r = p->t->res;
  uint64_t seq = pb__id_seq(p->t, a->id);
  if (!pb_track_has(&p->tr, seq, PB_T_SENT) || pb_track_has(&p->tr, seq, PB_T_ACKED | PB_T_REFUSED)) {
    r->stale++; /* an answer to nothing we are waiting for */
    return;
  }
  r->acked++;
  r->acked_dup += a->duplicate;
  int resent = seq < p->resend_mark; /* its first try's answer went with the old connection */
  r->resent_dup += resent && a->duplicate;
  r->resent_new += resent && !a->duplicate;
  if (p->t->recording && !resent) { /* a resend's wait would count the outage */
    uint64_t now = pb_now_us(), sent = pb_track_time(&p->tr, seq);
    pb_hist_add(&r->ack, now > sent ? now - sent : 0);
  }
  pb__answered(p, seq, PB_T_ACKED);
}

static void pb__on_error(pb_peer *p, const Parley__Error *e) {
  pb_traffic *t = p->t;
  uint64_t seq = pb__id_seq(t, e->ref);
  if (t->errors_logged++ < PB__ERRORS_LOGGED)
    fprintf(stderr, "parley-bench: pb%u: server error %d (%s) for '%s'\n", p->c.uidx, (int)e->code,
            e->message ? e->message : "", e->ref ? e->ref : "");
  if (!pb_track_has(&p->tr, seq, PB_T_SENT) || pb_track_has(&p->tr, seq, PB_T_ACKED | PB_T_REFUSED))
    return;
  t->res->refused++;
  pb__answered(p, seq, PB_T_REFUSED);
}

/* Judges a receipt the way a client that drops qids it has seen would
 * (protocol 10.6): a repeat with an old qid is a harmless redelivery; a
 * repeat with a new qid would be shown twice; a first receipt with an old
 * qid would be dropped, i.e. lost. */
static void pb__judge(pb_result *r, int old_qid, unsigned receipts) {
  if (old_qid) {
    r->redelivered++;
    r->qid_regress += receipts == 1;
  } else if (receipts > 1) {
    r->dup_shown++;
  }
}

/* Looks up the sender's ledger and counts a receipt of this run's message. */
static void pb__on_message(pb_peer *p, const Parley__Message *m) {
  pb_traffic *t = p->t;
  pb_result *r = t->res;
  pb__stamp s;
  int old_qid = m->qid <= p->qid_seen;
  if (!old_qid)
    p->qid_seen = m->qid;
  r->received++;
  if (pb__parse_body(&m->body, &s) != 0 || s.run != t->run_id) {
    r->stale++;
    return;
  }
  pb_peer *from = s.from < t->nusers ? t->by_uidx[s.from] : NULL;
  if (!from || from->to != p->c.uidx || (p->from != PB_NOBODY && p->from != s.from)) {
    r->misrouted++;
    return;
  }
  unsigned receipts = pb_track_recv(&from->tr, s.seq);
  pb__judge(r, old_qid, receipts);
  if (receipts != 1)
    return;
  t->received_once++;
  if (!t->recording)
    return;
  uint64_t now = pb_now_us();
  r->unique++;
  pb_hist_add(&r->lat, now > s.ts ? now - s.ts : 0);
  if (!r->t_first_rx)
    r->t_first_rx = now;
  r->t_last_rx = now;
}

static void pb__on_frame(pb_conn *c, uint8_t type, const ProtobufCMessage *m) {
  pb_peer *p = (pb_peer *)c;
  if (type == PARLEY__FRAME_TYPE__FRAME_MESSAGE)
    pb__on_message(p, (const Parley__Message *)m);
  else if (type == PARLEY__FRAME_TYPE__FRAME_SEND_ACK)
    pb__on_send_ack(p, (const Parley__SendAck *)m);
  else if (type == PARLEY__FRAME_TYPE__FRAME_ERROR)
    pb__on_error(p, (const Parley__Error *)m);
}

/* After a reconnect: every send still unanswered again, same id and body. */
static void pb__resend(pb_peer *p) {
  p->resend = 0;
  for (uint64_t seq = p->low; seq < p->next_seq; seq++) {
    if (!pb_track_has(&p->tr, seq, PB_T_SENT) || pb_track_has(&p->tr, seq, PB_T_ACKED | PB_T_REFUSED))
      continue;
    pb__write_send(p, seq, pb_track_time(&p->tr, seq));
    p->t->res->resent++;
  }
  p->resend_mark = p->next_seq;
}

static void pb__on_ready(pb_conn *c) {
  pb_peer *p = (pb_peer *)c;
  if (p->resend)
    pb__resend(p);
  p->ready = 1;
  p->t->ready++;
  if (p->t->on_ready)
    p->t->on_ready(p);
}

static void pb__on_close(pb_conn *c, const char *why) {
  pb_peer *p = (pb_peer *)c;
  pb_traffic *t = p->t;
  int was_ready = p->ready;
  if (p->ready)
    t->ready--;
  p->ready = 0;
  /* Sends without an answer: committed or not, nobody can tell. They stay
   * in flight and go again, same ids, after the reconnect (pb__resend). */
  t->res->unanswered += was_ready ? p->inflight : 0;
  p->resend |= p->inflight > 0;
  if (t->closing || !p->want_up) {
    t->inflight -= p->inflight;
    p->inflight = 0;
    return;
  }
  t->res->disconnects += was_ready;
  if (t->errors_logged++ < PB__ERRORS_LOGGED)
    fprintf(stderr, "parley-bench: pb%u: %s: %s\n", c->uidx, was_ready ? "connection lost" : "cannot connect",
            why);
  if (p->want_up && !t->revive.armed)
    pb_timer_start(t->net->loop, &t->revive, pb_now_us() + PB_REVIVE_US);
}

static void pb__revive(pb_timer *tm) {
  pb_traffic *t = tm->ud;
  for (uint32_t i = 0; i < t->npeers; i++)
    if (t->peers[i].want_up && t->peers[i].c.state == PB_C_IDLE)
      pb_conn_start(&t->peers[i].c);
}

static const pb_conn_cbs pb__cbs = {
    .on_ready = pb__on_ready, .on_frame = pb__on_frame, .on_close = pb__on_close};

/* ---- set-up and accounting -------------------------------------------------- */

void pb_traffic_init(pb_traffic *t, pb_net *net, pb_result *res, uint64_t run_id, uint32_t cap,
                     uint32_t nusers) {
  memset(t, 0, sizeof *t);
  t->net = net;
  t->res = res;
  t->run_id = run_id;
  t->cap = cap;
  t->peers = pl_calloc(cap ? cap : 1, sizeof *t->peers);
  t->senders = pl_calloc(cap ? cap : 1, sizeof *t->senders);
  t->nusers = nusers;
  t->by_uidx = pl_calloc(nusers ? nusers : 1, sizeof *t->by_uidx);
  t->window = 64;
  t->body_size = 100;
  t->pace = (pb_timer){.cb = pb__pace_tick, .ud = t};
  t->revive = (pb_timer){.cb = pb__revive, .ud = t};
}

pb_peer *pb_traffic_add(pb_traffic *t, uint32_t uidx, uint32_t to, uint32_t from) {
  if (t->npeers == t->cap)
    return NULL;
  pb_peer *p = &t->peers[t->npeers++];
  pb_conn_init(&p->c, t->net, uidx, &pb__cbs, t);
  p->t = t;
  p->to = to;
  p->from = from;
  p->next_seq = 1;
  p->low = 1;
  p->quota = PB_NO_QUOTA;
  if (to != PB_NOBODY && uidx < t->nusers)
    t->by_uidx[uidx] = p;
  return p;
}

void pb_traffic_start(pb_peer *p) {
  p->want_up = 1;
  pb_conn_start(&p->c);
}

void pb_traffic_connect(pb_traffic *t) {
  for (uint32_t i = 0; i < t->npeers; i++)
    if (!t->peers[i].manual)
      pb_traffic_start(&t->peers[i]);
}

void pb_traffic_drop(pb_peer *p, int rst) {
  pb_traffic *t = p->t;
  p->want_up = 0;
  if (p->ready)
    t->ready--;
  p->ready = 0;
  t->res->unanswered += p->inflight;
  t->inflight -= p->inflight;
  p->inflight = 0;
  p->resend = 0;
  p->low = p->next_seq; /* given up: never resent */
  pb_conn_drop(&p->c, rst);
}

int pb_traffic_connected(void *arg) {
  const pb_traffic *t = arg;
  return t->net->handshaking == 0 && !t->net->queue;
}

int pb_traffic_settled(void *arg) {
  const pb_traffic *t = arg;
  return t->inflight == 0 && t->received_once >= t->res->acked;
}

void pb_traffic_tally(pb_traffic *t) {
  for (uint32_t i = 0; i < t->npeers; i++)
    pb_track_tally(&t->peers[i].tr, t->peers[i].next_seq - 1, t->res);
}

void pb_traffic_free(pb_traffic *t) {
  t->closing = 1;
  pb_timer_stop(t->net->loop, &t->pace);
  pb_timer_stop(t->net->loop, &t->revive);
  for (uint32_t i = 0; i < t->npeers; i++) {
    pb_conn_drop(&t->peers[i].c, 0);
    pb_track_free(&t->peers[i].tr);
  }
  pl_free(t->peers);
  pl_free(t->senders);
  pl_free(t->by_uidx);
  memset(t, 0, sizeof *t);
}
