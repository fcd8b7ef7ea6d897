/* pl_retention: message expiry and deletion, dedup record lifetime, media
 * lifetime, token lifetimes (protocol.md 11.3, 13.6), without a store. */
#include "rules/pl_retention.h"
#include "testlib.h"

static void test_messages_expire_a_ttl_after_their_server_ts(void) {
  CHECK_EQ_U(pl_retention_expires(1000, 5000), 6000);
  CHECK_EQ_U(pl_retention_expires(0, 5000), PL_RETENTION_NEVER);                       /* ttl 0: never */
  CHECK_EQ_U(pl_retention_expires(1000, PL_RETENTION_NEVER - 10), PL_RETENTION_NEVER); /* no overflow */
}

static void test_a_message_goes_when_every_target_acked_or_it_expired(void) {
  uint64_t refs = pl_retention_msg_refs(3);
  CHECK_EQ_U(refs, 3);
  CHECK(!pl_retention_msg_gone(refs, 6000, 5000));
  CHECK(!pl_retention_msg_gone(1, 6000, 5000)); /* one device still to ack */
  CHECK(pl_retention_msg_gone(0, 6000, 5000));  /* the last Ack */
  CHECK(pl_retention_msg_gone(2, 6000, 6000));  /* the TTL */
}

static void test_dedup_records_count_for_the_ttl(void) {
  CHECK_EQ_U(pl_retention_dedup_cut(1000, 5000), 4000);
  CHECK_EQ_U(pl_retention_dedup_cut(1000, 500), 0); /* early: all count */
  CHECK_EQ_U(pl_retention_dedup_cut(0, 5000), 0);   /* ttl 0: kept forever */
}

static void test_media_outlives_its_last_message(void) {
  CHECK_EQ_U(pl_retention_media_ttl(0, 72), 72); /* the message TTL by default */
  CHECK_EQ_U(pl_retention_media_ttl(5, 72), 5);
  CHECK_EQ_U(pl_retention_media_expires(100, 1000), 1100);
  CHECK_EQ_U(pl_retention_media_expires(UINT64_MAX, 1000), PL_RETENTION_NEVER);
  CHECK(!pl_retention_media_gone(1100, 1200, 1)); /* a stored message carries it */
  CHECK(!pl_retention_media_gone(1100, 1000, 0));
  CHECK(pl_retention_media_gone(1100, 1100, 0));
}

static void test_token_lifetimes(void) {
  pl_retention_tokens c = pl_retention_token_cuts(100, 1000, 5000);
  CHECK_EQ_U(c.used_after, 4900);
  CHECK_EQ_U(c.issued_after, 4000);
  CHECK(pl_retention_token_alive(&c, 4900, 4000));
  CHECK(!pl_retention_token_alive(&c, 4899, 4500)); /* idle too long */
  CHECK(!pl_retention_token_alive(&c, 5000, 3999)); /* too old, however busy */
  c = pl_retention_token_cuts(0, 0, 5000);          /* no limits */
  CHECK_EQ_U(c.used_after, 0);
  CHECK_EQ_U(c.issued_after, 0);
  CHECK(pl_retention_token_alive(&c, 0, 0));
  c = pl_retention_token_cuts(10000, 10000, 5000); /* a clock younger than the limit */
  CHECK_EQ_U(c.used_after, 0);
}

/* A use is written once the stored one is a grain old: 1/64 of the idle
 * lifetime, at most an hour, an hour without a limit. */
static void test_token_use_written_by_the_grain(void) {
  uint64_t now = 100u * 86400u * 1000u;
  pl_retention_tokens c = pl_retention_token_cuts(6400, 0, now); /* idle 6.4 s: grain 100 ms */
  CHECK(!pl_retention_token_touch(&c, now - 99, now));
  CHECK(pl_retention_token_touch(&c, now - 100, now));
  c = pl_retention_token_cuts(30u * 86400u * 1000u, 0, now); /* 30 days: the grain is an hour */
  CHECK(!pl_retention_token_touch(&c, now - 3599999, now));
  CHECK(pl_retention_token_touch(&c, now - 3600000, now));
  c = pl_retention_token_cuts(0, 0, now); /* no idle limit: an hour */
  CHECK(!pl_retention_token_touch(&c, now - 60000, now));
  CHECK(pl_retention_token_touch(&c, now - 3600000, now));
  CHECK(!pl_retention_token_touch(&c, now + 5, now)); /* a use "from the future" (clock step): left */
}

int main(void) {
  RUN(test_messages_expire_a_ttl_after_their_server_ts);
  RUN(test_a_message_goes_when_every_target_acked_or_it_expired);
  RUN(test_dedup_records_count_for_the_ttl);
  RUN(test_media_outlives_its_last_message);
  RUN(test_token_lifetimes);
  RUN(test_token_use_written_by_the_grain);
  return tl_summary();
}
