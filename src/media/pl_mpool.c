#include "pl_mpool.h"

#include <pthread.h>
#include <stdio.h>

#include "common/pl_mem.h"

struct pl_mpool {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  pl_mjob *head, *tail; /* queued, under mu */
  int stopping;
  unsigned nthreads;
  pthread_t *threads;
  void (*at_exit)(void);
  char name[12];
};

typedef struct pl__start {
  pl_mpool *p;
  unsigned i;
} pl__start;

/* On the loop: the handle goes first, then the job's owner hears of it. */
static void pl__closed(uv_handle_t *h) {
  pl_mjob *j = h->data;
  j->done(j);
}

static void pl__ready(uv_async_t *a) { uv_close((uv_handle_t *)a, pl__closed); }

static pl_mjob *pl__take(pl_mpool *p) {
  pthread_mutex_lock(&p->mu);
  while (!p->head && !p->stopping)
    pthread_cond_wait(&p->cv, &p->mu);
  pl_mjob *j = p->head;
  if (j && !(p->head = j->next))
    p->tail = NULL;
  pthread_mutex_unlock(&p->mu);
  return j;
}

static void *pl__worker(void *arg) {
  pl__start st = *(pl__start *)arg;
  pl_free(arg);
  pl_mpool *p = st.p;
  char name[16];
  snprintf(name, sizeof name, "%s-%u", p->name, st.i);
  pthread_setname_np(pthread_self(), name);
  pl_mjob *j;
  while ((j = pl__take(p))) {
    j->work(j);
    uv_async_send(&j->async); /* thread-safe; the loop runs pl__ready */
  }
  if (p->at_exit)
    p->at_exit();
  return NULL;
}

pl_err pl_mpool_new(unsigned threads, const char *name, void (*at_exit)(void), pl_mpool **out) {
  pl_mpool *p = pl_calloc(1, sizeof *p);
  pthread_mutex_init(&p->mu, NULL);
  pthread_cond_init(&p->cv, NULL);
  p->at_exit = at_exit;
  snprintf(p->name, sizeof p->name, "%s", name);
  p->threads = pl_calloc(threads ? threads : 1, sizeof *p->threads);
  for (unsigned i = 0; i < (threads ? threads : 1); i++) {
    pl__start *st = pl_malloc(sizeof *st);
    *st = (pl__start){p, i};
    if (pthread_create(&p->threads[i], NULL, pl__worker, st) != 0) {
      pl_free(st);
      pl_mpool_free(p);
      return PL_ERR_NOMEM;
    }
    p->nthreads++;
  }
  *out = p;
  return PL_OK;
}

pl_err pl_mpool_submit(pl_mpool *p, uv_loop_t *loop, pl_mjob *j) {
  if (uv_async_init(loop, &j->async, pl__ready) != 0)
    return PL_ERR_IO;
  j->async.data = j;
  j->next = NULL;
  pthread_mutex_lock(&p->mu);
  if (p->tail)
    p->tail->next = j;
  else
    p->head = j;
  p->tail = j;
  pthread_cond_signal(&p->cv);
  pthread_mutex_unlock(&p->mu);
  return PL_OK;
}

void pl_mpool_free(pl_mpool *p) {
  if (!p)
    return;
  pthread_mutex_lock(&p->mu);
  p->stopping = 1;
  pthread_cond_broadcast(&p->cv);
  pthread_mutex_unlock(&p->mu);
  for (unsigned i = 0; i < p->nthreads; i++)
    pthread_join(p->threads[i], NULL);
  pthread_cond_destroy(&p->cv);
  pthread_mutex_destroy(&p->mu);
  pl_free(p->threads);
  pl_free(p);
}
