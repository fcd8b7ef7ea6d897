/* pb_loop: a small single-threaded epoll loop for the load generator.
 *
 * Three kinds of work: file descriptors (pb_io, level triggered), one-shot
 * timers with microsecond precision (epoll_pwait2), and deferred tasks that
 * run once at the end of the current iteration (connections use them to
 * write everything queued in one pass with one syscall). There is no global
 * state: each worker process owns one loop. */
#ifndef PB_LOOP_H
#define PB_LOOP_H

#include <stdint.h>

typedef struct pb_loop pb_loop;

typedef struct pb_io pb_io;
typedef void (*pb_io_cb)(pb_io *io, uint32_t events);
struct pb_io {
  int fd;          /* -1 when not registered */
  uint32_t events; /* what epoll watches for */
  pb_io_cb cb;
};

typedef struct pb_timer pb_timer;
typedef void (*pb_timer_cb)(pb_timer *t);
struct pb_timer {
  uint64_t due_us; /* pb_now_us() clock */
  pb_timer_cb cb;
  void *ud;
  pb_timer *next;
  int armed;
};

typedef struct pb_defer pb_defer;
struct pb_defer {
  void (*fn)(pb_defer *d);
  pb_defer *next;
  int queued;
};

/* Monotonic clock in microseconds; the same clock in every process of the
 * machine, so a send time written by one process is comparable in another. */
uint64_t pb_now_us(void);

pb_loop *pb_loop_new(void);
void pb_loop_free(pb_loop *l);

/* Watches io->fd for events (EPOLLIN, EPOLLOUT). Returns 0 or -1 (errno). */
int pb_io_add(pb_loop *l, pb_io *io, uint32_t events);
int pb_io_mod(pb_loop *l, pb_io *io, uint32_t events);
/* Stops watching (call before close); pending events of io are dropped. */
void pb_io_del(pb_loop *l, pb_io *io);

/* Fires t->cb once at due_us (re-arming an armed timer moves it). */
void pb_timer_start(pb_loop *l, pb_timer *t, uint64_t due_us);
void pb_timer_stop(pb_loop *l, pb_timer *t);

/* Runs d->fn at the end of this iteration (once, however often queued). */
void pb_loop_defer(pb_loop *l, pb_defer *d);
/* Unqueues d (before freeing what holds it). */
void pb_loop_defer_cancel(pb_loop *l, pb_defer *d);

/* Runs until done(arg) returns non-zero (checked after every iteration) or
 * the clock passes deadline_us (0: no deadline). Returns 0 when done, -1 on
 * the deadline or an epoll failure. */
typedef int (*pb_cond)(void *arg);
int pb_loop_run(pb_loop *l, pb_cond done, void *arg, uint64_t deadline_us);

#endif
