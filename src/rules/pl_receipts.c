#include "pl_receipts.h"

size_t pl_receipts_split_live(uint64_t *t, size_t *n, uint64_t *live, int (*online)(void *ud, uint64_t dev),
                              void *ud) {
  size_t keep = 0, nlive = 0;
  for (size_t i = 0; i < *n; i++) {
    if (online && online(ud, t[i]))
      live[nlive++] = t[i];
    else
      t[keep++] = t[i];
  }
  *n = keep;
  return nlive;
}
