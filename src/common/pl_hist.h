/* pl_hist: a fixed-bucket histogram with one writer (its thread adds; a
 * loop that needs one has its own) and any number of readers (/metrics, as
 * Prometheus buckets). Single-writer counters need no locked instruction on
 * the hot path: relaxed loads and stores, never torn. Values are integers in
 * the caller's unit (microseconds, requests). */
#ifndef PL_HIST_H
#define PL_HIST_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#define PL_HIST_MAX 24

typedef struct pl_hist {
  const uint64_t *bounds; /* upper bounds, increasing; a last +Inf bucket is implied */
  size_t n;
  atomic_uint_fast64_t counts[PL_HIST_MAX + 1]; /* per bucket, not cumulative */
  atomic_uint_fast64_t sum, total;
} pl_hist;

/* Latency buckets in microseconds: 100 us .. 10 s. */
extern const uint64_t pl_hist_us_bounds[];
extern const size_t pl_hist_us_n;
/* Size buckets: 1, 2, 4, ... 4096. */
extern const uint64_t pl_hist_pow2_bounds[];
extern const size_t pl_hist_pow2_n;

void pl_hist_init(pl_hist *h, const uint64_t *bounds, size_t n);
void pl_hist_add(pl_hist *h, uint64_t v);

#endif
