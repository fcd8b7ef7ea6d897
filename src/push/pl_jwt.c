#include "pl_jwt.h"

#include <openssl/bio.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <string.h>

#include "../common/pl_mem.h"

char *pl_b64url(const void *p, size_t n) {
  static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  const uint8_t *s = p;
  char *out = pl_malloc(n / 3 * 4 + 5), *o = out;
  size_t i = 0;
  for (; i + 3 <= n; i += 3) {
    uint32_t v = (uint32_t)s[i] << 16 | (uint32_t)s[i + 1] << 8 | s[i + 2];
    *o++ = tab[v >> 18 & 63];
    *o++ = tab[v >> 12 & 63];
    *o++ = tab[v >> 6 & 63];
    *o++ = tab[v & 63];
  }
  if (n - i == 1) {
    *o++ = tab[s[i] >> 2];
    *o++ = tab[(s[i] & 3) << 4];
  } else if (n - i == 2) {
    *o++ = tab[s[i] >> 2];
    *o++ = tab[(s[i] & 3) << 4 | s[i + 1] >> 4];
    *o++ = tab[(s[i + 1] & 15) << 2];
  }
  *o = '\0';
  return out;
}

pl_jwt_key *pl_jwt_key_from_pem(const char *pem, size_t len) {
  if (len > 1 << 20)
    return NULL;
  BIO *b = BIO_new_mem_buf(pem, (int)len);
  EVP_PKEY *k = b ? PEM_read_bio_PrivateKey(b, NULL, NULL, NULL) : NULL;
  BIO_free(b);
  return k;
}

void pl_jwt_key_free(pl_jwt_key *k) { EVP_PKEY_free(k); }

pl_err pl_jwt_der_to_raw(const uint8_t *der, size_t len, uint8_t *raw, size_t half) {
  const unsigned char *p = der;
  pl_err e = PL_ERR_INVALID_ARGUMENT;
  ECDSA_SIG *sig = len <= 1024 ? d2i_ECDSA_SIG(NULL, &p, (long)len) : NULL;
  if (!sig || p != der + len)
    goto out;
  const BIGNUM *r, *s;
  ECDSA_SIG_get0(sig, &r, &s);
  if (BN_bn2binpad(r, raw, (int)half) < 0 || BN_bn2binpad(s, raw + half, (int)half) < 0)
    goto out;
  e = PL_OK;
out:
  ECDSA_SIG_free(sig);
  return e;
}

/* Signs msg with SHA-256 under key (PKCS#1 v1.5 for RSA, ECDSA for EC):
 * the signature in a new buffer. */
static uint8_t *pl__sign(EVP_PKEY *key, const char *msg, size_t *siglen) {
  EVP_MD_CTX *ctx = EVP_MD_CTX_new();
  uint8_t *sig = NULL;
  *siglen = 0;
  if (!ctx || EVP_DigestSignInit(ctx, NULL, EVP_sha256(), NULL, key) != 1 ||
      EVP_DigestSign(ctx, NULL, siglen, (const unsigned char *)msg, strlen(msg)) != 1)
    goto out;
  sig = pl_malloc(*siglen);
  if (EVP_DigestSign(ctx, sig, siglen, (const unsigned char *)msg, strlen(msg)) != 1) {
    pl_free(sig);
    sig = NULL;
  }
out:
  EVP_MD_CTX_free(ctx);
  return sig;
}

pl_err pl_jwt_sign(pl_jwt_key *key, const char *alg, const char *header_json, const char *claims_json,
                   char **out) {
  int es = !strcmp(alg, "ES256");
  int want = es ? EVP_PKEY_EC : EVP_PKEY_RSA;
  char *h = NULL, *c = NULL, *input = NULL, *s64 = NULL;
  uint8_t *sig = NULL, raw[64];
  size_t siglen;
  pl_err e = PL_ERR_INVALID_ARGUMENT;
  *out = NULL;
  if (!key || EVP_PKEY_base_id(key) != want || (!es && strcmp(alg, "RS256") != 0))
    goto out;
  if (es && EVP_PKEY_bits(key) != 256)
    goto out;
  h = pl_b64url(header_json, strlen(header_json));
  c = pl_b64url(claims_json, strlen(claims_json));
  size_t n = strlen(h) + strlen(c) + 2;
  input = pl_malloc(n);
  snprintf(input, n, "%s.%s", h, c);
  if (!(sig = pl__sign(key, input, &siglen)))
    goto out;
  /* JWS wants ES256 as the fixed-size r||s, not DER (RFC 7518 3.4). */
  if (es && pl_jwt_der_to_raw(sig, siglen, raw, 32) != PL_OK)
    goto out;
  s64 = es ? pl_b64url(raw, sizeof raw) : pl_b64url(sig, siglen);
  n += strlen(s64) + 1;
  *out = pl_malloc(n);
  snprintf(*out, n, "%s.%s", input, s64);
  e = PL_OK;
out:
  pl_free(h);
  pl_free(c);
  pl_free(input);
  pl_free(sig);
  pl_free(s64);
  return e;
}
