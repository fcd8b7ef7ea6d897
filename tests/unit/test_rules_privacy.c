/* pl_privacy: blocks, contacts and the privacy settings (protocol.md
 * 11.5-11.7), without a store. */
#include "rules/pl_privacy.h"
#include "testlib.h"

static void test_blocks_are_one_way_lists(void) {
  uint64_t blocked[] = {7, 9};
  CHECK(pl_privacy_blocks(blocked, 2, 9));
  CHECK(!pl_privacy_blocks(blocked, 2, 8));
  CHECK(!pl_privacy_blocks(NULL, 0, 7)); /* nobody blocked */
}

static void test_who_may_write_to_whom(void) {
  CHECK_EQ_I(pl_privacy_peer(0, 1, 0, 1), PL_ERR_UNKNOWN_PEER);
  CHECK_EQ_I(pl_privacy_peer(0, 0, 0, 0), PL_ERR_UNKNOWN_PEER); /* the peer is named first */
  CHECK_EQ_I(pl_privacy_peer(1, 0, 0, 1), PL_ERR_INVALID_ARGUMENT);
  CHECK_EQ_I(pl_privacy_peer(1, 1, 1, 1), PL_OK);                   /* a note to self */
  CHECK_EQ_I(pl_privacy_peer(1, 1, 1, 0), PL_ERR_INVALID_ARGUMENT); /* blocking oneself */
  CHECK_EQ_I(pl_privacy_peer(1, 1, 0, 0), PL_OK);
  CHECK_EQ_I(pl_privacy_may_send(1), PL_ERR_BLOCKED);
  CHECK_EQ_I(pl_privacy_may_send(0), PL_OK);
}

static void test_typing_does_not_reach_a_blocker(void) {
  CHECK(!pl_privacy_sees_typing(1));
  CHECK(pl_privacy_sees_typing(0));
}

static void test_presence_needs_being_a_contact(void) {
  pl_privacy_view v = pl_privacy_view_of(0, 1, 0, PL_LAST_SEEN_CONTACTS);
  CHECK(v.visible && v.seen_visible);
  v = pl_privacy_view_of(0, 0, 0, PL_LAST_SEEN_CONTACTS);
  CHECK(!v.visible && !v.seen_visible);
  v = pl_privacy_view_of(0, 0, 0, PL_LAST_SEEN_EVERYONE); /* last seen, but not online status */
  CHECK(!v.visible && v.seen_visible);
  v = pl_privacy_view_of(0, 1, 0, PL_LAST_SEEN_NOBODY);
  CHECK(v.visible && !v.seen_visible);
}

static void test_a_blocked_user_sees_what_a_stranger_sees(void) {
  for (int ls = PL_LAST_SEEN_EVERYONE; ls <= PL_LAST_SEEN_NOBODY; ls++) {
    pl_privacy_view v = pl_privacy_view_of(0, 1, 1, ls);
    CHECK(!v.visible && !v.seen_visible);
  }
}

static void test_one_sees_oneself(void) {
  pl_privacy_view v = pl_privacy_view_of(1, 1, 0, PL_LAST_SEEN_NOBODY);
  CHECK(v.visible && v.seen_visible);
}

static void test_settings_defaults_and_changes(void) {
  pl_privacy_settings cur = PL_PRIVACY_DEFAULTS, next;
  unsigned changed;
  CHECK_EQ_I(cur.read_receipts, 1);
  CHECK_EQ_I(cur.last_seen, PL_LAST_SEEN_CONTACTS);
  CHECK_EQ_I(pl_privacy_group_add_shown(cur.group_add), PL_GROUP_ADD_EVERYONE);
  /* nothing asked: nothing changes */
  CHECK_EQ_I(pl_privacy_settings_apply(&cur, 0, 0, 0, &next, &changed), PL_OK);
  CHECK_EQ_U(changed, 0);
  /* receipts OFF (2), last seen NOBODY, group_add CONTACTS */
  CHECK_EQ_I(pl_privacy_settings_apply(&cur, 2, PL_LAST_SEEN_NOBODY, PL_GROUP_ADD_CONTACTS, &next, &changed),
             PL_OK);
  CHECK_EQ_U(changed, PL_PRIVACY_SET_RECEIPTS | PL_PRIVACY_SET_LAST_SEEN | PL_PRIVACY_SET_GROUP_ADD);
  CHECK_EQ_I(next.read_receipts, 0);
  CHECK_EQ_I(next.last_seen, PL_LAST_SEEN_NOBODY);
  CHECK_EQ_I(pl_privacy_group_add_shown(next.group_add), PL_GROUP_ADD_CONTACTS);
  /* receipts ON again (1) */
  cur = next;
  CHECK_EQ_I(pl_privacy_settings_apply(&cur, 1, 0, 0, &next, &changed), PL_OK);
  CHECK_EQ_U(changed, PL_PRIVACY_SET_RECEIPTS);
  CHECK_EQ_I(next.read_receipts, 1);
  CHECK_EQ_I(next.last_seen, PL_LAST_SEEN_NOBODY);
}

static void test_settings_validation(void) {
  pl_privacy_settings cur = PL_PRIVACY_DEFAULTS, next;
  unsigned changed = 99;
  /* a bad group_add refuses the whole request */
  CHECK_EQ_I(pl_privacy_settings_apply(&cur, 2, PL_LAST_SEEN_NOBODY, 4, &next, &changed),
             PL_ERR_INVALID_ARGUMENT);
  CHECK_EQ_U(changed, 0);
  CHECK_EQ_I(pl_privacy_settings_apply(&cur, 0, 0, -1, &next, &changed), PL_ERR_INVALID_ARGUMENT);
  /* out-of-range receipts and last seen are left as they are */
  CHECK_EQ_I(pl_privacy_settings_apply(&cur, 3, 4, 0, &next, &changed), PL_OK);
  CHECK_EQ_U(changed, 0);
  CHECK_EQ_I(next.read_receipts, cur.read_receipts);
  CHECK_EQ_I(next.last_seen, cur.last_seen);
}

int main(void) {
  RUN(test_blocks_are_one_way_lists);
  RUN(test_who_may_write_to_whom);
  RUN(test_typing_does_not_reach_a_blocker);
  RUN(test_presence_needs_being_a_contact);
  RUN(test_a_blocked_user_sees_what_a_stranger_sees);
  RUN(test_one_sees_oneself);
  RUN(test_settings_defaults_and_changes);
  RUN(test_settings_validation);
  return tl_summary();
}
