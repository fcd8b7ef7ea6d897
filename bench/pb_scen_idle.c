/* idle: N connections that only keep their heartbeat. Measures the server's
 * RSS per connection above the empty server, and the CPU the heartbeats
 * cost. The baseline is read before any worker connects (after a restart
 * when the bench owns the server), the figure after holding every
 * connection for --duration seconds. */
#include <math.h>

#include "common/pl_mem.h"
#include "pb_scen.h"
#include "pb_traffic.h"

#define PB__SETTLE_S 1.0

static void idle_defaults(pb_opts *o) {
  if (!o->conns)
    o->conns = 1000;
  if (o->duration < 0)
    o->duration = 5;
}

static uint32_t idle_users(const pb_opts *o) { return o->conns; }

static int idle_setup(pb_ctx *c) {
  pb_traffic *t = pl_calloc(1, sizeof *t);
  uint32_t n = c->o->conns, mine = n / c->nw + 1;
  c->state = t;
  pb_traffic_init(t, &c->net, c->res, c->run_id, mine, n);
  for (uint32_t u = c->w; u < n; u += c->nw)
    pb_traffic_add(t, u, PB_NOBODY, PB_NOBODY);
  c->res->t_phase0 = pb_now_us();
  if (pb_scen_connect(c, t, "idle connections") != 0)
    return -1;
  c->res->t_phase_end = pb_now_us();
  pb_ctx_sleep(c, PB__SETTLE_S); /* let the server finish every first queue fetch */
  return 0;
}

static int idle_run(pb_ctx *c) {
  c->res->t_go = pb_now_us();
  if (c->w == 0)
    pb_ctx_say(c, "holding %u connections for %.0f s", c->o->conns, c->o->duration);
  pb_ctx_sleep(c, c->o->duration);
  c->res->t_stop = pb_now_us();
  return 0;
}

static void idle_teardown(pb_ctx *c) {
  pb_traffic_free(c->state);
  pl_free(c->state);
}

static void idle_report(const pb_opts *o, const pb_result *r, const pb_sample s[3], pb_report *rep) {
  double secs = pb_scen_secs(r->t_go, r->t_stop);
  pb_report_num(rep, "connect_s", "time to connect all", pb_scen_secs(r->t_phase0, r->t_phase_end), "s");
  if (s[0].ok && s[2].ok && r->conns) {
    double per = ((double)s[2].rss_bytes - (double)s[0].rss_bytes) / (double)o->conns;
    pb_report_num(rep, "server_rss_per_conn_bytes", "server RSS per connection", per, "bytes");
    pb_report_num(rep, "server_cpu_idle_pct", "server CPU while idle (of a core)",
                  100.0 * (double)(s[2].cpu_us - s[1].cpu_us) / 1e6 / pb_scen_secs(s[1].t_us, s[2].t_us),
                  "%");
  }
  pb_report_num(rep, "hold_s", "held for", secs, "s");
}

const pb_scenario pb_scen_idle = {
    .name = "idle",
    .defaults = idle_defaults,
    .users = idle_users,
    .conns = idle_users,
    .setup = idle_setup,
    .run = idle_run,
    .teardown = idle_teardown,
    .report = idle_report,
};
