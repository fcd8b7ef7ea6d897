#include "pl_hist.h"

const uint64_t pl_hist_us_bounds[] = {100,   250,    500,    1000,   2500,    5000,    10000,   25000,
                                      50000, 100000, 250000, 500000, 1000000, 2500000, 10000000};
const size_t pl_hist_us_n = sizeof pl_hist_us_bounds / sizeof pl_hist_us_bounds[0];
const uint64_t pl_hist_pow2_bounds[] = {1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096};
const size_t pl_hist_pow2_n = sizeof pl_hist_pow2_bounds / sizeof pl_hist_pow2_bounds[0];

void pl_hist_init(pl_hist *h, const uint64_t *bounds, size_t n) {
  h->bounds = bounds;
  h->n = n < PL_HIST_MAX ? n : PL_HIST_MAX;
  for (size_t i = 0; i <= PL_HIST_MAX; i++)
    atomic_init(&h->counts[i], 0);
  atomic_init(&h->sum, 0);
  atomic_init(&h->total, 0);
}

void pl_hist_add(pl_hist *h, uint64_t v) {
  size_t i = 0;
  while (i < h->n && v > h->bounds[i]) /* a dozen buckets: a scan beats a search */
    i++;
  atomic_store_explicit(&h->counts[i], atomic_load_explicit(&h->counts[i], memory_order_relaxed) + 1,
                        memory_order_relaxed);
  atomic_store_explicit(&h->sum, atomic_load_explicit(&h->sum, memory_order_relaxed) + v,
                        memory_order_relaxed);
  atomic_store_explicit(&h->total, atomic_load_explicit(&h->total, memory_order_relaxed) + 1,
                        memory_order_relaxed);
}
