/* pb_scen: the scenario interface, and the context a scenario runs in.
 *
 * A run is: the parent starts (or finds) the server and makes sure users
 * 0..users()-1 exist, then forks worker processes; each worker runs
 *
 *   setup()  connect, authenticate, prepare        -> tells the parent READY
 *   run()    the measured phase, after the parent's GO -> sends its pb_result
 *   (holds its connections until the parent has read the server's figures)
 *   teardown()
 *
 * and the parent merges the results and lets the scenario's report() turn
 * them and the three server samples (before set-up, at GO, after the run)
 * into figures. A scenario splits its work by worker index: worker w of nw
 * owns the units u with u % nw == w, so no state is shared. */
#ifndef PB_SCEN_H
#define PB_SCEN_H

#include <stdint.h>
#include <sys/types.h>

#include "pb_conn.h"
#include "pb_loop.h"
#include "pb_opts.h"
#include "pb_report.h"
#include "pb_server.h"
#include "pb_stats.h"

typedef struct pb_ctx {
  const pb_opts *o;
  uint32_t w, nw; /* this worker, of nw */
  pb_loop *loop;
  pb_net net;
  pb_result *res;
  uint64_t run_id;   /* the same in every worker; tags message bodies and ids */
  pid_t server_pid;  /* for samples a scenario takes itself; 0: unknown */
  int go, quit;      /* set by the parent's commands */
  uint32_t barriers; /* barriers passed */
  int res_fd;        /* to the parent */
  void *state;       /* the scenario's */
} pb_ctx;

typedef struct pb_scenario {
  const char *name;
  /* Fills in options left at their defaults. */
  void (*defaults)(pb_opts *o);
  /* User indices 0..users-1 are needed. */
  uint32_t (*users)(const pb_opts *o);
  /* Connections open at once (sizes the worker count). */
  uint32_t (*conns)(const pb_opts *o);
  uint32_t max_workers; /* 0: no limit */
  int solo_worker0;     /* worker 0 runs apart from the conns() connections */
  int (*setup)(pb_ctx *c);
  int (*run)(pb_ctx *c);
  void (*teardown)(pb_ctx *c);
  void (*report)(const pb_opts *o, const pb_result *r, const pb_sample s[3], pb_report *rep);
} pb_scenario;

extern const pb_scenario pb_scen_idle, pb_scen_pairs, pb_scen_drain, pb_scen_storm, pb_scen_group, pb_scen_mqtt;

/* The scenario called name, or NULL. */
const pb_scenario *pb_scen_find(const char *name);

/* Marks the worker's result failed (first reason wins); returns -1. */
int pb_ctx_fail(pb_ctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Runs the loop until done(arg) or `seconds` pass; -1 on timeout. */
int pb_ctx_run(pb_ctx *c, pb_cond done, void *arg, double seconds);
/* Waits (running the loop) until every worker reached this barrier, or
 * `seconds` passed (-1). Every worker of a scenario must call it equally often. */
int pb_ctx_barrier(pb_ctx *c, double seconds);
/* Runs the loop for `seconds` (the measured phase of a fixed duration). */
void pb_ctx_sleep(pb_ctx *c, double seconds);
/* A progress line on stderr (unless --quiet), tagged with the worker. */
void pb_ctx_say(const pb_ctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Shared steps (pb_scen.c); they take a pb_traffic (pb_traffic.h). */
struct pb_traffic;
/* Connects every idle peer of t and waits; fails the worker if any failed. */
int pb_scen_connect(pb_ctx *c, struct pb_traffic *t, const char *what);
/* After the senders stopped: waits until every send is answered and every
 * acked message arrived (or the timeout), lingers to catch late duplicates,
 * then tallies the ledgers. */
void pb_scen_settle(pb_ctx *c, struct pb_traffic *t);
/* Seconds between two pb_now_us() readings (NAN if either is unset). */
double pb_scen_secs(uint64_t from, uint64_t to);

#endif
