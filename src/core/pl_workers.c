#include "pl_workers.h"

#include <pthread.h>

#include "../common/pl_mem.h"

struct pl_workers {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  pl_job *head, *tail;
  uint32_t queued, max_queued;
  int stopping;
  unsigned n;
  pthread_t *threads;
};

static void *pl__worker(void *arg) {
  pl_workers *w = arg;
  pthread_mutex_lock(&w->mu);
  for (;;) {
    while (!w->head && !w->stopping)
      pthread_cond_wait(&w->cv, &w->mu);
    pl_job *j = w->head;
    if (!j)
      break; /* stopping, and nothing left */
    w->head = j->next;
    if (!w->head)
      w->tail = NULL;
    w->queued--;
    pthread_mutex_unlock(&w->mu);
    j->work(j);
    uv_async_send(&j->async);
    pthread_mutex_lock(&w->mu);
  }
  pthread_mutex_unlock(&w->mu);
  return NULL;
}

pl_workers *pl_workers_new(unsigned nthreads, uint32_t max_queued) {
  pl_workers *w = pl_calloc(1, sizeof *w);
  pthread_mutex_init(&w->mu, NULL);
  pthread_cond_init(&w->cv, NULL);
  w->max_queued = max_queued;
  w->n = nthreads ? nthreads : 1;
  w->threads = pl_calloc(w->n, sizeof *w->threads);
  for (unsigned i = 0; i < w->n; i++)
    pthread_create(&w->threads[i], NULL, pl__worker, w);
  return w;
}

void pl_workers_free(pl_workers *w) {
  if (!w)
    return;
  pthread_mutex_lock(&w->mu);
  w->stopping = 1;
  pthread_cond_broadcast(&w->cv);
  pthread_mutex_unlock(&w->mu);
  for (unsigned i = 0; i < w->n; i++)
    pthread_join(w->threads[i], NULL);
  pthread_cond_destroy(&w->cv);
  pthread_mutex_destroy(&w->mu);
  pl_free(w->threads);
  pl_free(w);
}

static void pl__job_closed(uv_handle_t *h) {
  pl_job *j = h->data;
  if (j->release)
    j->release(j);
}

/* The work is done: back on the loop. done runs here, in the poll phase,
 * so what it writes is flushed at the end of this very pass (a close
 * callback would run after the flush, and wait for the next wake-up). */
static void pl__job_back(uv_async_t *a) {
  pl_job *j = a->data;
  j->done(j);
  uv_close((uv_handle_t *)a, pl__job_closed);
}

pl_err pl_workers_submit(pl_workers *w, uv_loop_t *loop, pl_job *j) {
  pthread_mutex_lock(&w->mu);
  int full = w->max_queued && w->queued >= w->max_queued;
  if (!full) {
    uv_async_init(loop, &j->async, pl__job_back);
    j->async.data = j;
    j->next = NULL;
    if (w->tail)
      w->tail->next = j;
    else
      w->head = j;
    w->tail = j;
    w->queued++;
    pthread_cond_signal(&w->cv);
  }
  pthread_mutex_unlock(&w->mu);
  return full ? PL_ERR_RATE_LIMITED : PL_OK;
}

uint32_t pl_workers_queued(pl_workers *w) {
  pthread_mutex_lock(&w->mu);
  uint32_t n = w->queued;
  pthread_mutex_unlock(&w->mu);
  return n;
}
