/* pl_shardmap: which shard holds each bucket now (docs/scaling.md 4).
 *
 * A bucket lives where pl_bucket_shard's formula puts it until the mover
 * (pg_move.c) moves it; then every shard's bucket_map table names its new
 * shard, under a new epoch. A node holds one map for all its threads: the
 * router, every shard's store thread and the blob store read it without a
 * lock (each entry is one atomic word), and a store thread that learns of
 * a newer epoch (its shard refused a write with SQLSTATE PLMAP, or its
 * once-a-second poll saw the epoch move) takes the new map. A reader that
 * sees a map half taken routes one request by the old entry: the
 * database's fence refuses it, and the client's retry goes the right way. */
#ifndef PL_SHARDMAP_H
#define PL_SHARDMAP_H

#include <stddef.h>
#include <stdint.h>

typedef struct pl_shardmap pl_shardmap;

pl_shardmap *pl_shardmap_new(void);
void pl_shardmap_free(pl_shardmap *m);

/* The shard (0 .. nshards-1) of a bucket: the moved entry, else the
 * formula over the store's first shards (the base: shards added later hold
 * only buckets moved there). m NULL: the formula over nshards. */
unsigned pl_shardmap_of(const pl_shardmap *m, uint32_t bucket, unsigned nshards);

/* The number of shards the store began with, which the formula spreads
 * the buckets over (recorded in every shard's shard_info); 0: not known
 * yet (the formula then uses nshards). */
void pl_shardmap_set_base(pl_shardmap *m, unsigned base);
unsigned pl_shardmap_base(const pl_shardmap *m);

/* The epoch of the map held (0: nothing moved yet, or m NULL). */
uint64_t pl_shardmap_epoch(const pl_shardmap *m);

/* Takes the map of `epoch` (n moved buckets: bucket[i] on shard[i]; every
 * other bucket where the formula puts it) if it is newer than the one
 * held. 1: taken; 0: the one held is as new. */
int pl_shardmap_take(pl_shardmap *m, uint64_t epoch, const uint32_t *bucket, const uint32_t *shard, size_t n);

/* The buckets whose shard a take changed since the last call, a bit each
 * (bucket b: bits[b / 64] >> b % 64 & 1), cleared here: the connected
 * devices of those buckets read their queues again, for the copies the
 * mover made there (pg_move.c, step 2). 1 if any. */
#define PL_SHARDMAP_WORDS 256 /* PL_BUCKETS / 64 */
int pl_shardmap_changed(pl_shardmap *m, uint64_t bits[PL_SHARDMAP_WORDS]);

#endif
