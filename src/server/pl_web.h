/* pl_web: parleyd's answers to plain HTTP requests (the HTTP listener, pl_http,
 * handles /ws itself): /healthz, /metrics, and /admin/ through pl_admin. */
#ifndef PL_WEB_H
#define PL_WEB_H

#include <pthread.h>

#include "cluster/pl_bus.h"
#include "core/pl_session.h"
#include "media/pl_media.h"
#include "net/pl_http.h"
#include "net/pl_lp.h"
#include "pl_admin.h"
#include "store/pl_store.h"

#define PL_WEB_DEEPEST 5 /* queues named in /metrics: a top-N, never one series per device */

/* What the store counted for /metrics (copied whole under counts_mu). */
typedef struct pl_web_counted {
  pl_store_counts counts;
  uint64_t db_bytes, media_bytes; /* the database's pages, the uploads' bytes */
  struct {
    char user[64], device[64];
    uint64_t queued;
  } deepest[PL_WEB_DEEPEST]; /* the deepest device queues, deepest first */
  size_t ndeepest;
} pl_web_counted;

typedef struct pl_web {
  pl_core *core;
  pl_store *store;
  pl_media *media;
  pl_push *push;             /* NULL: push notifications off (the push metrics read 0) */
  pl_limits *limits;         /* connection caps and counts */
  pl_admin *admin;           /* /admin/ (docs/admin.md) */
  pl_lp_set lp;              /* long-poll sessions, one registry per loop */
  pl_bus *bus;               /* NULL: a single node (the bus metrics are left out) */
  const char *metrics_token; /* "" or NULL: /metrics is open; else it needs "Authorization: Bearer <it>" */
  /* The store's counts for /metrics (pl_web_init): the last ones, and the
   * count under way (one at a time), all guarded by counts_mu. */
  pthread_mutex_t counts_mu;
  pl_store_req counts_req;
  int counting;
  pl_web_counted counted;
  uint64_t started_ms; /* for parley_uptime_seconds */
  const char *version;
  uint64_t counts_at_ms; /* when the shown counts were asked for (0: never counted) */
  uint64_t asked_at_ms;  /* when the count under way was asked for */
} pl_web;

/* After the fields above it are set; pl_web_close once the store has stopped. */
void pl_web_init(pl_web *w);
void pl_web_close(pl_web *w);

/* pl_http_open_fn: which requests stream their bodies (uploads). */
pl_http_sink *pl_web_open(void *ud, const pl_http_req *req, pl_http_ex *x, uint64_t *limit, int *status);

/* The route function for pl_http_config (ud: a pl_web). */
void pl_web_route(void *ud, const pl_http_req *req, pl_http_res *res, pl_http_ex *x);

#endif
