/* pl_auth: passwords, session tokens and name rules. Pure functions; the
 * Argon2id ones are slow on purpose and run on libuv's thread pool. */
#ifndef PL_AUTH_H
#define PL_AUTH_H

#include <stddef.h>
#include <stdint.h>

#include "../common/pl_err.h"

#define PL_AUTH_HASH_MAX 128 /* >= crypto_pwhash_STRBYTES */
#define PL_AUTH_TOKEN_MAX 64 /* base64url of 32 random bytes + NUL */

/* Must be called once before any other (initialises libsodium). */
pl_err pl_auth_init(void);
/* Argon2id hash string of pw with ops passes over mem_kib KiB (0, 0: libsodium's
 * interactive limits, 2 passes over 64 MiB). The limits are stored in the hash,
 * so changing them later does not invalidate existing passwords. */
pl_err pl_auth_hash(const char *pw, size_t len, char out[PL_AUTH_HASH_MAX], uint32_t ops, uint32_t mem_kib);
/* 1 if pw matches hash. */
int pl_auth_verify(const char *hash, const char *pw, size_t len);
/* Burns the same time as a verify, for unknown users (no user enumeration by timing). */
void pl_auth_dummy_verify(const char *pw, size_t len);
/* A new token for a user of home bucket `bucket` (pl_bucket.h: its first
 * two bytes, so that a sharded store finds the user's shard from the token
 * alone; 240 random bits follow) and the hash the store keeps of it. */
void pl_auth_new_token(char token[PL_AUTH_TOKEN_MAX], uint8_t hash[32], uint32_t bucket);
/* The stored hash of a presented token. */
void pl_auth_token_hash(const char *token, size_t len, uint8_t hash[32]);

/* [a-z0-9_.-]{1,32} */
int pl_auth_valid_user(const char *s, size_t len);
/* 1..64 bytes of UTF-8 under the name rule (pl_utf8.h: no NUL, no control
 * characters, no line separators or bidi overrides) */
int pl_auth_valid_device(const char *s, size_t len);
/* 8..1024 bytes */
int pl_auth_valid_password(size_t len);

#endif
