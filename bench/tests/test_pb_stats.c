/* Unit test of parley-bench's accounting: the histogram's quantiles, and the
 * sender ledger that lost / duplicated counts come from. */
#include <stdio.h>
#include <stdlib.h>

#include "../pb_stats.h"

static int failures;

#define CHECK(cond)                                                     \
  do {                                                                  \
    if (!(cond)) {                                                      \
      fprintf(stderr, "%s:%d: CHECK(%s)\n", __FILE__, __LINE__, #cond); \
      failures++;                                                       \
    }                                                                   \
  } while (0)

static int near(uint64_t got, uint64_t want) {
  double d = (double)got - (double)want;
  return (d < 0 ? -d : d) <= (double)want * 0.01 + 1;
}

static void test_quantiles(void) {
  static pb_hist h;
  for (uint64_t v = 1; v <= 100000; v++)
    pb_hist_add(&h, v);
  CHECK(h.count == 100000 && h.min == 1 && h.max == 100000);
  CHECK(near(pb_hist_quantile(&h, 0.5), 50000));
  CHECK(near(pb_hist_quantile(&h, 0.99), 99000));
  CHECK(near(pb_hist_quantile(&h, 0.999), 99900));
  CHECK(pb_hist_quantile(&h, 1.0) == 100000);
}

static void test_small_values_exact(void) {
  static pb_hist h;
  for (uint64_t v = 0; v < 100; v++)
    pb_hist_add(&h, v);
  CHECK(pb_hist_quantile(&h, 0.5) == 49);
  CHECK(pb_hist_quantile(&h, 0.01) == 0);
}

static void test_merge(void) {
  static pb_hist a, b, all;
  for (uint64_t v = 1; v <= 5000; v++) {
    pb_hist_add(v % 2 ? &a : &b, v * 37);
    pb_hist_add(&all, v * 37);
  }
  pb_hist_merge(&a, &b);
  CHECK(a.count == all.count && a.min == all.min && a.max == all.max && a.sum == all.sum);
  CHECK(pb_hist_quantile(&a, 0.99) == pb_hist_quantile(&all, 0.99));
}

static void test_huge_value_clamped(void) {
  static pb_hist h;
  pb_hist_add(&h, UINT64_MAX / 2);
  CHECK(h.count == 1 && pb_hist_quantile(&h, 0.5) == h.max);
}

/* seq 1..10 sent; 1..8 acked, 9 refused, 10 unanswered. Received: 1..7 once,
 * 3 two more times, 10 once. So 8 is lost, 3 is duplicated twice, 10 was
 * received without an ack. */
static void test_ledger(void) {
  pb_track t = {0};
  pb_result r;
  pb_result_init(&r);
  for (uint64_t s = 1; s <= 10; s++)
    pb_track_mark(&t, s, PB_T_SENT);
  for (uint64_t s = 1; s <= 8; s++)
    pb_track_mark(&t, s, PB_T_ACKED);
  pb_track_mark(&t, 9, PB_T_REFUSED);
  for (uint64_t s = 1; s <= 7; s++)
    CHECK(pb_track_recv(&t, s) == 1);
  CHECK(pb_track_recv(&t, 3) == 2);
  CHECK(pb_track_recv(&t, 3) == 3);
  CHECK(pb_track_recv(&t, 10) == 1);
  CHECK(pb_track_has(&t, 8, PB_T_ACKED) && !pb_track_has(&t, 9, PB_T_ACKED) &&
        !pb_track_has(&t, 11, PB_T_SENT));
  pb_track_tally(&t, 10, &r);
  CHECK(r.lost == 1);
  CHECK(r.duplicated == 2);
  CHECK(r.unacked_received == 1);
  pb_track_free(&t);
}

static void test_ledger_grows_and_saturates(void) {
  pb_track t = {0};
  pb_result r;
  pb_result_init(&r);
  pb_track_mark(&t, 1000000, PB_T_SENT | PB_T_ACKED);
  for (int i = 0; i < 40; i++)
    pb_track_recv(&t, 1000000);
  CHECK(pb_track_recv(&t, 1000000) == 31);
  pb_track_tally(&t, 1000000, &r);
  CHECK(r.lost == 0 && r.duplicated == 30);
  pb_track_free(&t);
}

static void test_result_merge(void) {
  static pb_result a, b;
  a.t_go = 100, a.t_last_rx = 500, a.lost = 1, a.sent = 10;
  b.t_go = 50, b.t_last_rx = 400, b.lost = 2, b.sent = 5;
  b.failed = 1;
  snprintf(b.why, sizeof b.why, "boom");
  pb_result_merge(&a, &b);
  CHECK(a.t_go == 50 && a.t_last_rx == 500 && a.lost == 3 && a.sent == 15 && a.failed && a.why[0] == 'b');
}

int main(void) {
  test_quantiles();
  test_small_values_exact();
  test_merge();
  test_huge_value_clamped();
  test_ledger();
  test_ledger_grows_and_saturates();
  test_result_merge();
  if (failures)
    fprintf(stderr, "test_pb_stats: %d failed\n", failures);
  else
    printf("test_pb_stats: ok\n");
  return failures ? 1 : 0;
}
