/* fuzz_strings: the check of every string of a client frame on its wire
 * bytes (pl_strings, over pl_utf8).
 *
 * Input: a type byte, then a protobuf payload.
 *
 * Oracles besides the sanitizers:
 *  - a payload protobuf-c unpacks is never BAD_FRAME to the walker (the
 *    session relies on it: it runs the walker only after unpacking);
 *  - a refusal names a field and a fault, and marks a top-level field;
 *  - an accepted payload unpacks to strings that are all valid UTF-8, and
 *    so does any payload after pl_strings_repair;
 *  - pl_utf8 agrees with a reference decoder written the other way round
 *    (decode any 1-4 byte pattern, then judge the value), on the payload
 *    (when it has no NUL, which pl_utf8 reports before what follows). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/pl_mem.h"
#include "common/pl_utf8.h"
#include "proto/pl_frame.h"
#include "proto/pl_strings.h"

#define FUZZ_CHECK(cond)                                                              \
  do {                                                                                \
    if (!(cond)) {                                                                    \
      fprintf(stderr, "fuzz_strings: %s:%d: CHECK(%s)\n", __FILE__, __LINE__, #cond); \
      abort();                                                                        \
    }                                                                                 \
  } while (0)

/* 1 if p[0..n) is UTF-8 per RFC 3629, decided by value, not by byte ranges. */
static int ref_utf8(const uint8_t *p, size_t n) {
  for (size_t i = 0; i < n;) {
    uint8_t c = p[i];
    size_t len = c < 0x80 ? 1 : (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : (c & 0xF8) == 0xF0 ? 4 : 0;
    if (!len || n - i < len)
      return 0;
    uint32_t v = len == 1 ? c : c & (0x7Fu >> len);
    for (size_t k = 1; k < len; k++) {
      if ((p[i + k] & 0xC0) != 0x80)
        return 0;
      v = v << 6 | (p[i + k] & 0x3Fu);
    }
    static const uint32_t min[] = {0, 0, 0x80, 0x800, 0x10000};
    if (v < min[len] || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF))
      return 0;
    i += len;
  }
  return 1;
}

/* Every string of an unpacked message (and its sub-messages) is UTF-8. */
static void strings_valid(const ProtobufCMessage *m) {
  const ProtobufCMessageDescriptor *md = m->descriptor;
  for (unsigned i = 0; i < md->n_fields; i++) {
    const ProtobufCFieldDescriptor *f = &md->fields[i];
    if (f->type != PROTOBUF_C_TYPE_STRING && f->type != PROTOBUF_C_TYPE_MESSAGE)
      continue;
    const char *slot = (const char *)m + f->offset;
    size_t n = 1;
    if (f->label == PROTOBUF_C_LABEL_REPEATED) {
      n = *(const size_t *)((const char *)m + f->quantifier_offset);
      slot = *(char *const *)slot;
    }
    for (size_t k = 0; k < n; k++) {
      const void *v = *(void *const *)(slot + k * sizeof(void *));
      if (f->type == PROTOBUF_C_TYPE_STRING && v)
        FUZZ_CHECK(pl_utf8_check(v, strlen(v), PL_UTF8_ANY, NULL, NULL) == PL_UTF8_OK);
      else if (f->type == PROTOBUF_C_TYPE_MESSAGE && v)
        strings_valid(v);
    }
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1)
    return 0;
  pl_frame f = {.type = data[0], .payload = data + 1, .payload_len = size - 1};
  pl_strings_fault fault;
  pl_err e = pl_strings_check(f.type, f.payload, f.payload_len, &fault);
  FUZZ_CHECK(e == PL_OK || e == PL_ERR_INVALID_ARGUMENT || e == PL_ERR_BAD_FRAME);
  ProtobufCMessage *m = pl_frame_unpack(&f);
  if (m)
    FUZZ_CHECK(e != PL_ERR_BAD_FRAME);
  if (e == PL_ERR_INVALID_ARGUMENT) {
    char msg[128];
    pl_strings_describe(&fault, msg, sizeof msg);
    FUZZ_CHECK(fault.why != PL_UTF8_OK && fault.field[0] && fault.bad_fields && strchr(msg, ':'));
  }
  if (e == PL_OK && m)
    strings_valid(m);
  if (m)
    protobuf_c_message_free_unpacked(m, NULL);
  /* What the server sends: once repaired, a payload unpacks to UTF-8 strings. */
  uint8_t *fixed = pl_malloc(f.payload_len + 1);
  memcpy(fixed, f.payload, f.payload_len);
  pl_strings_repair(f.type, fixed, f.payload_len);
  pl_frame g = {.type = f.type, .payload = fixed, .payload_len = f.payload_len};
  if ((m = pl_frame_unpack(&g)) != NULL) {
    strings_valid(m);
    protobuf_c_message_free_unpacked(m, NULL);
  }
  pl_free(fixed);
  if (!memchr(f.payload, 0, f.payload_len)) /* (a NUL is reported first, hiding what follows) */
    FUZZ_CHECK((pl_utf8_check(f.payload, f.payload_len, PL_UTF8_ANY, NULL, NULL) == PL_UTF8_OK) ==
               ref_utf8(f.payload, f.payload_len));
  FUZZ_CHECK(pl_mem_used() == 0);
  return 0;
}
