/* pl_idring: the recent client message ids of one device, as 32-bit
 * fingerprints with the dedup row each came from, newest last.
 *
 * The store keeps one ring per device that sent lately so that checking a
 * new Send for a retry costs a scan of a few KiB in memory instead of a
 * lookup in a B-tree keyed by a random id (whose every insert dirties a
 * random page: see docs/benchmarks.md). A fingerprint match is only a
 * candidate; the caller confirms it against the stored row. A ring grows
 * by doubling up to its maximum, then overwrites its oldest entry. */
#ifndef PL_IDRING_H
#define PL_IDRING_H

#include <stddef.h>
#include <stdint.h>

typedef struct pl_idring pl_idring;

/* 32-bit fingerprint of a client id. */
uint32_t pl_idring_fp(const char *id, size_t len);

/* An empty ring (never NULL, so it can sit in a pl_map). */
pl_idring *pl_idring_new(void);

/* Appends (fp, row); *r may be NULL (a new ring) and may move. Returns the
 * number of entries added to the ring's footprint (0 when one was
 * overwritten), for a caller that caps the total. */
size_t pl_idring_push(pl_idring **r, uint32_t max, uint32_t fp, int64_t row);

/* Rows whose fingerprint is fp, in no particular order: start with
 * *pos = 0 and call until it returns 0. */
int pl_idring_next(const pl_idring *r, uint32_t fp, uint32_t *pos, int64_t *row);

/* The entries oldest first as (int64 row, uint32 fp) little-endian, 12
 * bytes each: *len bytes at *out (pl_free it). */
void pl_idring_save(const pl_idring *r, uint8_t **out, size_t *len);
/* Appends the entries of a pl_idring_save image to *r; a torn image (not a
 * multiple of 12 bytes) loads its whole entries only. */
size_t pl_idring_load(pl_idring **r, uint32_t max, const uint8_t *p, size_t len);

uint32_t pl_idring_len(const pl_idring *r);
uint32_t pl_idring_cap(const pl_idring *r);
void pl_idring_free(pl_idring *r);

#endif
