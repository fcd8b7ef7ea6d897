#include "pl_map.h"

#include "pl_mem.h"

static size_t pl__slot(uint64_t key, size_t cap) {
  key ^= key >> 33;
  key *= 0xff51afd7ed558ccdULL;
  key ^= key >> 33;
  return (size_t)key & (cap - 1);
}

void pl_map_init(pl_map *m) {
  m->keys = NULL;
  m->vals = NULL;
  m->cap = m->len = 0;
}

void pl_map_free(pl_map *m) {
  pl_free(m->keys);
  pl_free(m->vals);
  pl_map_init(m);
}

void *pl_map_get(const pl_map *m, uint64_t key) {
  if (!m->cap)
    return NULL;
  for (size_t i = pl__slot(key, m->cap);; i = (i + 1) & (m->cap - 1)) {
    if (m->keys[i] == key)
      return m->vals[i];
    if (m->keys[i] == 0)
      return NULL;
  }
}

static void pl__grow(pl_map *m) {
  pl_map old = *m;
  m->cap = old.cap ? old.cap * 2 : 16;
  m->keys = pl_calloc(m->cap, sizeof *m->keys);
  m->vals = pl_calloc(m->cap, sizeof *m->vals);
  m->len = 0;
  for (size_t i = 0; i < old.cap; i++)
    if (old.keys[i])
      pl_map_put(m, old.keys[i], old.vals[i]);
  pl_free(old.keys);
  pl_free(old.vals);
}

void *pl_map_put(pl_map *m, uint64_t key, void *val) {
  if ((m->len + 1) * 4 >= m->cap * 3)
    pl__grow(m);
  for (size_t i = pl__slot(key, m->cap);; i = (i + 1) & (m->cap - 1)) {
    if (m->keys[i] == key) {
      void *prev = m->vals[i];
      m->vals[i] = val;
      return prev;
    }
    if (m->keys[i] == 0) {
      m->keys[i] = key;
      m->vals[i] = val;
      m->len++;
      return NULL;
    }
  }
}

void *pl_map_del(pl_map *m, uint64_t key) {
  if (!m->cap)
    return NULL;
  size_t mask = m->cap - 1, i = pl__slot(key, m->cap);
  while (m->keys[i] != key) {
    if (m->keys[i] == 0)
      return NULL;
    i = (i + 1) & mask;
  }
  void *val = m->vals[i];
  /* Backward-shift deletion keeps probe chains intact without tombstones. */
  for (size_t j = (i + 1) & mask; m->keys[j]; j = (j + 1) & mask) {
    size_t home = pl__slot(m->keys[j], m->cap);
    if (((j - home) & mask) >= ((j - i) & mask)) {
      m->keys[i] = m->keys[j];
      m->vals[i] = m->vals[j];
      i = j;
    }
  }
  m->keys[i] = 0;
  m->vals[i] = NULL;
  m->len--;
  return val;
}

int pl_map_next(const pl_map *m, size_t *it, uint64_t *key, void **val) {
  for (; *it < m->cap; (*it)++) {
    if (m->keys[*it]) {
      *key = m->keys[*it];
      *val = m->vals[*it];
      (*it)++;
      return 1;
    }
  }
  return 0;
}

uint64_t pl_hash_bytes(const void *p, size_t n) {
  const unsigned char *s = p;
  uint64_t h = 0xcbf29ce484222325ULL;
  for (size_t i = 0; i < n; i++) {
    h ^= s[i];
    h *= 0x100000001b3ULL;
  }
  return h ? h : 1;
}
