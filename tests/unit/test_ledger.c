/* The fault tests' ledger (tests/ledger.h) must be able to fail: each
 * history here breaks one promise, and lg_check must name it. */
#include <string.h>

#include "ledger.h"
#include "testlib.h"

#define CONV "dm:r:s"

/* s sent 1..3, acked at seqs 1..3; r expects them. */
static lg_ledger *three_acked(void) {
  lg_ledger *lg = lg_new();
  lg_expect(lg, "r/phone", CONV, "r");
  const char *ids[] = {"a", "b", "c"};
  for (int i = 0; i < 3; i++) {
    lg_tried(lg, "s", ids[i]);
    lg_acked(lg, "s", ids[i], CONV, (uint64_t)i + 1);
  }
  return lg;
}

static size_t check(lg_ledger *lg, const char *want) {
  char report[1024];
  size_t n = lg_check(lg, report, sizeof report);
  if (want)
    CHECK(strstr(report, want) != NULL);
  lg_free(lg);
  return n;
}

static void test_clean_history_passes(void) {
  lg_ledger *lg = three_acked();
  lg_shown(lg, "r/phone", CONV, 1, "s", "a", 10);
  lg_shown(lg, "r/phone", CONV, 2, "s", "b", 11);
  lg_shown(lg, "r/phone", CONV, 1, "s", "a", 10); /* redelivered after a reconnect: filtered */
  CHECK_EQ_U(lg_missing(lg), 1);
  lg_shown(lg, "r/phone", CONV, 3, "s", "c", 12);
  CHECK_EQ_U(lg_missing(lg), 0);
  CHECK_EQ_U(lg_redelivered_count(lg), 1);
  CHECK_EQ_U(check(lg, NULL), 0);
}

static void test_acked_lost(void) {
  lg_ledger *lg = three_acked();
  lg_shown(lg, "r/phone", CONV, 1, "s", "a", 10);
  lg_shown(lg, "r/phone", CONV, 3, "s", "c", 12);
  CHECK_EQ_U(lg_missing(lg), 1);
  CHECK(check(lg, "acked lost: s's b") > 0);
}

static void test_shown_twice_under_new_qid(void) {
  lg_ledger *lg = three_acked();
  lg_shown(lg, "r/phone", CONV, 1, "s", "a", 10);
  lg_shown(lg, "r/phone", CONV, 2, "s", "b", 11);
  lg_shown(lg, "r/phone", CONV, 3, "s", "c", 12);
  lg_shown(lg, "r/phone", CONV, 2, "s", "b", 13);
  CHECK(check(lg, "shown twice on r/phone") > 0);
}

static void test_qid_names_two_messages(void) {
  lg_ledger *lg = three_acked();
  lg_shown(lg, "r/phone", CONV, 1, "s", "a", 10);
  lg_shown(lg, "r/phone", CONV, 2, "s", "b", 10);
  CHECK(check(lg, "qid 10 on r/phone") > 0);
}

static void test_out_of_order(void) {
  lg_ledger *lg = three_acked();
  lg_shown(lg, "r/phone", CONV, 2, "s", "b", 11);
  lg_shown(lg, "r/phone", CONV, 1, "s", "a", 12);
  CHECK(check(lg, "out of order") > 0);
}

static void test_gap_in_seqs(void) {
  lg_ledger *lg = lg_new();
  lg_acked(lg, "s", "a", CONV, 1);
  lg_acked(lg, "s", "b", CONV, 3);
  CHECK(check(lg, "gap: seq 3 follows 1") > 0);
}

static void test_retried_id_stored_twice(void) {
  lg_ledger *lg = lg_new();
  lg_tried(lg, "s", "a");
  lg_tried(lg, "s", "a");
  lg_acked(lg, "s", "a", CONV, 1);
  lg_acked(lg, "s", "a", CONV, 2);
  CHECK_EQ_U(lg_retried_count(lg), 1);
  CHECK(check(lg, "stored twice") > 0);
}

static void test_seq_of_two_messages(void) {
  lg_ledger *lg = lg_new();
  lg_acked(lg, "s", "a", CONV, 1);
  lg_acked(lg, "s", "b", CONV, 1);
  CHECK(check(lg, "is two messages") > 0);
}

int main(void) {
  RUN(test_clean_history_passes);
  RUN(test_acked_lost);
  RUN(test_shown_twice_under_new_qid);
  RUN(test_qid_names_two_messages);
  RUN(test_out_of_order);
  RUN(test_gap_in_seqs);
  RUN(test_retried_id_stored_twice);
  RUN(test_seq_of_two_messages);
  return tl_summary();
}
