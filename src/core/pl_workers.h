/* pl_workers: a small pool of threads of its own for slow CPU work
 * (Argon2id), so that work neither waits behind nor delays libuv's shared
 * thread pool (file system requests, media) and its queue can be bounded.
 *
 * A job is submitted on a loop's thread and its done callback runs back on
 * that loop's thread. Each job holds a uv_async_t on its loop until done
 * has run, so a loop never ends with a job of its own still out. */
#ifndef PL_WORKERS_H
#define PL_WORKERS_H

#include <stdint.h>
#include <uv.h>

#include "../common/pl_err.h"

typedef struct pl_job pl_job;
struct pl_job {
  void (*work)(pl_job *j); /* on a worker thread */
  void (*done)(pl_job *j); /* on the submitting loop's thread, after work */
  /* Then, once the handle is closed: j may be freed (NULL: nothing to do).
   * Not in done: the handle is still j's until then. */
  void (*release)(pl_job *j);
  uv_async_t async;
  pl_job *next;
};

typedef struct pl_workers pl_workers;

/* nthreads threads; at most max_queued jobs waiting for one (0: no bound). */
pl_workers *pl_workers_new(unsigned nthreads, uint32_t max_queued);
/* Stops the threads once the queue is empty and joins them. */
void pl_workers_free(pl_workers *w);
/* Queues j (loop's thread). PL_ERR_RATE_LIMITED if max_queued jobs wait
 * already (j is untouched and stays the caller's). */
pl_err pl_workers_submit(pl_workers *w, uv_loop_t *loop, pl_job *j);
/* Jobs waiting for a thread now (any thread; approximate). */
uint32_t pl_workers_queued(pl_workers *w);

#endif
