/* fuzz_busmsg: the cluster bus's message decoder (pl_busmsg), what a node
 * reads from every other node on NATS.
 *
 * Checked: a message decodes only if it is exactly as long as its fields
 * say; every pointer it gives lies inside the input; encoding what was
 * decoded gives back the very same bytes (so no field is misread). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/pl_busmsg.h"

#define FUZZ_CHECK(cond)                                                             \
  do {                                                                               \
    if (!(cond)) {                                                                   \
      fprintf(stderr, "fuzz_busmsg: %s:%d: CHECK(%s)\n", __FILE__, __LINE__, #cond); \
      abort();                                                                       \
    }                                                                                \
  } while (0)

static int inside(const uint8_t *p, size_t n, const uint8_t *data, size_t size) {
  return !n || (p >= data && p + n <= data + size);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  pl_busmsg m;
  pl_err e = pl_busmsg_decode(data, size, &m);
  FUZZ_CHECK(e == PL_OK || e == PL_ERR_BAD_FRAME);
  if (e != PL_OK)
    return 0;
  FUZZ_CHECK(inside((const uint8_t *)m.node, m.node_len, data, size));
  FUZZ_CHECK(inside(m.ids_be, 8u * (size_t)m.nids, data, size));
  FUZZ_CHECK(inside(m.payload, m.plen, data, size));
  uint64_t *ids = malloc((m.nids ? m.nids : 1) * sizeof *ids);
  for (uint32_t i = 0; i < m.nids; i++)
    ids[i] = pl_busmsg_id(&m, i);
  pl_busmsg again = m;
  again.ids = ids;
  again.ids_be = NULL;
  FUZZ_CHECK(pl_busmsg_size(&again) == size);
  uint8_t *out = malloc(size);
  size_t n = 0;
  FUZZ_CHECK(pl_busmsg_encode(&again, out, size, &n) == PL_OK && n == size);
  FUZZ_CHECK(memcmp(out, data, size) == 0);
  free(out);
  free(ids);
  return 0;
}
