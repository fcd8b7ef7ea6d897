/* pl_lp: HTTP long-poll sessions (protocol.md 1.3), for clients that cannot
 * hold a WebSocket. A session is a pl_conn like any other, served by the same
 * session handler; it outlives the HTTP requests that carry it: POST /lp opens
 * one, POST /lp/SID hands it frames (JSON, as in 1.2), a held GET /lp/SID
 * takes what it has to say, DELETE /lp/SID ends it.
 *
 * A session lives on the loop that opened it (its id names that loop); a
 * request that reaches another loop is passed to it through the mailbox, and
 * the answer comes back the same way (pl_http_ex). */
#ifndef PL_LP_H
#define PL_LP_H

#include "pl_conn.h"
#include "pl_http.h"
#include "pl_loop.h"

typedef struct pl_lp pl_lp; /* the sessions of one loop */

/* All loops' registries: what a request on any loop needs to find its session. */
typedef struct pl_lp_set {
  pl_lp **lps;
  int n;
} pl_lp_set;

/* limits: the output budget of each session, and the memory count (may be NULL). */
pl_lp *pl_lp_new(pl_loop *loop, int index, const pl_conn_handler *h, uint32_t max_frame, pl_limits *limits);
void pl_lp_free(pl_lp *lp);
/* Deadlines: held GETs, idle sessions, ended sessions nobody collects. */
void pl_lp_sweep(pl_lp *lp, uint64_t now_mono_ms);
/* The server is stopping: every session is told and ends. */
void pl_lp_close_all(pl_lp *lp);
size_t pl_lp_count(const pl_lp *lp);

/* POST /api/register (reg 1) and /api/login: a one-shot session that
 * registers or logs in and answers with the AuthOk's fields as JSON. */
void pl_lp_auth(const pl_lp_set *set, const pl_http_req *req, int reg, pl_http_res *res, pl_http_ex *x);

/* Handles /lp and /lp/SID (any loop's thread). Fills res, or holds x. */
void pl_lp_route(const pl_lp_set *set, const pl_http_req *req, const char *path, pl_http_res *res,
                 pl_http_ex *x);

#endif
