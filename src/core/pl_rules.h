/* pl_rules: the product's rules on who may take how much of whom — send
 * rates, shares of a device's queue, who may add a user to a group
 * (docs/protocol.md 10.7, 11.8). Decisions only: the store loads what they
 * need (counts, settings) and asks through the hooks the core gives it
 * (pl_store_rules); nothing here knows a backend. Pure functions, but the
 * rate limiter, which keeps a bucket per user under its own lock. */
#ifndef PL_RULES_H
#define PL_RULES_H

#include <stdint.h>

#include "../common/pl_err.h"
#include "../store/pl_store.h" /* PL_GROUP_ADD_* */

/* ---- send rate: a token bucket per user ---- */

typedef struct pl_rules_bucket {
  uint64_t at_ms;        /* when tokens was last brought up to date */
  uint64_t milli_tokens; /* tokens x 1000 */
} pl_rules_bucket;

/* rate tokens a second, at most burst of them; rate 0: no limit. */
typedef struct pl_rules_rate {
  uint32_t rate, burst;
} pl_rules_rate;

/* Takes one token from b (a new bucket, all zeros, is full) at now_ms.
 * Returns 0 if it was there, else the ms until one is (nothing taken). */
uint32_t pl_rules_take(const pl_rules_rate *r, pl_rules_bucket *b, uint64_t now_ms);

/* Buckets of many users behind one lock (any thread). */
typedef struct pl_rules_limiter pl_rules_limiter;
pl_rules_limiter *pl_rules_limiter_new(const pl_rules_rate *r);
void pl_rules_limiter_free(pl_rules_limiter *l);
/* pl_rules_take on uid's bucket. */
uint32_t pl_rules_limiter_take(pl_rules_limiter *l, uint64_t uid, uint64_t now_ms);

/* ---- a device's queue: the share one sender may hold ---- */

/* max_queue entries a device queue may hold (0: no limit); one sender (a
 * user in 1:1, or a group's history) may hold share_pct percent of it. */
typedef struct pl_rules_queue {
  uint32_t max_queue, share_pct;
} pl_rules_queue;

/* Entries of one queue that one sender may hold (0: no limit). */
uint64_t pl_rules_sender_cap(const pl_rules_queue *q);

/* How many entries of the queue are from the sender (the store's count). */
typedef pl_err (*pl_rules_count_fn)(void *arg, uint64_t *mine);

/* May one more entry from a sender join a queue holding queued entries?
 * own: the queue is a device of the sender's own (only the total counts).
 * count is called only when the answer depends on it. PL_OK,
 * PL_ERR_QUEUE_FULL, or count's error. */
pl_err pl_rules_queue_admit(const pl_rules_queue *q, uint64_t queued, int own, pl_rules_count_fn count,
                            void *arg);

/* ---- who may add me to a group (Settings.group_add) ---- */

/* May a user add someone whose setting is setting (0: never set, as
 * EVERYONE) and who has the adder in their contacts (contact)? PL_OK or
 * PL_ERR_NOT_ALLOWED. */
pl_err pl_rules_may_add(int setting, int contact);

#endif
