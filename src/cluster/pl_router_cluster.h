/* pl_router_cluster: the router of a node in a cluster.
 *
 * It wraps the node's local router (pl_router_local_new): every call goes to
 * it first, so this node's connections are served exactly as on a single
 * node, and then tells the other nodes over the bus (pl_bus) what they need:
 *
 *   a commit for devices not attached here   -> HINT (they fetch from the store)
 *   a commit to a group                      -> GHINT (its audiences there fetch)
 *   a device attached here                   -> ATTACH (its old connection elsewhere closes)
 *   a device detached / revoked              -> DETACH / KICK
 *   an ephemeral frame (typing)              -> FRAME / GFRAME
 *   a group's audience changed               -> GCHANGE (their cached audiences follow)
 *   presence (first/last device of a user,   -> ONLINE / OFFLINE / FORGET / SEEN
 *   blocks, the last-seen setting)
 *
 * and applies what the other nodes say. Hints are hints: the store is the
 * truth. When the bus comes back after a cut, every local session fetches
 * (hints may have been lost) and the node announces its state again. */
#ifndef PL_ROUTER_CLUSTER_H
#define PL_ROUTER_CLUSTER_H

#include "../core/pl_presence.h"
#include "../core/pl_router.h"
#include "../net/pl_loop.h"
#include "pl_bus.h"

/* Wraps inner (taken: freed with the result). The bus joins at start. */
pl_router *pl_router_cluster_new(pl_router *inner);
/* After the core set the sink and the loops were made, before they start:
 * shares the sink with the inner router, hooks presence, and joins the bus
 * (in the background). loop: where remote presence's grace timers run. */
pl_err pl_router_cluster_start(pl_router *r, pl_presence *presence, pl_loop *loop, const pl_bus_config *bus);
/* Leaves the bus: no message of another node is applied after it (call
 * once the loops have ended, before they are freed: what the closing
 * connections said, detaches and users gone, was published). */
void pl_router_cluster_stop(pl_router *r);
/* The bus (for /metrics); NULL before start. */
pl_bus *pl_router_cluster_bus(pl_router *r);

#endif
