/* The common layer: pl_map, pl_err, pl_bytes/pl_buf, pl_mem (src/common/). */
#include <stdlib.h>

#include "common/pl_buf.h"
#include "common/pl_err.h"
#include "common/pl_hist.h"
#include "common/pl_map.h"
#include "common/pl_mem.h"
#include "parley.pb-c.h"
#include "testlib.h"

/* xorshift64*: a deterministic stream for the stress tests. */
static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint64_t rng(void) {
  rng_state ^= rng_state >> 12;
  rng_state ^= rng_state << 25;
  rng_state ^= rng_state >> 27;
  return rng_state * 0x2545f4914f6cdd1dull;
}

/* ---- pl_map --------------------------------------------------------------- */

static void test_map_empty(void) {
  pl_map m;
  pl_map_init(&m);
  CHECK(pl_map_get(&m, 1) == NULL);
  CHECK(pl_map_del(&m, 1) == NULL);
  size_t it = 0;
  uint64_t k;
  void *v;
  CHECK(!pl_map_next(&m, &it, &k, &v));
  pl_map_free(&m);
}

static void test_map_put_get_del(void) {
  pl_map m;
  pl_map_init(&m);
  int a, b;
  CHECK(pl_map_put(&m, 7, &a) == NULL);
  CHECK(pl_map_get(&m, 7) == &a);
  CHECK(pl_map_put(&m, 7, &b) == &a); /* replaces, returns the previous value */
  CHECK_EQ_U(m.len, 1);
  CHECK(pl_map_get(&m, 7) == &b);
  CHECK(pl_map_del(&m, 7) == &b);
  CHECK(pl_map_get(&m, 7) == NULL);
  CHECK(pl_map_del(&m, 7) == NULL);
  CHECK_EQ_U(m.len, 0);
  pl_map_free(&m);
}

static void test_map_many_keys(void) {
  enum { N = 50000 };
  pl_map m;
  pl_map_init(&m);
  /* Sequential keys and keys that differ only in their high bits. */
  for (uint64_t i = 1; i <= N; i++) {
    CHECK(pl_map_put(&m, i, (void *)(uintptr_t)(i * 2)) == NULL);
    CHECK(pl_map_put(&m, i << 40, (void *)(uintptr_t)(i * 3)) == NULL);
  }
  CHECK_EQ_U(m.len, 2 * N);
  for (uint64_t i = 1; i <= N; i++) {
    CHECK(pl_map_get(&m, i) == (void *)(uintptr_t)(i * 2));
    CHECK(pl_map_get(&m, i << 40) == (void *)(uintptr_t)(i * 3));
  }
  CHECK(pl_map_get(&m, N + 1) == NULL);
  for (uint64_t i = 1; i <= N; i += 2)
    CHECK(pl_map_del(&m, i) == (void *)(uintptr_t)(i * 2));
  for (uint64_t i = 1; i <= N; i++)
    CHECK(pl_map_get(&m, i) == (i % 2 ? NULL : (void *)(uintptr_t)(i * 2)));
  pl_map_free(&m);
  CHECK(m.cap == 0 && m.len == 0);
}

/* Random puts, gets and deletes over a small key set (so slots are reused and
 * backward-shift deletion runs constantly), checked against a plain array. */
static void test_map_deletion_stress(void) {
  enum { KEYS = 700, OPS = 300000 };
  static uint64_t keys[KEYS];
  static void *ref[KEYS];
  for (size_t i = 0; i < KEYS; i++) {
    /* A third of the keys collide in their low 32 bits, a third are small, the rest random. */
    if (i % 3 == 0)
      keys[i] = ((uint64_t)(i + 1) << 32) | 5;
    else if (i % 3 == 1)
      keys[i] = i + 1;
    else
      keys[i] = rng() | 1;
    ref[i] = NULL;
  }
  pl_map m;
  pl_map_init(&m);
  size_t live = 0;
  for (size_t op = 0; op < OPS; op++) {
    size_t i = rng() % KEYS;
    uint64_t r = rng() % 10;
    if (r < 4) {
      void *v = (void *)(uintptr_t)(op + 1);
      CHECK(pl_map_put(&m, keys[i], v) == ref[i]);
      live += ref[i] == NULL;
      ref[i] = v;
    } else if (r < 8) {
      CHECK(pl_map_del(&m, keys[i]) == ref[i]);
      live -= ref[i] != NULL;
      ref[i] = NULL;
    } else {
      CHECK(pl_map_get(&m, keys[i]) == ref[i]);
    }
    CHECK_EQ_U(m.len, live);
    if (op % 10007 == 0) {
      for (size_t j = 0; j < KEYS; j++)
        CHECK(pl_map_get(&m, keys[j]) == ref[j]);
      size_t seen = 0, it = 0;
      uint64_t k;
      void *v;
      while (pl_map_next(&m, &it, &k, &v)) {
        seen++;
        size_t j = 0;
        while (j < KEYS && keys[j] != k)
          j++;
        CHECK(j < KEYS);
        CHECK(ref[j] == v);
      }
      CHECK_EQ_U(seen, live);
    }
  }
  /* Empty it completely, then it must still work. */
  for (size_t i = 0; i < KEYS; i++)
    CHECK(pl_map_del(&m, keys[i]) == ref[i]);
  CHECK_EQ_U(m.len, 0);
  CHECK(pl_map_put(&m, keys[0], &m) == NULL);
  CHECK(pl_map_get(&m, keys[0]) == &m);
  pl_map_free(&m);
}

static void test_hash_bytes(void) {
  CHECK(pl_hash_bytes("", 0) != 0);
  CHECK(pl_hash_bytes("alice", 5) == pl_hash_bytes("alice", 5));
  CHECK(pl_hash_bytes("alice", 5) != pl_hash_bytes("alicf", 5));
}

/* ---- pl_err --------------------------------------------------------------- */

/* The X-macro table itself, as data. */
static const struct {
  pl_err e;
  int val, wire;
  const char *name, *msg;
} errs[] = {
#define ERR_ROW(nm, v, w, m) {PL_ERR_##nm, v, w, #nm, m},
    PL_ERR_MAP(ERR_ROW)
#undef ERR_ROW
};

static void test_err_table(void) {
  size_t wire = 0;
  for (size_t i = 0; i < sizeof errs / sizeof errs[0]; i++) {
    pl_err e = errs[i].e;
    CHECK_EQ_I(e, errs[i].val);
    CHECK_STR(pl_err_name(e), errs[i].name);
    CHECK_STR(pl_err_msg(e), errs[i].msg);
    if (errs[i].wire) {
      wire++;
      CHECK_EQ_U(pl_err_to_wire(e), (unsigned)-errs[i].val);
      CHECK_EQ_I(pl_err_from_wire(pl_err_to_wire(e)), e);
      /* The table and the schema agree on the number and the name. */
      const ProtobufCEnumValue *v =
          protobuf_c_enum_descriptor_get_value(&parley__error_code__descriptor, -errs[i].val);
      CHECK(v != NULL);
      CHECK(strncmp(v->name, "ERR_", 4) == 0);
      CHECK_STR(v->name + 4, errs[i].name);
    } else if (e != PL_OK) {
      CHECK_EQ_U(pl_err_to_wire(e), PARLEY__ERROR_CODE__ERR_INTERNAL); /* internal-only codes */
      CHECK(errs[i].val <= -1000);
    }
  }
  /* Every ErrorCode of the schema but ERR_NONE has its pl_err. */
  CHECK_EQ_U(wire, parley__error_code__descriptor.n_values - 1);
  for (unsigned i = 0; i < parley__error_code__descriptor.n_values; i++) {
    int code = parley__error_code__descriptor.values[i].value;
    if (code != 0)
      CHECK_EQ_U(pl_err_to_wire(pl_err_from_wire((unsigned)code)), (unsigned)code);
  }
}

static void test_err_unknown_values(void) {
  CHECK_STR(pl_err_name((pl_err)-12345), "UNKNOWN");
  CHECK(pl_err_msg((pl_err)-12345) != NULL);
  CHECK_EQ_U(pl_err_to_wire((pl_err)-12345), PARLEY__ERROR_CODE__ERR_INTERNAL);
  CHECK_EQ_I(pl_err_from_wire(999), PL_ERR_INTERNAL);
  CHECK_EQ_I(pl_err_from_wire(1001), PL_ERR_INTERNAL); /* internal codes never come from the wire */
}

/* Regression: pl_err_from_wire gives internal-only codes (and PL_OK) private
 * case labels 100000 + |value|, so a peer's Error.code of 100000 decoded as
 * success and 101001 as PL_ERR_AGAIN. No wire number may map to PL_OK or to an
 * internal-only code. */
static void test_err_from_wire_never_returns_ok_or_internal_only_codes(void) {
  for (unsigned code = 0; code < 200000; code++) {
    pl_err e = pl_err_from_wire(code);
    if (e == PL_OK || e <= -1000)
      CHECK_EQ_I(pl_err_from_wire(code), PL_ERR_INTERNAL);
  }
  CHECK_EQ_I(pl_err_from_wire(UINT32_MAX), PL_ERR_INTERNAL);
}

/* ---- pl_bytes, pl_buf ----------------------------------------------------- */

static void test_bytes_append_consume(void) {
  pl_bytes b = {0};
  pl_bytes_append(&b, "", 0);
  CHECK(b.p == NULL && b.len == 0); /* nothing to add, nothing allocated */
  pl_bytes_append(&b, "hello ", 6);
  pl_bytes_append(&b, "world", 5);
  CHECK_EQ_U(b.len, 11);
  CHECK(memcmp(b.p, "hello world", 11) == 0);
  pl_bytes_consume(&b, 6);
  CHECK_EQ_U(b.len, 5);
  CHECK(memcmp(b.p, "world", 5) == 0);
  pl_bytes_append(&b, "!", 1);
  CHECK(memcmp(b.p, "world!", 6) == 0);
  pl_bytes_consume(&b, 0);
  CHECK_EQ_U(b.len, 6);
  pl_bytes_consume(&b, 100); /* more than there is: empties it */
  CHECK_EQ_U(b.len, 0);
  pl_bytes_append(&b, "x", 1);
  CHECK(b.len == 1 && b.p[0] == 'x');
  pl_bytes_free(&b);
  CHECK(b.p == NULL && b.len == 0 && b.cap == 0);
}

static void test_bytes_growth_keeps_content(void) {
  pl_bytes b = {0};
  uint8_t chunk[333];
  size_t total = 0, consumed = 0;
  for (int round = 0; round < 200; round++) {
    for (size_t i = 0; i < sizeof chunk; i++)
      chunk[i] = (uint8_t)(total + i);
    pl_bytes_append(&b, chunk, sizeof chunk);
    total += sizeof chunk;
    CHECK(b.cap >= b.len);
    if (round % 3 == 2) {
      pl_bytes_consume(&b, 100);
      consumed += 100;
    }
  }
  CHECK_EQ_U(b.len, total - consumed);
  for (size_t i = 0; i < b.len; i++)
    CHECK_EQ_U(b.p[i], (uint8_t)(consumed + i));
  pl_bytes_reserve(&b, 1 << 20);
  CHECK(b.cap >= b.len + (1 << 20));
  pl_bytes_free(&b);
}

static void test_buf_refcount(void) {
  size_t base = pl_mem_used();
  pl_buf *b = pl_buf_copy("frame", 5);
  CHECK_EQ_U(b->len, 5);
  CHECK(memcmp(b->data, "frame", 5) == 0);
  CHECK(pl_buf_ref(b) == b);
  pl_buf_unref(b);
  CHECK(memcmp(b->data, "frame", 5) == 0); /* still one holder */
  pl_buf_unref(b);
  pl_buf_unref(NULL);
  pl_buf *e = pl_buf_copy(NULL, 0);
  CHECK_EQ_U(e->len, 0);
  pl_buf_unref(e);
  CHECK_EQ_U(pl_mem_used(), base);
}

/* ---- pl_mem --------------------------------------------------------------- */

static void test_mem_used_up_and_down(void) {
  size_t base = pl_mem_used();
  void *a = pl_malloc(1000);
  CHECK_EQ_U(pl_mem_used(), base + 1000);
  uint8_t *c = pl_calloc(10, 10);
  CHECK_EQ_U(pl_mem_used(), base + 1100);
  for (int i = 0; i < 100; i++)
    CHECK_EQ_U(c[i], 0);
  a = pl_realloc(a, 5000);
  CHECK_EQ_U(pl_mem_used(), base + 5100);
  a = pl_realloc(a, 10);
  CHECK_EQ_U(pl_mem_used(), base + 110);
  char *s = pl_strdup("parley");
  CHECK_STR(s, "parley");
  CHECK_EQ_U(pl_mem_used(), base + 117);
  char *t = pl_strndup("parleyd", 3);
  CHECK_STR(t, "par");
  void *d = pl_memdup("abc", 3);
  CHECK(memcmp(d, "abc", 3) == 0);
  void *r = pl_realloc(NULL, 64); /* like malloc */
  CHECK(pl_mem_used() > base + 117);
  pl_free(a);
  pl_free(c);
  pl_free(s);
  pl_free(t);
  pl_free(d);
  pl_free(r);
  pl_free(NULL);
  CHECK_EQ_U(pl_mem_used(), base);
}

static void test_mem_map_returns_everything(void) {
  size_t base = pl_mem_used();
  pl_map m;
  pl_map_init(&m);
  for (uint64_t i = 1; i <= 10000; i++)
    pl_map_put(&m, i, &m);
  CHECK(pl_mem_used() > base + 10000 * sizeof(uint64_t));
  pl_map_free(&m);
  CHECK_EQ_U(pl_mem_used(), base);
}

/* Values land in the first bucket whose bound they do not exceed; above the
 * last bound, in +Inf; sum and total add up. */
static void test_hist_buckets(void) {
  pl_hist h;
  pl_hist_init(&h, pl_hist_us_bounds, pl_hist_us_n);
  uint64_t vals[] = {0, 100, 101, 250, 10000000, 10000001, 99999999};
  uint64_t sum = 0;
  for (size_t i = 0; i < sizeof vals / sizeof vals[0]; i++) {
    pl_hist_add(&h, vals[i]);
    sum += vals[i];
  }
  CHECK_EQ_U(atomic_load(&h.counts[0]), 2);       /* 0, 100: <= 100 us */
  CHECK_EQ_U(atomic_load(&h.counts[1]), 2);       /* 101, 250: <= 250 us */
  CHECK_EQ_U(atomic_load(&h.counts[h.n - 1]), 1); /* 10 s exactly */
  CHECK_EQ_U(atomic_load(&h.counts[h.n]), 2);     /* above the last bound */
  CHECK_EQ_U(atomic_load(&h.total), 7);
  CHECK_EQ_U(atomic_load(&h.sum), sum);
  pl_hist b;
  pl_hist_init(&b, pl_hist_pow2_bounds, pl_hist_pow2_n);
  pl_hist_add(&b, 3);
  CHECK_EQ_U(atomic_load(&b.counts[2]), 1); /* 3 -> the bucket of 4 */
}

int main(void) {
  RUN(test_hist_buckets);
  RUN(test_map_empty);
  RUN(test_map_put_get_del);
  RUN(test_map_many_keys);
  RUN(test_map_deletion_stress);
  RUN(test_hash_bytes);
  RUN(test_err_table);
  RUN(test_err_unknown_values);
  RUN(test_err_from_wire_never_returns_ok_or_internal_only_codes);
  RUN(test_bytes_append_consume);
  RUN(test_bytes_growth_keeps_content);
  RUN(test_buf_refcount);
  RUN(test_mem_used_up_and_down);
  RUN(test_mem_map_returns_everything);
  return tl_summary();
}
