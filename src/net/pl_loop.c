#include "pl_loop.h"

#include <pthread.h>

#include "../common/pl_log.h"
#include "../common/pl_mem.h"

struct pl_loop {
  uv_loop_t uv;
  int index;
  uv_thread_t thread;
  uv_async_t wake;
  uv_check_t check;
  uv_timer_t tick;
  pl_tick_fn tick_fn;
  void *tick_ud;
  pthread_mutex_t mu;
  pl_task *head, *tail; /* mailbox, guarded by mu */
  pl_flusher *marked;   /* loop thread only */
  int closed;           /* mailbox closed, guarded by mu */
  uint8_t rbuf[PL_LOOP_RBUF];
};

static void pl__drain(uv_async_t *a) {
  pl_loop *l = a->data;
  pthread_mutex_lock(&l->mu);
  pl_task *t = l->head;
  l->head = l->tail = NULL;
  pthread_mutex_unlock(&l->mu);
  while (t) {
    pl_task *next = t->next;
    t->fn(t);
    t = next;
  }
}

static void pl__flush(uv_check_t *c) {
  pl_loop *l = c->data;
  /* Flushing may mark more flushers (a write callback): loop until quiet. */
  while (l->marked) {
    pl_flusher *f = l->marked;
    l->marked = NULL;
    while (f) {
      pl_flusher *next = f->next;
      f->queued = 0;
      f->next = NULL;
      f->fn(f);
      f = next;
    }
  }
}

static void pl__tick(uv_timer_t *t) {
  pl_loop *l = t->data;
  if (l->tick_fn)
    l->tick_fn(l, l->tick_ud);
}

pl_loop *pl_loop_new(int index) {
  pl_loop *l = pl_calloc(1, sizeof *l);
  l->index = index;
  uv_loop_init(&l->uv);
  l->uv.data = l;
  pthread_mutex_init(&l->mu, NULL);
  uv_async_init(&l->uv, &l->wake, pl__drain);
  l->wake.data = l;
  uv_check_init(&l->uv, &l->check);
  l->check.data = l;
  uv_check_start(&l->check, pl__flush);
  uv_unref((uv_handle_t *)&l->check);
  uv_timer_init(&l->uv, &l->tick);
  l->tick.data = l;
  return l;
}

static void pl__thread(void *arg) {
  pl_loop *l = arg;
  char name[16];
  snprintf(name, sizeof name, "pl-loop-%d", l->index);
  pthread_setname_np(pthread_self(), name); /* shows in top -H, perf, gdb */
  uv_run(&l->uv, UV_RUN_DEFAULT);
}

pl_err pl_loop_start(pl_loop *l) {
  return uv_thread_create(&l->thread, pl__thread, l) == 0 ? PL_OK : PL_ERR_IO;
}

void pl_loop_join(pl_loop *l) { uv_thread_join(&l->thread); }

static void pl__walk_close(uv_handle_t *h, void *arg) {
  (void)arg;
  if (!uv_is_closing(h))
    uv_close(h, NULL);
}

void pl_loop_free(pl_loop *l) {
  /* Close whatever is left so uv_loop_close succeeds, then drop tasks. */
  uv_walk(&l->uv, pl__walk_close, NULL);
  uv_run(&l->uv, UV_RUN_DEFAULT);
  if (uv_loop_close(&l->uv) != 0)
    pl_warn("loop %d: handles left open at exit", l->index);
  pthread_mutex_destroy(&l->mu);
  pl_free(l);
}

uv_loop_t *pl_loop_uv(pl_loop *l) { return &l->uv; }
int pl_loop_index(const pl_loop *l) { return l->index; }
uint8_t *pl_loop_rbuf(pl_loop *l) { return l->rbuf; }

pl_err pl_loop_post_list(pl_loop *l, pl_task *head, pl_task *tail) {
  tail->next = NULL;
  pthread_mutex_lock(&l->mu);
  if (l->closed) {
    pthread_mutex_unlock(&l->mu);
    return PL_ERR_SHUTTING_DOWN;
  }
  int was_empty = l->head == NULL;
  if (l->tail)
    l->tail->next = head;
  else
    l->head = head;
  l->tail = tail;
  /* A non-empty mailbox has a wake-up pending already. */
  if (was_empty)
    uv_async_send(&l->wake);
  pthread_mutex_unlock(&l->mu);
  return PL_OK;
}

pl_err pl_loop_post(pl_loop *l, pl_task *t) { return pl_loop_post_list(l, t, t); }

void pl_loop_mark(pl_loop *l, pl_flusher *f) {
  if (f->queued)
    return;
  f->queued = 1;
  f->next = l->marked;
  l->marked = f;
}

void pl_loop_set_tick(pl_loop *l, uint64_t period_ms, pl_tick_fn fn, void *ud) {
  l->tick_fn = fn;
  l->tick_ud = ud;
  uv_timer_start(&l->tick, pl__tick, period_ms, period_ms);
}

void pl_loop_release(pl_loop *l) {
  uv_timer_stop(&l->tick);
  uv_close((uv_handle_t *)&l->tick, NULL);
  /* Close the mailbox, then run what was already posted. */
  pthread_mutex_lock(&l->mu);
  l->closed = 1;
  pthread_mutex_unlock(&l->mu);
  pl__drain(&l->wake);
  uv_close((uv_handle_t *)&l->wake, NULL);
}
