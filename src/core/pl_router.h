/* pl_router: which connection serves a device, and getting a committed
 * message to it.
 *
 * An interface (vtable) with a local, in-process implementation now; a
 * cluster router (NATS, Redis pub/sub or PostgreSQL LISTEN/NOTIFY)
 * implements the same calls later. The server's main makes the router and
 * passes it to the core (pl_core_config.router), so another one plugs in
 * without a change to the core. The session layer gives the router an
 * endpoint for every authenticated device connection, and a sink through
 * which the router hands it messages on the endpoint's own loop thread.
 *
 * deliver() is called by the store thread after each commit, in commit order;
 * the local router encodes the Message frame once and posts a reference to
 * each device's loop, whose mailbox keeps that order. A device with no
 * endpoint is skipped: its copy waits in the durable queue. */
#ifndef PL_ROUTER_H
#define PL_ROUTER_H

#include <stdint.h>

#include "../common/pl_buf.h"
#include "../common/pl_hist.h"
#include "../net/pl_loop.h"
#include "../store/pl_store.h"

typedef struct pl_router pl_router;

/* Called on the endpoint's loop thread. */
typedef struct pl_router_sink {
  /* A message for the device of ep; frame is a whole Message frame (borrowed:
   * take a reference to keep it). hint numbers the pushes the router sent to
   * this attachment of ep, 1, 2, 3...: a push can be lost, repeated or late
   * (a cluster's transport), and the numbers let the receiver see it and
   * read the queue instead (pl_cursor.h). qid 0: an ephemeral frame, hint 0.
   * gid: a group history entry's group (its position there is seq). */
  void (*push)(void *ep, uint64_t qid, uint64_t gid, uint64_t seq, uint64_t hint, pl_buf *frame);
  /* Another connection took over this device: ep should close. */
  void (*kick)(void *ep);
  /* Something new for ep's device is in the store that no push carried
   * (another node committed it: a cluster's hint): read the queue. */
  void (*fetch)(void *ep);
  /* Optional: each committed message's time from its commit to its push
   * reaching the endpoint's loop, in microseconds (/metrics); one histogram
   * per loop, indexed by pl_loop_index, so loops never share a cache line. */
  pl_hist *delivery;
} pl_router_sink;

typedef struct pl_router_ops {
  /* ep serves device on loop (call on that loop's thread). */
  void (*attach)(pl_router *r, uint64_t device, pl_loop *loop, void *ep);
  /* ep no longer serves device (call on ep's loop thread). */
  void (*detach)(pl_router *r, uint64_t device, pl_loop *loop, void *ep);
  /* Routes a committed message to the given devices (store thread). */
  void (*deliver)(pl_router *r, const pl_msg *m, const uint64_t *devices, size_t n);
  /* Groups (store thread, in commit order): a committed group message to
   * the group's live audience but skip; devices joining or leaving an
   * audience; the groups a device hears, replaced (after its fetch). Only
   * attached devices join; detach takes a device out of every audience. */
  void (*deliver_group)(pl_router *r, const pl_msg *m, uint64_t gid, uint64_t skip);
  void (*group_change)(pl_router *r, const pl_group_change *c);
  void (*device_groups)(pl_router *r, uint64_t device, const uint64_t *gids, size_t n);
  /* An ephemeral frame (group typing) for the group's live audience but
   * the nskip devices of skip; any thread. */
  void (*push_group_frame)(pl_router *r, uint64_t gid, const uint64_t *skip, size_t nskip, pl_buf *frame);
  /* After the last deliver of a commit (store thread): send what is held. */
  void (*deliver_end)(pl_router *r);
  /* An ephemeral frame (presence, typing: never stored) for whichever of the
   * devices are online now; any thread. The sink gets it with qid 0. */
  void (*push_frame)(pl_router *r, const uint64_t *devices, size_t n, pl_buf *frame);
  /* Closes the connection serving device, if any (any thread; the sink's
   * kick runs on its loop): a revoked device. */
  void (*kick)(pl_router *r, uint64_t device);
  /* The store has something new for these devices that no push carries (a
   * commit on another node): their endpoints here, if any, fetch (any
   * thread). devices NULL: every attached device (the bus was cut: hints
   * may have been lost). gid != 0: the group's live audience instead. */
  void (*hint)(pl_router *r, const uint64_t *devices, size_t n, uint64_t gid);
  /* Every attached device whose id's bucket (pl_bucket_of_id) has its bit
   * set in bits (bucket b: bits[b / 64] >> b % 64 & 1) fetches, here only
   * (any thread): this node took a bucket map that moved those buckets,
   * and the mover queued copies for their devices (pl_store_hooks.moved). */
  void (*hint_buckets)(pl_router *r, const uint64_t *bits);
  /* How many pushes the router numbered for ep's attachment to device so far
   * (0 if ep is not attached); on ep's loop thread. A receiver that got
   * fewer lost one (the idle check of pl_cursor_check). */
  uint64_t (*pushed)(pl_router *r, uint64_t device, pl_loop *loop, void *ep);
  /* Is device attached now (any thread)? */
  int (*is_online)(pl_router *r, uint64_t device);
  /* Endpoints currently attached. */
  size_t (*count)(pl_router *r);
  void (*free)(pl_router *r);
} pl_router_ops;

struct pl_router {
  const pl_router_ops *ops;
  /* Where messages go: the core sets it once (pl_core_new), before the
   * loops start and before any call above, so that the router can be made
   * before the core that receives from it. */
  pl_router_sink sink;
};

/* The in-process router for nloops loops (indexed by pl_loop_index). */
pl_router *pl_router_local_new(int nloops);

/* Encodes m as a Message frame (shared by the local and future routers). */
pl_buf *pl_router_encode(const pl_msg *m);

#endif
