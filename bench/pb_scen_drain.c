/* drain: M messages queue for a device while it is offline, then it
 * connects. Users: 0 is the receiver, 1..N the senders (--conns, default 4).
 *
 * Set-up: the receiver connects once to empty its queue of anything an
 * earlier run left (acks it, disconnects); the senders send M messages as
 * fast as possible and wait for every SendAck. Measured: from the moment the
 * receiver starts connecting to the last message received; drain rate =
 * messages received / that time. Latency is not meaningful here (messages
 * waited in the queue on purpose), so it is reported as null. */
#include <math.h>
#include <stdio.h>

#include "common/pl_mem.h"
#include "pb_scen.h"
#include "pb_traffic.h"

#define PB__QUIET_S 1.0 /* the old backlog is gone after this long without a message */

static void drain_defaults(pb_opts *o) {
  if (!o->conns)
    o->conns = 4;
  if (!o->messages)
    o->messages = 10000;
  if (o->window < 256)
    o->window = 256;
}

static uint32_t drain_users(const pb_opts *o) { return 1 + o->conns; }

static int drain_answered(void *arg) {
  pb_traffic *t = arg;
  return pb_traffic_quota_done(t) && t->inflight == 0;
}

/* Connects the receiver, lets it receive (and ack) any old backlog, then
 * disconnects it cleanly. */
static int drain_empty_queue(pb_ctx *c, pb_traffic *t, pb_peer *rx) {
  pb_traffic_start(rx);
  if (pb_ctx_run(c, pb_traffic_connected, t, c->o->timeout) != 0 || rx->c.state != PB_C_READY)
    return pb_ctx_fail(c, "the receiver could not connect");
  uint64_t seen;
  do {
    seen = c->res->received;
    pb_ctx_sleep(c, PB__QUIET_S);
  } while (c->res->received != seen);
  if (seen)
    pb_ctx_say(c, "emptied %llu old messages from the receiver's queue", (unsigned long long)seen);
  pb_conn_ack(&rx->c);
  pb_ctx_sleep(c, 0.2); /* the Ack is written and committed before the close */
  pb_traffic_drop(rx, 0);
  c->res->received = 0;
  return 0;
}

static int drain_fill_queue(pb_ctx *c, pb_traffic *t) {
  const pb_opts *o = c->o;
  if (pb_scen_connect(c, t, "senders") != 0)
    return -1;
  uint64_t t0 = pb_now_us();
  pb_ctx_say(c, "queueing %llu messages for the offline receiver", (unsigned long long)o->messages);
  pb_traffic_fill(t);
  if (pb_ctx_run(c, drain_answered, t, o->timeout) != 0)
    return pb_ctx_fail(c, "queueing timed out: %llu of %llu answered", (unsigned long long)c->res->acked,
                       (unsigned long long)o->messages);
  pb_traffic_stop(t);
  pb_ctx_say(c, "queued %llu messages in %.1f s (%llu refused)", (unsigned long long)c->res->acked,
             pb_scen_secs(t0, pb_now_us()), (unsigned long long)c->res->refused);
  return 0;
}

static int drain_setup(pb_ctx *c) {
  const pb_opts *o = c->o;
  pb_traffic *t = pl_calloc(1, sizeof *t);
  c->state = t;
  pb_traffic_init(t, &c->net, c->res, c->run_id, 1 + o->conns, 1 + o->conns);
  t->window = o->window;
  t->body_size = o->size;
  pb_peer *rx = pb_traffic_add(t, 0, PB_NOBODY, PB_NOBODY);
  rx->manual = 1;
  for (uint32_t i = 1; i <= o->conns; i++) {
    pb_peer *s = pb_traffic_add(t, i, 0, PB_NOBODY);
    s->quota = o->messages / o->conns + (i - 1 < o->messages % o->conns);
  }
  if (drain_empty_queue(c, t, rx) != 0)
    return -1;
  return drain_fill_queue(c, t);
}

static int drain_all_received(void *arg) {
  pb_traffic *t = arg;
  return t->received_once >= t->res->acked;
}

static int drain_run(pb_ctx *c) {
  pb_traffic *t = c->state;
  pb_result *r = c->res;
  t->recording = 1;
  r->t_go = r->t_phase0 = pb_now_us();
  pb_traffic_start(&t->peers[0]);
  if (pb_ctx_run(c, drain_all_received, t, c->o->timeout) != 0)
    fprintf(stderr, "parley-bench: drain: only %llu of %llu messages arrived within %.0f s\n",
            (unsigned long long)t->received_once, (unsigned long long)r->acked, c->o->timeout);
  r->t_phase_end = r->t_last_rx;
  pb_scen_settle(c, t);
  return 0;
}

static void drain_teardown(pb_ctx *c) {
  pb_traffic_free(c->state);
  pl_free(c->state);
}

static void drain_report(const pb_opts *o, const pb_result *r, const pb_sample s[3], pb_report *rep) {
  double secs = pb_scen_secs(r->t_phase0, r->t_phase_end);
  pb_report_num(rep, "delivered_per_s", "drain rate", (double)r->unique / secs, "msg/s");
  if (s[1].ok && s[2].ok && r->unique)
    pb_report_num(rep, "server_cpu_us_per_msg", "server CPU per message",
                  (double)(s[2].cpu_us - s[1].cpu_us) / (double)r->unique, "us");
  pb_report_int(rep, "queued", "messages queued", r->acked);
  pb_report_num(rep, "drain_s", "connect to last message", secs, "s");
  pb_report_num(rep, "first_message_ms", "connect to first message",
                pb_scen_secs(r->t_phase0, r->t_first_rx) * 1e3, "ms");
  pb_report_int(rep, "senders", "senders", o->conns);
}

const pb_scenario pb_scen_drain = {
    .name = "drain",
    .defaults = drain_defaults,
    .users = drain_users,
    .conns = drain_users,
    .max_workers = 1,
    .setup = drain_setup,
    .run = drain_run,
    .teardown = drain_teardown,
    .report = drain_report,
};
