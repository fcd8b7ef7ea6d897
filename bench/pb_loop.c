#include "pb_loop.h"

#include <errno.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

#include "common/pl_mem.h"

#define PB__MAX_EVENTS 512

struct pb_loop {
  int epfd;
  pb_timer *timers; /* unsorted: a worker has a handful */
  pb_defer *defers;
  struct epoll_event ev[PB__MAX_EVENTS];
  int nev, cur; /* the batch being dispatched, for pb_io_del */
};

uint64_t pb_now_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

pb_loop *pb_loop_new(void) {
  pb_loop *l = pl_calloc(1, sizeof *l);
  l->epfd = epoll_create1(EPOLL_CLOEXEC);
  if (l->epfd < 0) {
    pl_free(l);
    return NULL;
  }
  return l;
}

void pb_loop_free(pb_loop *l) {
  if (!l)
    return;
  close(l->epfd);
  pl_free(l);
}

/* ---- file descriptors --------------------------------------------------- */

static int pb__ctl(pb_loop *l, int op, pb_io *io, uint32_t events) {
  struct epoll_event ev = {.events = events, .data.ptr = io};
  if (epoll_ctl(l->epfd, op, io->fd, &ev) != 0)
    return -1;
  io->events = events;
  return 0;
}

int pb_io_add(pb_loop *l, pb_io *io, uint32_t events) { return pb__ctl(l, EPOLL_CTL_ADD, io, events); }

int pb_io_mod(pb_loop *l, pb_io *io, uint32_t events) {
  if (io->events == events)
    return 0;
  return pb__ctl(l, EPOLL_CTL_MOD, io, events);
}

void pb_io_del(pb_loop *l, pb_io *io) {
  if (io->fd >= 0)
    epoll_ctl(l->epfd, EPOLL_CTL_DEL, io->fd, NULL);
  io->events = 0;
  /* The fd number may be reused at once: forget events of this batch. */
  for (int i = l->cur + 1; i < l->nev; i++)
    if (l->ev[i].data.ptr == io)
      l->ev[i].data.ptr = NULL;
}

/* ---- timers and deferred tasks ------------------------------------------ */

void pb_timer_stop(pb_loop *l, pb_timer *t) {
  if (!t->armed)
    return;
  for (pb_timer **pp = &l->timers; *pp; pp = &(*pp)->next) {
    if (*pp == t) {
      *pp = t->next;
      break;
    }
  }
  t->armed = 0;
}

void pb_timer_start(pb_loop *l, pb_timer *t, uint64_t due_us) {
  pb_timer_stop(l, t);
  t->due_us = due_us;
  t->armed = 1;
  t->next = l->timers;
  l->timers = t;
}

/* Fires every due timer; a callback may re-arm its own or others. */
static void pb__run_timers(pb_loop *l) {
  uint64_t now = pb_now_us();
  for (;;) {
    pb_timer *t = l->timers;
    while (t && t->due_us > now)
      t = t->next;
    if (!t)
      return;
    pb_timer_stop(l, t);
    t->cb(t);
  }
}

void pb_loop_defer(pb_loop *l, pb_defer *d) {
  if (d->queued)
    return;
  d->queued = 1;
  d->next = l->defers;
  l->defers = d;
}

void pb_loop_defer_cancel(pb_loop *l, pb_defer *d) {
  if (!d->queued)
    return;
  for (pb_defer **pp = &l->defers; *pp; pp = &(*pp)->next) {
    if (*pp == d) {
      *pp = d->next;
      break;
    }
  }
  d->queued = 0;
}

static void pb__run_defers(pb_loop *l) {
  while (l->defers) {
    pb_defer *d = l->defers;
    l->defers = d->next;
    d->queued = 0;
    d->fn(d);
  }
}

/* ---- the loop ------------------------------------------------------------ */

static uint64_t pb__next_due(const pb_loop *l, uint64_t deadline_us) {
  uint64_t due = deadline_us ? deadline_us : UINT64_MAX;
  for (const pb_timer *t = l->timers; t; t = t->next)
    if (t->due_us < due)
      due = t->due_us;
  return due;
}

static int pb__wait(pb_loop *l, uint64_t due) {
  struct timespec ts, *tp = NULL;
  if (l->defers) {
    ts = (struct timespec){0, 0};
    tp = &ts;
  } else if (due != UINT64_MAX) {
    uint64_t now = pb_now_us(), wait = due > now ? due - now : 0;
    ts = (struct timespec){(time_t)(wait / 1000000u), (long)(wait % 1000000u) * 1000};
    tp = &ts;
  }
  int n = epoll_pwait2(l->epfd, l->ev, PB__MAX_EVENTS, tp, NULL);
  if (n < 0 && errno == EINTR)
    n = 0;
  return n;
}

static void pb__dispatch(pb_loop *l, int n) {
  l->nev = n;
  for (l->cur = 0; l->cur < n; l->cur++) {
    pb_io *io = l->ev[l->cur].data.ptr;
    if (io && io->fd >= 0)
      io->cb(io, l->ev[l->cur].events);
  }
  l->nev = l->cur = 0;
}

int pb_loop_run(pb_loop *l, pb_cond done, void *arg, uint64_t deadline_us) {
  for (;;) {
    if (done && done(arg))
      return 0;
    if (deadline_us && pb_now_us() >= deadline_us)
      return -1;
    int n = pb__wait(l, pb__next_due(l, deadline_us));
    if (n < 0)
      return -1;
    pb__dispatch(l, n);
    pb__run_timers(l);
    pb__run_defers(l);
  }
}
