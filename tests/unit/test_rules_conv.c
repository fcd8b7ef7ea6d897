/* pl_conv and pl_visibility: conversation names, and who may see an upload
 * (protocol.md 11.1, 13.3, 13.5), without a store. */
#include "common/pl_mem.h"
#include "rules/pl_conv.h"
#include "rules/pl_visibility.h"
#include "store/pl_store.h"
#include "testlib.h"

static void test_a_dm_has_one_name_for_both_sides(void) {
  char *a = pl_conv_dm("bob", "alice"), *b = pl_conv_dm("alice", "bob"), *self = pl_conv_dm("al", "al");
  CHECK_STR(a, "dm:alice:bob");
  CHECK_STR(b, "dm:alice:bob");
  CHECK_STR(self, "dm:al:al");
  pl_free(a);
  pl_free(b);
  pl_free(self);
}

static void test_who_is_in_a_dm(void) {
  CHECK(pl_conv_dm_has("dm:alice:bob", "alice"));
  CHECK(pl_conv_dm_has("dm:alice:bob", "bob"));
  CHECK(!pl_conv_dm_has("dm:alice:bob", "ali")); /* a prefix is not the name */
  CHECK(!pl_conv_dm_has("dm:alice:bob", "bo"));
  CHECK(!pl_conv_dm_has("dm:alice:bob", "carol"));
  CHECK(!pl_conv_dm_has("g:12", "alice"));
  CHECK(!pl_conv_dm_has("dm:alice", "alice")); /* malformed */
}

static void test_group_conversations(void) {
  CHECK_EQ_U(pl_conv_gid("g:12"), 12);
  CHECK_EQ_U(pl_conv_gid("dm:a:b"), 0);
  CHECK_EQ_U(pl_conv_gid("g:x"), 0);
}

static void test_a_dm_goes_to_the_peer_and_my_other_devices(void) {
  uint64_t peer[] = {10, 11}, mine[] = {20, 21, 22}, out[5];
  size_t n = pl_conv_dm_targets(peer, 2, mine, 3, 0, 21, out);
  CHECK_EQ_U(n, 4);
  CHECK_EQ_U(out[0], 10);
  CHECK_EQ_U(out[1], 11);
  CHECK_EQ_U(out[2], 20);
  CHECK_EQ_U(out[3], 22);
  n = pl_conv_dm_targets(mine, 3, mine, 3, 1, 20, out); /* a note to self: each device once */
  CHECK_EQ_U(n, 2);
  CHECK_EQ_U(out[0], 21);
  CHECK_EQ_U(out[1], 22);
  CHECK_EQ_U(pl_conv_dm_targets(mine, 3, mine, 1, 1, 20, out), 0); /* no other device: nowhere */
}

static void test_media_is_seen_by_its_owner_and_its_conversations(void) {
  CHECK(pl_visibility_media(5, 5, 0)); /* the uploader */
  CHECK(pl_visibility_media(5, 6, 1)); /* in a conversation it went to */
  CHECK(!pl_visibility_media(5, 6, 0));
  CHECK(pl_visibility_in_conv("dm:alice:bob", "bob", PL_ROLE_NONE));
  CHECK(!pl_visibility_in_conv("dm:alice:bob", "carol", PL_ROLE_MEMBER)); /* a role means nothing in a dm */
  CHECK(pl_visibility_in_conv("g:3", "carol", PL_ROLE_MEMBER));
  CHECK(!pl_visibility_in_conv("g:3", "carol", PL_ROLE_NONE)); /* left the group: no longer */
}

static void test_what_a_refusal_tells(void) {
  CHECK_EQ_I(pl_visibility_download(0, 0), PL_ERR_NOT_FOUND);
  CHECK_EQ_I(pl_visibility_download(1, 0), PL_ERR_FORBIDDEN);
  CHECK_EQ_I(pl_visibility_download(1, 1), PL_OK);
  /* a sender cannot tell someone else's upload from none */
  CHECK_EQ_I(pl_visibility_attach(0, 0), PL_ERR_UNKNOWN_MEDIA);
  CHECK_EQ_I(pl_visibility_attach(1, 0), PL_ERR_UNKNOWN_MEDIA);
  CHECK_EQ_I(pl_visibility_attach(1, 1), PL_OK);
}

int main(void) {
  RUN(test_a_dm_has_one_name_for_both_sides);
  RUN(test_who_is_in_a_dm);
  RUN(test_group_conversations);
  RUN(test_a_dm_goes_to_the_peer_and_my_other_devices);
  RUN(test_media_is_seen_by_its_owner_and_its_conversations);
  RUN(test_what_a_refusal_tells);
  return tl_summary();
}
