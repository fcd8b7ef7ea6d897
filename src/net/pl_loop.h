/* pl_loop: one event-loop thread and its mailbox.
 *
 * parleyd runs one pl_loop per core. Each owns a libuv loop, its share of the
 * connections (the kernel spreads accepts across the loops' SO_REUSEPORT
 * listeners), a shared read buffer, and a mailbox: any thread may post a task
 * and the loop runs tasks in FIFO order per posting thread. The commit thread
 * posts store completions and deliveries there; FIFO order is what keeps a
 * device's stream in queue order.
 *
 * Once per loop pass (libuv's check phase, after all reads and tasks of the
 * pass) the loop calls every registered flush function: connections queue
 * frames during the pass and write them all with one write. */
#ifndef PL_LOOP_H
#define PL_LOOP_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "../common/pl_err.h"

typedef struct pl_loop pl_loop;

typedef struct pl_task pl_task;
struct pl_task {
  void (*fn)(pl_task *t); /* runs on the loop's thread; owns t from then on */
  pl_task *next;
};

/* Shared read buffer size: one read takes up to this many bytes. */
#define PL_LOOP_RBUF (64u * 1024u)

pl_loop *pl_loop_new(int index);
/* Runs the loop on a new thread. */
pl_err pl_loop_start(pl_loop *l);
/* Asks the loop to stop once all its handles are closed, then joins it. */
void pl_loop_join(pl_loop *l);
void pl_loop_free(pl_loop *l);

uv_loop_t *pl_loop_uv(pl_loop *l);
int pl_loop_index(const pl_loop *l);
/* The loop's read buffer (for transports running on it). */
uint8_t *pl_loop_rbuf(pl_loop *l);

/* Posts t to run on l's thread (any thread; never blocks for long).
 * Returns PL_ERR_SHUTTING_DOWN (and t stays the caller's) once the loop's
 * mailbox is closed. */
pl_err pl_loop_post(pl_loop *l, pl_task *t);

/* Posts the chain head..tail (linked by next) in one go: one lock and one
 * wake-up for a whole commit's worth of tasks. */
pl_err pl_loop_post_list(pl_loop *l, pl_task *head, pl_task *tail);

/* A flusher is called once at the end of each loop pass while it is marked. */
typedef struct pl_flusher pl_flusher;
struct pl_flusher {
  void (*fn)(pl_flusher *f);
  pl_flusher *next;
  int queued;
};
/* Marks f to be called at the end of this pass (loop thread only). */
void pl_loop_mark(pl_loop *l, pl_flusher *f);

/* Periodic callback on the loop thread every period_ms (e.g. heartbeat sweep). */
typedef void (*pl_tick_fn)(pl_loop *l, void *ud);
void pl_loop_set_tick(pl_loop *l, uint64_t period_ms, pl_tick_fn fn, void *ud);

/* Stops the tick timer and mailbox so the loop can end when the last
 * connection handle closes (call on the loop thread). */
void pl_loop_release(pl_loop *l);

#endif
