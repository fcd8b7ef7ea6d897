/* pl_map: open-addressing hash map from a 64-bit key to a pointer, for the
 * hot lookups (device id -> connection, device id -> loop). Not thread safe:
 * each map has one owner thread, or its owner's lock. Key 0 is reserved. */
#ifndef PL_MAP_H
#define PL_MAP_H

#include <stddef.h>
#include <stdint.h>

typedef struct pl_map {
  uint64_t *keys;
  void **vals;
  size_t cap, len; /* cap is 0 or a power of two */
} pl_map;

void pl_map_init(pl_map *m);
void pl_map_free(pl_map *m);
void *pl_map_get(const pl_map *m, uint64_t key);
/* Sets key to val (val must not be NULL); returns the previous value or NULL. */
void *pl_map_put(pl_map *m, uint64_t key, void *val);
/* Removes key; returns its value or NULL. */
void *pl_map_del(pl_map *m, uint64_t key);

/* Iteration: for (size_t i = 0; pl_map_next(m, &i, &k, &v);) */
int pl_map_next(const pl_map *m, size_t *it, uint64_t *key, void **val);

/* 64-bit FNV-1a of a byte string, never 0: a key for string-keyed caches. */
uint64_t pl_hash_bytes(const void *p, size_t n);

#endif
