/* fuzz_proxy: the PROXY protocol v2 header parser (pl_proxy), the first
 * bytes of every connection on a listener behind a proxy.
 *
 * Checked: a header found is at least 16 bytes, at most PL_PROXY_MAX and
 * inside the input; every shorter prefix of it is "more needed" (never a
 * different answer), so a header split over reads parses the same; the
 * header alone parses to the same address; an address is IPv4 or IPv6. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "net/pl_proxy.h"

#define FUZZ_CHECK(cond)                                                            \
  do {                                                                              \
    if (!(cond)) {                                                                  \
      fprintf(stderr, "fuzz_proxy: %s:%d: CHECK(%s)\n", __FILE__, __LINE__, #cond); \
      abort();                                                                      \
    }                                                                               \
  } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  pl_proxy_info info, again;
  size_t used = 0, used2 = 0;
  pl_err e = pl_proxy_parse(data, size, &info, &used);
  FUZZ_CHECK(e == PL_OK || e == PL_ERR_AGAIN || e == PL_ERR_BAD_FRAME);
  if (e != PL_OK)
    return 0;
  FUZZ_CHECK(used >= 16 && used <= size && used <= PL_PROXY_MAX);
  FUZZ_CHECK(!info.has_addr || info.src.ss_family == AF_INET || info.src.ss_family == AF_INET6);
  FUZZ_CHECK(!(info.local && info.has_addr));
  FUZZ_CHECK(pl_proxy_parse(data, used, &again, &used2) == PL_OK && used2 == used);
  FUZZ_CHECK(memcmp(&info, &again, sizeof info) == 0);
  for (size_t k = 0; k < used; k++) {
    size_t u = 0;
    FUZZ_CHECK(pl_proxy_parse(data, k, &again, &u) == PL_ERR_AGAIN);
  }
  return 0;
}
