/* pl_seal: encryption at rest of what the store and the media keep
 * (docs/operations.md, "Encryption at rest").
 *
 * A key ring (a key file) holds up to 255 keys of 32 bytes, each with an id
 * 1..255; the newest (highest id) seals, every key in the ring opens. A
 * sealed record is
 *
 *   kid (1 byte) | nonce (24 random bytes) | XChaCha20-Poly1305 ciphertext + tag (16)
 *
 * (libsodium's crypto_aead_xchacha20poly1305_ietf), with associated data
 * the caller chooses to bind the record to its place (its row, its blob key
 * and chunk), so a record moved to another place does not open. A random
 * 192-bit nonce per record makes nonce reuse under one key negligible.
 *
 * Everything here but pl_seal_load/pl_seal_save is pure over (pointer,
 * length): no globals, no I/O. pl_seal_parse reads untrusted bytes (a key
 * file) and has a fuzz target (fuzz/fuzz_seal.c).
 *
 * Key file: text, one key a line, "<id> <64 hex digits>"; blank lines and
 * lines starting with '#' are skipped. For a first key, a file of exactly
 * 32 raw bytes or one line of 64 hex digits is also read, as id 1. */
#ifndef PL_SEAL_H
#define PL_SEAL_H

#include <stddef.h>
#include <stdint.h>

#include "pl_err.h"

#define PL_SEAL_KEY_LEN 32
#define PL_SEAL_NONCE_LEN 24
#define PL_SEAL_TAG_LEN 16
#define PL_SEAL_OVERHEAD (1 + PL_SEAL_NONCE_LEN + PL_SEAL_TAG_LEN)
#define PL_SEAL_MAX_KID 255
/* The largest key file read (255 keys of ~70 bytes, with room for comments). */
#define PL_SEAL_FILE_MAX (64u << 10)

typedef struct pl_seal pl_seal;

/* The ring in the n bytes of a key file. PL_ERR_CONFIG if they are not a
 * key file (*out NULL); the ring must hold at least one key, ids unique. */
pl_err pl_seal_parse(const uint8_t *p, size_t n, pl_seal **out);
/* A new ring of one random key, id 1. */
pl_seal *pl_seal_new(void);
void pl_seal_free(pl_seal *s);

/* The id of the key that seals (the highest). */
uint8_t pl_seal_current(const pl_seal *s);
/* 1 if the ring holds key kid. */
int pl_seal_has(const pl_seal *s, uint8_t kid);
/* The ring's ids, ascending, into ids (room for 255); their count. */
size_t pl_seal_ids(const pl_seal *s, uint8_t *ids);
/* Adds a random key with the next id (*kid); PL_ERR_CONFIG past id 255. */
pl_err pl_seal_add(pl_seal *s, uint8_t *kid);
/* Removes key kid; PL_ERR_CONFIG if it is the only one, NOT_FOUND if absent. */
pl_err pl_seal_remove(pl_seal *s, uint8_t kid);
/* The ring as a key file (pl_free it), its length in *n. */
char *pl_seal_format(const pl_seal *s, size_t *n);

/* Seals the n bytes at p with the current key and ad into out, which has
 * room for n + PL_SEAL_OVERHEAD bytes. */
void pl_seal_encrypt(const pl_seal *s, const uint8_t *ad, size_t adlen, const uint8_t *p, size_t n,
                     uint8_t *out);
/* Opens the n sealed bytes at c into out (room for n - PL_SEAL_OVERHEAD):
 * PL_ERR_NOT_FOUND if the ring lacks its key, PL_ERR_STORE if it is too
 * short or does not open (wrong key, other ad, altered bytes). */
pl_err pl_seal_decrypt(const pl_seal *s, const uint8_t *ad, size_t adlen, const uint8_t *c, size_t n,
                       uint8_t *out);
/* The key id of a sealed record (0 if it is too short to be one). */
uint8_t pl_seal_kid(const uint8_t *c, size_t n);

/* A ring shared by threads that seal and open (the store thread, media
 * workers) and replaced while they run (a rotation): readers take the
 * current ring with pl_seal_ref_get and may use it until the ref is freed
 * (a replaced ring is kept, not freed, until then). */
typedef struct pl_seal_ref pl_seal_ref;
pl_seal_ref *pl_seal_ref_new(pl_seal *s); /* takes s */
const pl_seal *pl_seal_ref_get(pl_seal_ref *r);
/* Publishes s (taken) as the ring; the old one stays valid. */
void pl_seal_ref_set(pl_seal_ref *r, pl_seal *s);
void pl_seal_ref_free(pl_seal_ref *r);

/* Reads the key file at path, refusing one that its group or others may
 * read or write (it must be 0600 or stricter). why says what is wrong. */
pl_err pl_seal_load(const char *path, pl_seal **out, char *why, size_t cap);
/* Writes s to path (0600) by a temporary file renamed over it. */
pl_err pl_seal_save(const pl_seal *s, const char *path);

#endif
