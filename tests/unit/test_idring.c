/* pl_idring: the per-device ring of recent client-id fingerprints. */
#include <stdlib.h>
#include <string.h>

#include "common/pl_mem.h"
#include "store/pl_idring.h"
#include "testlib.h"

/* Every row whose fingerprint is fp, as a bit set over rows 0..63. */
static uint64_t rows_of(const pl_idring *r, uint32_t fp) {
  uint64_t set = 0;
  uint32_t pos = 0;
  int64_t row;
  while (pl_idring_next(r, fp, &pos, &row))
    set |= 1ull << row;
  return set;
}

static void test_grows_then_overwrites_oldest(void) {
  pl_idring *r = pl_idring_new();
  size_t footprint = pl_idring_cap(r);
  for (int64_t i = 0; i < 20; i++)
    footprint += pl_idring_push(&r, 16, (uint32_t)(100 + i), i);
  CHECK_EQ_U(pl_idring_cap(r), 16);
  CHECK_EQ_U(footprint, 16); /* 8, then doubled once to the maximum */
  CHECK_EQ_U(pl_idring_len(r), 16);
  for (int64_t i = 0; i < 4; i++)
    CHECK_EQ_U(rows_of(r, (uint32_t)(100 + i)), 0); /* the four oldest went */
  for (int64_t i = 4; i < 20; i++)
    CHECK_EQ_U(rows_of(r, (uint32_t)(100 + i)), 1ull << i);
  pl_idring_free(r);
}

static void test_every_match_is_returned(void) {
  pl_idring *r = NULL;
  pl_idring_push(&r, 64, 7, 1);
  pl_idring_push(&r, 64, 9, 2);
  pl_idring_push(&r, 64, 7, 3);
  CHECK_EQ_U(rows_of(r, 7), (1ull << 1) | (1ull << 3));
  CHECK_EQ_U(rows_of(r, 8), 0);
  CHECK_EQ_U(rows_of(NULL, 7), 0);
  pl_idring_free(r);
}

static void test_save_load_keeps_age_order(void) {
  pl_idring *r = NULL, *back = NULL;
  uint8_t *img;
  size_t len;
  for (int64_t i = 0; i < 11; i++) /* wraps a ring of 8 */
    pl_idring_push(&r, 8, (uint32_t)i, i + 1000);
  pl_idring_save(r, &img, &len);
  CHECK_EQ_U(len, 8 * 12);
  pl_idring_load(&back, 8, img, len);
  CHECK_EQ_U(pl_idring_len(back), 8);
  /* One more push must evict the oldest survivor (row 1003), as in r. */
  pl_idring_push(&back, 8, 99, 99);
  uint32_t pos = 0;
  int64_t row;
  CHECK(!pl_idring_next(back, 3, &pos, &row));
  pos = 0;
  CHECK(pl_idring_next(back, 4, &pos, &row));
  CHECK_EQ_I(row, 1004);
  /* A torn image loads only its whole entries. */
  pl_idring *torn = NULL;
  pl_idring_load(&torn, 8, img, len - 5);
  CHECK_EQ_U(pl_idring_len(torn), 7);
  pl_free(img);
  pl_idring_free(r);
  pl_idring_free(back);
  pl_idring_free(torn);
}

static void test_fingerprint_is_stable(void) {
  /* Saved rings hold fingerprints: they must not change between builds. */
  CHECK_EQ_U(pl_idring_fp("m1", 2), pl_idring_fp("m1", 2));
  CHECK(pl_idring_fp("m1", 2) != pl_idring_fp("m2", 2));
  CHECK(pl_idring_fp("", 0) != 0 || pl_idring_fp("a", 1) != 0);
}

/* The scan tests blocks of 16 at once: matches at a block's first and last
 * entry, two in one block, and in the tail after the last whole block must
 * all come back, each once. */
static void test_matches_across_blocks(void) {
  pl_idring *r = NULL;
  static const int64_t hits[] = {0, 15, 16, 33, 34, 47, 60, 61};
  uint64_t want = 0;
  for (size_t k = 0; k < sizeof hits / sizeof hits[0]; k++) {
    pl_idring_free(r);
    r = NULL;
    want |= 1ull << hits[k];
    for (int64_t i = 0; i < 62; i++) /* 3 whole blocks and a tail of 14 */
      pl_idring_push(&r, 64, (want >> i) & 1 ? 5 : 1000 + (uint32_t)i, i);
    CHECK_EQ_U(rows_of(r, 5), want);
  }
  CHECK_EQ_U(rows_of(r, 4), 0);
  pl_idring_free(r);
}

int main(void) {
  RUN(test_grows_then_overwrites_oldest);
  RUN(test_every_match_is_returned);
  RUN(test_matches_across_blocks);
  RUN(test_save_load_keeps_age_order);
  RUN(test_fingerprint_is_stable);
  return tl_summary();
}
