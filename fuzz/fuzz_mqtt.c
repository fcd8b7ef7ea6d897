/* fuzz_mqtt: the MQTT codec (pl_mqtt) as the gateway drives it.
 *
 * Input: one byte choosing the version (bit 0: 3.1.1 or 5) and a maximum
 * packet size (bits 1-7, times 16; 0 none), then a stream of packets cut by
 * pl_mqtt_header and decoded one by one until one is refused or the bytes
 * run out.
 *
 * Checked: a header's lengths stay inside what it said and under the
 * maximum; every view of a decoded packet lies inside the packet; a decoded
 * packet encodes, its encoding decodes, and encoding that again gives the
 * same bytes (the codec agrees with itself); walking the list and the user
 * properties ends. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mqtt/pl_mqtt.h"

#define FUZZ_CHECK(cond)                                                           \
  do {                                                                             \
    if (!(cond)) {                                                                 \
      fprintf(stderr, "fuzz_mqtt: %s:%d: CHECK(%s)\n", __FILE__, __LINE__, #cond); \
      abort();                                                                     \
    }                                                                              \
  } while (0)

static int inside(pl_mqtt_str s, const uint8_t *p, size_t n) {
  return !s.p || (s.p >= p && s.p + s.n <= p + n);
}

static void walk(const pl_mqtt_pkt *pk) {
  size_t it = 0, k = 0;
  pl_mqtt_sub s;
  pl_mqtt_str a, b;
  if (pk->type == PL_MQTT_SUBSCRIBE || pk->type == PL_MQTT_UNSUBSCRIBE) {
    while (pl_mqtt_sub_next(pk, &it, &s))
      k++;
    FUZZ_CHECK(k == pk->count);
  }
  it = k = 0;
  while (pl_mqtt_user_next(&pk->props, &it, &a, &b))
    k++;
  FUZZ_CHECK(k == pk->props.nuser);
}

/* Encode, decode, encode: the two encodings are equal. */
static void round_trip(const pl_mqtt_pkt *pk, uint8_t version) {
  uint8_t v = pk->type == PL_MQTT_CONNECT ? pk->version : version, why;
  pl_bytes e1 = {0}, e2 = {0};
  pl_mqtt_pkt d;
  FUZZ_CHECK(pl_mqtt_encode(pk, v, NULL, 0, &e1) == PL_OK);
  FUZZ_CHECK(pl_mqtt_decode(e1.p, e1.len, version, &d, &why) == PL_OK);
  FUZZ_CHECK(d.type == pk->type && d.id == pk->id && d.count == pk->count && d.payload.n == pk->payload.n);
  FUZZ_CHECK(pl_mqtt_encode(&d, v, NULL, 0, &e2) == PL_OK);
  FUZZ_CHECK(e1.len == e2.len && !memcmp(e1.p, e2.p, e1.len));
  pl_bytes_free(&e1);
  pl_bytes_free(&e2);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1)
    return 0;
  uint8_t version = (data[0] & 1) ? PL_MQTT_V5 : PL_MQTT_V311;
  uint32_t max = (uint32_t)(data[0] >> 1) * 16;
  const uint8_t *p = data + 1;
  size_t n = size - 1;
  while (n) {
    uint8_t type, flags, why;
    size_t hl, rl;
    pl_err e = pl_mqtt_header(p, n, max, &type, &flags, &hl, &rl, &why);
    FUZZ_CHECK(e == PL_OK || e == PL_ERR_AGAIN || e == PL_ERR_BAD_FRAME || e == PL_ERR_FRAME_TOO_LARGE);
    if (e != PL_OK || hl + rl > n)
      return 0;
    FUZZ_CHECK(hl >= 2 && hl <= 5 && rl <= PL_MQTT_MAX_REMAINING && (!max || hl + rl <= max));
    pl_mqtt_pkt pk;
    e = pl_mqtt_decode(p, hl + rl, version, &pk, &why);
    FUZZ_CHECK(e == PL_OK ? why == 0 : why >= 0x80);
    if (e != PL_OK)
      return 0;
    FUZZ_CHECK(inside(pk.topic, p, n) && inside(pk.payload, p, n) && inside(pk.client_id, p, n) &&
               inside(pk.list, p, n) && inside(pk.props.raw, p, n) && inside(pk.password, p, n));
    walk(&pk);
    if (pk.type == PL_MQTT_CONNECT)
      version = pk.version; /* what follows is spoken at the level asked for */
    round_trip(&pk, version);
    p += hl + rl;
    n -= hl + rl;
  }
  return 0;
}
