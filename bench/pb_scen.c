#include "pb_scen.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "pb_traffic.h"

#define PB__LINGER_S 0.3
#define PB__SETTLE_MAX_S 60.0

const pb_scenario *pb_scen_find(const char *name) {
  const pb_scenario *all[] = {&pb_scen_idle, &pb_scen_pairs, &pb_scen_drain, &pb_scen_storm, &pb_scen_group,
                                 &pb_scen_mqtt};
  for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
    if (!strcmp(all[i]->name, name))
      return all[i];
  return NULL;
}

int pb_scen_connect(pb_ctx *c, struct pb_traffic *t, const char *what) {
  uint64_t t0 = pb_now_us();
  pb_ctx_say(c, "connecting %u %s", t->npeers, what);
  pb_traffic_connect(t);
  if (pb_ctx_run(c, pb_traffic_connected, t, c->o->timeout) != 0)
    return pb_ctx_fail(c, "connecting %s timed out: %llu of %u ready", what, (unsigned long long)t->ready,
                       t->npeers);
  if (c->net.failed)
    return pb_ctx_fail(c, "%llu of %u connections failed (see above)", (unsigned long long)c->net.failed,
                       t->npeers);
  if (c->net.relogins)
    fprintf(stderr, "parley-bench: %llu cached tokens were refused; logged in with the password\n",
            (unsigned long long)c->net.relogins);
  pb_ctx_say(c, "%u %s ready in %.1f s", t->npeers, what, pb_scen_secs(t0, pb_now_us()));
  return 0;
}

void pb_scen_settle(pb_ctx *c, struct pb_traffic *t) {
  double wait = c->o->timeout < PB__SETTLE_MAX_S ? c->o->timeout : PB__SETTLE_MAX_S;
  if (pb_ctx_run(c, pb_traffic_settled, t, wait) != 0)
    fprintf(stderr,
            "parley-bench: worker %u: not settled after %.0f s: %llu sends unanswered, %llu of %llu acked "
            "messages received\n",
            c->w, wait, (unsigned long long)t->inflight, (unsigned long long)t->received_once,
            (unsigned long long)c->res->acked);
  pb_ctx_sleep(c, PB__LINGER_S);
  pb_traffic_tally(t);
}

double pb_scen_secs(uint64_t from, uint64_t to) {
  if (!from || !to || to < from)
    return NAN;
  return (double)(to - from) / 1e6;
}
