/* fuzz_json: the JSON decoder of the WebSocket JSON binding (pl_json).
 *
 * Input: a text message. If it decodes, the result must be one well-formed
 * native frame whose payload unpacks and whose strings the session's check
 * can walk; if its strings pass that check, encoding the frame back to JSON
 * and decoding again must give the same bytes (nothing is lost or invented).
 * A frame with a bad string (a \u0000, a lone surrogate) carries it as an
 * unknown field, for the session to refuse: it is not encoded back.
 *
 * The decoded form the session takes from the JSON gateways
 * (pl_json_to_msgs, on_message) must say the same: decoded iff the frame
 * is, of the same type and encoded size, and its strings judged as the
 * frame's are (pl_strings_check_msg against pl_strings_check). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/pl_mem.h"
#include "proto/pl_frame.h"
#include "proto/pl_strings.h"
#include "web/pl_json.h"

#define FUZZ_CHECK(cond)                                                           \
  do {                                                                             \
    if (!(cond)) {                                                                 \
      fprintf(stderr, "fuzz_json: %s:%d: CHECK(%s)\n", __FILE__, __LINE__, #cond); \
      abort();                                                                     \
    }                                                                              \
  } while (0)

typedef struct decoded {
  int n;
  uint8_t type;
  ProtobufCMessage *msg;
  pl_json_msg *owner;
} decoded;

static void take(uint8_t type, ProtobufCMessage *msg, pl_json_msg *owner, void *ud) {
  decoded *d = ud;
  d->n++;
  d->type = type;
  d->msg = msg;
  d->owner = owner;
}

/* The decoded message against the frame a (NULL: the frame did not decode). */
static void check_decoded(const uint8_t *data, size_t size, const pl_bytes *a) {
  decoded d = {0};
  char why[160];
  pl_err e = pl_json_to_msgs((const char *)data, size, 0, take, &d, why, sizeof why);
  FUZZ_CHECK((e == PL_OK) == (a != NULL) && d.n == (e == PL_OK));
  if (e != PL_OK)
    return;
  pl_frame f;
  size_t used;
  FUZZ_CHECK(pl_frame_parse(a->p, a->len, UINT32_MAX, &f, &used) == PL_OK);
  FUZZ_CHECK(d.type == f.type && protobuf_c_message_get_packed_size(d.msg) == f.payload_len);
  pl_strings_fault wire, msg;
  pl_err we = pl_strings_check(f.type, f.payload, f.payload_len, &wire);
  pl_err me = pl_strings_check_msg(d.msg, &msg);
  FUZZ_CHECK(we == me);
  FUZZ_CHECK(we != PL_ERR_INVALID_ARGUMENT ||
             (wire.why == msg.why && wire.cp == msg.cp && wire.bad_fields == msg.bad_fields &&
              !strcmp(wire.field, msg.field)));
  pl_json_msg_free(d.owner);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  pl_bytes a = {0}, j = {0}, b = {0};
  char why[160];
  if (pl_json_to_frame((const char *)data, size, &a, why, sizeof why) == PL_OK) {
    pl_frame f;
    size_t used;
    FUZZ_CHECK(pl_frame_parse(a.p, a.len, UINT32_MAX, &f, &used) == PL_OK && used == a.len);
    ProtobufCMessage *m = pl_frame_unpack(&f);
    FUZZ_CHECK(m != NULL);
    protobuf_c_message_free_unpacked(m, NULL);
    pl_strings_fault bad;
    pl_err e = pl_strings_check(f.type, f.payload, f.payload_len, &bad);
    FUZZ_CHECK(e != PL_ERR_BAD_FRAME);
    FUZZ_CHECK(pl_json_from_frame(a.p, a.len, &j) == PL_OK);
    FUZZ_CHECK(pl_json_to_frame((const char *)j.p, j.len, &b, why, sizeof why) == PL_OK);
    FUZZ_CHECK(e != PL_OK || (a.len == b.len && memcmp(a.p, b.p, a.len) == 0));
    check_decoded(data, size, &a);
  } else {
    FUZZ_CHECK(why[0] != '\0');
    check_decoded(data, size, NULL);
  }
  pl_bytes_free(&a);
  pl_bytes_free(&j);
  pl_bytes_free(&b);
  FUZZ_CHECK(pl_mem_used() == 0);
  return 0;
}
