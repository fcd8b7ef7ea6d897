#include "pl_idring.h"

#include <string.h>

#include "../common/pl_map.h"
#include "../common/pl_mem.h"

struct pl_idring {
  uint32_t cap, len, head; /* head: oldest entry once the ring wrapped, else 0 */
  int64_t *row;            /* row[cap], then fp[cap], in the same block */
  uint32_t *fp;
};

uint32_t pl_idring_fp(const char *id, size_t len) {
  uint64_t h = pl_hash_bytes(id, len);
  return (uint32_t)(h ^ (h >> 32));
}

static pl_idring *pl__alloc(uint32_t cap) {
  pl_idring *r = pl_malloc(sizeof *r + (size_t)cap * (sizeof(int64_t) + sizeof(uint32_t)));
  r->cap = cap;
  r->len = r->head = 0;
  r->row = (int64_t *)(r + 1);
  r->fp = (uint32_t *)(r->row + cap);
  return r;
}

/* A ring twice as large holding the same entries (only before it wraps). */
static pl_idring *pl__grow(pl_idring *old, uint32_t max) {
  uint32_t cap = old ? old->cap * 2 : 8;
  pl_idring *r = pl__alloc(cap < max ? cap : max);
  if (old) {
    memcpy(r->row, old->row, old->len * sizeof *r->row);
    memcpy(r->fp, old->fp, old->len * sizeof *r->fp);
    r->len = old->len;
    pl_free(old);
  }
  return r;
}

pl_idring *pl_idring_new(void) { return pl__grow(NULL, 8); }

size_t pl_idring_push(pl_idring **rp, uint32_t max, uint32_t fp, int64_t row) {
  pl_idring *r = *rp;
  size_t added = 0;
  if (max == 0)
    max = 1;
  if (!r || (r->len == r->cap && r->cap < max)) {
    uint32_t before = r ? r->cap : 0;
    r = *rp = pl__grow(r, max);
    added = r->cap - before;
  }
  if (r->len < r->cap) {
    r->row[r->len] = row;
    r->fp[r->len++] = fp;
  } else { /* full at max: the oldest goes */
    r->row[r->head] = row;
    r->fp[r->head] = fp;
    r->head = (r->head + 1) % r->cap;
  }
  return added;
}

/* Four fingerprints compared at once (gcc's and clang's vector extension:
 * SSE2 on x86-64, NEON on arm64, plain code elsewhere). */
typedef uint32_t pl__v4 __attribute__((vector_size(16)));

/* Whether any of the 16 fingerprints at f is fp: four vector compares
 * ORed, one branch. */
static int pl__any16(const uint32_t *f, pl__v4 key) {
  pl__v4 v[4];
  memcpy(v, f, sizeof v);
  pl__v4 m = (pl__v4)((v[0] == key) | (v[1] == key) | (v[2] == key) | (v[3] == key));
  uint64_t w[2];
  memcpy(w, &m, sizeof w);
  return (w[0] | w[1]) != 0;
}

int pl_idring_next(const pl_idring *r, uint32_t fp, uint32_t *pos, int64_t *row) {
  if (!r)
    return 0;
  /* In storage order, not age order: which match comes first does not
   * matter, the caller confirms each one. gcc 12 does not vectorise a scan
   * with an early exit, and a full ring (1,024 entries) is scanned on every
   * Send, so blocks of 16 are tested branch-free and only a block with a
   * match is walked. */
  const uint32_t *f = r->fp;
  size_t i = *pos, len = r->len;
  pl__v4 key = {fp, fp, fp, fp};
  while (i + 16 <= len && !pl__any16(f + i, key))
    i += 16;
  for (; i < len; i++)
    if (f[i] == fp) {
      *pos = (uint32_t)i + 1;
      *row = r->row[i];
      return 1;
    }
  *pos = r->len;
  return 0;
}

static void pl__put(uint8_t *p, uint64_t v, int n) {
  for (int i = 0; i < n; i++)
    p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t pl__get(const uint8_t *p, int n) {
  uint64_t v = 0;
  for (int i = 0; i < n; i++)
    v |= (uint64_t)p[i] << (8 * i);
  return v;
}

void pl_idring_save(const pl_idring *r, uint8_t **out, size_t *len) {
  uint32_t n = pl_idring_len(r);
  uint8_t *p = pl_malloc(n ? (size_t)n * 12 : 1);
  for (uint32_t k = 0; k < n; k++) {
    uint32_t i = (r->head + k) % r->cap;
    pl__put(p + (size_t)k * 12, (uint64_t)r->row[i], 8);
    pl__put(p + (size_t)k * 12 + 8, r->fp[i], 4);
  }
  *out = p;
  *len = (size_t)n * 12;
}

size_t pl_idring_load(pl_idring **r, uint32_t max, const uint8_t *p, size_t len) {
  size_t added = 0;
  for (size_t off = 0; off + 12 <= len; off += 12)
    added += pl_idring_push(r, max, (uint32_t)pl__get(p + off + 8, 4), (int64_t)pl__get(p + off, 8));
  return added;
}

uint32_t pl_idring_len(const pl_idring *r) { return r ? r->len : 0; }

uint32_t pl_idring_cap(const pl_idring *r) { return r ? r->cap : 0; }

void pl_idring_free(pl_idring *r) { pl_free(r); }
