/* fuzz_ids: what a client's text becomes when it names a shard or a group
 * (pl_bucket over tokens and media ids, pl_frame_gid over group ids).
 *
 * Input: any bytes, taken as the text a client sent (a token, a media id in
 * a URL, a group id in a frame).
 *
 * Oracles besides the sanitizers:
 *  - pl_frame_gid accepts exactly 1 to 19 digits without a leading zero up
 *    to 2^63 - 1, and what it accepts prints back as the text;
 *  - pl_bucket_token_get answers iff the text begins with 4 base64url
 *    characters, a bucket below PL_BUCKETS;
 *  - pl_bucket_of_media answers iff the text is 32 lower-case hex digits,
 *    the bucket of its first 4;
 *  - a name's bucket is below PL_BUCKETS and ignores ASCII case. */
#include <ctype.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/pl_frame.h"
#include "rules/pl_bucket.h"

#define FUZZ_CHECK(cond)                                                          \
  do {                                                                            \
    if (!(cond)) {                                                                \
      fprintf(stderr, "fuzz_ids: %s:%d: CHECK(%s)\n", __FILE__, __LINE__, #cond); \
      abort();                                                                    \
    }                                                                             \
  } while (0)

static int is_b64url(char c) { return isalnum((unsigned char)c) || c == '-' || c == '_'; }
static int is_lhex(char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); }

/* The decimal text's value if it is 1 to 19 digits, no leading zero, at most 2^63 - 1. */
static int ref_gid(const char *s, uint64_t *v) {
  size_t n = strlen(s);
  if (n == 0 || n > 19 || s[0] == '0')
    return 0;
  unsigned __int128 x = 0;
  for (size_t i = 0; i < n; i++) {
    if (s[i] < '0' || s[i] > '9')
      return 0;
    x = x * 10 + (unsigned)(s[i] - '0');
  }
  if (x > (unsigned __int128)INT64_MAX)
    return 0;
  *v = (uint64_t)x;
  return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char *s = malloc(size + 1);
  memcpy(s, data, size);
  s[size] = '\0'; /* what a frame's string or a URL gives: up to the first NUL */
  size_t n = strlen(s);

  uint64_t want = 0, got = pl_frame_gid(s);
  FUZZ_CHECK(ref_gid(s, &want) ? got == want : got == 0);
  if (got) {
    char back[32];
    snprintf(back, sizeof back, "%llu", (unsigned long long)got);
    FUZZ_CHECK(strcmp(back, s) == 0);
  }

  uint32_t b = PL_BUCKETS;
  int ok = pl_bucket_token_get(s, n, &b) == 0;
  FUZZ_CHECK(ok == (n >= 4 && is_b64url(s[0]) && is_b64url(s[1]) && is_b64url(s[2]) && is_b64url(s[3])));
  FUZZ_CHECK(!ok || b < PL_BUCKETS);

  int hex = n == 32;
  for (size_t i = 0; hex && i < n; i++)
    hex = is_lhex(s[i]);
  b = PL_BUCKETS;
  ok = pl_bucket_of_media(s, &b) == 0;
  FUZZ_CHECK(ok == hex);
  if (ok) {
    char four[5] = {s[0], s[1], s[2], s[3], 0};
    FUZZ_CHECK(b == strtoul(four, NULL, 16) % PL_BUCKETS);
  }

  uint32_t nb = pl_bucket_of_name(s, n);
  FUZZ_CHECK(nb < PL_BUCKETS);
  for (size_t i = 0; i < n; i++)
    s[i] = (char)tolower((unsigned char)s[i]);
  FUZZ_CHECK(pl_bucket_of_name(s, n) == nb);
  free(s);
  return 0;
}
