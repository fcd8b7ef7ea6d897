/* pl_mpool: threads of media's own (image checks, thumbnails, spool
 * writes), apart from libuv's thread pool, where password hashing runs:
 * logins cannot starve uploads, nor uploads logins (security finding 5).
 *
 * A job runs on a worker, then its done callback on the loop that submitted
 * it. While a job is out, a handle of it keeps that loop running (a loop
 * ends only when idle), so a done callback never finds its loop gone, also
 * at shutdown: free the pool only after the loops have ended. */
#ifndef PL_MPOOL_H
#define PL_MPOOL_H

#include <uv.h>

#include "common/pl_err.h"

typedef struct pl_mpool pl_mpool;

typedef struct pl_mjob pl_mjob;
struct pl_mjob {
  void (*work)(pl_mjob *j); /* on a worker thread */
  void (*done)(pl_mjob *j); /* then on the submitting loop's thread; may free j */
  /* the pool's */
  uv_async_t async;
  pl_mjob *next;
};

/* threads workers (at least 1), named "<name>-<i>" for top -H and gdb;
 * at_exit (or NULL) runs on each as it ends. */
pl_err pl_mpool_new(unsigned threads, const char *name, void (*at_exit)(void), pl_mpool **out);
/* Queues j (FIFO) from loop's thread. */
pl_err pl_mpool_submit(pl_mpool *p, uv_loop_t *loop, pl_mjob *j);
/* Ends the workers (after the jobs queued) and frees the pool. */
void pl_mpool_free(pl_mpool *p);

#endif
