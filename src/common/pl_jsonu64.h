/* pl_jsonu64: a 64-bit unsigned integer as a JSON value, the one rule every
 * JSON Parley writes follows (protocol.md 1.2): a number up to 2^53 - 1,
 * which a JavaScript number holds exactly, a string of decimal digits above
 * it. Ids of a PostgreSQL store carry their bucket in the high bits
 * (scaling.md 1), so most are above. Header only: its users link jansson. */
#ifndef PL_JSONU64_H
#define PL_JSONU64_H

#include <jansson.h>
#include <stdint.h>
#include <stdio.h>

#define PL_JSON_MAX_SAFE 9007199254740991ULL /* 2^53 - 1 */

static inline json_t *pl_json_u64(uint64_t v) {
  if (v <= PL_JSON_MAX_SAFE)
    return json_integer((json_int_t)v);
  char buf[24];
  snprintf(buf, sizeof buf, "%llu", (unsigned long long)v);
  return json_string(buf);
}

#endif
