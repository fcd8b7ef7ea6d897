/* pl_mqtt: MQTT 3.1.1 and 5.0 packets, decoded and encoded (see pl_mqtt.h).
 *
 * Decoding walks a cursor over the body; every step returns 0 or the MQTT 5
 * reason code of what is wrong, so the first fault found is the one named.
 * Properties are checked against one table (identifier -> kind, packets
 * allowed in), the way the spec's table 2.2.2.2 says it. */
#include "pl_mqtt.h"

#include <string.h>

#include "../common/pl_utf8.h"

#define MALFORMED PL_MQTT_RC_MALFORMED
#define PROTOCOL PL_MQTT_RC_PROTOCOL_ERROR

/* ---- the property table ---- */

enum { K_NONE, K_BYTE, K_U16, K_U32, K_VAR, K_STR, K_BIN, K_PAIR };

/* Where a property may appear: bit t for packet type t, bit 0 for a will. */
#define W (1u << 0)
#define T(x) (1u << PL_MQTT_##x)

typedef struct prop_rule {
  uint8_t kind;
  uint8_t bool_only; /* the value is 0 or 1 */
  uint8_t nonzero;   /* 0 is a protocol error */
  uint16_t where;
} prop_rule;

static const prop_rule RULES[PL_MQTT_P_MAX_ID + 1] = {
    [PL_MQTT_P_PAYLOAD_FORMAT] = {K_BYTE, 1, 0, T(PUBLISH) | W},
    [PL_MQTT_P_MESSAGE_EXPIRY] = {K_U32, 0, 0, T(PUBLISH) | W},
    [PL_MQTT_P_CONTENT_TYPE] = {K_STR, 0, 0, T(PUBLISH) | W},
    [PL_MQTT_P_RESPONSE_TOPIC] = {K_STR, 0, 0, T(PUBLISH) | W},
    [PL_MQTT_P_CORRELATION] = {K_BIN, 0, 0, T(PUBLISH) | W},
    [PL_MQTT_P_SUB_ID] = {K_VAR, 0, 1, T(PUBLISH) | T(SUBSCRIBE)},
    [PL_MQTT_P_SESSION_EXPIRY] = {K_U32, 0, 0, T(CONNECT) | T(CONNACK) | T(DISCONNECT)},
    [PL_MQTT_P_ASSIGNED_ID] = {K_STR, 0, 0, T(CONNACK)},
    [PL_MQTT_P_SERVER_KEEPALIVE] = {K_U16, 0, 0, T(CONNACK)},
    [PL_MQTT_P_AUTH_METHOD] = {K_STR, 0, 0, T(CONNECT) | T(CONNACK) | T(AUTH)},
    [PL_MQTT_P_AUTH_DATA] = {K_BIN, 0, 0, T(CONNECT) | T(CONNACK) | T(AUTH)},
    [PL_MQTT_P_REQ_PROBLEM] = {K_BYTE, 1, 0, T(CONNECT)},
    [PL_MQTT_P_WILL_DELAY] = {K_U32, 0, 0, W},
    [PL_MQTT_P_REQ_RESPONSE] = {K_BYTE, 1, 0, T(CONNECT)},
    [PL_MQTT_P_RESPONSE_INFO] = {K_STR, 0, 0, T(CONNACK)},
    [PL_MQTT_P_SERVER_REF] = {K_STR, 0, 0, T(CONNACK) | T(DISCONNECT)},
    [PL_MQTT_P_REASON_STRING] = {K_STR, 0, 0,
                                 T(CONNACK) | T(PUBACK) | T(PUBREC) | T(PUBREL) | T(PUBCOMP) | T(SUBACK) |
                                     T(UNSUBACK) | T(DISCONNECT) | T(AUTH)},
    [PL_MQTT_P_RECEIVE_MAX] = {K_U16, 0, 1, T(CONNECT) | T(CONNACK)},
    [PL_MQTT_P_TOPIC_ALIAS_MAX] = {K_U16, 0, 0, T(CONNECT) | T(CONNACK)},
    [PL_MQTT_P_TOPIC_ALIAS] = {K_U16, 0, 1, T(PUBLISH)},
    [PL_MQTT_P_MAX_QOS] = {K_BYTE, 1, 0, T(CONNACK)},
    [PL_MQTT_P_RETAIN_AVAILABLE] = {K_BYTE, 1, 0, T(CONNACK)},
    [PL_MQTT_P_USER] = {K_PAIR, 0, 0, 0xFFFEu | W},
    [PL_MQTT_P_MAX_PACKET] = {K_U32, 0, 1, T(CONNECT) | T(CONNACK)},
    [PL_MQTT_P_WILDCARD_AVAILABLE] = {K_BYTE, 1, 0, T(CONNACK)},
    [PL_MQTT_P_SUB_ID_AVAILABLE] = {K_BYTE, 1, 0, T(CONNACK)},
    [PL_MQTT_P_SHARED_AVAILABLE] = {K_BYTE, 1, 0, T(CONNACK)},
};

/* May this property repeat in a packet of this type? */
static int prop_repeats(int id, int where) {
  return id == PL_MQTT_P_USER || (id == PL_MQTT_P_SUB_ID && where == PL_MQTT_PUBLISH);
}

void pl_mqtt_prop_u32(pl_mqtt_props *pr, int id, uint32_t v) {
  pr->has |= 1ull << id;
  pr->u32[id] = v;
}

void pl_mqtt_prop_str(pl_mqtt_props *pr, int id, const void *p, size_t n) {
  pr->has |= 1ull << id;
  pr->str[id] = (pl_mqtt_str){p, n};
}

/* ---- reading ---- */

typedef struct rd {
  const uint8_t *p;
  size_t n, off;
} rd;

static size_t rd_left(const rd *r) { return r->n - r->off; }

static uint8_t rd_u8(rd *r, uint8_t *v) {
  if (rd_left(r) < 1)
    return MALFORMED;
  *v = r->p[r->off++];
  return 0;
}

static uint8_t rd_u16(rd *r, uint16_t *v) {
  if (rd_left(r) < 2)
    return MALFORMED;
  *v = (uint16_t)(r->p[r->off] << 8 | r->p[r->off + 1]);
  r->off += 2;
  return 0;
}

static uint8_t rd_u32(rd *r, uint32_t *v) {
  if (rd_left(r) < 4)
    return MALFORMED;
  const uint8_t *q = r->p + r->off;
  *v = (uint32_t)q[0] << 24 | (uint32_t)q[1] << 16 | (uint32_t)q[2] << 8 | q[3];
  r->off += 4;
  return 0;
}

/* A variable byte integer: at most four bytes (MQTT 1.5.5). */
static uint8_t rd_var(rd *r, uint32_t *v) {
  uint32_t x = 0;
  for (int i = 0; i < 4; i++) {
    uint8_t b;
    if (rd_u8(r, &b))
      return MALFORMED;
    x |= (uint32_t)(b & 0x7F) << (7 * i);
    if (!(b & 0x80)) {
      *v = x;
      return 0;
    }
  }
  return MALFORMED;
}

static uint8_t rd_bin(rd *r, pl_mqtt_str *s) {
  uint16_t len;
  if (rd_u16(r, &len) || rd_left(r) < len)
    return MALFORMED;
  s->p = r->p + r->off;
  s->n = len;
  r->off += len;
  return 0;
}

static uint8_t rd_str(rd *r, pl_mqtt_str *s) {
  if (rd_bin(r, s))
    return MALFORMED;
  return pl_utf8_check(s->p, s->n, PL_UTF8_ANY, NULL, NULL) == PL_UTF8_OK ? 0 : MALFORMED;
}

/* One property's value into pr (repeats only counted: they stay in raw). */
static uint8_t prop_value(rd *r, int id, pl_mqtt_props *pr) {
  const prop_rule *ru = &RULES[id];
  uint32_t v = 0;
  pl_mqtt_str s = {0}, s2 = {0};
  uint8_t b;
  uint16_t h;
  uint8_t e = 0;
  switch (ru->kind) {
  case K_BYTE: e = rd_u8(r, &b), v = b; break;
  case K_U16: e = rd_u16(r, &h), v = h; break;
  case K_U32: e = rd_u32(r, &v); break;
  case K_VAR: e = rd_var(r, &v); break;
  case K_STR: e = rd_str(r, &s); break;
  case K_BIN: e = rd_bin(r, &s); break;
  default: e = rd_str(r, &s) ? MALFORMED : rd_str(r, &s2); break;
  }
  if (e)
    return e;
  if ((ru->bool_only && v > 1) || (ru->nonzero && v == 0))
    return PROTOCOL;
  if (id == PL_MQTT_P_RESPONSE_TOPIC && !pl_mqtt_topic_name_ok(s.p, s.n))
    return PROTOCOL;
  if (id == PL_MQTT_P_USER) {
    if (!pr->nuser++)
      pr->user_k = s, pr->user_v = s2;
  } else if (!PL_MQTT_HAS(pr, id)) {
    pr->u32[id] = v;
    pr->str[id] = s;
  }
  pr->has |= 1ull << id;
  return 0;
}

/* A property block (length, then properties) for a packet of type where
 * (0: a will's). */
static uint8_t rd_props(rd *r, int where, pl_mqtt_props *pr) {
  uint32_t len;
  memset(pr, 0, sizeof *pr);
  if (rd_var(r, &len) || rd_left(r) < len)
    return MALFORMED;
  rd sub = {r->p + r->off, len, 0};
  pr->raw = (pl_mqtt_str){sub.p, len};
  r->off += len;
  while (rd_left(&sub)) {
    uint32_t id;
    if (rd_var(&sub, &id))
      return MALFORMED;
    if (id > PL_MQTT_P_MAX_ID || RULES[id].kind == K_NONE || !(RULES[id].where & (1u << where)))
      return id <= PL_MQTT_P_MAX_ID && RULES[id].kind != K_NONE ? PROTOCOL : MALFORMED;
    if (PL_MQTT_HAS(pr, id) && !prop_repeats((int)id, where))
      return PROTOCOL;
    uint8_t e = prop_value(&sub, (int)id, pr);
    if (e)
      return e;
  }
  if (PL_MQTT_HAS(pr, PL_MQTT_P_AUTH_DATA) && !PL_MQTT_HAS(pr, PL_MQTT_P_AUTH_METHOD))
    return PROTOCOL;
  return 0;
}

/* Walks a decoded property block to the next property id, leaving its
 * value's reader at the value. */
static int raw_next(const pl_mqtt_props *pr, size_t *it, int want, rd *val) {
  rd r = {pr->raw.p, pr->raw.n, *it};
  while (rd_left(&r)) {
    uint32_t id;
    if (rd_var(&r, &id) || id > PL_MQTT_P_MAX_ID || RULES[id].kind == K_NONE)
      return 0;
    rd at = r;
    pl_mqtt_props scratch;
    memset(&scratch, 0, sizeof scratch);
    if (prop_value(&r, (int)id, &scratch))
      return 0;
    if ((int)id == want) {
      *val = at;
      *it = r.off;
      return 1;
    }
  }
  *it = r.off;
  return 0;
}

int pl_mqtt_user_next(const pl_mqtt_props *pr, size_t *it, pl_mqtt_str *k, pl_mqtt_str *v) {
  rd val;
  if (!raw_next(pr, it, PL_MQTT_P_USER, &val))
    return 0;
  rd_bin(&val, k);
  rd_bin(&val, v);
  return 1;
}

/* ---- topics ---- */

int pl_mqtt_topic_name_ok(const uint8_t *p, size_t n) {
  if (!n)
    return 0;
  for (size_t i = 0; i < n; i++)
    if (p[i] == '+' || p[i] == '#')
      return 0;
  return 1;
}

int pl_mqtt_topic_filter_ok(const uint8_t *p, size_t n) {
  if (!n)
    return 0;
  for (size_t i = 0; i < n; i++) {
    int starts = i == 0 || p[i - 1] == '/', ends = i + 1 == n || p[i + 1] == '/';
    if (p[i] == '+' && !(starts && ends))
      return 0;
    if (p[i] == '#' && !(starts && i + 1 == n))
      return 0;
  }
  return 1;
}

/* ---- the fixed header ---- */

/* The flags each type must carry (PUBLISH's are its own). */
static int flags_ok(uint8_t type, uint8_t flags) {
  if (type == PL_MQTT_PUBLISH)
    return (flags & 6) != 6 && !((flags & 8) && !(flags & 6)); /* QoS 3; DUP on QoS 0 */
  if (type == PL_MQTT_PUBREL || type == PL_MQTT_SUBSCRIBE || type == PL_MQTT_UNSUBSCRIBE)
    return flags == 2;
  return flags == 0;
}

pl_err pl_mqtt_header(const uint8_t *p, size_t n, uint32_t max, uint8_t *type, uint8_t *flags, size_t *hlen,
                      size_t *rlen, uint8_t *why) {
  *why = 0;
  if (n < 1)
    return PL_ERR_AGAIN;
  *type = p[0] >> 4;
  *flags = p[0] & 15;
  if (*type == 0) {
    *why = MALFORMED;
    return PL_ERR_BAD_FRAME;
  }
  uint32_t len = 0;
  for (size_t i = 1; i <= 4; i++) {
    if (i >= n)
      return PL_ERR_AGAIN;
    len |= (uint32_t)(p[i] & 0x7F) << (7 * (i - 1));
    if (!(p[i] & 0x80)) {
      *hlen = i + 1;
      *rlen = len;
      if (max && (uint64_t)len + i + 1 > max) {
        *why = PL_MQTT_RC_PACKET_TOO_LARGE;
        return PL_ERR_FRAME_TOO_LARGE;
      }
      return PL_OK;
    }
  }
  *why = MALFORMED;
  return PL_ERR_BAD_FRAME;
}

/* ---- packets ---- */

static uint8_t rd_packet_id(rd *r, uint16_t *id) {
  if (rd_u16(r, id))
    return MALFORMED;
  return *id ? 0 : PROTOCOL;
}

/* Reads properties when the packet is MQTT 5. */
static uint8_t rd_props_v(rd *r, uint8_t version, int where, pl_mqtt_props *pr) {
  if (version != PL_MQTT_V5) {
    memset(pr, 0, sizeof *pr);
    return 0;
  }
  return rd_props(r, where, pr);
}

static uint8_t dec_will(rd *r, pl_mqtt_pkt *pk) {
  uint8_t e = rd_props_v(r, pk->version, 0, &pk->will_props);
  if (!e)
    e = rd_str(r, &pk->will_topic);
  if (!e && !pl_mqtt_topic_name_ok(pk->will_topic.p, pk->will_topic.n))
    e = pk->version == PL_MQTT_V5 ? PL_MQTT_RC_TOPIC_NAME_INVALID : MALFORMED;
  if (!e)
    e = rd_bin(r, &pk->will_payload);
  return e;
}

static uint8_t dec_connect_flags(pl_mqtt_pkt *pk) {
  uint8_t f = pk->cflags, will = f & PL_MQTT_CF_WILL, wqos = (f >> 3) & 3;
  if (f & 1)
    return MALFORMED; /* reserved */
  if (wqos == 3 || (!will && (wqos || (f & PL_MQTT_CF_WILL_RETAIN))))
    return MALFORMED;
  if (pk->version == PL_MQTT_V311 && (f & PL_MQTT_CF_PASSWORD) && !(f & PL_MQTT_CF_USERNAME))
    return MALFORMED;
  return 0;
}

/* CONNECT: "MQTT", the level, flags, keep alive, properties; then client
 * id, the will, user name and password as the flags say. *bad_version
 * is set for a name or level this codec does not speak. */
static uint8_t dec_connect(rd *r, pl_mqtt_pkt *pk, int *bad_version) {
  pl_mqtt_str name;
  uint8_t e = rd_str(r, &name);
  if (!e)
    e = rd_u8(r, &pk->version);
  if (e)
    return e;
  if (name.n != 4 || memcmp(name.p, "MQTT", 4) ||
      (pk->version != PL_MQTT_V311 && pk->version != PL_MQTT_V5)) {
    *bad_version = 1;
    return PL_MQTT_RC_UNSUPPORTED_VERSION;
  }
  if ((e = rd_u8(r, &pk->cflags)) || (e = dec_connect_flags(pk)) || (e = rd_u16(r, &pk->keepalive)))
    return e;
  if ((e = rd_props_v(r, pk->version, PL_MQTT_CONNECT, &pk->props)) || (e = rd_str(r, &pk->client_id)))
    return e;
  if ((pk->cflags & PL_MQTT_CF_WILL) && (e = dec_will(r, pk)))
    return e;
  if ((pk->cflags & PL_MQTT_CF_USERNAME) && (e = rd_str(r, &pk->username)))
    return e;
  if ((pk->cflags & PL_MQTT_CF_PASSWORD) && (e = rd_bin(r, &pk->password)))
    return e;
  return 0;
}

static uint8_t dec_connack(rd *r, pl_mqtt_pkt *pk) {
  uint8_t e = rd_u8(r, &pk->cflags);
  if (!e)
    e = rd_u8(r, &pk->reason);
  if (!e && (pk->cflags & 0xFE))
    e = MALFORMED;
  if (!e && pk->version != PL_MQTT_V5 && pk->reason > PL_MQTT3_NOT_AUTHORIZED)
    e = MALFORMED;
  if (!e)
    e = rd_props_v(r, pk->version, PL_MQTT_CONNACK, &pk->props);
  return e;
}

static uint8_t dec_publish(rd *r, pl_mqtt_pkt *pk) {
  pk->qos = (pk->flags >> 1) & 3;
  pk->dup = (pk->flags >> 3) & 1;
  pk->retain = pk->flags & 1;
  uint8_t e = rd_str(r, &pk->topic);
  if (!e && pk->qos)
    e = rd_packet_id(r, &pk->id);
  if (!e)
    e = rd_props_v(r, pk->version, PL_MQTT_PUBLISH, &pk->props);
  if (e)
    return e;
  /* MQTT 5 lets a topic alias stand for an empty name. */
  int alias = PL_MQTT_HAS(&pk->props, PL_MQTT_P_TOPIC_ALIAS);
  if (pk->topic.n ? !pl_mqtt_topic_name_ok(pk->topic.p, pk->topic.n) : !alias)
    return pk->version == PL_MQTT_V5 ? PL_MQTT_RC_TOPIC_NAME_INVALID : MALFORMED;
  pk->payload = (pl_mqtt_str){r->p + r->off, rd_left(r)};
  r->off = r->n;
  return 0;
}

/* PUBACK, PUBREC, PUBREL, PUBCOMP: an id; in MQTT 5 maybe a reason, then
 * maybe properties (either may be left out when the rest is default). */
static uint8_t dec_ack(rd *r, pl_mqtt_pkt *pk) {
  uint8_t e = rd_packet_id(r, &pk->id);
  if (e || pk->version != PL_MQTT_V5 || !rd_left(r))
    return e;
  if ((e = rd_u8(r, &pk->reason)) || !rd_left(r))
    return e;
  return rd_props(r, pk->type, &pk->props);
}

static uint8_t dec_subscribe(rd *r, pl_mqtt_pkt *pk) {
  uint8_t e = rd_packet_id(r, &pk->id);
  if (!e)
    e = rd_props_v(r, pk->version, pk->type, &pk->props);
  if (e)
    return e;
  pk->list = (pl_mqtt_str){r->p + r->off, rd_left(r)};
  int sub = pk->type == PL_MQTT_SUBSCRIBE;
  uint8_t reserved = pk->version == PL_MQTT_V5 ? 0xC0 : 0xFC;
  while (rd_left(r)) {
    pl_mqtt_str f;
    uint8_t o = 0;
    if ((e = rd_str(r, &f)) || (sub && (e = rd_u8(r, &o))))
      return e;
    if (!pl_mqtt_topic_filter_ok(f.p, f.n))
      return pk->version == PL_MQTT_V5 ? PL_MQTT_RC_TOPIC_FILTER_INVALID : MALFORMED;
    if ((o & reserved) || (o & 3) == 3 || ((o >> 4) & 3) == 3)
      return MALFORMED;
    pk->count++;
  }
  return pk->count ? 0 : PROTOCOL;
}

/* SUBACK, UNSUBACK: an id, properties, one reason code per entry (a 3.1.1
 * UNSUBACK has none). */
static uint8_t dec_suback(rd *r, pl_mqtt_pkt *pk) {
  uint8_t e = rd_packet_id(r, &pk->id);
  if (!e)
    e = rd_props_v(r, pk->version, pk->type, &pk->props);
  if (e)
    return e;
  pk->list = (pl_mqtt_str){r->p + r->off, rd_left(r)};
  pk->count = (uint32_t)rd_left(r);
  r->off = r->n;
  if (pk->type == PL_MQTT_UNSUBACK && pk->version != PL_MQTT_V5)
    return pk->count ? MALFORMED : 0;
  for (uint32_t i = 0; i < pk->count && pk->version != PL_MQTT_V5; i++)
    if (pk->list.p[i] > 2 && pk->list.p[i] != 0x80)
      return MALFORMED;
  return pk->count ? 0 : PROTOCOL;
}

/* DISCONNECT, AUTH: MQTT 5 only carries a reason and properties. */
static uint8_t dec_reason_props(rd *r, pl_mqtt_pkt *pk) {
  if (pk->version != PL_MQTT_V5 || !rd_left(r))
    return 0;
  uint8_t e = rd_u8(r, &pk->reason);
  if (e || !rd_left(r))
    return e;
  return rd_props(r, pk->type, &pk->props);
}

static uint8_t dec_body(rd *r, pl_mqtt_pkt *pk, int *bad_version) {
  switch (pk->type) {
  case PL_MQTT_CONNECT: return dec_connect(r, pk, bad_version);
  case PL_MQTT_CONNACK: return dec_connack(r, pk);
  case PL_MQTT_PUBLISH: return dec_publish(r, pk);
  case PL_MQTT_PUBACK:
  case PL_MQTT_PUBREC:
  case PL_MQTT_PUBREL:
  case PL_MQTT_PUBCOMP: return dec_ack(r, pk);
  case PL_MQTT_SUBSCRIBE:
  case PL_MQTT_UNSUBSCRIBE: return dec_subscribe(r, pk);
  case PL_MQTT_SUBACK:
  case PL_MQTT_UNSUBACK: return dec_suback(r, pk);
  case PL_MQTT_PINGREQ:
  case PL_MQTT_PINGRESP: return 0;
  case PL_MQTT_DISCONNECT: return dec_reason_props(r, pk);
  case PL_MQTT_AUTH: return pk->version == PL_MQTT_V5 ? dec_reason_props(r, pk) : MALFORMED;
  default: return MALFORMED;
  }
}

pl_err pl_mqtt_decode(const uint8_t *p, size_t n, uint8_t version, pl_mqtt_pkt *out, uint8_t *why) {
  uint8_t type, flags;
  size_t hlen, rlen;
  memset(out, 0, sizeof *out);
  pl_err e = pl_mqtt_header(p, n, 0, &type, &flags, &hlen, &rlen, why);
  if (e == PL_ERR_AGAIN || (e == PL_OK && hlen + rlen != n)) {
    *why = MALFORMED; /* not one whole packet */
    return PL_ERR_BAD_FRAME;
  }
  if (e != PL_OK)
    return e;
  out->type = type, out->flags = flags, out->version = version;
  if (!flags_ok(type, flags)) {
    *why = MALFORMED;
    return PL_ERR_BAD_FRAME;
  }
  rd r = {p + hlen, rlen, 0};
  int bad_version = 0;
  *why = dec_body(&r, out, &bad_version);
  if (!*why && rd_left(&r))
    *why = MALFORMED; /* bytes after the last field */
  if (bad_version)
    return PL_ERR_UNSUPPORTED_VERSION;
  return *why ? PL_ERR_BAD_FRAME : PL_OK;
}

int pl_mqtt_sub_next(const pl_mqtt_pkt *pk, size_t *it, pl_mqtt_sub *out) {
  rd r = {pk->list.p, pk->list.n, *it};
  out->opts = 0;
  if (!rd_left(&r) || rd_bin(&r, &out->filter))
    return 0;
  if (pk->type == PL_MQTT_SUBSCRIBE && rd_u8(&r, &out->opts))
    return 0;
  *it = r.off;
  return 1;
}

const char *pl_mqtt_type_name(uint8_t type) {
  static const char *const names[] = {
      "?",         "CONNECT", "CONNACK",     "PUBLISH",  "PUBACK",  "PUBREC",   "PUBREL",     "PUBCOMP",
      "SUBSCRIBE", "SUBACK",  "UNSUBSCRIBE", "UNSUBACK", "PINGREQ", "PINGRESP", "DISCONNECT", "AUTH"};
  return type < 16 ? names[type] : "?";
}

/* ---- encoding ---- */

typedef struct wr {
  pl_bytes *b;
  int bad; /* a field the protocol cannot carry */
} wr;

static void wr_u8(wr *w, uint8_t v) { pl_bytes_append(w->b, &v, 1); }

static void wr_u16(wr *w, uint32_t v) {
  uint8_t q[2] = {(uint8_t)(v >> 8), (uint8_t)v};
  pl_bytes_append(w->b, q, 2);
}

static void wr_u32(wr *w, uint32_t v) {
  uint8_t q[4] = {(uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v};
  pl_bytes_append(w->b, q, 4);
}

/* A variable byte integer into q (4 bytes at most); its length. */
static size_t var_put(uint8_t *q, uint32_t v) {
  size_t i = 0;
  do {
    q[i] = (uint8_t)(v & 0x7F);
    v >>= 7;
    if (v)
      q[i] |= 0x80;
    i++;
  } while (v && i < 4);
  return i;
}

static void wr_var(wr *w, uint32_t v) {
  uint8_t q[4];
  if (v > PL_MQTT_MAX_REMAINING)
    w->bad = 1;
  pl_bytes_append(w->b, q, var_put(q, v));
}

static void wr_bin(wr *w, const pl_mqtt_str *s) {
  if (s->n > 0xFFFF)
    w->bad = 1;
  wr_u16(w, (uint32_t)s->n);
  if (s->n)
    pl_bytes_append(w->b, s->p, s->n);
}

/* Copies every property id of a decoded block (the repeating ones). */
static void wr_raw_repeats(wr *w, const pl_mqtt_props *pr, int id) {
  size_t it = 0;
  rd val;
  while (raw_next(pr, &it, id, &val)) {
    size_t start = val.off;
    pl_mqtt_props scratch;
    memset(&scratch, 0, sizeof scratch);
    prop_value(&val, id, &scratch);
    wr_var(w, (uint32_t)id);
    pl_bytes_append(w->b, val.p + start, val.off - start);
  }
}

static void wr_prop(wr *w, const pl_mqtt_props *pr, int id) {
  const prop_rule *ru = &RULES[id];
  uint32_t v = pr->u32[id];
  wr_var(w, (uint32_t)id);
  switch (ru->kind) {
  case K_BYTE: wr_u8(w, (uint8_t)v); break;
  case K_U16: wr_u16(w, v); break;
  case K_U32: wr_u32(w, v); break;
  case K_VAR: wr_var(w, v); break;
  default: wr_bin(w, &pr->str[id]); break;
  }
}

/* The property block (MQTT 5): its length, then each property in
 * identifier order; repeats come from raw. */
static void wr_props(wr *w, const pl_mqtt_props *pr, int where) {
  pl_bytes tmp = {0};
  wr t = {&tmp, 0};
  for (int id = 1; id <= PL_MQTT_P_MAX_ID; id++) {
    if (!PL_MQTT_HAS(pr, id) || RULES[id].kind == K_NONE)
      continue;
    if (prop_repeats(id, where) && pr->raw.n)
      wr_raw_repeats(&t, pr, id);
    else if (id == PL_MQTT_P_USER) {
      wr_var(&t, id);
      wr_bin(&t, &pr->user_k);
      wr_bin(&t, &pr->user_v);
    } else
      wr_prop(&t, pr, id);
  }
  w->bad |= t.bad;
  wr_var(w, (uint32_t)tmp.len);
  if (tmp.len)
    pl_bytes_append(w->b, tmp.p, tmp.len);
  pl_bytes_free(&tmp);
}

static void wr_props_v(wr *w, uint8_t version, const pl_mqtt_props *pr, int where) {
  if (version == PL_MQTT_V5)
    wr_props(w, pr, where);
}

static void enc_connect(wr *w, const pl_mqtt_pkt *pk, uint8_t version) {
  wr_bin(w, &(pl_mqtt_str){(const uint8_t *)"MQTT", 4});
  wr_u8(w, version);
  wr_u8(w, pk->cflags);
  wr_u16(w, pk->keepalive);
  wr_props_v(w, version, &pk->props, PL_MQTT_CONNECT);
  wr_bin(w, &pk->client_id);
  if (pk->cflags & PL_MQTT_CF_WILL) {
    wr_props_v(w, version, &pk->will_props, 0);
    wr_bin(w, &pk->will_topic);
    wr_bin(w, &pk->will_payload);
  }
  if (pk->cflags & PL_MQTT_CF_USERNAME)
    wr_bin(w, &pk->username);
  if (pk->cflags & PL_MQTT_CF_PASSWORD)
    wr_bin(w, &pk->password);
}

static void enc_publish(wr *w, const pl_mqtt_pkt *pk, uint8_t version) {
  wr_bin(w, &pk->topic);
  if (pk->qos)
    wr_u16(w, pk->id);
  wr_props_v(w, version, &pk->props, PL_MQTT_PUBLISH);
  if (pk->payload.n)
    pl_bytes_append(w->b, pk->payload.p, pk->payload.n);
}

/* An MQTT 5 ack leaves out a success reason and empty properties. */
static void enc_ack(wr *w, const pl_mqtt_pkt *pk, uint8_t version) {
  wr_u16(w, pk->id);
  if (version != PL_MQTT_V5 || (!pk->reason && !pk->props.has))
    return;
  wr_u8(w, pk->reason);
  if (pk->props.has)
    wr_props(w, &pk->props, pk->type);
}

static void enc_subscribe(wr *w, const pl_mqtt_pkt *pk, uint8_t version, const pl_mqtt_sub *subs,
                          size_t nsubs) {
  wr_u16(w, pk->id);
  wr_props_v(w, version, &pk->props, pk->type);
  size_t it = 0;
  pl_mqtt_sub s;
  for (size_t i = 0; subs ? i < nsubs : pl_mqtt_sub_next(pk, &it, &s); i++) {
    const pl_mqtt_sub *e = subs ? &subs[i] : &s;
    wr_bin(w, &e->filter);
    if (pk->type == PL_MQTT_SUBSCRIBE)
      wr_u8(w, e->opts);
  }
}

static void enc_suback(wr *w, const pl_mqtt_pkt *pk, uint8_t version) {
  wr_u16(w, pk->id);
  wr_props_v(w, version, &pk->props, pk->type);
  if (pk->type == PL_MQTT_SUBACK || version == PL_MQTT_V5)
    pl_bytes_append(w->b, pk->list.p, pk->list.n);
}

static void enc_reason_props(wr *w, const pl_mqtt_pkt *pk, uint8_t version) {
  if (version != PL_MQTT_V5 || (!pk->reason && !pk->props.has))
    return;
  wr_u8(w, pk->reason);
  if (pk->props.has)
    wr_props(w, &pk->props, pk->type);
}

static void enc_body(wr *w, const pl_mqtt_pkt *pk, uint8_t version, const pl_mqtt_sub *subs, size_t nsubs) {
  switch (pk->type) {
  case PL_MQTT_CONNECT: enc_connect(w, pk, version); break;
  case PL_MQTT_CONNACK:
    wr_u8(w, pk->cflags);
    wr_u8(w, pk->reason);
    wr_props_v(w, version, &pk->props, PL_MQTT_CONNACK);
    break;
  case PL_MQTT_PUBLISH: enc_publish(w, pk, version); break;
  case PL_MQTT_PUBACK:
  case PL_MQTT_PUBREC:
  case PL_MQTT_PUBREL:
  case PL_MQTT_PUBCOMP: enc_ack(w, pk, version); break;
  case PL_MQTT_SUBSCRIBE:
  case PL_MQTT_UNSUBSCRIBE: enc_subscribe(w, pk, version, subs, nsubs); break;
  case PL_MQTT_SUBACK:
  case PL_MQTT_UNSUBACK: enc_suback(w, pk, version); break;
  case PL_MQTT_DISCONNECT:
  case PL_MQTT_AUTH: enc_reason_props(w, pk, version); break;
  default: break;
  }
}

/* The fixed header's flags for a packet about to be encoded. */
static uint8_t enc_flags(const pl_mqtt_pkt *pk) {
  if (pk->type == PL_MQTT_PUBLISH)
    return (uint8_t)(pk->dup << 3 | (pk->qos & 3) << 1 | (pk->retain & 1));
  if (pk->type == PL_MQTT_PUBREL || pk->type == PL_MQTT_SUBSCRIBE || pk->type == PL_MQTT_UNSUBSCRIBE)
    return 2;
  return 0;
}

pl_err pl_mqtt_encode(const pl_mqtt_pkt *pk, uint8_t version, const pl_mqtt_sub *subs, size_t nsubs,
                      pl_bytes *out) {
  pl_bytes body = {0};
  wr w = {&body, 0};
  pl_err e = PL_ERR_INVALID_ARGUMENT;
  if (pk->type == 0 || pk->type > PL_MQTT_AUTH)
    goto out;
  enc_body(&w, pk, version, subs, nsubs);
  if (w.bad || body.len > PL_MQTT_MAX_REMAINING)
    goto out;
  uint8_t h[5];
  h[0] = (uint8_t)(pk->type << 4 | enc_flags(pk));
  size_t hl = 1 + var_put(h + 1, (uint32_t)body.len);
  pl_bytes_reserve(out, hl + body.len);
  pl_bytes_append(out, h, hl);
  if (body.len)
    pl_bytes_append(out, body.p, body.len);
  e = PL_OK;
out:
  pl_bytes_free(&body);
  return e;
}
