/* pl_rules without a store: the send-rate bucket, a sender's share of a
 * device queue (counted only when it matters), who may add whom to a group. */
#include "../../src/core/pl_rules.h"
#include "testlib.h"

static void test_bucket_burst_then_rate(void) {
  pl_rules_rate r = {.rate = 10, .burst = 5};
  pl_rules_bucket b = {0};
  uint64_t t = 1000000;
  for (int i = 0; i < 5; i++)
    CHECK_EQ_U(pl_rules_take(&r, &b, t), 0); /* a full burst */
  uint32_t wait = pl_rules_take(&r, &b, t);
  CHECK_EQ_U(wait, 100); /* one token every 100 ms */
  CHECK(pl_rules_take(&r, &b, t + 50) > 0);
  CHECK_EQ_U(pl_rules_take(&r, &b, t + 100), 0);
  CHECK(pl_rules_take(&r, &b, t + 100) > 0);
  CHECK_EQ_U(pl_rules_take(&r, &b, t + 100000), 0); /* long idle: full again, not more */
  for (int i = 0; i < 4; i++)
    CHECK_EQ_U(pl_rules_take(&r, &b, t + 100000), 0);
  CHECK(pl_rules_take(&r, &b, t + 100000) > 0);
  pl_rules_rate off = {0};
  for (int i = 0; i < 1000; i++)
    CHECK_EQ_U(pl_rules_take(&off, &b, t), 0);
  pl_rules_rate huge = {.rate = 4000000000u, .burst = 4000000000u};
  pl_rules_bucket h = {.at_ms = 1, .milli_tokens = 0};
  CHECK_EQ_U(pl_rules_take(&huge, &h, UINT64_MAX / 2), 0); /* no overflow */
}

static void test_limiter_per_user(void) {
  pl_rules_rate r = {.rate = 1, .burst = 2};
  pl_rules_limiter *l = pl_rules_limiter_new(&r);
  CHECK_EQ_U(pl_rules_limiter_take(l, 7, 5000), 0);
  CHECK_EQ_U(pl_rules_limiter_take(l, 7, 5000), 0);
  CHECK_EQ_U(pl_rules_limiter_take(l, 7, 5000), 1000);
  CHECK_EQ_U(pl_rules_limiter_take(l, 8, 5000), 0); /* another user: their own bucket */
  for (uint64_t u = 100; u < 5000; u++)             /* many users: idle buckets are swept */
    CHECK_EQ_U(pl_rules_limiter_take(l, u, 5000 + u * 10000), 0);
  CHECK_EQ_U(pl_rules_limiter_take(l, 7, 5000 + 100 * 10000), 0);
  pl_rules_limiter_free(l);
}

static uint64_t counted, calls;
static pl_err count(void *arg, uint64_t *mine) {
  (void)arg;
  calls++;
  *mine = counted;
  return PL_OK;
}

static void test_queue_share(void) {
  pl_rules_queue q = {.max_queue = 200, .share_pct = 50};
  CHECK_EQ_U(pl_rules_sender_cap(&q), 100);
  calls = 0;
  CHECK_EQ_I(pl_rules_queue_admit(&q, 99, 0, count, NULL), PL_OK);
  CHECK_EQ_U(calls, 0); /* below the share: no count */
  counted = 99;
  CHECK_EQ_I(pl_rules_queue_admit(&q, 150, 0, count, NULL), PL_OK);
  counted = 100;
  CHECK_EQ_I(pl_rules_queue_admit(&q, 150, 0, count, NULL), PL_ERR_QUEUE_FULL);
  CHECK_EQ_I(pl_rules_queue_admit(&q, 150, 1, count, NULL), PL_OK); /* own devices: total only */
  CHECK_EQ_I(pl_rules_queue_admit(&q, 200, 1, count, NULL), PL_ERR_QUEUE_FULL);
  counted = 0;
  CHECK_EQ_I(pl_rules_queue_admit(&q, 200, 0, count, NULL), PL_ERR_QUEUE_FULL);
  pl_rules_queue whole = {.max_queue = 200, .share_pct = 100};
  CHECK_EQ_U(pl_rules_sender_cap(&whole), 0);
  counted = 199;
  CHECK_EQ_I(pl_rules_queue_admit(&whole, 199, 0, count, NULL), PL_OK);
  pl_rules_queue tiny = {.max_queue = 1, .share_pct = 10};
  CHECK_EQ_U(pl_rules_sender_cap(&tiny), 1);
  pl_rules_queue none = {0};
  CHECK_EQ_I(pl_rules_queue_admit(&none, 1u << 30, 0, count, NULL), PL_OK);
}

static void test_may_add(void) {
  CHECK_EQ_I(pl_rules_may_add(0, 0), PL_OK);
  CHECK_EQ_I(pl_rules_may_add(PL_GROUP_ADD_EVERYONE, 0), PL_OK);
  CHECK_EQ_I(pl_rules_may_add(PL_GROUP_ADD_CONTACTS, 1), PL_OK);
  CHECK_EQ_I(pl_rules_may_add(PL_GROUP_ADD_CONTACTS, 0), PL_ERR_NOT_ALLOWED);
  CHECK_EQ_I(pl_rules_may_add(PL_GROUP_ADD_NOBODY, 1), PL_ERR_NOT_ALLOWED);
}

int main(void) {
  RUN(test_bucket_burst_then_rate);
  RUN(test_limiter_per_user);
  RUN(test_queue_share);
  RUN(test_may_add);
  return tl_summary();
}
