/* pl_receipts: watermarks, which events an Ack and a MarkRead make and for
 * whom, unread counts, live or queued events (protocol.md 11.4), without a
 * store. */
#include "rules/pl_receipts.h"
#include "testlib.h"

static void test_watermarks_only_move_forward(void) {
  uint64_t mark = 0;
  CHECK(pl_receipts_advance(&mark, 5));
  CHECK_EQ_U(mark, 5);
  CHECK(!pl_receipts_advance(&mark, 5)); /* a second device acking the same: nothing */
  CHECK(!pl_receipts_advance(&mark, 3)); /* a late, lower one: nothing */
  CHECK_EQ_U(mark, 5);
  CHECK(pl_receipts_advance(&mark, 6));
  CHECK_EQ_U(mark, 6);
}

static void test_mark_read_is_clamped_to_the_last_seq(void) {
  CHECK_EQ_U(pl_receipts_read_upto(100, 7), 7);
  CHECK_EQ_U(pl_receipts_read_upto(4, 7), 4);
  CHECK_EQ_U(pl_receipts_read_upto(UINT64_MAX, 0), 0);
}

static void test_unread_count(void) {
  CHECK_EQ_U(pl_receipts_unread(10, 4), 6);
  CHECK_EQ_U(pl_receipts_unread(10, 10), 0);
  CHECK_EQ_U(pl_receipts_unread(3, 5), 0); /* never negative */
}

static void test_delivered_receipts_ignore_the_receipts_setting(void) {
  CHECK(pl_receipts_delivered_to_sender(0));
  CHECK(!pl_receipts_delivered_to_sender(1)); /* the acking user blocked the sender */
}

static void test_read_receipts_need_both_sides_on(void) {
  CHECK(pl_receipts_read_to_peer(0, 1, 1, 0));
  CHECK(!pl_receipts_read_to_peer(0, 0, 1, 0)); /* mine off: none sent */
  CHECK(!pl_receipts_read_to_peer(0, 1, 0, 0)); /* theirs off: they get none either */
  CHECK(!pl_receipts_read_to_peer(0, 1, 1, 1)); /* I blocked them */
  CHECK(!pl_receipts_read_to_peer(1, 1, 1, 0)); /* a note to self: the ReadSync is enough */
}

static void test_unread_get_shows_the_peer_marks_it_may(void) {
  uint64_t d, r;
  pl_receipts_peer_marks(9, 7, 1, 1, 0, &d, &r);
  CHECK_EQ_U(d, 9);
  CHECK_EQ_U(r, 7);
  pl_receipts_peer_marks(9, 7, 0, 1, 0, &d, &r); /* my receipts off: no read mark, delivered still */
  CHECK_EQ_U(d, 9);
  CHECK_EQ_U(r, 0);
  pl_receipts_peer_marks(9, 7, 1, 0, 0, &d, &r);
  CHECK_EQ_U(d, 9);
  CHECK_EQ_U(r, 0);
  pl_receipts_peer_marks(9, 7, 1, 1, 1, &d, &r); /* the peer blocked me: nothing */
  CHECK_EQ_U(d, 0);
  CHECK_EQ_U(r, 0);
}

static void test_events_replace_pending_ones_messages_never(void) {
  CHECK(pl_receipts_replaces_pending(PL_MSG_DELIVERED));
  CHECK(pl_receipts_replaces_pending(PL_MSG_READ));
  CHECK(pl_receipts_replaces_pending(PL_MSG_READ_SYNC));
  CHECK(!pl_receipts_replaces_pending(PL_MSG_MESSAGE));
}

static int tl_even_online(void *ud, uint64_t dev) {
  (*(int *)ud)++;
  return dev % 2 == 0;
}

static void test_online_devices_get_events_live(void) {
  uint64_t t[] = {1, 2, 3, 4, 6}, live[5];
  size_t n = 5;
  int asked = 0;
  size_t nlive = pl_receipts_split_live(t, &n, live, tl_even_online, &asked);
  CHECK_EQ_I(asked, 5);
  CHECK_EQ_U(nlive, 3);
  CHECK_EQ_U(live[0], 2);
  CHECK_EQ_U(live[1], 4);
  CHECK_EQ_U(live[2], 6);
  CHECK_EQ_U(n, 2); /* queued: the offline ones, in order */
  CHECK_EQ_U(t[0], 1);
  CHECK_EQ_U(t[1], 3);
  n = 2;
  CHECK_EQ_U(pl_receipts_split_live(t, &n, live, NULL, NULL), 0); /* no presence known: all queued */
  CHECK_EQ_U(n, 2);
}

int main(void) {
  RUN(test_watermarks_only_move_forward);
  RUN(test_mark_read_is_clamped_to_the_last_seq);
  RUN(test_unread_count);
  RUN(test_delivered_receipts_ignore_the_receipts_setting);
  RUN(test_read_receipts_need_both_sides_on);
  RUN(test_unread_get_shows_the_peer_marks_it_may);
  RUN(test_events_replace_pending_ones_messages_never);
  RUN(test_online_devices_get_events_live);
  return tl_summary();
}
