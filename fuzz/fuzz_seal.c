/* fuzz_seal: the key file parser (pl_seal_parse) and the opening of sealed
 * records (pl_seal_decrypt): a key file is read at every start and SIGHUP.
 *
 * Input: the bytes of a key file.
 *
 * Oracles besides the sanitizers:
 *  - a parsed ring has a current key it holds, and round-trips through
 *    pl_seal_format: the same ids, the same current key, and a record
 *    sealed by one opens with the other;
 *  - the input, taken as a sealed record, never opens (no key sealed it). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/pl_mem.h"
#include "common/pl_seal.h"

#define FUZZ_CHECK(cond)                                                            \
  do {                                                                              \
    if (!(cond)) {                                                                  \
      fprintf(stderr, "fuzz_seal: %s:%d: CHECK(%s)\n", __FILE__, __LINE__, #cond); \
      abort();                                                                      \
    }                                                                               \
  } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  pl_seal *s = NULL, *back = NULL;
  if (pl_seal_parse(data, size, &s) != PL_OK) {
    FUZZ_CHECK(s == NULL);
    return 0;
  }
  uint8_t cur = pl_seal_current(s), ids[PL_SEAL_MAX_KID], ids2[PL_SEAL_MAX_KID];
  FUZZ_CHECK(cur && pl_seal_has(s, cur));
  size_t n, tn;
  char *text = pl_seal_format(s, &tn);
  FUZZ_CHECK(pl_seal_parse((const uint8_t *)text, tn, &back) == PL_OK);
  n = pl_seal_ids(s, ids);
  FUZZ_CHECK(n == pl_seal_ids(back, ids2) && memcmp(ids, ids2, n) == 0);
  FUZZ_CHECK(pl_seal_current(back) == cur);
  uint8_t c[8 + PL_SEAL_OVERHEAD], p[8];
  pl_seal_encrypt(s, data, size < 16 ? size : 16, (const uint8_t *)"fuzzseal", 8, c);
  FUZZ_CHECK(pl_seal_decrypt(back, data, size < 16 ? size : 16, c, sizeof c, p) == PL_OK);
  FUZZ_CHECK(memcmp(p, "fuzzseal", 8) == 0);
  if (size >= PL_SEAL_OVERHEAD) {
    uint8_t *out = pl_malloc(size - PL_SEAL_OVERHEAD + 1);
    FUZZ_CHECK(pl_seal_decrypt(s, NULL, 0, data, size, out) != PL_OK);
    pl_free(out);
  }
  pl_free(text);
  pl_seal_free(s);
  pl_seal_free(back);
  return 0;
}
