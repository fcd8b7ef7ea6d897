/* pl_bucket: name, id, token and media id to bucket; bucket to shard. */
#include "pl_bucket.h"

#include <string.h>

uint32_t pl_bucket_of_name(const char *name, size_t len) {
  uint64_t h = UINT64_C(14695981039346656037);
  for (size_t i = 0; i < len; i++) {
    unsigned char c = (unsigned char)name[i];
    if (c >= 'A' && c <= 'Z')
      c = (unsigned char)(c - 'A' + 'a');
    h ^= c;
    h *= UINT64_C(1099511628211);
  }
  return (uint32_t)(h % PL_BUCKETS);
}

void pl_bucket_token_put(uint8_t raw[2], uint32_t bucket) {
  bucket %= PL_BUCKETS;
  raw[0] = (uint8_t)(bucket >> 8);
  raw[1] = (uint8_t)bucket;
}

/* base64url's value of a character, -1 if it has none. */
static int pl__b64(char c) {
  if (c >= 'A' && c <= 'Z')
    return c - 'A';
  if (c >= 'a' && c <= 'z')
    return c - 'a' + 26;
  if (c >= '0' && c <= '9')
    return c - '0' + 52;
  return c == '-' ? 62 : c == '_' ? 63 : -1;
}

int pl_bucket_token_get(const char *token, size_t len, uint32_t *bucket) {
  if (len < 4)
    return -1;
  uint32_t v = 0;
  for (int i = 0; i < 4; i++) {
    int d = pl__b64(token[i]);
    if (d < 0)
      return -1;
    v = v << 6 | (uint32_t)d;
  }
  /* 24 bits: raw[0], raw[1], raw[2]; the bucket is the first 16 */
  *bucket = (v >> 8) % PL_BUCKETS;
  return 0;
}

static int pl__hex(char c) {
  if (c >= '0' && c <= '9')
    return c - '0';
  return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

int pl_bucket_of_key(const char *key, uint32_t *bucket) {
  uint32_t v = 0;
  for (int i = 0; i < 4; i++) {
    int d = pl__hex(key[i]); /* a NUL stops it: no hex value */
    if (d < 0)
      return -1;
    v = v << 4 | (uint32_t)d;
  }
  *bucket = v % PL_BUCKETS;
  return 0;
}

int pl_bucket_of_media(const char *id, uint32_t *bucket) {
  size_t i = 0;
  for (; id[i]; i++)
    if (pl__hex(id[i]) < 0 || i >= 32)
      return -1;
  return i == 32 ? pl_bucket_of_key(id, bucket) : -1;
}

void pl_bucket_media_put(char id[4], uint32_t bucket) {
  static const char hex[] = "0123456789abcdef";
  bucket %= PL_BUCKETS;
  for (int i = 3; i >= 0; i--, bucket >>= 4)
    id[i] = hex[bucket & 15];
}

/* Names hold no ':' (pl_auth.h), so the first one after "dm:" splits the
 * two sides. */
int pl_bucket_of_dm(const char *conv, uint32_t *bucket) {
  if (strncmp(conv, "dm:", 3) != 0)
    return -1;
  const char *a = conv + 3, *b = strchr(a, ':');
  if (!b || b == a || !b[1])
    return -1;
  *bucket = pl_bucket_of_pair(pl_bucket_of_name(a, (size_t)(b - a)), pl_bucket_of_name(b + 1, strlen(b + 1)));
  return 0;
}
