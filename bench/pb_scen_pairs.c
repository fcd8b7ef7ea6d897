/* pairs: N sender -> receiver pairs (users 2i -> 2i+1), 1:1 messages. With
 * --rate R the senders offer R messages/s in total, open loop; without it
 * each sender keeps --window sends awaiting SendAck (as fast as possible).
 * The phase ends after --duration seconds or --messages M sends, then waits
 * until every acked message arrived. Server CPU per message is its CPU time
 * from GO to the end divided by the messages delivered. */
#include <math.h>

#include "common/pl_mem.h"
#include "pb_scen.h"
#include "pb_traffic.h"

static void pairs_defaults(pb_opts *o) {
  if (!o->conns)
    o->conns = 100;
  if (o->rate < 0)
    o->rate = 0;
  if (o->duration < 0 && !o->messages)
    o->duration = 10;
}

static uint32_t pairs_users(const pb_opts *o) { return 2 * o->conns; }

/* Sender quota of pair i when M messages are split over N pairs. */
static uint64_t pairs_quota(const pb_opts *o, uint32_t i) {
  if (!o->messages)
    return PB_NO_QUOTA;
  return o->messages / o->conns + (i < o->messages % o->conns);
}

static int pairs_setup(pb_ctx *c) {
  const pb_opts *o = c->o;
  pb_traffic *t = pl_calloc(1, sizeof *t);
  c->state = t;
  pb_traffic_init(t, &c->net, c->res, c->run_id, 2 * (o->conns / c->nw + 1), 2 * o->conns);
  t->window = o->window;
  t->body_size = o->size;
  for (uint32_t i = c->w; i < o->conns; i += c->nw) {
    pb_peer *s = pb_traffic_add(t, 2 * i, 2 * i + 1, PB_NOBODY);
    s->quota = pairs_quota(o, i);
    pb_traffic_add(t, 2 * i + 1, PB_NOBODY, 2 * i);
  }
  return pb_scen_connect(c, t, "pair connections");
}

static uint64_t pairs_local_quota(const pb_ctx *c) {
  uint64_t q = 0;
  if (!c->o->messages)
    return 0; /* pacing: no limit */
  for (uint32_t i = c->w; i < c->o->conns; i += c->nw)
    q += pairs_quota(c->o, i);
  return q;
}

static int pairs_run(pb_ctx *c) {
  const pb_opts *o = c->o;
  pb_traffic *t = c->state;
  uint32_t mine = t->npeers / 2;
  t->recording = 1;
  c->res->t_go = pb_now_us();
  uint64_t limit = pairs_local_quota(c);
  if (o->messages && !limit)
    pb_traffic_stop(t); /* fewer messages than workers: none for this one */
  else if (o->rate > 0)
    pb_traffic_pace(t, o->rate * mine / o->conns, limit);
  else
    pb_traffic_fill(t);
  if (c->w == 0)
    pb_ctx_say(c, "sending %s for %s", o->rate > 0 ? "open loop" : "as fast as possible",
               o->duration > 0 ? "the duration" : "the message count");
  pb_ctx_run(c, pb_traffic_quota_done, t, o->duration > 0 ? o->duration : o->timeout);
  pb_traffic_stop(t);
  c->res->t_stop = pb_now_us();
  pb_scen_settle(c, t);
  return 0;
}

static void pairs_teardown(pb_ctx *c) {
  pb_traffic_free(c->state);
  pl_free(c->state);
}

static void pairs_report(const pb_opts *o, const pb_result *r, const pb_sample s[3], pb_report *rep) {
  double secs = pb_scen_secs(r->t_go, r->t_last_rx);
  pb_report_num(rep, "delivered_per_s", "delivered", (double)r->unique / secs, "msg/s");
  pb_report_int(rep, "delivered_total", "delivered in all", r->unique);
  pb_report_latency(rep, &r->lat);
  pb_report_ack_latency(rep, &r->ack);
  pb_report_lag(rep, &r->lag);
  if (s[1].ok && s[2].ok && r->unique)
    pb_report_num(rep, "server_cpu_us_per_msg", "server CPU per message",
                  (double)(s[2].cpu_us - s[1].cpu_us) / (double)r->unique, "us");
  if (o->rate > 0)
    pb_report_num(rep, "offered_per_s", "offered", o->rate, "msg/s");
  else
    pb_report_int(rep, "window", "window per sender", o->window);
  pb_report_num(rep, "sent_per_s", "sent", (double)r->sent / pb_scen_secs(r->t_go, r->t_stop), "msg/s");
  pb_report_int(rep, "pairs", "pairs", o->conns);
  pb_report_num(rep, "duration_s", "sending for", pb_scen_secs(r->t_go, r->t_stop), "s");
}

const pb_scenario pb_scen_pairs = {
    .name = "pairs",
    .defaults = pairs_defaults,
    .users = pairs_users,
    .conns = pairs_users,
    .setup = pairs_setup,
    .run = pairs_run,
    .teardown = pairs_teardown,
    .report = pairs_report,
};
