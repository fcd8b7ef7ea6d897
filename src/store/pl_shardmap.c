/* pl_shardmap: a node's bucket map, read without locks, replaced whole. */
#include "pl_shardmap.h"

#include <pthread.h>
#include <stdatomic.h>

#include "../common/pl_mem.h"
#include "../rules/pl_bucket.h"

struct pl_shardmap {
  pthread_mutex_t mu; /* one taker at a time */
  atomic_uint_fast64_t epoch;
  atomic_uint base;           /* the formula's shards (0: nshards) */
  atomic_uint at[PL_BUCKETS]; /* 0: the formula's; s + 1: moved to shard s */
  /* a bit per bucket whose entry a take changed, until pl_shardmap_changed */
  atomic_uint_fast64_t changed[PL_SHARDMAP_WORDS];
};
_Static_assert(PL_SHARDMAP_WORDS * 64 == PL_BUCKETS, "a bit per bucket");

pl_shardmap *pl_shardmap_new(void) {
  pl_shardmap *m = pl_calloc(1, sizeof *m);
  pthread_mutex_init(&m->mu, NULL);
  atomic_init(&m->epoch, 0);
  atomic_init(&m->base, 0);
  for (uint32_t b = 0; b < PL_BUCKETS; b++)
    atomic_init(&m->at[b], 0);
  for (uint32_t w = 0; w < PL_SHARDMAP_WORDS; w++)
    atomic_init(&m->changed[w], 0);
  return m;
}

void pl_shardmap_free(pl_shardmap *m) {
  if (!m)
    return;
  pthread_mutex_destroy(&m->mu);
  pl_free(m);
}

unsigned pl_shardmap_of(const pl_shardmap *m, uint32_t bucket, unsigned nshards) {
  bucket %= PL_BUCKETS;
  unsigned s = m ? atomic_load_explicit(&m->at[bucket], memory_order_relaxed) : 0;
  if (s && s <= nshards)
    return s - 1;
  unsigned base = m ? atomic_load_explicit(&m->base, memory_order_relaxed) : 0;
  return pl_bucket_shard(bucket, base && base <= nshards ? base : nshards);
}

void pl_shardmap_set_base(pl_shardmap *m, unsigned base) { atomic_store(&m->base, base); }

unsigned pl_shardmap_base(const pl_shardmap *m) { return m ? atomic_load(&((pl_shardmap *)m)->base) : 0; }

uint64_t pl_shardmap_epoch(const pl_shardmap *m) {
  return m ? atomic_load_explicit(&((pl_shardmap *)m)->epoch, memory_order_acquire) : 0;
}

/* Sets bucket b's entry to v (changed: its bit set, after the entry). */
static void pl__set(pl_shardmap *m, uint32_t b, unsigned v) {
  if (atomic_exchange_explicit(&m->at[b], v, memory_order_relaxed) != v)
    atomic_fetch_or(&m->changed[b / 64], UINT64_C(1) << (b % 64));
}

int pl_shardmap_take(pl_shardmap *m, uint64_t epoch, const uint32_t *bucket, const uint32_t *shard,
                     size_t n) {
  int taken = 0;
  pthread_mutex_lock(&m->mu);
  if (epoch > atomic_load(&m->epoch)) {
    /* moved entries first, then the ones no longer moved: a reader never
     * sees a bucket without a shard */
    unsigned char *moved = pl_calloc(PL_BUCKETS, 1);
    for (size_t i = 0; i < n; i++) {
      uint32_t b = bucket[i] % PL_BUCKETS;
      moved[b] = 1;
      pl__set(m, b, shard[i] + 1);
    }
    for (uint32_t b = 0; b < PL_BUCKETS; b++)
      if (!moved[b])
        pl__set(m, b, 0);
    pl_free(moved);
    atomic_store_explicit(&m->epoch, epoch, memory_order_release);
    taken = 1;
  }
  pthread_mutex_unlock(&m->mu);
  return taken;
}

int pl_shardmap_changed(pl_shardmap *m, uint64_t bits[PL_SHARDMAP_WORDS]) {
  uint64_t any = 0;
  for (uint32_t w = 0; w < PL_SHARDMAP_WORDS; w++)
    any |= bits[w] = m ? atomic_exchange(&m->changed[w], 0) : 0;
  return any != 0;
}
