#include "pl_rules.h"

#include <pthread.h>

#include "../common/pl_map.h"
#include "../common/pl_mem.h"

static uint64_t pl__full(const pl_rules_rate *r) { return (uint64_t)(r->burst ? r->burst : 1) * 1000u; }

/* b's tokens at now_ms (a bucket never used is full); no overflow. */
static uint64_t pl__refilled(const pl_rules_rate *r, const pl_rules_bucket *b, uint64_t now_ms) {
  uint64_t full = pl__full(r);
  if (!b->at_ms)
    return full;
  uint64_t elapsed = now_ms > b->at_ms ? now_ms - b->at_ms : 0;
  if (elapsed > (full - b->milli_tokens) / r->rate) /* rate tokens/s = rate milli-tokens/ms */
    return full;
  return b->milli_tokens + elapsed * r->rate;
}

uint32_t pl_rules_take(const pl_rules_rate *r, pl_rules_bucket *b, uint64_t now_ms) {
  if (!r->rate)
    return 0;
  b->milli_tokens = pl__refilled(r, b, now_ms);
  b->at_ms = now_ms > b->at_ms ? now_ms : (b->at_ms ? b->at_ms : 1);
  if (b->milli_tokens >= 1000u) {
    b->milli_tokens -= 1000u;
    return 0;
  }
  uint64_t wait = (1000u - b->milli_tokens + r->rate - 1) / r->rate; /* ms to the next token */
  return (uint32_t)(wait ? wait : 1);
}

struct pl_rules_limiter {
  pthread_mutex_t mu;
  pl_rules_rate rate;
  pl_map buckets; /* uid -> pl_rules_bucket */
  size_t gc_at;   /* sweep full buckets when this many users have one */
};

pl_rules_limiter *pl_rules_limiter_new(const pl_rules_rate *r) {
  pl_rules_limiter *l = pl_calloc(1, sizeof *l);
  pthread_mutex_init(&l->mu, NULL);
  l->rate = *r;
  l->gc_at = 1024;
  return l;
}

static void pl__buckets_free(pl_map *m) {
  uint64_t k;
  void *v;
  for (size_t it = 0; pl_map_next(m, &it, &k, &v);)
    pl_free(v);
  pl_map_free(m);
}

void pl_rules_limiter_free(pl_rules_limiter *l) {
  if (!l)
    return;
  pl__buckets_free(&l->buckets);
  pthread_mutex_destroy(&l->mu);
  pl_free(l);
}

/* A bucket that would be full now is the same as none: drop those, so the
 * map holds only users who sent a lot lately (mu held). */
static void pl__gc(pl_rules_limiter *l, uint64_t now_ms) {
  pl_map keep = {0};
  uint64_t k;
  void *v;
  for (size_t it = 0; pl_map_next(&l->buckets, &it, &k, &v);) {
    pl_rules_bucket *b = v;
    if (pl__refilled(&l->rate, b, now_ms) >= pl__full(&l->rate))
      pl_free(b);
    else
      pl_map_put(&keep, k, b);
  }
  pl_map_free(&l->buckets);
  l->buckets = keep;
  l->gc_at = 2 * (keep.len > 512 ? keep.len : 512);
}

uint32_t pl_rules_limiter_take(pl_rules_limiter *l, uint64_t uid, uint64_t now_ms) {
  if (!l || !l->rate.rate || !uid)
    return 0;
  pthread_mutex_lock(&l->mu);
  pl_rules_bucket *b = pl_map_get(&l->buckets, uid);
  if (!b) {
    if (l->buckets.len >= l->gc_at)
      pl__gc(l, now_ms);
    b = pl_calloc(1, sizeof *b);
    pl_map_put(&l->buckets, uid, b);
  }
  uint32_t wait = pl_rules_take(&l->rate, b, now_ms);
  pthread_mutex_unlock(&l->mu);
  return wait;
}

uint64_t pl_rules_sender_cap(const pl_rules_queue *q) {
  if (!q->max_queue || !q->share_pct || q->share_pct >= 100)
    return 0;
  uint64_t cap = (uint64_t)q->max_queue * q->share_pct / 100u;
  return cap ? cap : 1;
}

pl_err pl_rules_queue_admit(const pl_rules_queue *q, uint64_t queued, int own, pl_rules_count_fn count,
                            void *arg) {
  if (q->max_queue && queued >= q->max_queue)
    return PL_ERR_QUEUE_FULL;
  uint64_t cap = pl_rules_sender_cap(q), mine = 0;
  if (own || !cap || queued < cap) /* below the share: no need to count */
    return PL_OK;
  pl_err e = count(arg, &mine);
  if (e != PL_OK)
    return e;
  return mine >= cap ? PL_ERR_QUEUE_FULL : PL_OK;
}

pl_err pl_rules_may_add(int setting, int contact) {
  if (setting == PL_GROUP_ADD_NOBODY || (setting == PL_GROUP_ADD_CONTACTS && !contact))
    return PL_ERR_NOT_ALLOWED;
  return PL_OK;
}
