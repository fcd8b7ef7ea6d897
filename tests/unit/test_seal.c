/* pl_seal: records sealed at rest, the key ring and the key file. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/pl_mem.h"
#include "common/pl_seal.h"
#include "testlib.h"

static const char K1[] = "1 000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\n";

static pl_seal *parse(const char *text) {
  pl_seal *s = NULL;
  pl_seal_parse((const uint8_t *)text, strlen(text), &s);
  return s;
}

static void test_round_trip_and_binding(void) {
  pl_seal *s = parse(K1);
  CHECK(s != NULL);
  static const uint8_t msg[] = "MARKER-plaintext", ad[] = "qid=7", other[] = "qid=8";
  uint8_t c[sizeof msg + PL_SEAL_OVERHEAD], c2[sizeof c], back[sizeof msg];
  pl_seal_encrypt(s, ad, sizeof ad, msg, sizeof msg, c);
  pl_seal_encrypt(s, ad, sizeof ad, msg, sizeof msg, c2);
  CHECK(memcmp(c, c2, sizeof c) != 0); /* a fresh nonce each time */
  CHECK(memmem(c, sizeof c, "MARKER", 6) == NULL);
  CHECK_EQ_U(pl_seal_kid(c, sizeof c), 1);
  CHECK_EQ_I(pl_seal_decrypt(s, ad, sizeof ad, c, sizeof c, back), PL_OK);
  CHECK(memcmp(back, msg, sizeof msg) == 0);
  /* moved to another row, altered, cut short: refused */
  CHECK_EQ_I(pl_seal_decrypt(s, other, sizeof other, c, sizeof c, back), PL_ERR_STORE);
  c[sizeof c - 1] ^= 1;
  CHECK_EQ_I(pl_seal_decrypt(s, ad, sizeof ad, c, sizeof c, back), PL_ERR_STORE);
  CHECK_EQ_I(pl_seal_decrypt(s, ad, sizeof ad, c, PL_SEAL_OVERHEAD - 1, back), PL_ERR_STORE);
  /* an empty record seals too */
  uint8_t e[PL_SEAL_OVERHEAD];
  pl_seal_encrypt(s, NULL, 0, (const uint8_t *)"", 0, e);
  CHECK_EQ_I(pl_seal_decrypt(s, NULL, 0, e, sizeof e, back), PL_OK);
  pl_seal_free(s);
}

static void test_rotation(void) {
  pl_seal *s = parse(K1), *wrong = pl_seal_new();
  uint8_t kid, c[5 + PL_SEAL_OVERHEAD], c2[sizeof c], back[5];
  pl_seal_encrypt(s, NULL, 0, (const uint8_t *)"hello", 5, c);
  CHECK_EQ_I(pl_seal_add(s, &kid), PL_OK);
  CHECK_EQ_U(kid, 2);
  CHECK_EQ_U(pl_seal_current(s), 2);
  pl_seal_encrypt(s, NULL, 0, (const uint8_t *)"hello", 5, c2);
  CHECK_EQ_U(pl_seal_kid(c2, sizeof c2), 2);
  CHECK_EQ_I(pl_seal_decrypt(s, NULL, 0, c, sizeof c, back), PL_OK); /* the old key still opens */
  /* the file round-trips: both keys, the newest still current */
  size_t n;
  char *text = pl_seal_format(s, &n);
  pl_seal *t = parse(text);
  CHECK(t != NULL && pl_seal_current(t) == 2 && pl_seal_has(t, 1));
  CHECK_EQ_I(pl_seal_decrypt(t, NULL, 0, c2, sizeof c2, back), PL_OK);
  CHECK_EQ_I(pl_seal_remove(t, 1), PL_OK);
  CHECK_EQ_I(pl_seal_decrypt(t, NULL, 0, c, sizeof c, back), PL_ERR_NOT_FOUND);
  CHECK_EQ_I(pl_seal_remove(t, 2), PL_ERR_CONFIG); /* never the last key */
  /* a ring with another key 1 refuses, it does not return garbage */
  CHECK_EQ_I(pl_seal_decrypt(wrong, NULL, 0, c, sizeof c, back), PL_ERR_STORE);
  pl_free(text);
  pl_seal_free(s);
  pl_seal_free(t);
  pl_seal_free(wrong);
}

static void test_key_file_forms(void) {
  uint8_t raw[32];
  memset(raw, 0xab, sizeof raw);
  pl_seal *s = NULL;
  CHECK_EQ_I(pl_seal_parse(raw, sizeof raw, &s), PL_OK); /* 32 raw bytes */
  CHECK(s && pl_seal_current(s) == 1);
  pl_seal_free(s);
  s = parse("000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\r\n"); /* one bare hex key */
  CHECK(s && pl_seal_current(s) == 1);
  pl_seal_free(s);
  s = parse("# c\n\n7\t000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\n");
  CHECK(s && pl_seal_current(s) == 7 && !pl_seal_has(s, 1));
  pl_seal_free(s);
  static const char *bad[] = {
      "",
      "# only a comment\n",
      "0 000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\n",
      "256 000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\n",
      "1 000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1\n",
      "1 000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1g\n",
      "1x000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\n",
      "1 000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\n"
      "1 000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\n",
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    s = (pl_seal *)1;
    CHECK_EQ_I(pl_seal_parse((const uint8_t *)bad[i], strlen(bad[i]), &s), PL_ERR_CONFIG);
    CHECK(s == NULL);
  }
}

static void test_file_mode_enforced(void) {
  char path[] = "/tmp/pl-seal-XXXXXX", why[256];
  int fd = mkstemp(path);
  CHECK(fd >= 0);
  close(fd);
  pl_seal *s = pl_seal_new(), *back = NULL;
  CHECK_EQ_I(pl_seal_save(s, path), PL_OK);
  struct stat st;
  CHECK(stat(path, &st) == 0 && (st.st_mode & 0777) == 0600);
  CHECK_EQ_I(pl_seal_load(path, &back, why, sizeof why), PL_OK);
  CHECK(back && pl_seal_current(back) == 1);
  pl_seal_free(back);
  chmod(path, 0644);
  CHECK_EQ_I(pl_seal_load(path, &back, why, sizeof why), PL_ERR_CONFIG);
  CHECK(strstr(why, "0600") != NULL);
  unlink(path);
  CHECK_EQ_I(pl_seal_load(path, &back, why, sizeof why), PL_ERR_CONFIG);
  pl_seal_free(s);
}

int main(void) {
  RUN(test_round_trip_and_binding);
  RUN(test_rotation);
  RUN(test_key_file_forms);
  RUN(test_file_mode_enforced);
  return tl_summary();
}
