/* mqtt-pairs: N publisher -> subscriber pairs over MQTT 3.1.1 at QoS 1,
 * against any broker at --mqtt HOST:PORT, so parleyd and the MQTT brokers
 * are raced by one load generator on the very same load.
 *
 *   --broker parley  pair i is user pb<2i> publishing to parley/send/user/
 *                    pb<2i+1> (protocol.md 16.2, payload {"id","text"}),
 *                    received on parley/in/msg/user/pb<2i> by user pb<2i+1>;
 *                    both log in with "$token" and their cached token
 *   --broker plain   pair i publishes to bench/<i>, its subscriber
 *                    subscribes to bench/<i> at QoS 1; no login
 *
 * Every payload carries "<run id> <pair> <seq> <send time us>", padded to
 * --size bytes (for parley the whole JSON payload is --size bytes). Packet
 * ids follow the seq (seq - 1 mod 65535, + 1), so a PUBACK names its seq as
 * long as fewer than 65,535 are in flight; an open-loop send that would
 * exceed that is not made and counted as refused. A PUBACK marks the seq
 * acked in the pair's ledger (pb_track): lost = acked, never delivered
 * after the drain; duplicated = delivered more than once. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/pl_mem.h"
#include "pb_mqc.h"
#include "pb_scen.h"
#include "pb_users.h"

#define MQ_MAX_INFLIGHT 65000u
#define MQ_PACE_GAP_US 100u
#define MQ_DRAIN_MAX_S 30.0
#define MQ_LINGER_S 0.3

typedef struct mq_run mq_run;

typedef struct mq_pair {
  pb_mqc pub, sub;
  mq_run *r;
  uint32_t i;
  uint64_t next_seq; /* the last seq sent */
  uint64_t low;      /* every seq below it is acked */
  uint64_t inflight, quota;
  pb_track tr;
  char topic[64];
} mq_pair;

struct mq_run {
  pb_ctx *c;
  struct sockaddr_in broker;
  int parley;
  mq_pair *p;
  uint32_t n, ready;
  uint64_t inflight;
  int sending, recording;
  pb_timer pace;
  double interval_us;
  uint64_t pace_t0, pace_n, pace_limit;
};

static void mq_defaults(pb_opts *o) {
  if (!o->conns)
    o->conns = 50;
  if (o->rate < 0)
    o->rate = 0;
  if (o->duration < 0 && !o->messages)
    o->duration = 10;
}

static uint32_t mq_users(const pb_opts *o) { return o->broker_plain ? 0 : 2 * o->conns; }
static uint32_t mq_conns(const pb_opts *o) { return 2 * o->conns; }

static uint64_t mq_quota(const pb_opts *o, uint32_t i) {
  if (!o->messages)
    return UINT64_MAX;
  return o->messages / o->conns + (i < o->messages % o->conns);
}

/* ---- sending ----------------------------------------------------------- */

static uint16_t mq_pid(uint64_t seq) { return (uint16_t)((seq - 1) % 65535u + 1u); }

/* The payload of seq: the stamp padded to --size (for parley, the JSON). */
static size_t mq_payload(const mq_pair *p, uint64_t seq, uint64_t ts, char *out, size_t cap) {
  const mq_run *r = p->r;
  char stamp[96];
  int sn = snprintf(stamp, sizeof stamp, "%016" PRIx64 " %u %" PRIu64 " %" PRIu64, r->c->run_id, p->i, seq, ts);
  size_t want = r->c->o->size < cap ? r->c->o->size : cap - 1;
  size_t n;
  if (r->parley) {
    int hn = snprintf(out, cap, "{\"id\":\"%016" PRIx64 ".%" PRIu64 "\",\"text\":\"%s", r->c->run_id, seq, stamp);
    n = (size_t)hn;
    while (n + 2 < want)
      out[n++] = 'x';
    out[n++] = '"';
    out[n++] = '}';
  } else {
    memcpy(out, stamp, (size_t)sn);
    n = (size_t)sn;
    while (n < want)
      out[n++] = 'x';
  }
  return n;
}

/* Publishes the pair's next message stamped ts; -1 if it cannot now. */
static int mq_send(mq_pair *p, uint64_t ts) {
  mq_run *r = p->r;
  if (p->pub.state != PB_MQ_READY || p->inflight >= MQ_MAX_INFLIGHT || p->next_seq >= p->quota)
    return -1;
  uint64_t seq = ++p->next_seq;
  char buf[4096];
  size_t n = mq_payload(p, seq, ts, buf, sizeof buf);
  pb_track_mark(&p->tr, seq, PB_T_SENT);
  pb_track_set_time(&p->tr, seq, pb_now_us());
  pb_mqc_publish(&p->pub, p->topic, buf, n, mq_pid(seq));
  p->inflight++;
  r->inflight++;
  r->c->res->sent++;
  return 0;
}

static void mq_fill(mq_pair *p) {
  while (p->r->sending && p->inflight < p->r->c->o->window && mq_send(p, pb_now_us()) == 0) {
  }
}

static void mq_pace_tick(pb_timer *tm) {
  mq_run *r = tm->ud;
  uint64_t now = pb_now_us();
  while (r->sending && !(r->pace_limit && r->pace_n >= r->pace_limit)) {
    uint64_t due = r->pace_t0 + (uint64_t)((double)r->pace_n * r->interval_us);
    if (due > now) {
      uint64_t next = now + MQ_PACE_GAP_US;
      pb_timer_start(r->c->loop, tm, due > next ? due : next);
      return;
    }
    if (mq_send(&r->p[r->pace_n % r->n], due) == 0)
      pb_hist_add(&r->c->res->lag, now - due);
    else
      r->c->res->refused++;
    r->pace_n++;
  }
}

/* ---- callbacks --------------------------------------------------------- */

static void mq_on_ready(pb_mqc *m) {
  mq_pair *p = m->ud;
  p->r->ready++;
}

static void mq_on_close(pb_mqc *m, const char *why) {
  mq_pair *p = m->ud;
  p->r->c->res->disconnects++;
  pb_ctx_fail(p->r->c, "pair %u's %s connection: %s", p->i, m == &p->pub ? "publisher" : "subscriber", why);
}

static void mq_on_puback(pb_mqc *m, uint16_t id, uint8_t reason) {
  mq_pair *p = m->ud;
  mq_run *r = p->r;
  uint64_t seq = p->low + (uint64_t)((id + 65535u - mq_pid(p->low)) % 65535u);
  if (!p->inflight || seq > p->next_seq || pb_track_has(&p->tr, seq, PB_T_ACKED | PB_T_REFUSED))
    return; /* not one of ours in flight */
  pb_track_mark(&p->tr, seq, reason < 0x80 ? PB_T_ACKED : PB_T_REFUSED);
  if (reason < 0x80)
    r->c->res->acked++;
  else
    r->c->res->refused++;
  if (r->recording)
    pb_hist_add(&r->c->res->ack, pb_now_us() - pb_track_time(&p->tr, seq));
  p->inflight--;
  r->inflight--;
  while (p->low <= p->next_seq && pb_track_has(&p->tr, p->low, PB_T_ACKED | PB_T_REFUSED))
    p->low++;
  if (!r->interval_us)
    mq_fill(p);
}

/* The stamp of a delivery: the payload itself, or parley's "text". */
static int mq_stamp(const mq_run *r, const pl_mqtt_pkt *pk, uint64_t v[4]) {
  char s[128];
  const uint8_t *p = pk->payload.p;
  size_t n = pk->payload.n;
  if (r->parley) {
    const char *key = "\"text\":\"";
    const uint8_t *t = memmem(p, n, key, strlen(key));
    if (!t)
      return -1;
    n -= (size_t)(t - p) + strlen(key);
    p = t + strlen(key);
  }
  n = n < sizeof s - 1 ? n : sizeof s - 1;
  memcpy(s, p, n);
  s[n] = 0;
  char *e = s;
  for (int k = 0; k < 4; k++) {
    char *start = e;
    v[k] = strtoull(start, &e, k == 0 ? 16 : 10);
    if (e == start)
      return -1;
  }
  return 0;
}

static void mq_on_publish(pb_mqc *m, const pl_mqtt_pkt *pk) {
  mq_pair *p = m->ud;
  mq_run *r = p->r;
  pb_result *res = r->c->res;
  static const char in_msg[] = "parley/in/msg/";
  if (m != &p->sub || (r->parley && (pk->topic.n < sizeof in_msg - 1 || memcmp(pk->topic.p, in_msg, sizeof in_msg - 1))))
    return; /* receipts and the like */
  uint64_t v[4];
  uint64_t now = pb_now_us();
  res->received++;
  if (mq_stamp(r, pk, v) != 0 || v[0] != r->c->run_id) {
    res->stale++;
    return;
  }
  if (v[1] != p->i || v[2] == 0 || v[2] > p->next_seq) {
    res->misrouted++;
    return;
  }
  if (pb_track_recv(&p->tr, v[2]) != 1)
    return;
  res->unique++;
  if (!res->t_first_rx)
    res->t_first_rx = now;
  res->t_last_rx = now;
  if (r->recording)
    pb_hist_add(&res->lat, now - v[3]);
}

static const pb_mqc_cbs mq_cbs = {
    .on_ready = mq_on_ready, .on_publish = mq_on_publish, .on_puback = mq_on_puback, .on_close = mq_on_close};

/* ---- phases ------------------------------------------------------------ */

static int mq_start_pair(mq_run *r, mq_pair *p) {
  const pb_opts *o = r->c->o;
  pb_users *u = r->c->net.users;
  char pub_id[32], sub_id[32], filter[64];
  snprintf(pub_id, sizeof pub_id, "pb-pub-%u", p->i);
  snprintf(sub_id, sizeof sub_id, "pb-sub-%u", p->i);
  pb_mqc_login pub = {.client_id = pub_id, .persist = o->mqtt_persist};
  pb_mqc_login sub = {.client_id = sub_id, .persist = o->mqtt_persist, .sub = filter};
  if (r->parley) {
    char to[32];
    pb_users_name(2 * p->i + 1, to, sizeof to);
    snprintf(p->topic, sizeof p->topic, "parley/send/user/%s", to);
    snprintf(filter, sizeof filter, "parley/in/#");
    pub.user = sub.user = "$token";
    pub.pass = pb_users_token(u, 2 * p->i);
    sub.pass = pb_users_token(u, 2 * p->i + 1);
    if (!pub.pass || !sub.pass)
      return pb_ctx_fail(r->c, "no cached token for pair %u's users", p->i);
  } else {
    snprintf(p->topic, sizeof p->topic, "bench/%u", p->i);
    snprintf(filter, sizeof filter, "bench/%u", p->i);
  }
  uint32_t src = o->src_base ? o->src_base + 2 * p->i / o->per_addr : 0;
  pb_mqc_init(&p->pub, r->c->loop, &r->broker, src, &mq_cbs, p);
  pb_mqc_init(&p->sub, r->c->loop, &r->broker, src, &mq_cbs, p);
  if (pb_mqc_start(&p->sub, &sub) != 0 || pb_mqc_start(&p->pub, &pub) != 0)
    return pb_ctx_fail(r->c, "pair %u: cannot connect: %s", p->i, strerror(errno));
  return 0;
}

static int mq_all_ready(void *arg) {
  mq_run *r = arg;
  return r->ready >= 2 * r->n || r->c->res->failed;
}

static int mq_setup(pb_ctx *c) {
  const pb_opts *o = c->o;
  mq_run *r = pl_calloc(1, sizeof *r);
  c->state = r;
  r->c = c;
  r->parley = !o->broker_plain;
  if (pb_server_parse(o->mqtt, &r->broker) != 0)
    return pb_ctx_fail(c, "bad --mqtt '%s' (want IPv4:PORT)", o->mqtt);
  r->p = pl_calloc(o->conns / c->nw + 1, sizeof *r->p);
  for (uint32_t i = c->w; i < o->conns; i += c->nw) {
    mq_pair *p = &r->p[r->n++];
    *p = (mq_pair){.r = r, .i = i, .low = 1, .quota = mq_quota(o, i)};
  }
  r->pace = (pb_timer){.cb = mq_pace_tick, .ud = r};
  pb_ctx_say(c, "connecting %u MQTT pairs to %s (%s)", r->n, o->mqtt, r->parley ? "parley topics" : "bench/<i>");
  for (uint32_t k = 0; k < r->n; k++)
    if (mq_start_pair(r, &r->p[k]) != 0)
      return -1;
  if (pb_ctx_run(c, mq_all_ready, r, o->timeout) != 0)
    return pb_ctx_fail(c, "connecting timed out: %u of %u ready", r->ready, 2 * r->n);
  c->net.ready = r->ready; /* reported as connections authenticated */
  return c->res->failed ? -1 : 0;
}

static int mq_quota_done(void *arg) {
  mq_run *r = arg;
  if (r->c->res->failed)
    return 1;
  for (uint32_t k = 0; k < r->n; k++)
    if (r->p[k].next_seq < r->p[k].quota)
      return 0;
  return 1;
}

static int mq_settled(void *arg) {
  mq_run *r = arg;
  const pb_result *res = r->c->res;
  return res->failed || (r->inflight == 0 && res->unique >= res->acked);
}

static int mq_run_phase(pb_ctx *c) {
  const pb_opts *o = c->o;
  mq_run *r = c->state;
  if (!r->n)
    return 0;
  r->recording = r->sending = 1;
  c->res->t_go = pb_now_us();
  if (o->rate > 0) {
    r->interval_us = 1e6 / (o->rate * r->n / o->conns);
    r->pace_t0 = pb_now_us();
    r->pace_limit = o->messages ? o->messages : 0;
    pb_timer_start(c->loop, &r->pace, r->pace_t0);
  } else {
    for (uint32_t k = 0; k < r->n; k++)
      mq_fill(&r->p[k]);
  }
  pb_ctx_run(c, mq_quota_done, r, o->duration > 0 ? o->duration : o->timeout);
  r->sending = 0;
  pb_timer_stop(c->loop, &r->pace);
  c->res->t_stop = pb_now_us();
  double wait = o->timeout < MQ_DRAIN_MAX_S ? o->timeout : MQ_DRAIN_MAX_S;
  if (pb_ctx_run(c, mq_settled, r, wait) != 0)
    pb_ctx_say(c, "not settled after %.0f s: %" PRIu64 " publishes unacked, %" PRIu64 " of %" PRIu64
                  " acked messages delivered", wait, r->inflight, c->res->unique, c->res->acked);
  pb_ctx_sleep(c, MQ_LINGER_S);
  for (uint32_t k = 0; k < r->n; k++)
    pb_track_tally(&r->p[k].tr, r->p[k].next_seq, c->res);
  return 0;
}

static void mq_teardown(pb_ctx *c) {
  mq_run *r = c->state;
  if (!r)
    return;
  for (uint32_t k = 0; k < r->n; k++) {
    pb_mqc_close(&r->p[k].pub);
    pb_mqc_close(&r->p[k].sub);
    pb_track_free(&r->p[k].tr);
  }
  pb_timer_stop(c->loop, &r->pace);
  pl_free(r->p);
  pl_free(r);
  c->state = NULL;
}

static void mq_report(const pb_opts *o, const pb_result *r, const pb_sample s[3], pb_report *rep) {
  pb_scen_pairs.report(o, r, s, rep); /* the same figures as the native pairs */
  pb_report_note(rep, "MQTT 3.1.1 QoS 1 to %s (%s topics, clean session %d)", o->mqtt,
                 o->broker_plain ? "bench/<i>" : "parley", !o->mqtt_persist);
}

const pb_scenario pb_scen_mqtt = {
    .name = "mqtt-pairs",
    .defaults = mq_defaults,
    .users = mq_users,
    .conns = mq_conns,
    .setup = mq_setup,
    .run = mq_run_phase,
    .teardown = mq_teardown,
    .report = mq_report,
};
