/* pl_bucket: a user's home bucket and shard (docs/scaling.md 1), the bucket
 * an id, a token and a media id carry. These values are stored in ids and
 * tokens: a change here would lose users, so they are pinned. */
#include <sodium.h>
#include <string.h>

#include "rules/pl_bucket.h"
#include "testlib.h"

static void test_a_name_hashes_to_a_fixed_bucket(void) {
  /* FNV-1a 64 of "a" is 0xaf63dc4c8601ec8c (the published test vector) */
  CHECK_EQ_U(pl_bucket_of_name("a", 1), 0xaf63dc4c8601ec8cull % PL_BUCKETS);
  CHECK_EQ_U(pl_bucket_of_name("alice", 5), 14599);
  CHECK_EQ_U(pl_bucket_of_name("bob", 3), 2644);
  CHECK_EQ_U(pl_bucket_of_name("ALICE", 5), 14599); /* lower-cased */
}

static void test_buckets_map_to_contiguous_shards(void) {
  CHECK_EQ_U(pl_bucket_shard(14599, 1), 0);
  CHECK_EQ_U(pl_bucket_shard(14599, 0), 0);
  CHECK_EQ_U(pl_bucket_shard(0, 2), 0);
  CHECK_EQ_U(pl_bucket_shard(8191, 2), 0);
  CHECK_EQ_U(pl_bucket_shard(8192, 2), 1);
  CHECK_EQ_U(pl_bucket_shard(PL_BUCKETS - 1, 2), 1);
  CHECK_EQ_U(pl_bucket_shard(PL_BUCKETS - 1, 3), 2);
  /* every shard of K gets PL_BUCKETS / K buckets, give or take one */
  for (unsigned k = 1; k <= 7; k++) {
    unsigned count[7] = {0};
    for (uint32_t b = 0; b < PL_BUCKETS; b++)
      count[pl_bucket_shard(b, k)]++;
    for (unsigned i = 0; i < k; i++)
      CHECK(count[i] >= PL_BUCKETS / k && count[i] <= PL_BUCKETS / k + 1);
  }
}

static void test_an_id_carries_its_bucket(void) {
  uint64_t id = pl_bucket_id(14599, 42);
  CHECK_EQ_U(id, (uint64_t)14599 << 48 | 42);
  CHECK_EQ_U(pl_bucket_of_id(id), 14599);
  CHECK_EQ_U(pl_bucket_of_id(42), 0); /* an unsharded store's ids */
  CHECK(id < (UINT64_C(1) << 63));    /* a PostgreSQL bigint */
}

static void test_a_token_carries_its_bucket(void) {
  for (uint32_t b = 0; b < PL_BUCKETS; b += 1361) {
    uint8_t raw[32];
    char tok[64];
    randombytes_buf(raw, sizeof raw);
    pl_bucket_token_put(raw, b);
    sodium_bin2base64(tok, sizeof tok, raw, sizeof raw, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    uint32_t got = PL_BUCKETS;
    CHECK_EQ_I(pl_bucket_token_get(tok, strlen(tok), &got), 0);
    CHECK_EQ_U(got, b);
  }
  uint32_t got;
  CHECK_EQ_I(pl_bucket_token_get("ab", 2, &got), -1);   /* too short */
  CHECK_EQ_I(pl_bucket_token_get("a+cd", 4, &got), -1); /* not base64url */
}

static void test_a_media_id_carries_its_bucket(void) {
  char id[33] = "0123456789abcdef0123456789abcdef";
  pl_bucket_media_put(id, 14599);
  CHECK(!memcmp(id, "3907", 4));
  uint32_t b = 0;
  CHECK_EQ_I(pl_bucket_of_media(id, &b), 0);
  CHECK_EQ_U(b, 14599);
  CHECK_EQ_I(pl_bucket_of_media("0123", &b), -1);                              /* short */
  CHECK_EQ_I(pl_bucket_of_media("0123456789ABCDEF0123456789abcdef", &b), -1);  /* upper case */
  CHECK_EQ_I(pl_bucket_of_media("0123456789abcdef0123456789abcdef0", &b), -1); /* long */
}

static void test_a_pair_is_homed_in_its_lower_bucket(void) {
  uint32_t b = 99;
  CHECK_EQ_U(pl_bucket_of_pair(14599, 2644), 2644);
  CHECK_EQ_U(pl_bucket_of_pair(2644, 14599), 2644);
  CHECK_EQ_I(pl_bucket_of_dm("dm:alice:bob", &b), 0);
  CHECK_EQ_U(b, 2644); /* bob's, alice's is 14599 */
  CHECK_EQ_I(pl_bucket_of_dm("dm:ALICE:zed", &b), 0);
  CHECK_EQ_U(b, pl_bucket_of_pair(14599, pl_bucket_of_name("zed", 3)));
  CHECK_EQ_I(pl_bucket_of_dm("dm:alice:alice", &b), 0); /* a note to self */
  CHECK_EQ_U(b, 14599);
  b = 99; /* not a 1:1 conversation: b untouched */
  CHECK_EQ_I(pl_bucket_of_dm("g:42", &b), -1);
  CHECK_EQ_I(pl_bucket_of_dm("dm:alice", &b), -1);
  CHECK_EQ_I(pl_bucket_of_dm("dm::bob", &b), -1);
  CHECK_EQ_I(pl_bucket_of_dm("dm:alice:", &b), -1);
  CHECK_EQ_I(pl_bucket_of_dm("", &b), -1);
  CHECK_EQ_U(b, 99);
}

int main(void) {
  CHECK(sodium_init() >= 0);
  RUN(test_a_name_hashes_to_a_fixed_bucket);
  RUN(test_buckets_map_to_contiguous_shards);
  RUN(test_an_id_carries_its_bucket);
  RUN(test_a_token_carries_its_bucket);
  RUN(test_a_media_id_carries_its_bucket);
  RUN(test_a_pair_is_homed_in_its_lower_bucket);
  return tl_summary();
}
