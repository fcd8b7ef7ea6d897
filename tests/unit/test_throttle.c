/* pl_throttle: lockouts, buckets, holds and the login rules, on an injected
 * clock (no sleeping). */
#include <sodium.h>
#include <stdio.h>

#include "core/pl_throttle.h"
#include "testlib.h"

static const pl_throttle_policy pol = {.free = 3, .base_ms = 1000, .max_ms = 8000};

static void test_lockout_grows_and_caps(void) {
  CHECK_EQ_U(pl_throttle_lockout(&pol, 3), 0);
  CHECK_EQ_U(pl_throttle_lockout(&pol, 4), 1000);
  CHECK_EQ_U(pl_throttle_lockout(&pol, 5), 2000);
  CHECK_EQ_U(pl_throttle_lockout(&pol, 6), 4000);
  CHECK_EQ_U(pl_throttle_lockout(&pol, 7), 8000);
  CHECK_EQ_U(pl_throttle_lockout(&pol, 8), 8000);
  CHECK_EQ_U(pl_throttle_lockout(&pol, 4000000000u), 8000);
}

static void test_fail_locks_then_window_ends(void) {
  pl_throttle *t = pl_throttle_new(64);
  uint64_t now = 1000;
  for (int i = 0; i < 3; i++) {
    CHECK_EQ_U(pl_throttle_check(t, "k", &pol, now), 0);
    CHECK_EQ_U(pl_throttle_fail(t, "k", &pol, now), 0);
  }
  CHECK_EQ_U(pl_throttle_fail(t, "k", &pol, now), 1000);
  CHECK_EQ_U(pl_throttle_check(t, "k", &pol, now + 400), 600);
  CHECK_EQ_U(pl_throttle_check(t, "other", &pol, now + 400), 0);
  CHECK_EQ_U(pl_throttle_check(t, "k", &pol, now + 1000), 0);
  CHECK_EQ_U(pl_throttle_fail(t, "k", &pol, now + 1000), 2000);
  /* refused attempts do not extend the lock */
  for (int i = 0; i < 100; i++)
    CHECK(pl_throttle_check(t, "k", &pol, now + 1500) > 0);
  CHECK_EQ_U(pl_throttle_check(t, "k", &pol, now + 3000), 0);
  /* no failure for max_ms: counted from zero again */
  CHECK_EQ_U(pl_throttle_check(t, "k", &pol, now + 1000 + 8000), 0);
  CHECK_EQ_U(pl_throttle_fail(t, "k", &pol, now + 1000 + 8000), 0);
  pl_throttle_free(t);
}

static void test_reset_clears(void) {
  pl_throttle *t = pl_throttle_new(64);
  for (int i = 0; i < 5; i++)
    pl_throttle_fail(t, "k", &pol, 10);
  CHECK(pl_throttle_check(t, "k", &pol, 10) > 0);
  pl_throttle_reset(t, "k");
  CHECK_EQ_U(pl_throttle_check(t, "k", &pol, 10), 0);
  pl_throttle_reset(t, "never-seen"); /* nothing to do, no crash */
  pl_throttle_free(t);
}

static void test_bucket(void) {
  pl_throttle *t = pl_throttle_new(64);
  for (int i = 0; i < 4; i++)
    CHECK_EQ_U(pl_throttle_take(t, "b", 2, 1000, 4, 0), 0);
  CHECK_EQ_U(pl_throttle_take(t, "b", 2, 1000, 4, 0), 500); /* 2 a second: one in 500 ms */
  CHECK_EQ_U(pl_throttle_take(t, "b", 2, 1000, 4, 250), 250);
  CHECK_EQ_U(pl_throttle_take(t, "b", 2, 1000, 4, 500), 0);
  CHECK(pl_throttle_take(t, "b", 2, 1000, 4, 500) > 0);
  CHECK_EQ_U(pl_throttle_take(t, "b", 0, 1000, 4, 500), 0); /* 0: unlimited */
  /* a long pause fills it to the burst, not beyond */
  for (int i = 0; i < 4; i++)
    CHECK_EQ_U(pl_throttle_take(t, "b", 2, 1000, 4, 100000), 0);
  CHECK(pl_throttle_take(t, "b", 2, 1000, 4, 100000) > 0);
  pl_throttle_free(t);
}

static void test_hold(void) {
  pl_throttle *t = pl_throttle_new(64);
  CHECK(pl_throttle_hold(t, "h", 2, 1));
  CHECK(pl_throttle_hold(t, "h", 2, 1));
  CHECK(!pl_throttle_hold(t, "h", 2, 1));
  CHECK(pl_throttle_hold(t, "h2", 2, 1));
  pl_throttle_release(t, "h");
  CHECK(pl_throttle_hold(t, "h", 2, 1));
  pl_throttle_release(t, "unknown");
  pl_throttle_free(t);
}

/* A spray of keys cannot grow the table, and a locked key outlives idle ones. */
static void test_bounded_and_keeps_locks(void) {
  pl_throttle *t = pl_throttle_new(64);
  for (int i = 0; i < 5; i++)
    pl_throttle_fail(t, "victim", &pol, 1);
  char k[32];
  for (int i = 0; i < 100000; i++) {
    snprintf(k, sizeof k, "spray%d", i);
    pl_throttle_take(t, k, 10, 1000, 10, 2);
  }
  CHECK(pl_throttle_check(t, "victim", &pol, 3) > 0);
  pl_throttle_free(t);
}

static const pl_auth_limits lim = {
    .rate = 100,
    .burst = 100,
    .register_per_hour = 3,
    .account_address = {.free = 2, .base_ms = 1000, .max_ms = 60000},
    .account = {.free = 6, .base_ms = 1000, .max_ms = 5000},
    .address = {.free = 10, .base_ms = 1000, .max_ms = 60000},
};

static void test_auth_per_account_address(void) {
  pl_throttle *t = pl_throttle_new(1024);
  uint64_t now = 5;
  for (int i = 0; i < 3; i++) {
    CHECK_EQ_U(pl_throttle_auth_admit(t, &lim, PL_ATTEMPT_LOGIN, "alice", "10.0.0.1", now), 0);
    pl_throttle_auth_failed(t, &lim, PL_ATTEMPT_LOGIN, "alice", "10.0.0.1", now);
  }
  CHECK_EQ_U(pl_throttle_auth_admit(t, &lim, PL_ATTEMPT_LOGIN, "alice", "10.0.0.1", now), 1000);
  /* the owner elsewhere, and another account from here, are not locked */
  CHECK_EQ_U(pl_throttle_auth_admit(t, &lim, PL_ATTEMPT_LOGIN, "alice", "10.0.0.2", now), 0);
  CHECK_EQ_U(pl_throttle_auth_admit(t, &lim, PL_ATTEMPT_LOGIN, "bob", "10.0.0.1", now), 0);
  /* after the window, a success clears the count */
  CHECK_EQ_U(pl_throttle_auth_admit(t, &lim, PL_ATTEMPT_LOGIN, "alice", "10.0.0.1", now + 1000), 0);
  pl_throttle_auth_succeeded(t, PL_ATTEMPT_LOGIN, "alice", "10.0.0.1");
  for (int i = 0; i < 2; i++)
    pl_throttle_auth_failed(t, &lim, PL_ATTEMPT_LOGIN, "alice", "10.0.0.1", now + 1000);
  CHECK_EQ_U(pl_throttle_auth_admit(t, &lim, PL_ATTEMPT_LOGIN, "alice", "10.0.0.1", now + 1000), 0);
  pl_throttle_free(t);
}

static void test_auth_account_over_addresses_capped(void) {
  pl_throttle *t = pl_throttle_new(1024);
  char addr[32];
  for (int i = 0; i < 20; i++) {
    snprintf(addr, sizeof addr, "10.1.0.%d", i);
    pl_throttle_auth_failed(t, &lim, PL_ATTEMPT_LOGIN, "carol", addr, 100);
  }
  uint64_t w = pl_throttle_auth_admit(t, &lim, PL_ATTEMPT_LOGIN, "carol", "10.9.9.9", 100);
  CHECK(w > 0 && w <= 5000); /* the owner waits at most the account policy's cap */
  CHECK_EQ_U(pl_throttle_auth_admit(t, &lim, PL_ATTEMPT_LOGIN, "carol", "10.9.9.9", 5100), 0);
  pl_throttle_free(t);
}

static void test_auth_address_and_register(void) {
  pl_throttle *t = pl_throttle_new(1024);
  for (int i = 0; i < 11; i++)
    pl_throttle_auth_failed(t, &lim, PL_ATTEMPT_RESUME, NULL, "10.2.0.1", 7);
  CHECK(pl_throttle_auth_admit(t, &lim, PL_ATTEMPT_RESUME, NULL, "10.2.0.1", 7) > 0);
  CHECK(pl_throttle_auth_admit(t, &lim, PL_ATTEMPT_LOGIN, "dave", "10.2.0.1", 7) > 0);
  CHECK_EQ_U(pl_throttle_auth_admit(t, &lim, PL_ATTEMPT_RESUME, NULL, "10.2.0.2", 7), 0);
  for (int i = 0; i < 3; i++)
    CHECK_EQ_U(pl_throttle_auth_admit(t, &lim, PL_ATTEMPT_REGISTER, NULL, "10.3.0.1", 7), 0);
  CHECK_EQ_U(pl_throttle_auth_admit(t, &lim, PL_ATTEMPT_REGISTER, NULL, "10.3.0.1", 7), 1200000);
  CHECK_EQ_U(pl_throttle_auth_admit(t, &lim, PL_ATTEMPT_REGISTER, NULL, "10.3.0.2", 7), 0);
  pl_throttle_free(t);
}

static void test_auth_rate_per_address(void) {
  pl_throttle *t = pl_throttle_new(1024);
  pl_auth_limits l = lim;
  l.rate = 10;
  l.burst = 20;
  for (int i = 0; i < 20; i++)
    CHECK_EQ_U(pl_throttle_auth_admit(t, &l, PL_ATTEMPT_RESUME, NULL, "10.4.0.1", 0), 0);
  CHECK_EQ_U(pl_throttle_auth_admit(t, &l, PL_ATTEMPT_RESUME, NULL, "10.4.0.1", 0), 100);
  CHECK_EQ_U(pl_throttle_auth_admit(t, &l, PL_ATTEMPT_RESUME, NULL, "10.4.0.1", 100), 0);
  pl_throttle_free(t);
}

static void test_addr(void) {
  char a[48];
  pl_throttle_addr("127.0.0.2:40312", a, sizeof a);
  CHECK_STR(a, "127.0.0.2");
  pl_throttle_addr("::1:7700", a, sizeof a);
  CHECK_STR(a, "::1");
  pl_throttle_addr("long-poll", a, sizeof a);
  CHECK_STR(a, "long-poll");
  pl_throttle_addr("", a, sizeof a);
  CHECK_STR(a, "");
}

int main(void) {
  if (sodium_init() < 0)
    return 1;
  RUN(test_lockout_grows_and_caps);
  RUN(test_fail_locks_then_window_ends);
  RUN(test_reset_clears);
  RUN(test_bucket);
  RUN(test_hold);
  RUN(test_bounded_and_keeps_locks);
  RUN(test_auth_per_account_address);
  RUN(test_auth_account_over_addresses_capped);
  RUN(test_auth_address_and_register);
  RUN(test_auth_rate_per_address);
  RUN(test_addr);
  return tl_summary();
}
