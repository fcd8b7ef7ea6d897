/* pl_acts: who may react, edit, delete and set the timer, the windows, and
 * what each kind of action may carry (protocol.md 11.9), without a store. */
#include "rules/pl_acts.h"
#include "testlib.h"

#define MIN_MS (60u * 1000u)

static const pl_acts_cfg cfg = {15 * MIN_MS, 60 * MIN_MS, 0};

static pl_err check(int kind, uint64_t target, const char *body, int self) {
  pl_act a = {kind, target, 0, 0, 0, NULL};
  return pl_acts_check(&a, (const uint8_t *)body, strlen(body), 0, self);
}

static void test_each_kind_carries_only_its_fields(void) {
  CHECK_EQ_I(check(PL_ACT_NONE, 0, "hi", 0), PL_OK);
  CHECK_EQ_I(check(PL_ACT_NONE, 3, "hi", 0), PL_ERR_INVALID_ARGUMENT); /* a target on a plain message */
  CHECK_EQ_I(check(PL_ACT_REACTION, 3, "\xf0\x9f\x91\x8d", 0), PL_OK);
  CHECK_EQ_I(check(PL_ACT_REACTION, 3, "", 0), PL_OK); /* removes mine */
  CHECK_EQ_I(check(PL_ACT_REACTION, 3, "two words", 0), PL_ERR_INVALID_ARGUMENT);
  CHECK_EQ_I(check(PL_ACT_REACTION, 0, "x", 0), PL_ERR_INVALID_ARGUMENT); /* no target */
  CHECK_EQ_I(check(PL_ACT_REACTION, 3, "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", 0), PL_ERR_INVALID_ARGUMENT);
  CHECK_EQ_I(check(PL_ACT_EDIT, 3, "new", 0), PL_OK);
  CHECK_EQ_I(check(PL_ACT_EDIT, 3, "", 0), PL_ERR_INVALID_ARGUMENT); /* an empty edit: delete instead */
  CHECK_EQ_I(check(PL_ACT_DELETE, 3, "", 0), PL_OK);
  CHECK_EQ_I(check(PL_ACT_DELETE, 3, "x", 0), PL_ERR_INVALID_ARGUMENT);
  CHECK_EQ_I(check(9, 3, "", 0), PL_ERR_INVALID_ARGUMENT);
  pl_act a = {PL_ACT_EDIT, 3, 2, 0, 0, NULL};
  CHECK_EQ_I(pl_acts_check(&a, (const uint8_t *)"x", 1, 0, 0),
             PL_ERR_INVALID_ARGUMENT); /* reply on an edit */
  a = (pl_act){PL_ACT_REACTION, 3, 0, 0, 0, NULL};
  CHECK_EQ_I(pl_acts_check(&a, (const uint8_t *)"x", 1, 1, 0), PL_ERR_INVALID_ARGUMENT); /* with media */
  a = (pl_act){PL_ACT_NONE, 0, 7, 1, 0, NULL};
  CHECK_EQ_I(pl_acts_check(&a, (const uint8_t *)"x", 1, 1, 0), PL_OK); /* a forwarded photo replying */
}

static void test_timer_takes_the_four_settings_only(void) {
  uint32_t ok[] = {0, 86400, 604800, 7776000}, bad[] = {1, 3600, 86401};
  for (size_t i = 0; i < 4; i++) {
    pl_act a = {PL_ACT_TIMER, 0, 0, 0, ok[i], NULL};
    CHECK_EQ_I(pl_acts_check(&a, NULL, 0, 0, 0), PL_OK);
  }
  for (size_t i = 0; i < 3; i++) {
    pl_act a = {PL_ACT_TIMER, 0, 0, 0, bad[i], NULL};
    CHECK_EQ_I(pl_acts_check(&a, NULL, 0, 0, 0), PL_ERR_INVALID_ARGUMENT);
  }
  CHECK_EQ_I(pl_acts_may_set_timer(0, 0), PL_OK);            /* either side of a 1:1 */
  CHECK_EQ_I(pl_acts_may_set_timer(1, 0), PL_ERR_FORBIDDEN); /* a group member */
  CHECK_EQ_I(pl_acts_may_set_timer(1, 1), PL_OK);            /* a group admin */
  CHECK_EQ_U(pl_acts_timer_ms(&cfg, 86400), 86400000u);
  CHECK_EQ_U(pl_acts_timer_ms(&cfg, 0), 0);
  pl_acts_cfg t = {1, 1, 2000};
  CHECK_EQ_U(pl_acts_timer_ms(&t, 7776000), 2000); /* the test setting */
  CHECK_EQ_U(pl_acts_timer_ms(&t, 0), 0);          /* off stays off */
}

static void test_delete_for_me_goes_to_oneself_only(void) {
  pl_act a = {PL_ACT_DELETE_FOR_ME, 4, 0, 0, 0, "dm:a:b"};
  CHECK_EQ_I(pl_acts_check(&a, NULL, 0, 0, 1), PL_OK);
  CHECK_EQ_I(pl_acts_check(&a, NULL, 0, 0, 0), PL_ERR_INVALID_ARGUMENT);
  a.target_conv = "";
  CHECK_EQ_I(pl_acts_check(&a, NULL, 0, 0, 1), PL_ERR_INVALID_ARGUMENT);
}

static void test_only_the_sender_edits_within_the_window(void) {
  pl_act ed = {PL_ACT_EDIT, 3, 0, 0, 0, NULL};
  pl_act_target t = {1, 7, 1000000, 0};
  CHECK_EQ_I(pl_acts_may(&cfg, &ed, &t, 7, 0, 1000000 + 15 * MIN_MS), PL_OK);
  CHECK_EQ_I(pl_acts_may(&cfg, &ed, &t, 7, 0, 1000000 + 15 * MIN_MS + 1), PL_ERR_WINDOW_CLOSED);
  CHECK_EQ_I(pl_acts_may(&cfg, &ed, &t, 8, 1, 1000000), PL_ERR_NOT_AUTHOR); /* not even an admin */
  t.deleted = 1;
  CHECK_EQ_I(pl_acts_may(&cfg, &ed, &t, 7, 0, 1000000), PL_ERR_NO_TARGET);
  t = (pl_act_target){0, 0, 0, 0};
  CHECK_EQ_I(pl_acts_may(&cfg, &ed, &t, 7, 0, 1000000), PL_ERR_NO_TARGET);
}

static void test_deletes_by_the_sender_or_a_group_admin(void) {
  pl_act del = {PL_ACT_DELETE, 3, 0, 0, 0, NULL};
  pl_act_target t = {1, 7, 1000000, 0};
  CHECK_EQ_I(pl_acts_may(&cfg, &del, &t, 7, 0, 1000000 + 60 * MIN_MS), PL_OK);
  CHECK_EQ_I(pl_acts_may(&cfg, &del, &t, 7, 0, 1000000 + 60 * MIN_MS + 1), PL_ERR_WINDOW_CLOSED);
  CHECK_EQ_I(pl_acts_may(&cfg, &del, &t, 8, 0, 1000000), PL_ERR_NOT_AUTHOR);
  CHECK_EQ_I(pl_acts_may(&cfg, &del, &t, 8, 1, 1000000), PL_OK);
  t.deleted = 1; /* twice: the second finds nothing */
  CHECK_EQ_I(pl_acts_may(&cfg, &del, &t, 7, 0, 1000000), PL_ERR_NO_TARGET);
}

static void test_anyone_reacts_while_the_target_lives(void) {
  pl_act r = {PL_ACT_REACTION, 3, 0, 0, 0, NULL};
  pl_act_target t = {1, 7, 1000000, 0};
  CHECK_EQ_I(pl_acts_may(&cfg, &r, &t, 8, 0, 1000000 + 1000 * MIN_MS), PL_OK);
  t.deleted = 1;
  CHECK_EQ_I(pl_acts_may(&cfg, &r, &t, 8, 0, 1000000), PL_ERR_NO_TARGET);
  CHECK_EQ_I(pl_acts_may_reply(5, 4), PL_ERR_NO_TARGET);
  CHECK_EQ_I(pl_acts_may_reply(4, 4), PL_OK);
  CHECK_EQ_I(pl_acts_may_reply(0, 0), PL_OK);
}

static void test_disappearing_messages_expire_at_the_sooner_time(void) {
  CHECK_EQ_U(pl_acts_vanish_at(0, 5000), 0);
  CHECK_EQ_U(pl_acts_vanish_at(1000, 5000), 6000);
  CHECK_EQ_U(pl_acts_expires(9000, 6000), 6000);
  CHECK_EQ_U(pl_acts_expires(5500, 6000), 5500);
  CHECK_EQ_U(pl_acts_expires(9000, 0), 9000);
}

int main(void) {
  RUN(test_each_kind_carries_only_its_fields);
  RUN(test_timer_takes_the_four_settings_only);
  RUN(test_delete_for_me_goes_to_oneself_only);
  RUN(test_only_the_sender_edits_within_the_window);
  RUN(test_deletes_by_the_sender_or_a_group_admin);
  RUN(test_anyone_reacts_while_the_target_lives);
  RUN(test_disappearing_messages_expire_at_the_sooner_time);
  return tl_summary();
}
