/* storm: N devices (users 2B .. 2B+N-1) are connected, then all drop at once
 * (abortive close, as when a network path dies) and reconnect at once with
 * their tokens, no limit on handshakes in flight. Meanwhile B bystander
 * pairs (users 2i -> 2i+1) exchange messages open loop at --rate messages/s
 * in total (default 200). Measured: the time from the drop to the last
 * AuthOk, each device's connect-to-AuthOk time, and the bystanders' latency
 * from the drop until every device is back.
 *
 * The bystanders run alone in worker 0 and the devices in workers 1..: a
 * worker busy opening thousands of sockets would otherwise delay reading the
 * bystanders' messages and blame the server for it. */
#include <math.h>
#include <stdio.h>

#include "common/pl_mem.h"
#include "pb_scen.h"
#include "pb_traffic.h"

#define PB__WARMUP_S 1.0
#define PB__AFTER_S 0.5 /* bystanders keep going this long after the last resume */

typedef struct storm {
  pb_traffic t;
  uint32_t first; /* index in t.peers of the first storming device */
  int storming;
} storm;

static void storm_defaults(pb_opts *o) {
  if (!o->conns)
    o->conns = 1000;
  if (o->rate < 0)
    o->rate = 200;
}

static uint32_t storm_users(const pb_opts *o) { return 2 * o->bystanders + o->conns; }
static uint32_t storm_devices(const pb_opts *o) { return o->conns; }

static void storm_on_ready(pb_peer *p) {
  storm *st = (storm *)p->t;
  pb_result *r = p->t->res;
  if (!st->storming || p->to != PB_NOBODY || p->from != PB_NOBODY)
    return;
  r->phase_done++;
  pb_hist_add(&r->lat2, p->c.t_ready_us - p->c.t_start_us);
  if (p->c.t_ready_us > r->t_phase_end)
    r->t_phase_end = p->c.t_ready_us;
}

static int storm_setup(pb_ctx *c) {
  const pb_opts *o = c->o;
  storm *st = pl_calloc(1, sizeof *st);
  pb_traffic *t = &st->t;
  uint32_t b = c->w == 0 ? o->bystanders : 0, nd = c->nw - 1; /* device workers */
  c->state = st;
  pb_traffic_init(t, &c->net, c->res, c->run_id, 2 * b + (c->w ? o->conns / nd + 1 : 0), storm_users(o));
  t->body_size = o->size;
  t->on_ready = storm_on_ready;
  for (uint32_t i = 0; i < b; i++) {
    pb_traffic_add(t, 2 * i, 2 * i + 1, PB_NOBODY);
    pb_traffic_add(t, 2 * i + 1, PB_NOBODY, 2 * i);
  }
  st->first = t->npeers;
  for (uint32_t k = c->w - 1; c->w && k < o->conns; k += nd)
    pb_traffic_add(t, 2 * o->bystanders + k, PB_NOBODY, PB_NOBODY);
  if (pb_scen_connect(c, t, "connections") != 0)
    return -1;
  if (b && o->rate > 0)
    pb_traffic_pace(t, o->rate, 0);
  pb_ctx_sleep(c, PB__WARMUP_S);
  return 0;
}

static int storm_all_back(void *arg) {
  storm *st = arg;
  return st->t.res->phase_done >= st->t.npeers - st->first;
}

/* Drops every storming device, then reconnects them all at once. */
static void storm_burst(pb_ctx *c, storm *st) {
  pb_traffic *t = &st->t;
  for (uint32_t i = st->first; i < t->npeers; i++)
    pb_traffic_drop(&t->peers[i], 1);
  c->net.max_handshakes = 0;
  st->storming = 1;
  c->res->t_phase0 = pb_now_us();
  for (uint32_t i = st->first; i < t->npeers; i++)
    pb_traffic_start(&t->peers[i]);
}

static int storm_run(pb_ctx *c) {
  storm *st = c->state;
  pb_traffic *t = &st->t;
  t->recording = 1;
  c->res->t_go = pb_now_us();
  if (c->w == 0)
    pb_ctx_say(c, "storm: %u devices drop and reconnect at once", c->o->conns);
  storm_burst(c, st);
  if (pb_ctx_run(c, storm_all_back, st, c->o->timeout) != 0)
    fprintf(stderr, "parley-bench: storm: only %llu of %u devices resumed within %.0f s\n",
            (unsigned long long)c->res->phase_done, t->npeers - st->first, c->o->timeout);
  pb_ctx_barrier(c, c->o->timeout); /* the bystanders' worker waits for the storm to end */
  pb_ctx_sleep(c, PB__AFTER_S);
  pb_traffic_stop(t);
  c->res->t_stop = pb_now_us();
  pb_scen_settle(c, t);
  return 0;
}

static void storm_teardown(pb_ctx *c) {
  storm *st = c->state;
  pb_traffic_free(&st->t);
  pl_free(st);
}

static void storm_report(const pb_opts *o, const pb_result *r, const pb_sample s[3], pb_report *rep) {
  (void)s;
  double secs = pb_scen_secs(r->t_phase0, r->t_phase_end);
  pb_report_num(rep, "delivered_per_s", "bystanders delivered",
                (double)r->unique / pb_scen_secs(r->t_go, r->t_stop), "msg/s");
  pb_report_latency(rep, &r->lat);
  pb_report_ack_latency(rep, &r->ack);
  pb_report_lag(rep, &r->lag);
  pb_report_int(rep, "storm_devices", "devices reconnecting", o->conns);
  pb_report_int(rep, "resumed", "devices resumed", r->phase_done);
  pb_report_num(rep, "resume_all_s", "time until all resumed", secs, "s");
  pb_report_num(rep, "resumes_per_s", "resumes per second", (double)r->phase_done / secs, "/s");
  if (r->lat2.count) {
    pb_report_num(rep, "resume_p50_ms", "resume time p50", (double)pb_hist_quantile(&r->lat2, 0.5) / 1e3,
                  "ms");
    pb_report_num(rep, "resume_p99_ms", "resume time p99", (double)pb_hist_quantile(&r->lat2, 0.99) / 1e3,
                  "ms");
    pb_report_num(rep, "resume_max_ms", "resume time max", (double)r->lat2.max / 1e3, "ms");
  }
  pb_report_int(rep, "retries", "connection retries", r->retries);
  pb_report_int(rep, "bystander_pairs", "bystander pairs", o->bystanders);
}

const pb_scenario pb_scen_storm = {
    .name = "storm",
    .defaults = storm_defaults,
    .users = storm_users,
    .conns = storm_devices,
    .solo_worker0 = 1,
    .setup = storm_setup,
    .run = storm_run,
    .teardown = storm_teardown,
    .report = storm_report,
};
