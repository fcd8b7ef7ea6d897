/* pl_cluster_int: what pl_router_cluster.c (this node's calls, told to the
 * bus) and pl_cluster_apply.c (what the other nodes say, applied here)
 * share. Not for other modules. */
#ifndef PL_CLUSTER_INT_H
#define PL_CLUSTER_INT_H

#include <pthread.h>

#include "../common/pl_map.h"
#include "pl_router_cluster.h"

#define PL__MAX_NODES 256
#define PL__CHUNK 4096u /* ids per bus message */

/* What another node serves, as it told us: forgotten when it dies. */
typedef struct pl__peer_node {
  char name[PL_BUSMSG_MAX_NODE + 1];
  pl_map users; /* uid -> 1: users online there */
} pl__peer_node;

typedef struct pl__cluster {
  pl_router base;
  pl_router *inner;
  pl_bus_config bcfg;
  char node[PL_BUSMSG_MAX_NODE + 1];
  pl_bus *bus;
  pl_presence *presence;
  pl_loop *loop;
  pthread_mutex_t mu; /* guards what follows; never held while calling inner or presence */
  pl_map mine;        /* device -> attached here since (unix ms) */
  pl_map users;       /* uid -> name (pl_malloc'ed): users with a device here */
  pl_map remote;      /* device -> peer node index + 1 */
  pl__peer_node *nodes[PL__MAX_NODES];
  int nnodes;
  /* one commit's hints (store thread only) */
  uint64_t *hint_devs, *hint_gids;
  size_t nhint_devs, nhint_gids, cap_devs, cap_gids;
} pl__cluster;

uint64_t pl_cluster__wall_ms(void);
/* Publishes a message of type with numbers a and b. */
void pl_cluster__pub(pl__cluster *c, uint8_t type, uint64_t a, uint64_t b);
/* The same with ids (in chunks of PL__CHUNK, each with the payload). */
void pl_cluster__pub_ids(pl__cluster *c, uint8_t type, uint64_t a, uint64_t b, const uint64_t *ids, size_t n,
                         const uint8_t *payload, size_t plen);

/* pl_bus_handlers (pl_cluster_apply.c). */
void pl_cluster__on_msg(void *ud, const pl_busmsg *m);
void pl_cluster__on_node_dead(void *ud, const char *node, uint64_t incarnation);
void pl_cluster__on_connected(void *ud, int again);

#endif
