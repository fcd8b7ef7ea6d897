/* pl_bucket: where a row lives when the store is sharded (docs/scaling.md 1).
 *
 * Every user has a home bucket, one of PL_BUCKETS, fixed by its name (names
 * are unique and never change, so a sign-in finds the shard from the name
 * alone). With K shards, a bucket lives on shard bucket * K / PL_BUCKETS:
 * contiguous ranges, so that splitting a shard later moves one range. Ids of
 * a sharded store carry their bucket in their top bits (bucket << 48 | n), so
 * a user id, a device id or a group id names its shard with no lookup; a
 * token and a media id carry it too (pl_bucket_token_*, pl_bucket_of_media).
 * Pure functions: the store's router and the backends share them. */
#ifndef PL_BUCKET_H
#define PL_BUCKET_H

#include <stddef.h>
#include <stdint.h>

#define PL_BUCKETS 16384u  /* 2^14 */
#define PL_BUCKET_SHIFT 48 /* an id's bucket: id >> 48; its number within the bucket: the low 48 bits */

/* The home bucket of a user name: FNV-1a (64-bit) of its bytes, lower-cased
 * (ASCII), mod PL_BUCKETS. Fixed forever: stored ids and tokens depend on it. */
uint32_t pl_bucket_of_name(const char *name, size_t len);

/* The home bucket of a 1:1 conversation between users of buckets a and b:
 * the lower one, so that both sides' sends agree on its shard (the router)
 * and a move finds the conversations it takes (the mover). */
static inline uint32_t pl_bucket_of_pair(uint32_t a, uint32_t b) { return a < b ? a : b; }

/* The home bucket of the 1:1 conversation named conv ("dm:<a>:<b>",
 * pl_conv.h) into *bucket; -1 for a name that is not one. */
int pl_bucket_of_dm(const char *conv, uint32_t *bucket);

/* The bucket an id carries (0 for an unsharded store's ids). */
static inline uint32_t pl_bucket_of_id(uint64_t id) { return (uint32_t)(id >> PL_BUCKET_SHIFT) % PL_BUCKETS; }

/* The id numbered n in bucket b (n below 2^48). */
static inline uint64_t pl_bucket_id(uint32_t bucket, uint64_t n) {
  return (uint64_t)(bucket % PL_BUCKETS) << PL_BUCKET_SHIFT | (n & ((UINT64_C(1) << PL_BUCKET_SHIFT) - 1));
}

/* The shard (0 .. nshards-1) that holds a bucket; 0 when nshards <= 1. */
static inline unsigned pl_bucket_shard(uint32_t bucket, unsigned nshards) {
  if (nshards <= 1)
    return 0;
  return (unsigned)((uint64_t)(bucket % PL_BUCKETS) * nshards / PL_BUCKETS);
}

/* A token's first two bytes (before base64) are its user's bucket, the
 * other 30 random: RESUME finds the shard from the token alone. put writes
 * the bucket into raw[0..1]; get reads it back from the token's text (its
 * first 4 base64url characters), -1 if the text cannot be a token. */
void pl_bucket_token_put(uint8_t raw[2], uint32_t bucket);
int pl_bucket_token_get(const char *token, size_t len, uint32_t *bucket);

/* A media id (32 lower-case hex digits) and a blob key (64) of a sharded
 * store begin with their owner's bucket in 4 hex digits (put writes them).
 * of_media: -1 if id is not 32 hex digits; of_key: -1 if key does not
 * begin with 4. */
int pl_bucket_of_media(const char *id, uint32_t *bucket);
int pl_bucket_of_key(const char *key, uint32_t *bucket);
void pl_bucket_media_put(char id[4], uint32_t bucket);

#endif
