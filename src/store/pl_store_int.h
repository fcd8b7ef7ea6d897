/* pl_store_int.h: between the store thread (pl_store.c) and the shard
 * router (pl_store_shard.c). Not for callers of the store. */
#ifndef PL_STORE_INT_H
#define PL_STORE_INT_H

#include "pl_store.h"

/* Queues req on this one store (no routing). */
void pl_store__enqueue(pl_store *s, pl_store_req *req);
/* Hands a finished request back to its submitter (post hook or done). */
void pl_store__hand_back(pl_store *s, pl_store_req *req);
/* Routes req to the shard(s) of a linked set of n stores. */
void pl_store__submit_linked(pl_store *const *stores, unsigned n, const struct pl_shardmap *m,
                             pl_store_req *req);

/* Where a request runs in a set of n shards (n > 1): a shard's index, or
 * one of these. */
enum {
  PL_ROUTE_EACH = -1,  /* on every shard, the answers merged */
  PL_ROUTE_SPLIT = -2, /* PUSH_ENQUEUE, PUSH_DONE: each shard gets its devices' part */
};
int pl_store_route(const pl_store_req *req, const struct pl_shardmap *m, unsigned n);

#endif
