/* fuzz_msg: one protobuf message decoder, chosen at compile time with
 * -DPL_FUZZ_MSG=parley__<name>__descriptor (fuzz/CMakeLists.txt builds one
 * target per message of proto/parley.proto that either side decodes).
 *
 * The input is a payload as it follows the frame header. Whatever decodes
 * must pass protobuf_c_message_check, re-pack to exactly its packed size,
 * decode again, and re-pack to the same bytes: packing is canonical, so a
 * message that survives one round trip survives every later one unchanged
 * (the server relays Send bodies and ids it decoded).
 *
 * One known exception: protobuf-c 1.4 rejects field number 0 only when its
 * tag is a single byte, so an overlong tag (0x80 0x00) decodes as an unknown
 * field 0 that packs back to the short form, which then fails to decode.
 * Parley never re-packs a decoded message's unknown fields (it copies the
 * fields it knows into new messages), so such input is only packed, for
 * memory safety. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "parley.pb-c.h"

#ifndef PL_FUZZ_MSG
#error "build with -DPL_FUZZ_MSG=parley__<name>__descriptor"
#endif

#define FUZZ_CHECK(cond)                                                          \
  do {                                                                            \
    if (!(cond)) {                                                                \
      fprintf(stderr, "fuzz_msg: %s:%d: CHECK(%s)\n", __FILE__, __LINE__, #cond); \
      abort();                                                                    \
    }                                                                             \
  } while (0)

/* Packs m into a new malloc'd buffer; *n is its length. */
static uint8_t *pack(const ProtobufCMessage *m, size_t *n) {
  *n = protobuf_c_message_get_packed_size(m);
  uint8_t *out = malloc(*n ? *n : 1);
  FUZZ_CHECK(out != NULL);
  FUZZ_CHECK(protobuf_c_message_pack(m, out) == *n);
  return out;
}

/* An unknown field numbered 0 (an overlong tag) anywhere in m, nested
 * messages included: protobuf-c keeps it but cannot decode its own packing
 * of it, so such inputs skip the round trip. */
static int has_field_zero(const ProtobufCMessage *m) {
  if (!m)
    return 0;
  for (unsigned i = 0; i < m->n_unknown_fields; i++)
    if (m->unknown_fields[i].tag == 0)
      return 1;
  const ProtobufCMessageDescriptor *d = m->descriptor;
  for (unsigned i = 0; i < d->n_fields; i++) {
    const ProtobufCFieldDescriptor *f = &d->fields[i];
    if (f->type != PROTOBUF_C_TYPE_MESSAGE)
      continue;
    const char *base = (const char *)m;
    if (f->label == PROTOBUF_C_LABEL_REPEATED) {
      size_t n = *(const size_t *)(base + f->quantifier_offset);
      ProtobufCMessage *const *v = *(ProtobufCMessage *const *const *)(base + f->offset);
      for (size_t k = 0; k < n; k++)
        if (has_field_zero(v[k]))
          return 1;
    } else if (has_field_zero(*(ProtobufCMessage *const *)(base + f->offset))) {
      return 1;
    }
  }
  return 0;
}

/* b1 is the packing of a decoded message: it must decode and pack back to itself. */
static void check_round_trip(const ProtobufCMessageDescriptor *d, const uint8_t *b1, size_t n1) {
  ProtobufCMessage *m2 = protobuf_c_message_unpack(d, NULL, n1, b1);
  FUZZ_CHECK(m2 != NULL);
  FUZZ_CHECK(protobuf_c_message_check(m2));
  size_t n2;
  uint8_t *b2 = pack(m2, &n2);
  FUZZ_CHECK(n1 == n2);
  FUZZ_CHECK(n1 == 0 || memcmp(b1, b2, n1) == 0);
  free(b2);
  protobuf_c_message_free_unpacked(m2, NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const ProtobufCMessageDescriptor *d = &PL_FUZZ_MSG;
  ProtobufCMessage *m = protobuf_c_message_unpack(d, NULL, size, data);
  if (!m)
    return 0;
  FUZZ_CHECK(m->descriptor == d);
  FUZZ_CHECK(protobuf_c_message_check(m));
  size_t n;
  uint8_t *b = pack(m, &n);
  if (!has_field_zero(m))
    check_round_trip(d, b, n);
  free(b);
  protobuf_c_message_free_unpacked(m, NULL);
  return 0;
}
