/* pl_signup: who may register (--registration) and when an invite code
 * admits one more, without a store. */
#include "rules/pl_signup.h"
#include "testlib.h"

static void test_modes(void) {
  CHECK_EQ_I(pl_signup_parse("open"), PL_SIGNUP_OPEN);
  CHECK_EQ_I(pl_signup_parse("invite"), PL_SIGNUP_INVITE);
  CHECK_EQ_I(pl_signup_parse("closed"), PL_SIGNUP_CLOSED);
  CHECK_EQ_I(pl_signup_parse("Open"), -1);
  CHECK_EQ_I(pl_signup_parse(""), -1);
  CHECK_EQ_I(pl_signup_parse(NULL), -1);
  CHECK(!strcmp(pl_signup_name(PL_SIGNUP_INVITE), "invite"));
}

static void test_admit(void) {
  CHECK_EQ_I(pl_signup_admit(PL_SIGNUP_OPEN, 0), PL_OK);
  CHECK_EQ_I(pl_signup_admit(PL_SIGNUP_OPEN, 1), PL_OK); /* a code on an open server: ignored */
  CHECK_EQ_I(pl_signup_admit(PL_SIGNUP_INVITE, 0), PL_ERR_INVITE_REQUIRED);
  CHECK_EQ_I(pl_signup_admit(PL_SIGNUP_INVITE, 1), PL_OK);
  CHECK_EQ_I(pl_signup_admit(PL_SIGNUP_CLOSED, 1), PL_ERR_REGISTRATION_CLOSED); /* even with a code */
}

static void test_invite_uses_and_expiry(void) {
  CHECK(pl_signup_invite_ok(1, 0, 1000));     /* one use left, never expires */
  CHECK(!pl_signup_invite_ok(0, 0, 1000));    /* used up */
  CHECK(pl_signup_invite_ok(5, 2000, 1999));  /* before its end */
  CHECK(!pl_signup_invite_ok(5, 2000, 2000)); /* at its end: gone */
}

static void test_code_shape(void) {
  CHECK(pl_signup_code_valid("team-2026-x"));
  CHECK(pl_signup_code_valid("ABCDEFGH"));
  CHECK(!pl_signup_code_valid("short"));
  CHECK(!pl_signup_code_valid("has space"));
  CHECK(!pl_signup_code_valid("semi;colon1"));
  CHECK(!pl_signup_code_valid(NULL));
}

int main(void) {
  RUN(test_modes);
  RUN(test_admit);
  RUN(test_invite_uses_and_expiry);
  RUN(test_code_shape);
  return tl_summary();
}
