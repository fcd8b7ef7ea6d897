/* pl_push: push notifications for devices that are offline.
 *
 * The store thread tells the service about each message it queued for a
 * device (pl_push_queued, pl_push_group); the call costs a hash lookup for
 * devices without a token and a small copy for the others, and never
 * blocks: the devices that want a notification go to the store as a
 * PL_STORE_PUSH_ENQUEUE request queued behind the commit. Tokens and
 * pending notifications live in the store (PL_STORE_PUSH_*, whose claim
 * rules pl_store.h states), so that nodes sharing one database share them
 * and each notification is sent by one node. A device's first message
 * opens a collapse window, the ones within it merge into one pending row;
 * the service's own thread claims the rows that are due (a lease), sends
 * them through the device's provider (libcurl's multi interface, several
 * requests in flight) unless the device came online meanwhile, and writes
 * the outcomes back. Failures are retried with exponential backoff and
 * jitter; a token the provider disowns is forgotten. Pending
 * notifications survive a restart; a crash between claim and send sends
 * again after the lease (the collapse id makes the phone show one). */
#ifndef PL_PUSH_H
#define PL_PUSH_H

#include <stddef.h>
#include <stdint.h>

#include "../common/pl_err.h"
#include "../store/pl_store.h"
#include "pl_pushp.h"

#define PL_PUSH_MAX_TOKEN 4096

typedef struct pl_push_config {
  const char *node; /* names this node in its claims (NULL: host name/pid) */
  pl_pushp_config providers;
  uint32_t window_ms;                       /* collapse window (default 2000) */
  uint32_t backoff_ms;                      /* first retry after this, doubling (default 1000) */
  uint32_t backoff_max_ms;                  /* retry delay cap (default 300000) */
  uint32_t max_attempts;                    /* then the notification is dropped (default 8) */
  uint32_t timeout_ms;                      /* per request (default 10000) */
  uint32_t max_inflight;                    /* requests at once (default 64) */
  int privacy;                              /* no sender, conversation or text leaves the server */
  pl_store *store;                          /* tokens, pending rows, unread counts, group members */
  int (*online)(void *ud, uint64_t device); /* any thread */
  void *online_ud;
} pl_push_config;

typedef struct pl_push pl_push;

/* curl_global_init / cleanup: once per process, before any thread starts. */
pl_err pl_push_global_init(void);
void pl_push_global_cleanup(void);

/* Loads the tokens from the store (open, its thread running) and starts
 * the thread. *out = NULL and PL_OK when no provider is configured (push
 * is off). */
pl_err pl_push_open(pl_push **out, const pl_push_config *cfg, char *why, size_t whylen);
/* Abandons requests in flight (their rows are released in the store, due
 * at once; call it before pl_store_stop, else their leases end instead)
 * and stops the thread. pl_push_queued, pl_push_group and
 * pl_push_register still work afterwards (they only submit to the store),
 * so the store's last commits still queue their notifications. Idempotent. */
void pl_push_stop(pl_push *p);
void pl_push_free(pl_push *p);

/* Is provider one this server runs? */
int pl_push_provider_on(const pl_push *p, const char *provider);
/* Any thread. Sets (token non-empty) or removes device's token (and its
 * pending notification). Returns PL_ERR_INVALID_ARGUMENT for a provider
 * that is off or a token that is too long or not printable ASCII. The
 * in-memory set changes at once; the store's row with a request submitted
 * now (not waited for). */
pl_err pl_push_register(pl_push *p, uint64_t device, uint64_t user_id, const char *user, const char *provider,
                        const char *token);

/* Any thread: device signed out (LOGOUT or DEVICES revoke, which removed
 * its token and pending row in their transaction): the in-memory set
 * forgets it; nothing is submitted. */
void pl_push_forget(pl_push *p, uint64_t device);

/* Store thread, after commit: m was queued for these devices (1:1), or
 * went to group gid from device skip. Only user-visible messages count.
 * They submit to the store and return (the group's members are listed by
 * a request of its own, then enqueued). */
void pl_push_queued(pl_push *p, const pl_msg *m, const uint64_t *devices, size_t n);
void pl_push_group(pl_push *p, const pl_msg *m, uint64_t gid, uint64_t skip);

typedef struct pl_push_stats {
  uint64_t sent, retried, failed, invalid, pending, tokens;
} pl_push_stats;
void pl_push_get_stats(pl_push *p, pl_push_stats *st);

#endif
