/* pb_worker: runs a scenario in worker processes and collects the results.
 *
 * One process may hold at most RLIMIT_NOFILE descriptors (20,000 here), so
 * the connections are spread over as many forked workers as that needs (or
 * --workers). Each worker gets two pipes. Parent to worker, one byte per
 * command: G (go), B (everyone reached the barrier), Q (quit; end of file
 * too). Worker to parent, one type byte per message: R or F (set-up done or
 * failed), D (waiting at a barrier), X followed by its pb_result as raw
 * bytes (same binary, same layout). The parent reads the server's figures
 * before set-up, at GO and after every result, while workers still hold
 * their connections. */
#ifndef PB_WORKER_H
#define PB_WORKER_H

#include <netinet/in.h>
#include <stdint.h>
#include <sys/types.h>

#include "pb_scen.h"
#include "pb_server.h"
#include "pb_stats.h"

typedef struct pb_plan {
  const pb_scenario *sc;
  const pb_opts *o;
  struct sockaddr_in server;
  const char *tokens; /* token cache path */
  uint32_t nusers;
  uint64_t run_id;
  pid_t server_pid; /* 0: no server figures */
  uint32_t nworkers;
} pb_plan;

/* Connections one process may open (the open-file limit, less a reserve). */
uint32_t pb_worker_capacity(void);

/* Runs the plan; fills the merged result and the samples (before set-up, at
 * GO, after the run). Returns 0, or -1 if a worker failed (res->why says). */
int pb_workers_run(const pb_plan *p, pb_result *res, pb_sample s[3]);

#endif
