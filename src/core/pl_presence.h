/* pl_presence: who is online, and telling the devices that follow them.
 *
 * In memory only (last-seen times are stored by the session through the
 * store). A user's entry exists while a device follows it or its offline
 * event is pending; a user nobody follows costs one map slot while online
 * (its device count) and no events. Devices follow users with
 * pl_presence_subscribe after the store said they may (pl_presence_view).
 *
 * Flapping: when a user's last device goes, the offline event waits
 * grace_ms on that device's loop; a device coming back meanwhile cancels
 * it, and since followers were never told "offline" they get no "online"
 * either. Events are Presence frames encoded once and sent through the
 * router to the followers' online devices. Thread-safe (one mutex). */
#ifndef PL_PRESENCE_H
#define PL_PRESENCE_H

#include <stdint.h>

#include "../net/pl_loop.h"
#include "../store/pl_store.h"
#include "pl_router.h"

typedef struct pl_presence pl_presence;

pl_presence *pl_presence_new(pl_router *router, uint32_t grace_ms);
/* After every loop is gone (pending timers were closed with them). */
void pl_presence_free(pl_presence *p);

/* A device of user uid (named user) is connected / gone. Offline is called
 * on the loop thread of the device's connection; now_ms is its last-seen. */
void pl_presence_online(pl_presence *p, uint64_t uid, const char *user);
void pl_presence_offline(pl_presence *p, uint64_t uid, pl_loop *loop, uint64_t now_ms);
/* 1 if a device of uid is connected. */
int pl_presence_is_online(pl_presence *p, uint64_t uid);
/* Users online now, and their connections counted (a scan: for metrics). */
void pl_presence_online_count(pl_presence *p, uint64_t *users, uint64_t *conns);

/* device (of viewer_uid), on its connection owner (any id unique among
 * connections), now follows exactly the visible users of views;
 * seen_visible and last_seen are remembered per followed user. */
void pl_presence_subscribe(pl_presence *p, uint64_t device, uint64_t owner, uint64_t viewer_uid,
                           const pl_presence_view *views, size_t n);
/* The device's connection owner is gone: the device no longer follows
 * anyone, unless a newer connection of it subscribed since. */
void pl_presence_unsubscribe(pl_presence *p, uint64_t device, uint64_t owner);
/* viewer_uid may no longer see uid (blocked, or no longer a contact). */
void pl_presence_forget(pl_presence *p, uint64_t uid, uint64_t viewer_uid);
/* uid changed who sees its last-seen time: followers (contacts) see it
 * unless visible is 0. */
void pl_presence_set_seen_visible(pl_presence *p, uint64_t uid, int visible);

/* ---- a cluster: presence is cluster-wide ---------------------------------
 * Each node tells the others (through the peer) when a user's first device
 * connects to it or its last one goes, and what changes who may see whom;
 * the others apply it with the _remote calls below, so that their followers
 * hear of a user on any node. Another node with uid online counts as one
 * device of uid. */
typedef struct pl_presence_peer {
  void *ud;
  void (*online)(void *ud, uint64_t uid, const char *user);    /* first device here */
  void (*offline)(void *ud, uint64_t uid, uint64_t last_seen); /* last device here gone */
  void (*forget)(void *ud, uint64_t uid, uint64_t viewer_uid);
  void (*seen)(void *ud, uint64_t uid, int visible);
} pl_presence_peer;

/* Before the loops start; the peer's calls are made under the module's
 * lock, so each user's are in order (they must not call back in). */
void pl_presence_set_peer(pl_presence *p, const pl_presence_peer *peer);
/* Another node's: uid is online there / no longer (its grace runs on loop). */
void pl_presence_remote_online(pl_presence *p, uint64_t uid, const char *user);
void pl_presence_remote_offline(pl_presence *p, uint64_t uid, pl_loop *loop, uint64_t last_seen);
void pl_presence_remote_forget(pl_presence *p, uint64_t uid, uint64_t viewer_uid);
void pl_presence_remote_seen(pl_presence *p, uint64_t uid, int visible);

#endif
