/* pl_quota: the media quota with reservations of unfinished uploads
 * (security finding 8: five unfinished uploads of 899,999 B each under a
 * 1,000,000 B quota). */
#include "rules/pl_quota.h"
#include "testlib.h"

static void test_unfinished_uploads_count_against_the_quota(void) {
  pl_quota q;
  pl_quota_init(&q, 1000000, 16);
  CHECK_EQ_I(pl_quota_reserve(&q, 1, 0, 899999), PL_OK);
  CHECK_EQ_I(pl_quota_reserve(&q, 1, 0, 899999), PL_ERR_QUOTA); /* the audit's second upload */
  CHECK_EQ_I(pl_quota_check(&q, 1, 0, 100002), PL_ERR_QUOTA);   /* a one-shot upload too */
  CHECK_EQ_I(pl_quota_check(&q, 1, 0, 100001), PL_OK);          /* exactly to the limit */
  CHECK_EQ_I(pl_quota_reserve(&q, 2, 0, 899999), PL_OK);        /* per user */
  pl_quota_release(&q, 1, 899999);
  CHECK_EQ_U(pl_quota_reserved(&q, 1).count, 0);
  CHECK_EQ_I(pl_quota_reserve(&q, 1, 0, 899999), PL_OK); /* free again once released */
  pl_quota_free(&q);
}

static void test_stored_and_reserved_add_up(void) {
  pl_quota q;
  pl_quota_init(&q, 1000, 0);
  CHECK_EQ_I(pl_quota_reserve(&q, 7, 600, 300), PL_OK);
  CHECK_EQ_I(pl_quota_check(&q, 7, 600, 100), PL_OK);
  CHECK_EQ_I(pl_quota_check(&q, 7, 600, 101), PL_ERR_QUOTA);
  CHECK_EQ_I(pl_quota_check(&q, 7, 2000, 0), PL_ERR_QUOTA);       /* over already (a lowered quota) */
  CHECK_EQ_I(pl_quota_check(&q, 7, 0, UINT64_MAX), PL_ERR_QUOTA); /* no overflow */
  pl_quota_free(&q);
}

static void test_no_limit(void) {
  pl_quota q;
  pl_quota_init(&q, 0, 0);
  for (int i = 0; i < 100; i++)
    CHECK_EQ_I(pl_quota_reserve(&q, 3, UINT64_MAX, UINT64_MAX / 200), PL_OK);
  CHECK_EQ_U(pl_quota_reserved(&q, 3).count, 100);
  CHECK_EQ_U(pl_quota_room(&q, 3, 0), 0);
  pl_quota_free(&q);
}

static void test_pending_cap(void) {
  pl_quota q;
  pl_quota_init(&q, 0, 2);
  CHECK_EQ_I(pl_quota_reserve(&q, 1, 0, 10), PL_OK);
  CHECK_EQ_I(pl_quota_reserve(&q, 1, 0, 10), PL_OK);
  CHECK_EQ_I(pl_quota_reserve(&q, 1, 0, 10), PL_ERR_RATE_LIMITED);
  pl_quota_add(&q, 1, 10); /* found on disk at start-up: counted, unchecked */
  CHECK_EQ_U(pl_quota_reserved(&q, 1).count, 3);
  CHECK_EQ_U(pl_quota_reserved(&q, 1).bytes, 30);
  pl_quota_release(&q, 1, 10);
  pl_quota_release(&q, 1, 10);
  CHECK_EQ_I(pl_quota_reserve(&q, 1, 0, 10), PL_OK);
  pl_quota_release(&q, 9, 10); /* an unknown user: nothing happens */
  pl_quota_free(&q);
}

static void test_room_leaves_out_the_uploads_own_reservation(void) {
  pl_quota q;
  pl_quota_init(&q, 1000, 0);
  CHECK_EQ_U(pl_quota_room(&q, 1, 0), 1000);
  CHECK_EQ_I(pl_quota_reserve(&q, 1, 0, 400), PL_OK);
  CHECK_EQ_I(pl_quota_reserve(&q, 1, 0, 500), PL_OK);
  CHECK_EQ_U(pl_quota_room(&q, 1, 0), 100);   /* a one-shot upload: both held */
  CHECK_EQ_U(pl_quota_room(&q, 1, 400), 500); /* finishing the 400: the 500 stays held */
  pl_quota_add(&q, 1, 5000);                  /* over the limit after a restart with a lower one */
  CHECK_EQ_U(pl_quota_room(&q, 1, 400), 1);   /* a limit still, that nothing fits */
  pl_quota_free(&q);
}

/* The rule the store checks again when it records an upload. */
static void test_fits(void) {
  CHECK(pl_quota_fits(0, UINT64_MAX, UINT64_MAX, UINT64_MAX)); /* no limit */
  CHECK(pl_quota_fits(1000, 600, 300, 100));                   /* exactly to the limit */
  CHECK(!pl_quota_fits(1000, 600, 300, 101));
  CHECK(!pl_quota_fits(1000, 1001, 0, 0)); /* over already */
  CHECK(!pl_quota_fits(1000, 0, 0, UINT64_MAX));
}

int main(void) {
  RUN(test_unfinished_uploads_count_against_the_quota);
  RUN(test_stored_and_reserved_add_up);
  RUN(test_no_limit);
  RUN(test_pending_cap);
  RUN(test_room_leaves_out_the_uploads_own_reservation);
  RUN(test_fits);
  return tl_summary();
}
