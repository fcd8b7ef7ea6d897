/* fuzz_filter: the sensitive-word list parser and matcher (pl_filter).
 *
 * Input: a list file, a NUL byte, then a message. The list must parse or
 * fail cleanly; a parsed filter checks the message, and a masked result
 * keeps every byte it did not mask: it is never longer than the message
 * and has at least one '*'. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/pl_mem.h"
#include "core/pl_filter.h"

#define FUZZ_CHECK(cond)                                                             \
  do {                                                                               \
    if (!(cond)) {                                                                   \
      fprintf(stderr, "fuzz_filter: %s:%d: CHECK(%s)\n", __FILE__, __LINE__, #cond); \
      abort();                                                                       \
    }                                                                                \
  } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const uint8_t *nul = memchr(data, 0, size);
  size_t list_len = nul ? (size_t)(nul - data) : size;
  const uint8_t *msg = nul ? nul + 1 : data + size;
  size_t msg_len = nul ? size - list_len - 1 : 0;
  char why[200];
  pl_filter *f = NULL;
  if (pl_filter_parse((const char *)data, list_len, &f, why, sizeof why) != PL_OK) {
    FUZZ_CHECK(f == NULL && strncmp(why, "line ", 5) == 0);
    return 0;
  }
  uint8_t *out = NULL;
  size_t out_len = 0;
  pl_filter_result r = pl_filter_check(f, msg, msg_len, &out, &out_len);
  FUZZ_CHECK(r == PL_FILTER_PASS || r == PL_FILTER_MASKED || r == PL_FILTER_REJECT);
  FUZZ_CHECK((r == PL_FILTER_MASKED) == (out != NULL));
  if (out) {
    FUZZ_CHECK(out_len <= msg_len);
    FUZZ_CHECK(memchr(out, '*', out_len) != NULL);
    pl_free(out);
  }
  pl_filter_unref(f);
  return 0;
}
