/* pl_mqtt: a pure codec for MQTT 3.1.1 and 5.0 packets over (pointer, length).
 *
 * No sockets, no globals, no allocation while decoding: a decoded packet is
 * a set of views into the caller's bytes, valid while they are. Decoding is
 * two steps, the way a stream is read:
 *
 *   pl_mqtt_header()  the fixed header: type, flags, remaining length (at
 *                     most four bytes, not necessarily minimal), checked
 *                     against the receiver's Maximum Packet Size before the
 *                     body is waited for
 *   pl_mqtt_decode()  one whole packet: every rule the spec puts on its
 *                     variable header, properties and payload
 *
 * A refusal says why as the MQTT 5 reason code the spec names for it
 * (0x81 Malformed Packet, 0x82 Protocol Error, 0x84 Unsupported Protocol
 * Version, 0x95 Packet Too Large); a 3.1.1 receiver just closes, but for a
 * CONNECT of an unknown level, answered CONNACK 0x01.
 *
 * Strings are UTF-8 as MQTT 1.5.4 says: well-formed, no U+0000 (pl_utf8).
 * Topic filters must be well-formed ('#' last and alone in its level, '+'
 * alone in its level); topic names carry no wildcard. */
#ifndef PL_MQTT_H
#define PL_MQTT_H

#include <stddef.h>
#include <stdint.h>

#include "../common/pl_buf.h"
#include "../common/pl_err.h"

enum {
  PL_MQTT_CONNECT = 1,
  PL_MQTT_CONNACK,
  PL_MQTT_PUBLISH,
  PL_MQTT_PUBACK,
  PL_MQTT_PUBREC,
  PL_MQTT_PUBREL,
  PL_MQTT_PUBCOMP,
  PL_MQTT_SUBSCRIBE,
  PL_MQTT_SUBACK,
  PL_MQTT_UNSUBSCRIBE,
  PL_MQTT_UNSUBACK,
  PL_MQTT_PINGREQ,
  PL_MQTT_PINGRESP,
  PL_MQTT_DISCONNECT,
  PL_MQTT_AUTH,
};

/* Protocol levels of CONNECT. */
#define PL_MQTT_V311 4
#define PL_MQTT_V5 5

/* MQTT 5 reason codes (the ones this server says or checks for). */
enum {
  PL_MQTT_RC_SUCCESS = 0x00,
  PL_MQTT_RC_GRANTED_QOS1 = 0x01,
  PL_MQTT_RC_GRANTED_QOS2 = 0x02,
  PL_MQTT_RC_NO_MATCHING_SUBSCRIBERS = 0x10,
  PL_MQTT_RC_NO_SUBSCRIPTION_EXISTED = 0x11,
  PL_MQTT_RC_UNSPECIFIED = 0x80,
  PL_MQTT_RC_MALFORMED = 0x81,
  PL_MQTT_RC_PROTOCOL_ERROR = 0x82,
  PL_MQTT_RC_IMPL_SPECIFIC = 0x83,
  PL_MQTT_RC_UNSUPPORTED_VERSION = 0x84,
  PL_MQTT_RC_CLIENT_ID_INVALID = 0x85,
  PL_MQTT_RC_BAD_CREDENTIALS = 0x86,
  PL_MQTT_RC_NOT_AUTHORIZED = 0x87,
  PL_MQTT_RC_SERVER_UNAVAILABLE = 0x88,
  PL_MQTT_RC_SERVER_BUSY = 0x89,
  PL_MQTT_RC_SHUTTING_DOWN = 0x8B,
  PL_MQTT_RC_BAD_AUTH_METHOD = 0x8C,
  PL_MQTT_RC_KEEPALIVE_TIMEOUT = 0x8D,
  PL_MQTT_RC_SESSION_TAKEN_OVER = 0x8E,
  PL_MQTT_RC_TOPIC_FILTER_INVALID = 0x8F,
  PL_MQTT_RC_TOPIC_NAME_INVALID = 0x90,
  PL_MQTT_RC_PACKET_ID_IN_USE = 0x91,
  PL_MQTT_RC_PACKET_ID_NOT_FOUND = 0x92,
  PL_MQTT_RC_RECEIVE_MAX_EXCEEDED = 0x93,
  PL_MQTT_RC_PACKET_TOO_LARGE = 0x95,
  PL_MQTT_RC_QUOTA_EXCEEDED = 0x97,
  PL_MQTT_RC_PAYLOAD_FORMAT_INVALID = 0x99,
  PL_MQTT_RC_RETAIN_NOT_SUPPORTED = 0x9A,
  PL_MQTT_RC_QOS_NOT_SUPPORTED = 0x9B,
  PL_MQTT_RC_SHARED_NOT_SUPPORTED = 0x9E,
  PL_MQTT_RC_WILDCARD_NOT_SUPPORTED = 0xA2,
};

/* 3.1.1 CONNACK return codes. */
enum {
  PL_MQTT3_ACCEPTED = 0,
  PL_MQTT3_BAD_VERSION = 1,
  PL_MQTT3_ID_REJECTED = 2,
  PL_MQTT3_UNAVAILABLE = 3,
  PL_MQTT3_BAD_CREDENTIALS = 4,
  PL_MQTT3_NOT_AUTHORIZED = 5,
};

/* CONNECT flags. */
#define PL_MQTT_CF_CLEAN 0x02
#define PL_MQTT_CF_WILL 0x04
#define PL_MQTT_CF_WILL_RETAIN 0x20
#define PL_MQTT_CF_PASSWORD 0x40
#define PL_MQTT_CF_USERNAME 0x80

/* The largest remaining length four bytes can say. */
#define PL_MQTT_MAX_REMAINING 268435455u

/* A string or binary field: a view into the packet (NULL, 0 when absent). */
typedef struct pl_mqtt_str {
  const uint8_t *p;
  size_t n;
} pl_mqtt_str;

/* Property identifiers (MQTT 5, 2.2.2.2). */
enum {
  PL_MQTT_P_PAYLOAD_FORMAT = 0x01,
  PL_MQTT_P_MESSAGE_EXPIRY = 0x02,
  PL_MQTT_P_CONTENT_TYPE = 0x03,
  PL_MQTT_P_RESPONSE_TOPIC = 0x08,
  PL_MQTT_P_CORRELATION = 0x09,
  PL_MQTT_P_SUB_ID = 0x0B,
  PL_MQTT_P_SESSION_EXPIRY = 0x11,
  PL_MQTT_P_ASSIGNED_ID = 0x12,
  PL_MQTT_P_SERVER_KEEPALIVE = 0x13,
  PL_MQTT_P_AUTH_METHOD = 0x15,
  PL_MQTT_P_AUTH_DATA = 0x16,
  PL_MQTT_P_REQ_PROBLEM = 0x17,
  PL_MQTT_P_WILL_DELAY = 0x18,
  PL_MQTT_P_REQ_RESPONSE = 0x19,
  PL_MQTT_P_RESPONSE_INFO = 0x1A,
  PL_MQTT_P_SERVER_REF = 0x1C,
  PL_MQTT_P_REASON_STRING = 0x1F,
  PL_MQTT_P_RECEIVE_MAX = 0x21,
  PL_MQTT_P_TOPIC_ALIAS_MAX = 0x22,
  PL_MQTT_P_TOPIC_ALIAS = 0x23,
  PL_MQTT_P_MAX_QOS = 0x24,
  PL_MQTT_P_RETAIN_AVAILABLE = 0x25,
  PL_MQTT_P_USER = 0x26,
  PL_MQTT_P_MAX_PACKET = 0x27,
  PL_MQTT_P_WILDCARD_AVAILABLE = 0x28,
  PL_MQTT_P_SUB_ID_AVAILABLE = 0x29,
  PL_MQTT_P_SHARED_AVAILABLE = 0x2A,
  PL_MQTT_P_MAX_ID = 0x2A
};

/* A packet's MQTT 5 properties. `has` has bit id set for every property
 * present (one bit per identifier, so 1ull << PL_MQTT_P_...). Integers and
 * strings sit in the field of their identifier; user properties (and, in a
 * PUBLISH, further subscription identifiers) may repeat: walk them with
 * pl_mqtt_user_next over `raw`, the whole encoded property block. */
typedef struct pl_mqtt_props {
  uint64_t has;
  uint32_t u32[PL_MQTT_P_MAX_ID + 1];    /* byte, two- and four-byte, varint properties */
  pl_mqtt_str str[PL_MQTT_P_MAX_ID + 1]; /* strings and binary data */
  pl_mqtt_str user_k, user_v;            /* the first user property */
  uint32_t nuser;                        /* user properties in raw */
  pl_mqtt_str raw;                       /* the encoded properties (decoded packets only) */
} pl_mqtt_props;

#define PL_MQTT_HAS(pr, id) (((pr)->has >> (id)) & 1u)
/* Sets an integer or string property (for encoding). */
void pl_mqtt_prop_u32(pl_mqtt_props *pr, int id, uint32_t v);
void pl_mqtt_prop_str(pl_mqtt_props *pr, int id, const void *p, size_t n);

/* One SUBSCRIBE entry; opts: QoS (bits 0-1), No Local (2), Retain As
 * Published (3), Retain Handling (4-5). */
typedef struct pl_mqtt_sub {
  pl_mqtt_str filter;
  uint8_t opts;
} pl_mqtt_sub;

typedef struct pl_mqtt_pkt {
  uint8_t type, flags;      /* fixed header */
  uint8_t version;          /* CONNECT: the protocol level asked for */
  uint8_t cflags;           /* CONNECT flags; CONNACK: acknowledge flags */
  uint8_t reason;           /* CONNACK, PUBACK..PUBCOMP, DISCONNECT, AUTH */
  uint8_t qos, dup, retain; /* PUBLISH (from flags) */
  uint16_t keepalive;       /* CONNECT, seconds */
  uint16_t id;              /* packet identifier */
  pl_mqtt_str client_id, will_topic, will_payload, username, password; /* CONNECT */
  pl_mqtt_str topic, payload;                                          /* PUBLISH */
  /* SUBSCRIBE, UNSUBSCRIBE: the encoded list (pl_mqtt_sub_next walks it);
   * SUBACK, UNSUBACK: the reason codes, one byte each. */
  pl_mqtt_str list;
  uint32_t count; /* entries in list */
  pl_mqtt_props props, will_props;
} pl_mqtt_pkt;

/* The fixed header at p[0..n): the packet's type and flags, its header's
 * length and the remaining length. max is the largest whole packet the
 * receiver takes (0: the protocol's limit). PL_OK; PL_ERR_AGAIN (more bytes
 * needed); PL_ERR_BAD_FRAME (*why 0x81: a reserved type, a fifth length
 * byte); PL_ERR_FRAME_TOO_LARGE (*why 0x95). */
pl_err pl_mqtt_header(const uint8_t *p, size_t n, uint32_t max, uint8_t *type, uint8_t *flags, size_t *hlen,
                      size_t *rlen, uint8_t *why);

/* Decodes the one whole packet p[0..n) (fixed header included, n exactly
 * its length) spoken at version (PL_MQTT_V311 or PL_MQTT_V5; a CONNECT
 * carries its own). PL_OK, or PL_ERR_BAD_FRAME with the reason in *why;
 * a CONNECT of an unknown level or protocol name is PL_ERR_UNSUPPORTED_VERSION
 * (*why 0x84) with out->version set, so the caller can answer in kind. */
pl_err pl_mqtt_decode(const uint8_t *p, size_t n, uint8_t version, pl_mqtt_pkt *out, uint8_t *why);

/* The next entry of a decoded SUBSCRIBE (opts set) or UNSUBSCRIBE list;
 * *it starts at 0. 1 while there is one, then 0. */
int pl_mqtt_sub_next(const pl_mqtt_pkt *pk, size_t *it, pl_mqtt_sub *out);
/* The next user property of a decoded property block; *it starts at 0. */
int pl_mqtt_user_next(const pl_mqtt_props *pr, size_t *it, pl_mqtt_str *k, pl_mqtt_str *v);

/* Appends pk encoded at version to out. A SUBSCRIBE's or UNSUBSCRIBE's
 * entries come from subs[0..nsubs) (or, with subs NULL, from pk->list as
 * decoded); a SUBACK's or UNSUBACK's reasons from pk->list. Properties are
 * written for MQTT 5 only, user properties copied from props.raw. PL_OK,
 * or PL_ERR_INVALID_ARGUMENT for a packet the protocol cannot carry (a
 * string over 65535 bytes, a body over the remaining length's limit). */
pl_err pl_mqtt_encode(const pl_mqtt_pkt *pk, uint8_t version, const pl_mqtt_sub *subs, size_t nsubs,
                      pl_bytes *out);

/* Topic rules: a name carries no wildcard; a filter's '#' is last and alone
 * in its level, '+' alone in its level. Both non-empty. 1 if valid. */
int pl_mqtt_topic_name_ok(const uint8_t *p, size_t n);
int pl_mqtt_topic_filter_ok(const uint8_t *p, size_t n);

/* "CONNECT", "PUBLISH", ... ("?" for others). */
const char *pl_mqtt_type_name(uint8_t type);

#endif
