/* pl_session: the protocol state machine of one client connection, and the
 * core context that every session shares.
 *
 *   HELLO --Hello--> AUTH --Register/Login/Resume--> READY --Logout--> closed
 *
 * In READY the session is a cursor over its device's durable queue: it
 * fetches pages of queued messages after the last qid it sent, then goes LIVE
 * and takes pushes from the router; when the client reads too slowly it stops
 * taking pushes (LAGGING) and fetches again once its output drains. The
 * queue, not memory, buffers for slow and offline devices.
 *
 * pl_core is the context passed around instead of globals: limits, the store,
 * the router. The server's main makes the router (pl_router.h) and passes it
 * in the config, and wires the core to the transports through
 * pl_core_handler(). */
#ifndef PL_SESSION_H
#define PL_SESSION_H

#include <stddef.h>
#include <stdint.h>

#include "../net/pl_conn.h"
#include "../push/pl_hook.h"
#include "../push/pl_push.h"
#include "../store/pl_store.h"
#include "pl_filter.h"
#include "pl_router.h"
#include "pl_throttle.h"

typedef struct pl_core_config {
  uint32_t heartbeat_ms[5];    /* by ClientKind: unknown, mobile, web, iot, bot */
  uint32_t hello_timeout_ms;   /* time allowed before Hello */
  uint32_t auth_timeout_ms;    /* time allowed from connecting to authenticated (0: none) */
  uint32_t max_frame;          /* largest frame length accepted */
  uint32_t max_message;        /* largest Send.body */
  uint32_t fetch_batch;        /* queued messages read per fetch */
  uint32_t max_inflight;       /* Sends awaiting commit before reading pauses */
  size_t out_high;             /* output bytes above which a device lags */
  uint32_t argon2_ops;         /* Argon2id passes (0: libsodium interactive = 2) */
  uint32_t argon2_mem_kib;     /* Argon2id memory (0: libsodium interactive = 64 MiB) */
  uint32_t presence_grace_ms;  /* a user offline this long before followers are told */
  uint32_t typing_interval_ms; /* at most one typing-on event per device this often */
  uint32_t send_rate;          /* Sends per user per second (0: no limit), after a burst of */
  uint32_t send_burst;
  uint32_t max_queue;          /* entries a device queue may hold (0: no limit); the store's rule */
  uint32_t max_queue_share;    /* percent of it one sender (a user, a group) may hold */
  pl_auth_limits auth;         /* login throttling (pl_throttle.h) */
  uint32_t argon2_threads;     /* the hashing pool's threads */
  uint32_t argon2_per_address; /* Argon2id jobs at once per source address */
  uint32_t argon2_queue;       /* Argon2id jobs waiting for a thread, all addresses */
  int signup;                  /* who may Register: pl_signup_mode (--registration) */
  pl_router *router;           /* required: the local one (pl_router_local_new) or a cluster's;
                                  the caller's, freed after pl_core_free */
} pl_core_config;

void pl_core_config_defaults(pl_core_config *cfg);

typedef struct pl_core pl_core;

/* Creates the core for nloops loops, on cfg->router (whose sink it sets);
 * NULL without a router. */
pl_core *pl_core_new(const pl_core_config *cfg, int nloops);
/* The hooks the store must be opened with (they lead to this core). */
void pl_core_store_hooks(pl_core *core, pl_store_hooks *hooks);
void pl_core_set_store(pl_core *core, pl_store *store);
/* Push notifications (NULL: off; PushRegister is refused). Set before the
 * loops start; the core does not own it. */
void pl_core_set_push(pl_core *core, pl_push *push);
/* Is device connected now (any thread; the push service's online check)? */
int pl_core_online(void *core, uint64_t device);
/* The handler transports call. */
const pl_conn_handler *pl_core_handler(pl_core *core);
pl_router *pl_core_router(pl_core *core);
/* Who is online (a cluster's bus shares it with the other nodes). */
struct pl_presence *pl_core_presence(pl_core *core);
void pl_core_free(pl_core *core);
/* Replaces the sensitive-word filter every Send is checked with (takes the
 * caller's reference; NULL: none). Any thread; checks in progress finish
 * with the old one. */
void pl_core_set_filter(pl_core *core, pl_filter *f);
/* Maintenance: while on, Register, Login and Resume get MAINTENANCE (a
 * balancer sends them to another node; /healthz says 503). Any thread. */
void pl_core_set_draining(pl_core *core, int on);
/* The before-send webhook (pl_hook; docs/operations.md): every Send with a
 * body goes to cfg->url first, on threads of its own, one at a time per
 * connection. Set before the loops start; cfg's strings must outlive the core. */
void pl_core_set_moderation(pl_core *core, const pl_hook_config *cfg, unsigned threads);
/* Signs out device's live connections (an operator revoked it). Any thread. */
void pl_core_kick(pl_core *core, uint64_t device);

/* Counters (approximate, relaxed atomics) for logs and metrics. */
#define PL_CORE_ERROR_CODES 64 /* wire error codes counted one by one */
typedef struct pl_core_stats {
  uint64_t conns_open, conns_ws, conns_lp, conns_total, frames_in, messages_out, sends, errors;
  uint64_t errors_by_code[PL_CORE_ERROR_CODES]; /* by wire ErrorCode */
  const pl_hist *delivery;                      /* per loop: commit -> push, us (live) */
  size_t ndelivery;
  uint64_t online_users, online_devices; /* signed in now (a device on two connections: once each) */
  uint64_t login_failures;               /* wrong passwords and bad tokens since start */
  uint64_t hook_calls, hook_rejects, hook_masks, hook_errors; /* the moderation webhook */
  int draining;
} pl_core_stats;
void pl_core_get_stats(pl_core *core, pl_core_stats *st);

#endif
