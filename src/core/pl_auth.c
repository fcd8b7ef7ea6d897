#include "pl_auth.h"

#include <sodium.h>
#include <string.h>

#include "../common/pl_utf8.h"
#include "../rules/pl_bucket.h"

static char pl__dummy[crypto_pwhash_STRBYTES];

pl_err pl_auth_init(void) {
  if (sodium_init() < 0)
    return PL_ERR_INTERNAL;
  if (!pl__dummy[0])
    pl_auth_hash("dummy-password", 14, pl__dummy, 0, 0);
  return PL_OK;
}

pl_err pl_auth_hash(const char *pw, size_t len, char out[PL_AUTH_HASH_MAX], uint32_t ops_in,
                    uint32_t mem_kib) {
  unsigned long long ops = ops_in ? ops_in : crypto_pwhash_OPSLIMIT_INTERACTIVE;
  size_t mem = mem_kib ? (size_t)mem_kib * 1024u : crypto_pwhash_MEMLIMIT_INTERACTIVE;
  if (ops < crypto_pwhash_OPSLIMIT_MIN)
    ops = crypto_pwhash_OPSLIMIT_MIN;
  if (mem < crypto_pwhash_MEMLIMIT_MIN)
    mem = crypto_pwhash_MEMLIMIT_MIN;
  if (crypto_pwhash_str_alg(out, pw, len, ops, mem, crypto_pwhash_ALG_ARGON2ID13) != 0)
    return PL_ERR_NOMEM;
  return PL_OK;
}

int pl_auth_verify(const char *hash, const char *pw, size_t len) {
  return crypto_pwhash_str_verify(hash, pw, len) == 0;
}

void pl_auth_dummy_verify(const char *pw, size_t len) { (void)pl_auth_verify(pl__dummy, pw, len); }

void pl_auth_new_token(char token[PL_AUTH_TOKEN_MAX], uint8_t hash[32], uint32_t bucket) {
  uint8_t raw[32];
  randombytes_buf(raw, sizeof raw);
  pl_bucket_token_put(raw, bucket);
  sodium_bin2base64(token, PL_AUTH_TOKEN_MAX, raw, sizeof raw, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
  pl_auth_token_hash(token, strlen(token), hash);
  sodium_memzero(raw, sizeof raw);
}

void pl_auth_token_hash(const char *token, size_t len, uint8_t hash[32]) {
  /* A token has 256 random bits, so a fast hash is enough: a stolen database
   * does not reveal live tokens, and resume stays cheap (no Argon2). */
  crypto_generichash(hash, 32, (const unsigned char *)token, len, NULL, 0);
}

int pl_auth_valid_user(const char *s, size_t len) {
  if (len < 1 || len > 32)
    return 0;
  for (size_t i = 0; i < len; i++) {
    char c = s[i];
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '.' || c == '-'))
      return 0;
  }
  return 1;
}

int pl_auth_valid_device(const char *s, size_t len) {
  return len >= 1 && len <= 64 &&
         pl_utf8_check((const uint8_t *)s, len, PL_UTF8_NAME, NULL, NULL) == PL_UTF8_OK;
}

int pl_auth_valid_password(size_t len) { return len >= 8 && len <= 1024; }
